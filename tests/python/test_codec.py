"""turboquant.Codec on NumPy: distortion against the codebooks' theory (DESIGN.md §2.10) and the
`tq codec` CLI on the very same vectors, scores against decode and against q·x, the stored layout,
and the refusal of bad arrays (wrong shape, dtype, strides) with errors that say what was expected.
"""

import concurrent.futures

import numpy as np
import pytest

import turboquant as tq
from turboquant import _core

# DESIGN.md §2.10: the codebooks' exact d·MSE for mse(b) at d = 128, b = 1..4 (rounded there).
THEORY_D128 = {1: 0.3609, 2: 0.1160, 3: 0.03397, 4: 0.00931}


def unit_vectors(n, d, seed):
    return _core.random_unit_vectors(n, d, seed)


def dmse(codec, x):
    err = x.astype(np.float64) - codec.decode(codec.encode(x))
    return float((err * err).sum(axis=1).mean())


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_mse_distortion_matches_theory(bits):
    codec = tq.Codec(128, bits, seed=3)
    assert codec.expected_mse() == pytest.approx(THEORY_D128[bits], rel=2e-3)
    measured = dmse(codec, unit_vectors(20000, 128, 11))
    # 20k vectors: the Monte-Carlo error of d·MSE is well under 1 %.
    assert measured == pytest.approx(codec.expected_mse(), rel=0.02)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_prod_distortion_matches_theory(bits):
    # x − x̃ = r − r̃ with E‖r̃‖² = (1 + π/2)γ²: d·MSE = (π/2)·D_mse(b−1) (src/codec/distortion.cpp).
    codec = tq.Codec(128, bits, kind="prod", seed=5)
    theory = 0.5 * np.pi * tq.Codec(128, bits - 1, seed=5).expected_mse()
    assert dmse(codec, unit_vectors(20000, 128, 12)) == pytest.approx(theory, rel=0.03)


CLI_CASES = [
    dict(dim=128, bits=4, kind="mse", rotation="hadamard", norm_correction=False),
    dict(dim=64, bits=3.5, kind="mse", rotation="hadamard", norm_correction=False),
    dict(dim=64, bits=3, kind="prod", rotation="hadamard", norm_correction=False),
    dict(dim=96, bits=2, kind="mse", rotation="haar", norm_correction=False),
    dict(dim=128, bits=2.5, kind="prod", rotation="hadamard", norm_correction=True),
    dict(dim=64, bits=1, kind="prod", rotation="hadamard", norm_correction=False),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: f"{c['kind']}{c['bits']}-d{c['dim']}-"
                         f"{c['rotation']}{'-nc' if c['norm_correction'] else ''}")
def test_round_trip_equals_tq_codec(tq_cli, case):
    """`tq codec --seed S` encodes random_unit_vectors(n, d, S) with a codec of seed S; the same
    vectors through the Python codec give the CLI's d·MSE to rounding, so decode(encode(x)) is the
    C++ result, and the per-pair scores give its inner-product distortion."""
    n, seed = 3000, 7
    args = ["codec", "-d", case["dim"], "-b", case["bits"], "--codec", case["kind"],
            "--rotation", case["rotation"], "-n", n, "--seed", seed]
    if case["norm_correction"]:
        args.append("--norm-correction")
    ref = tq_cli.json(*args)
    codec = tq.Codec(case["dim"], case["bits"], kind=case["kind"], rotation=case["rotation"],
                     seed=seed, norm_correction=case["norm_correction"])
    x = unit_vectors(n, case["dim"], seed)
    assert dmse(codec, x) == pytest.approx(ref["mse"], rel=1e-9)
    assert codec.expected_mse() == pytest.approx(
        ref["mse_theory"] if case["kind"] == "mse" else codec.expected_mse(), rel=1e-12)
    assert codec.bits_per_value == pytest.approx(ref["bits_per_value"], rel=1e-12)
    assert codec.layout.bytes_per_token == ref["bytes_per_vector"]
    q = unit_vectors(n, case["dim"], seed ^ 0x5BD1E995)
    encoded = codec.encode(x)
    est = np.array([codec.score(q[i], encoded[i])[0] for i in range(0, n)], np.float64)
    truth = (q.astype(np.float64) * x).sum(axis=1)
    ip = case["dim"] * float(((est - truth) ** 2).mean())
    # The CLI scores one token at a time, this scores one token too: same kernels, same sums.
    assert ip == pytest.approx(ref["ip_distortion"], rel=1e-5)


@pytest.mark.parametrize("kind,bits", [("mse", 4), ("mse", 2.5), ("prod", 3), ("prod", 1)])
def test_scores_equal_query_times_decode(kind, bits):
    codec = tq.Codec(64, bits, kind=kind, seed=9)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 64)).astype(np.float32) * 3.0
    q = rng.standard_normal((7, 64)).astype(np.float32)
    enc = codec.encode(x)
    ref = q.astype(np.float64) @ codec.decode(enc).astype(np.float64).T
    batched = codec.score(q, enc)
    assert batched.shape == (7, 500) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # A prepared query gives the same; one 1-D query gives one row, [n].
    np.testing.assert_array_equal(codec.score(codec.prepare_query(q), enc), batched)
    single = codec.score(q[2], enc)
    assert single.shape == (500,)
    # One query runs the single-query kernels (two FMA chains): other float sums, same values.
    scale = np.abs(batched).max()
    np.testing.assert_allclose(single, batched[2], rtol=1e-5, atol=1e-5 * scale)


def test_more_queries_than_one_group():
    # The binding scores queries in groups of 16; 37 queries cross two group boundaries.
    codec = tq.Codec(128, 3, seed=2)
    x = unit_vectors(300, 128, 4)
    q = unit_vectors(37, 128, 5)
    enc = codec.encode(x)
    batched = codec.score(q, enc)
    for i in (0, 15, 16, 31, 36):
        np.testing.assert_allclose(batched[i], codec.score(q[i], enc), rtol=1e-5, atol=1e-5)


def slope(codec, n=4000, seed=21):
    # Correlated pairs (⟨q, x⟩ ≈ 0.7), as measure_distortion builds them.
    x = unit_vectors(n, codec.dim, seed)
    q = x + unit_vectors(n, codec.dim, seed + 1)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    enc = codec.encode(x)
    est = np.array([codec.score(q[i], enc[i])[0] for i in range(n)], np.float64)
    truth = (q.astype(np.float64) * x).sum(axis=1)
    return float((est * truth).sum() / (truth * truth).sum())


def test_prod_scores_are_unbiased_and_mse_scores_shrink():
    # The documented bias (Codec.score): prod unbiased, mse scaled by ≈ 1 − d·MSE (2/π at 1 bit).
    assert slope(tq.Codec(128, 2, kind="prod", seed=1)) == pytest.approx(1.0, abs=0.015)
    mse1 = tq.Codec(128, 1, seed=1)
    assert slope(mse1) == pytest.approx(1.0 - mse1.expected_mse(), abs=0.01)
    assert slope(mse1) == pytest.approx(2 / np.pi, abs=0.01)
    mse4 = tq.Codec(128, 4, seed=1)
    assert slope(mse4) == pytest.approx(1.0 - mse4.expected_mse(), abs=0.005)


def test_layout_and_bits_per_value():
    # DESIGN.md §2.8: tq4 66 B at d = 128 (4.125 bits), 34 B at d = 64; tq3.5 at d = 64 is 30 B.
    assert tq.Codec(128, 4).layout.bytes_per_token == 66
    assert tq.Codec(128, 4).bits_per_value == 4.125
    assert tq.Codec(64, 4).bits_per_value == 4.25
    c = tq.Codec(64, 3.5)
    assert (c.layout.hi_count, c.layout.hi_bits, c.layout.lo_bits) == (32, 4, 3)
    assert c.layout.bytes_per_token == 30 and c.bits_per_value == 3.75
    p = tq.Codec(128, 4, kind="prod")
    assert p.bits_per_value == 4 + 32 / 128
    enc = p.encode(unit_vectors(10, 128, 1))
    assert enc.nbytes == 10 * p.layout.bytes_per_token
    assert enc.signs.shape == (10, 16) and enc.residual_norms.dtype == np.float16
    assert enc.codes.shape == (10, p.layout.code_bytes) and len(enc) == 10


def test_encoding_is_deterministic_and_seeded():
    x = unit_vectors(50, 64, 3)
    a, b = tq.Codec(64, 3, seed=4).encode(x), tq.Codec(64, 3, seed=4).encode(x)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.norms, b.norms)
    assert not np.array_equal(tq.Codec(64, 3, seed=5).encode(x).codes, a.codes)


def test_norms_are_the_fp16_norms():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 128)).astype(np.float32) * 5
    enc = tq.Codec(128, 4).encode(x)
    np.testing.assert_array_equal(enc.norms, np.linalg.norm(x, axis=1).astype(np.float16))
    # uint16 views of the fp16 bits are accepted as well.
    alt = tq.Encoded(enc.codes, enc.norms.view(np.uint16))
    np.testing.assert_array_equal(tq.Codec(128, 4).decode(alt), tq.Codec(128, 4).decode(enc))


def test_empty_batch():
    codec = tq.Codec(64, 4)
    enc = codec.encode(np.zeros((0, 64), np.float32))
    assert enc.count == 0 and codec.decode(enc).shape == (0, 64)
    assert codec.score(np.ones(64, np.float32), enc).shape == (0,)


def test_threads_give_the_same_results():
    # The calls release the GIL; concurrent use of one codec must be safe and deterministic.
    codec = tq.Codec(128, 3.5, kind="prod", seed=8)
    xs = [unit_vectors(2000, 128, s) for s in range(4)]
    serial = [codec.decode(codec.encode(x)) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda x: codec.decode(codec.encode(x)), xs))
    for s, t in zip(serial, threaded):
        np.testing.assert_array_equal(s, t)


def test_for_scheme_uses_per_layer_seeds():
    k0 = tq.Codec.for_scheme("k4v3:kcodec=prod", "key", 0, 64)
    assert (k0.kind, k0.bits, k0.dim) == ("prod", 4, 64)
    v0 = tq.Codec.for_scheme(tq.parse_scheme("k4v3"), "value", 0, 64)
    assert (v0.kind, v0.bits) == ("mse", 3)
    assert tq.Codec.for_scheme("tq4", "key", 1, 64).seed != tq.Codec.for_scheme("tq4", "key", 0,
                                                                                64).seed
    assert k0.seed != tq.Codec.for_scheme("tq4", "value", 0, 64).seed
    with pytest.raises(ValueError, match="not a TurboQuant format"):
        tq.Codec.for_scheme("q8", "key", 0, 64)
    with pytest.raises(ValueError, match="side 'x' is unknown"):
        tq.Codec.for_scheme("tq4", "x", 0, 64)


# --- bad arguments ------------------------------------------------------------------------------

def test_bad_codec_parameters_raise_value_error_with_the_cpp_message():
    with pytest.raises(ValueError, match="codec 'fast' is unknown; expected 'mse' or 'prod'"):
        tq.Codec(64, 4, kind="fast")
    with pytest.raises(ValueError, match="rotation kind 'dct' is unknown"):
        tq.Codec(64, 4, rotation="dct")
    with pytest.raises(ValueError, match="3.3"):
        tq.Codec(64, 3.3)  # 0.3 · 64 coordinates is not an integer
    with pytest.raises(ValueError, match="dim"):
        tq.Codec(0, 4)
    with pytest.raises(ValueError):
        tq.Codec(64, 9)
    with pytest.raises(TypeError, match="dim must be an int"):
        tq.Codec(64.0, 4)
    with pytest.raises(ValueError, match="seed"):
        tq.Codec(64, 4, seed=-1)


def test_wrong_dim_is_refused_naming_the_expected_shape():
    codec = tq.Codec(128, 4)
    with pytest.raises(ValueError, match=r"x must be float32 of shape \[n, 128\]; got shape "
                                         r"\(10, 64\)"):
        codec.encode(np.zeros((10, 64), np.float32))
    with pytest.raises(ValueError, match=r"shape \[n, 128\]; got shape \(128,\)"):
        codec.encode(np.zeros(128, np.float32))
    with pytest.raises(ValueError, match=r"q must be float32 of shape \[128\]; got shape \(64,\)"):
        codec.prepare_query(np.zeros(64, np.float32))
    with pytest.raises(ValueError, match=r"q must be float32 of shape \[m, 128\]; got shape "
                                         r"\(2, 64\)"):
        codec.score(np.zeros((2, 64), np.float32), codec.encode(np.zeros((1, 128), np.float32)))


def test_float64_is_refused_not_converted():
    codec = tq.Codec(64, 4)
    with pytest.raises(TypeError, match=r"x must be float32 of shape \[n, 64\]; got float64"):
        codec.encode(np.zeros((3, 64)))
    with pytest.raises(TypeError, match="float32"):
        codec.score(np.zeros(64), codec.encode(np.zeros((3, 64), np.float32)))
    with pytest.raises(TypeError, match="must be a float32 array"):
        codec.encode([[0.0] * 64])


def test_strided_views_are_refused():
    codec = tq.Codec(64, 4)
    wide = np.zeros((10, 128), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        codec.encode(wide[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        codec.encode(np.zeros((64, 10), np.float32).T)
    codec.encode(np.ascontiguousarray(wide[:, ::2]))  # what the message suggests works


def test_read_only_inputs_are_accepted():
    codec = tq.Codec(64, 4)
    x = unit_vectors(5, 64, 1)
    x.setflags(write=False)
    enc = codec.encode(x)
    for a in (enc.codes, enc.norms):
        a.setflags(write=False)
    assert codec.decode(enc).shape == (5, 64)


def test_encoded_from_another_layout_is_refused():
    mse4, prod4, mse3 = tq.Codec(64, 4), tq.Codec(64, 4, kind="prod"), tq.Codec(64, 3)
    x = unit_vectors(4, 64, 2)
    with pytest.raises(ValueError, match=r"codes must be uint8 of shape \[n, 24\]; got shape "
                                         r"\(4, 32\)"):
        mse3.decode(mse4.encode(x))
    with pytest.raises(ValueError, match="needs signs and residual_norms"):
        prod4.decode(tq.Encoded(prod4.encode(x).codes, prod4.encode(x).norms))
    with pytest.raises(ValueError, match="takes no signs"):
        tq.Codec(64, 3).decode(prod4.encode(x))
    bad = mse4.encode(x)
    with pytest.raises(ValueError, match=r"norms must be float16 or uint16 of shape \[4\]"):
        mse4.decode(tq.Encoded(bad.codes, bad.norms[:3].copy()))
    with pytest.raises(TypeError, match="norms must be float16 or uint16"):
        mse4.decode(tq.Encoded(bad.codes, bad.norms.astype(np.float32)))
    with pytest.raises(TypeError, match="expected an Encoded"):
        mse4.decode({"codes": bad.codes})


class DlpackOnly:
    """An array that offers nothing but DLPack (as torch, CuPy and JAX arrays do to nanobind)."""

    def __init__(self, a):
        self._a, self.shape, self.ndim = a, a.shape, a.ndim

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_any_dlpack_array_is_read_in_place():
    codec = tq.Codec(64, 3, kind="prod", seed=1)
    x, q = unit_vectors(40, 64, 1), unit_vectors(3, 64, 2)
    ref = codec.encode(x)
    got = codec.encode(DlpackOnly(x))
    for a, b in ((got.codes, ref.codes), (got.signs, ref.signs), (got.norms, ref.norms)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(codec.score(DlpackOnly(q), ref), codec.score(q, ref))
    np.testing.assert_array_equal(codec.score(DlpackOnly(q[1]), ref), codec.score(q[1], ref))
    with pytest.raises(TypeError, match="got float64"):
        codec.encode(DlpackOnly(x.astype(np.float64)))


def test_torch_cpu_tensors_work_when_torch_is_there():
    torch = pytest.importorskip("torch")
    codec = tq.Codec(64, 4, seed=3)
    x = torch.randn(30, 64)
    np.testing.assert_array_equal(codec.encode(x).codes, codec.encode(x.numpy()).codes)
    np.testing.assert_array_equal(codec.score(x[0], codec.encode(x)),
                                  codec.score(x[0].numpy(), codec.encode(x)))
    with pytest.raises(ValueError, match="C-contiguous"):
        codec.encode(x.T.contiguous().T)


def test_encode_releases_the_gil():
    # While one thread encodes, another keeps running Python: the longest pause it sees must be a
    # small part of the encode call (with the GIL held it would be the whole call).
    import threading
    import time

    codec = tq.Codec(128, 4, kind="prod", seed=1)
    x = unit_vectors(60000, 128, 3)
    start = time.perf_counter()
    codec.encode(x)
    duration = time.perf_counter() - start
    worker = threading.Thread(target=codec.encode, args=(x,))
    last, longest = time.perf_counter(), 0.0
    worker.start()  # with the GIL held, start() itself may return only after the whole call
    while worker.is_alive():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    # The pause that ends the loop counts too: with the GIL held, that is where the call sits.
    longest = max(longest, time.perf_counter() - last)
    worker.join()
    assert longest < 0.5 * duration, (longest, duration)
