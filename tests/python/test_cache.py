"""turboquant.LayerKvCache on NumPy arrays: attention on the compressed cache against a float64
NumPy reference over the decoded cache (so the codes are scored as stored), causality, grouped
query heads, the exact window and protected layers, the byte count against kv_size, and bad
arguments -> TypeError / ValueError naming the argument.
"""

import numpy as np
import pytest

import turboquant as tq

SCHEMES = ["fp16", "tq4", "tq3.5:window=16", "k4v3:kcodec=prod", "tq2.5:window=0", "q8", "q4r",
           "tq4:center=kv", "tq3:rot=haar"]


def reference(cache: tq.LayerKvCache, q: np.ndarray, first: int, scale=None) -> np.ndarray:
    """Softmax attention in float64 over the decoded cache: query i at position first + i sees
    tokens [0, first + i]; q head h reads KV head h // (q_heads // kv_heads)."""
    n, hq, d = q.shape
    group = hq // cache.kv_heads
    scale = d ** -0.5 if scale is None else scale
    keys = [cache.decode("key", h).astype(np.float64) for h in range(cache.kv_heads)]
    values = [cache.decode("value", h).astype(np.float64) for h in range(cache.kv_heads)]
    out = np.empty((n, hq, d))
    for i in range(n):
        p = first + i
        for h in range(hq):
            k, v = keys[h // group][: p + 1], values[h // group][: p + 1]
            s = k @ q[i, h].astype(np.float64) * scale
            w = np.exp(s - s.max())
            out[i, h] = (w / w.sum()) @ v
    return out


def rel_err(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def kv(rng, n, heads=2, d=64):
    return (rng.standard_normal((n, heads, d), dtype=np.float32),
            rng.standard_normal((n, heads, d), dtype=np.float32))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_attend_matches_reference_on_decoded_cache(scheme):
    rng = np.random.default_rng(1)
    c = tq.LayerKvCache(scheme, q_heads=6, kv_heads=2, head_dim=64)
    # A prefill chunk, single-token decode steps and a second chunk, attending after each append.
    for n in (37, 1, 1, 20, 1):
        k, v = kv(rng, n)
        c.append(k, v)
        q = rng.standard_normal((n, 6, 64), dtype=np.float32)
        out = np.full((n, 6, 64), np.nan, dtype=np.float32)  # poisoned: every value is written
        got = c.attend(q, out=out)
        assert got is out and np.isfinite(got).all()
        assert rel_err(got, reference(c, q, c.size - n)) < 1e-3
    assert c.size == 60


def test_attend_first_position_is_causal():
    rng = np.random.default_rng(2)
    k, v = kv(rng, 50)
    full = tq.LayerKvCache("tq4:window=8", q_heads=4, kv_heads=2, head_dim=64)
    full.append(k, v)
    prefix = tq.LayerKvCache("tq4:window=8", q_heads=4, kv_heads=2, head_dim=64)
    prefix.append(k[:30], v[:30])
    q = rng.standard_normal((10, 4, 64), dtype=np.float32)
    # Queries at positions [20, 30) see only tokens up to 29: what a 30-token cache holds. The
    # stored bytes do not depend on later tokens only where the window has not moved past them,
    # so compare against the reference on the full cache and the prefix cache's default.
    got = full.attend(q, first_position=20)
    assert rel_err(got, reference(full, q, 20)) < 1e-3
    assert rel_err(prefix.attend(q), reference(prefix, q, 20)) < 1e-3
    # The last query sees every token: attending from size - n is the default.
    np.testing.assert_array_equal(full.attend(q), full.attend(q, first_position=40))
    assert not np.allclose(full.attend(q), got)


def test_fp16_attention_equals_exact_softmax_of_inputs():
    rng = np.random.default_rng(3)
    k, v = kv(rng, 25, heads=1, d=32)
    c = tq.LayerKvCache("fp16", q_heads=2, kv_heads=1, head_dim=32)
    c.append(k, v)
    # fp16 storage: decode returns the inputs rounded to half.
    np.testing.assert_array_equal(c.decode("key", 0), k[:, 0].astype(np.float16).astype(np.float32))
    q = rng.standard_normal((1, 2, 32), dtype=np.float32)
    s = (k[:, 0].astype(np.float16).astype(np.float64) @ q[0, 1]) * 0.25
    w = np.exp(s - s.max())
    want = (w / w.sum()) @ v[:, 0].astype(np.float16).astype(np.float64)
    got = c.attend(q, scale=0.25)[0, 1]
    assert rel_err(got, want) < 1e-5


def test_grouped_query_heads_read_their_kv_head():
    rng = np.random.default_rng(4)
    c = tq.LayerKvCache("fp16", q_heads=4, kv_heads=2, head_dim=16)
    k, v = kv(rng, 9, heads=2, d=16)
    v[:, 1] += 100.0  # KV head 1's values are far from head 0's
    c.append(k, v)
    out = c.attend(rng.standard_normal((1, 4, 16), dtype=np.float32))
    assert (out[0, :2] < 50).all() and (out[0, 2:] > 50).all()  # q heads 0,1 -> kv 0; 2,3 -> kv 1


@pytest.mark.parametrize("scheme,context", [("tq4", 300), ("tq3.5:window=64", 1000), ("q8", 77),
                                            ("fp16", 5), ("k4v3:kcodec=prod,window=0", 129)])
def test_bytes_equal_kv_size(scheme, context):
    rng = np.random.default_rng(5)
    c = tq.LayerKvCache(scheme, q_heads=8, kv_heads=2, head_dim=128)
    k, v = kv(rng, context, d=128)
    c.append(k, v)
    assert c.bytes == tq.kv_size(scheme, layers=1, kv_heads=2, head_dim=128, context=context).bytes
    assert len(c) == c.size == context and c.capacity_bytes >= c.bytes


def test_window_protect_and_formats():
    rng = np.random.default_rng(6)
    c = tq.LayerKvCache("tq3.5:protect=1/1,window=64", layer=1, n_layers=4, q_heads=2, kv_heads=1,
                        head_dim=64)
    assert (c.window, c.is_protected, c.side_format("key"), c.side_format("v")) == (
        64, False, "turboquant", "turboquant")
    k, v = kv(rng, 100, heads=1)
    c.append(k, v)
    assert (c.size, c.compressed_size) == (100, 36)
    # The window keeps the last 64 tokens exact (fp16).
    np.testing.assert_array_equal(c.decode("key", 0, 36), k[36:, 0].astype(np.float16))
    for layer in (0, 3):
        p = tq.LayerKvCache("tq3.5:protect=1/1", layer=layer, n_layers=4, q_heads=2, kv_heads=1,
                            head_dim=64)
        assert p.is_protected and p.side_format("key") == "fp16" and p.window == 0
    assert tq.LayerKvCache("q4r", q_heads=1, kv_heads=1, head_dim=64).side_format("key") == "q4"
    c.clear()
    assert c.size == 0 and c.bytes == 0
    assert "tq3.5:protect=1/1,window=64" in repr(c)


def test_bad_construction():
    with pytest.raises(ValueError, match="kv scheme 'zz' is unknown"):
        tq.LayerKvCache("zz", q_heads=2, kv_heads=1, head_dim=64)
    with pytest.raises(ValueError, match="n_q_heads 3 must be a positive multiple of n_kv_heads 2"):
        tq.LayerKvCache("tq4", q_heads=3, kv_heads=2, head_dim=64)
    with pytest.raises(ValueError, match=r"layer 4 is out of range \[0, 4\)"):
        tq.LayerKvCache("tq4", layer=4, n_layers=4, q_heads=2, kv_heads=1, head_dim=64)
    with pytest.raises(ValueError, match="protect=3/3 names 6 layers, the model has 4"):
        tq.LayerKvCache("tq4:protect=3/3", n_layers=4, q_heads=2, kv_heads=1, head_dim=64)
    with pytest.raises(ValueError, match="head dim 48 is not a power of two"):
        tq.LayerKvCache("tq4", q_heads=2, kv_heads=1, head_dim=48)
    with pytest.raises(ValueError, match="head_dim must be in"):
        tq.LayerKvCache("tq4", q_heads=2, kv_heads=1, head_dim=0)
    with pytest.raises(TypeError, match="q_heads must be an int"):
        tq.LayerKvCache("tq4", q_heads=2.0, kv_heads=1, head_dim=64)
    with pytest.raises(TypeError, match="scheme must be a --kv string"):
        tq.LayerKvCache(4, q_heads=2, kv_heads=1, head_dim=64)


def test_bad_arrays():
    c = tq.LayerKvCache("tq4", q_heads=4, kv_heads=2, head_dim=64)
    k = np.zeros((3, 2, 64), np.float32)
    with pytest.raises(TypeError, match=r"append: keys must be float32 of shape \[n, 2, 64\]; "
                                        r"got float64"):
        c.append(k.astype(np.float64), k)
    with pytest.raises(ValueError, match=r"values must be float32 of shape \[n, 2, 64\]; got "
                                         r"shape \(3, 4, 64\)"):
        c.append(k, np.zeros((3, 4, 64), np.float32))
    with pytest.raises(ValueError, match="keys hold 3 tokens but values hold 2"):
        c.append(k, k[:2])
    with pytest.raises(ValueError, match="C-contiguous"):
        c.append(np.zeros((3, 64, 2), np.float32).transpose(0, 2, 1), k)
    with pytest.raises(TypeError, match="keys must be a float32 array"):
        c.append(k.tolist(), k)
    assert c.size == 0  # nothing was appended by the failed calls
    c.append(k, k)
    q = np.zeros((2, 4, 64), np.float32)
    with pytest.raises(ValueError, match=r"queries must be float32 of shape \[n, 4, 64\]; got "
                                         r"shape \(2, 2, 64\)"):
        c.attend(q[:, :2].copy())
    with pytest.raises(ValueError, match="needs at least 1 query, got 0"):
        c.attend(q[:0])
    with pytest.raises(ValueError,
                       match="4 queries need as many tokens in the cache, which holds 3"):
        c.attend(np.zeros((4, 4, 64), np.float32))
    with pytest.raises(ValueError, match=r"queries at positions \[2, 4\) need that many tokens"):
        c.attend(q, first_position=2)
    with pytest.raises(ValueError, match=r"out must be float32 of shape \[2, 4, 64\]"):
        c.attend(q, out=np.zeros((1, 4, 64), np.float32))
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        c.attend(q, scale=0.0)
    with pytest.raises(ValueError, match="first_position must be in"):
        c.attend(q, first_position=-2)
    with pytest.raises(ValueError, match="side 'x' is unknown"):
        c.decode("x", 0)
    with pytest.raises(ValueError, match="kv head 5"):
        c.decode("key", 5)
    with pytest.raises(ValueError, match="first 7 is past the 3 tokens held"):
        c.decode("key", 0, 7)
