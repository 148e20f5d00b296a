"""turboquant.torch_ops: the CPU cache as torch.library custom ops. Outputs against the pure-PyTorch
reference (decode the cache, then scaled_dot_product_attention) on random inputs, batched caches
of different lengths, the fake (meta) implementations, torch.compile keeping the side effects,
and bad inputs. Skipped where torch is not installed (CI installs only NumPy; see
scripts/test_python.sh, TQ_PYTHON_TORCH=1).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
to = pytest.importorskip("turboquant.torch_ops")

SCHEMES = ["fp16", "tq4", "tq3.5:window=16", "k4v3:kcodec=prod", "q8", "q4r", "tq2.5:window=0"]


def decoded(c: "to.TorchKvCache"):
    """The cache as attention sees it, [T, kv_heads, d] keys and values."""
    keys = torch.stack([torch.from_numpy(c.cache.decode("key", h))
                        for h in range(c.cache.kv_heads)], dim=1)
    values = torch.stack([torch.from_numpy(c.cache.decode("value", h))
                          for h in range(c.cache.kv_heads)], dim=1)
    return keys, values


def rel_err(got, ref) -> float:
    return float((got - ref).norm() / ref.norm())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ops_match_sdpa_on_decoded_cache(scheme):
    g = torch.Generator().manual_seed(0)
    caches = [to.TorchKvCache(scheme, layer=1, n_layers=3, q_heads=8, kv_heads=2, head_dim=64)
              for _ in range(2)]
    # Row 1 starts with a longer history, so the batched call covers caches of different sizes.
    to.append(caches[1], torch.randn(11, 2, 64, generator=g), torch.randn(11, 2, 64, generator=g))
    for n in (29, 1, 1, 9, 1):
        k = torch.randn(2, n, 2, 64, generator=g, dtype=torch.bfloat16)  # converted in the op
        v = torch.randn(2, n, 2, 64, generator=g)
        q = torch.randn(2, n, 8, 64, generator=g)
        out = to.append_attend(caches, q, k, v) if n == 1 else None
        if out is None:
            to.append(caches, k, v)
            out = to.attend(caches, q)
        assert out.dtype == torch.float32 and out.shape == q.shape and torch.isfinite(out).all()
        for b, c in enumerate(caches):
            ref = to.reference_attention(q[b], *decoded(c))
            assert rel_err(out[b], ref) < 1e-3, (scheme, n, b)
    assert [len(c) for c in caches] == [41, 52]


def test_single_cache_and_scale():
    g = torch.Generator().manual_seed(1)
    c = to.TorchKvCache("tq4", q_heads=4, kv_heads=4, head_dim=32)
    k, v = torch.randn(40, 4, 32, generator=g), torch.randn(40, 4, 32, generator=g)
    to.append(c, k, v)
    q = torch.randn(3, 4, 32, generator=g)
    got = to.attend(c, q, scale=0.1)
    assert got.shape == (3, 4, 32)
    assert rel_err(got, to.reference_attention(q, *decoded(c), scale=0.1)) < 1e-3
    assert rel_err(to.attend(c, q), to.reference_attention(q, *decoded(c))) < 1e-3
    # fp16 keeps the inputs to half precision, so the reference on the inputs themselves is close.
    e = to.TorchKvCache("fp16", q_heads=4, kv_heads=4, head_dim=32)
    to.append(e, k, v)
    assert rel_err(to.attend(e, q), to.reference_attention(q, k, v)) < 2e-3


def test_fake_implementations_give_shapes_without_touching_the_cache():
    c = to.TorchKvCache("tq4", q_heads=4, kv_heads=2, head_dim=64)
    q = torch.empty(1, 5, 4, 64, device="meta")
    k = torch.empty(1, 5, 2, 64, device="meta")
    out = torch.ops.turboquant.cache_append_attend([c.handle], q, k, k, 0.0)
    assert out.device.type == "meta" and out.shape == q.shape and out.dtype == torch.float32
    torch.ops.turboquant.cache_append([c.handle], k, k)
    assert len(c) == 0
    # The opcheck suite on the state-free op: schema, fake tensor and dispatch consistency.
    to.append(c, torch.randn(7, 2, 64), torch.randn(7, 2, 64))
    torch.library.opcheck(torch.ops.turboquant.cache_attend.default,
                          ([c.handle], torch.randn(1, 3, 4, 64), 0.0),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_keeps_appends_and_matches_eager():
    g = torch.Generator().manual_seed(2)
    compiled_cache = to.TorchKvCache("tq4:window=4", q_heads=4, kv_heads=2, head_dim=64)
    eager_cache = to.TorchKvCache("tq4:window=4", q_heads=4, kv_heads=2, head_dim=64)

    def step(cache, q, k, v):
        to.append(cache, k, v)  # no output: only its registered effect keeps it in the graph
        return to.attend(cache, q) * 2.0

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    # No on-disk graph caches: a graph compiled without the effect registration (by an older
    # build) would otherwise be reused and hide it (seen while checking that this test can fail).
    with torch._inductor.config.patch(fx_graph_cache=False), \
            torch._functorch.config.patch(enable_autograd_cache=False):
        run_steps(compiled, step, compiled_cache, eager_cache, g)
    assert len(compiled_cache) == len(eager_cache) == 12


def run_steps(compiled, step, compiled_cache, eager_cache, g):
    for n in (6, 6):
        q = torch.randn(n, 4, 64, generator=g)
        k, v = torch.randn(n, 2, 64, generator=g), torch.randn(n, 2, 64, generator=g)
        got = compiled(compiled_cache, q, k, v)
        want = step(eager_cache, q, k, v)
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_bad_inputs():
    c = to.TorchKvCache("tq4", q_heads=4, kv_heads=2, head_dim=64)
    k = torch.zeros(3, 2, 64)
    with pytest.raises(ValueError,
                       match=r"keys must have shape \[B=1, n, 2, 64\], got \(1, 3, 4, 64\)"):
        to.append(c, torch.zeros(3, 4, 64), k)
    with pytest.raises(TypeError, match="keys must be a floating-point tensor"):
        to.append(c, torch.zeros(3, 2, 64, dtype=torch.int32), k)
    with pytest.raises(ValueError, match="keys hold 3 tokens but values hold 2"):
        to.append(c, k, k[:2])
    with pytest.raises(ValueError, match=r"queries must have shape \[B=2, n, 4, 64\]"):
        to.attend([c, c], torch.zeros(1, 1, 4, 64))
    with pytest.raises(ValueError, match="needs at least 1 query per sequence, got 0"):
        to.attend(c, torch.zeros(0, 4, 64))
    with pytest.raises(ValueError,
                       match="2 queries need as many tokens in the cache, which holds 0"):
        to.attend(c, torch.zeros(2, 4, 64))
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        to.attend(c, torch.zeros(1, 4, 64), scale=-1.0)
    with pytest.raises(TypeError, match="expected TorchKvCache objects, got LayerKvCache"):
        to.attend([c.cache], torch.zeros(1, 4, 64))
    with pytest.raises(ValueError, match="cache handle 999999 names no live cache"):
        torch.ops.turboquant.cache_attend([999999], torch.zeros(1, 1, 4, 64), 0.0)
    other = to.TorchKvCache("tq4", q_heads=2, kv_heads=2, head_dim=64)
    with pytest.raises(ValueError, match="the caches of one call must share a shape"):
        to.attend([c, other], torch.zeros(2, 1, 4, 64))
    # Tensors off the CPU are refused by name (a CUDA tensor gives the same message with 'cuda').
    meta = torch.empty(1, 3, 2, 64, device="meta")
    with pytest.raises(NotImplementedError, match="keys is on device 'meta', but only CPU tensors"):
        to._append_impl([c.handle], meta, meta)
    assert len(c) == 0


def test_freed_cache_handle_is_refused():
    c = to.TorchKvCache("fp16", q_heads=1, kv_heads=1, head_dim=8)
    handle = c.handle
    del c
    with pytest.raises(ValueError, match=f"cache handle {handle} names no live cache"):
        torch.ops.turboquant.cache_append([handle], torch.zeros(1, 1, 1, 8),
                                          torch.zeros(1, 1, 1, 8))


def test_reference_attention_is_causal_softmax():
    # The reference itself, against a NumPy loop, so a wrong mask in it cannot hide an op bug.
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(3, 2, 8, generator=g), torch.randn(5, 1, 8, generator=g), \
        torch.randn(5, 1, 8, generator=g)
    got = to.reference_attention(q, k, v).numpy()
    for i in range(3):
        for h in range(2):
            s = k[: 3 + i, 0].double().numpy() @ q[i, h].double().numpy() / np.sqrt(8)
            w = np.exp(s - s.max())
            np.testing.assert_allclose(got[i, h], (w / w.sum()) @ v[: 3 + i, 0].double().numpy(),
                                       rtol=1e-5, atol=1e-6)
