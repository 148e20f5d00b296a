"""PyTorch custom ops over the CPU compressed KV cache (``turboquant[torch]``).

The ops are registered with ``torch.library`` under the ``turboquant`` namespace, each with a
fake (meta) implementation, so ``torch.compile`` traces through them as single opaque nodes:

- ``turboquant::cache_append(int[] handles, Tensor keys, Tensor values) -> ()``
  appends ``keys``/``values`` ``[B, n, kv_heads, head_dim]`` to the ``B`` caches named by
  ``handles`` (one per sequence of the batch);
- ``turboquant::cache_attend(int[] handles, Tensor queries, float scale) -> Tensor``
  attention of ``queries`` ``[B, n, q_heads, head_dim]``, the last ``n`` tokens of each cache
  (causal), over what each cache holds; returns float32 ``[B, n, q_heads, head_dim]``;
- ``turboquant::cache_append_attend(int[] handles, Tensor queries, Tensor keys, Tensor values,
  float scale) -> Tensor``: both in one node (append the chunk, then attend), whose output keeps
  the append from being dropped as dead code by a compiler.

A cache enters the ops as an int handle (``TorchKvCache.handle``) because ``torch.library`` ops
take tensors and plain values only; the handle table holds the caches weakly. Inputs of any float
dtype are converted to contiguous float32 inside the op. Only CPU tensors run: a tensor on another
device raises ``NotImplementedError`` naming the device (the CUDA ops are not built yet).

``torch`` is imported here, not by ``import turboquant``; install it with
``pip install "turboquant[torch]"`` (or any torch wheel, e.g. the CPU one).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import List, Optional, Sequence

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "turboquant.torch_ops needs PyTorch: pip install 'turboquant[torch]' (or a torch wheel)"
    ) from exc

from .cache import LayerKvCache

__all__ = ["TorchKvCache", "append", "attend", "append_attend", "reference_attention"]

_lock = threading.Lock()
_next_handle = itertools.count(1)
_caches: "weakref.WeakValueDictionary[int, LayerKvCache]" = weakref.WeakValueDictionary()


def _register(cache: LayerKvCache) -> int:
    with _lock:
        handle = next(_next_handle)
        _caches[handle] = cache
    return handle


def _lookup(op: str, handle: int) -> LayerKvCache:
    cache = _caches.get(int(handle))
    if cache is None:
        raise ValueError(f"turboquant::{op}: cache handle {handle} names no live cache "
                         "(the TorchKvCache was freed or the handle is not one of ours)")
    return cache


def _check_tensor(op: str, name: str, t: torch.Tensor, heads: int, head_dim: int,
                  batch: int) -> torch.Tensor:
    """Returns ``t`` as contiguous float32 after checking device, dtype and shape."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"turboquant::{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise NotImplementedError(
            f"turboquant::{op}: {name} is on device '{t.device}', but only CPU tensors are "
            "supported (the CUDA ops of issue #14 are not built yet); move it with .cpu()")
    if not t.dtype.is_floating_point:
        raise TypeError(f"turboquant::{op}: {name} must be a floating-point tensor "
                        f"[B, n, {heads}, {head_dim}], got dtype {t.dtype}")
    if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != heads or t.shape[3] != head_dim:
        raise ValueError(f"turboquant::{op}: {name} must have shape [B={batch}, n, {heads}, "
                         f"{head_dim}], got {tuple(t.shape)}")
    return t.detach().to(torch.float32).contiguous()


def _caches_of(op: str, handles: Sequence[int]) -> List[LayerKvCache]:
    if len(handles) == 0:
        raise ValueError(f"turboquant::{op}: needs at least one cache handle, got none")
    caches = [_lookup(op, h) for h in handles]
    first = caches[0]
    for c in caches[1:]:
        if (c.q_heads, c.kv_heads, c.head_dim) != (first.q_heads, first.kv_heads, first.head_dim):
            raise ValueError(f"turboquant::{op}: the caches of one call must share a shape; got "
                             f"{first!r} and {c!r}")
    return caches


def _append_impl(handles: Sequence[int], keys: torch.Tensor, values: torch.Tensor) -> None:
    op = "cache_append"
    caches = _caches_of(op, handles)
    c = caches[0]
    k = _check_tensor(op, "keys", keys, c.kv_heads, c.head_dim, len(caches))
    v = _check_tensor(op, "values", values, c.kv_heads, c.head_dim, len(caches))
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"turboquant::{op}: keys hold {k.shape[1]} tokens but values hold "
                         f"{v.shape[1]}")
    for b, cache in enumerate(caches):
        cache.append(k[b], v[b])


def _attend_impl(handles: Sequence[int], queries: torch.Tensor, scale: float) -> torch.Tensor:
    op = "cache_attend"
    caches = _caches_of(op, handles)
    c = caches[0]
    q = _check_tensor(op, "queries", queries, c.q_heads, c.head_dim, len(caches))
    if q.shape[1] < 1:
        raise ValueError(f"turboquant::{op}: needs at least 1 query per sequence, got 0")
    out = torch.empty(q.shape, dtype=torch.float32)
    for b, cache in enumerate(caches):
        cache.attend(q[b], scale=scale if scale > 0 else None, out=out[b])
    return out


@torch.library.custom_op("turboquant::cache_append", mutates_args=())
def _cache_append(handles: List[int], keys: torch.Tensor, values: torch.Tensor) -> None:
    _append_impl(handles, keys, values)


@_cache_append.register_fake
def _(handles: List[int], keys: torch.Tensor, values: torch.Tensor) -> None:
    return None


@torch.library.custom_op("turboquant::cache_attend", mutates_args=())
def _cache_attend(handles: List[int], queries: torch.Tensor, scale: float) -> torch.Tensor:
    return _attend_impl(handles, queries, scale)


@_cache_attend.register_fake
def _(handles: List[int], queries: torch.Tensor, scale: float) -> torch.Tensor:
    return queries.new_empty(queries.shape, dtype=torch.float32)


@torch.library.custom_op("turboquant::cache_append_attend", mutates_args=())
def _cache_append_attend(handles: List[int], queries: torch.Tensor, keys: torch.Tensor,
                         values: torch.Tensor, scale: float) -> torch.Tensor:
    _append_impl(handles, keys, values)
    return _attend_impl(handles, queries, scale)


@_cache_append_attend.register_fake
def _(handles: List[int], queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
      scale: float) -> torch.Tensor:
    return queries.new_empty(queries.shape, dtype=torch.float32)


def _mark_effectful() -> None:
    # The ops read and write state outside their tensors (the caches), so a compiler must neither
    # drop cache_append (no output) nor reorder the ops among themselves. torch says so through an
    # ordered effect; the registration is a private torch API, hence the guard: without it eager
    # mode still works and only the compiled use of cache_append alone is unsafe.
    try:
        from torch._library.effects import EffectType
        register = torch.library._register_effectful_op
    except (ImportError, AttributeError):  # pragma: no cover - older torch
        return
    for name in ("cache_append", "cache_attend", "cache_append_attend"):
        register(f"turboquant::{name}", EffectType.ORDERED)


_mark_effectful()


class TorchKvCache:
    """A ``turboquant.LayerKvCache`` with a handle the torch ops take (one layer, one sequence).

    Same arguments as ``LayerKvCache``; ``cache`` is the underlying cache (size, bytes, decode).
    Keep this object alive while its handle is in use: the handle table holds it weakly.
    """

    def __init__(self, scheme: str, *, layer: int = 0, n_layers: int = 1, q_heads: int,
                 kv_heads: int, head_dim: int) -> None:
        self.cache = LayerKvCache(scheme, layer=layer, n_layers=n_layers, q_heads=q_heads,
                                  kv_heads=kv_heads, head_dim=head_dim)
        self.handle = _register(self.cache)

    def __len__(self) -> int:
        return self.cache.size

    def __repr__(self) -> str:
        return f"TorchKvCache(handle={self.handle}, {self.cache!r})"


def _handles(caches) -> List[int]:
    if isinstance(caches, TorchKvCache):
        return [caches.handle]
    out = []
    for c in caches:
        if not isinstance(c, TorchKvCache):
            raise TypeError(f"turboquant.torch_ops: expected TorchKvCache objects, got "
                            f"{type(c).__name__}")
        out.append(c.handle)
    return out


def _batched(x: torch.Tensor, single: bool) -> torch.Tensor:
    return x.unsqueeze(0) if single else x


def append(caches, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Appends to one cache (``keys``/``values`` ``[n, kv_heads, head_dim]``) or to a list of
    ``B`` caches (``[B, n, kv_heads, head_dim]``, row ``b`` to cache ``b``)."""
    single = isinstance(caches, TorchKvCache)
    torch.ops.turboquant.cache_append(_handles(caches), _batched(keys, single),
                                      _batched(values, single))


def attend(caches, queries: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    """Causal attention of the last ``n`` tokens' queries over each cache; shapes as in
    ``append`` with ``q_heads``; returns float32 of the queries' shape. ``scale`` defaults to
    ``1/sqrt(head_dim)``."""
    single = isinstance(caches, TorchKvCache)
    out = torch.ops.turboquant.cache_attend(_handles(caches), _batched(queries, single),
                                            _scale(scale))
    return out[0] if single else out


def append_attend(caches, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                  scale: Optional[float] = None) -> torch.Tensor:
    """``append`` then ``attend`` in one op (the form to use under ``torch.compile``)."""
    single = isinstance(caches, TorchKvCache)
    out = torch.ops.turboquant.cache_append_attend(
        _handles(caches), _batched(queries, single), _batched(keys, single),
        _batched(values, single), _scale(scale))
    return out[0] if single else out


def _scale(scale: Optional[float]) -> float:
    if scale is None:
        return 0.0
    s = float(scale)
    if not (s > 0.0 and s != float("inf")):
        raise ValueError(f"turboquant.torch_ops: scale must be a finite number > 0, got {scale!r}")
    return s


def reference_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                        scale: Optional[float] = None) -> torch.Tensor:
    """Pure-PyTorch causal attention, the ops' reference: ``queries`` ``[n, q_heads, d]`` are the
    last ``n`` of the ``T`` tokens of ``keys``/``values`` ``[T, kv_heads, d]`` (GQA by repeating
    KV heads), computed with ``scaled_dot_product_attention`` in float64."""
    n, hq, d = queries.shape
    t, hkv, _ = keys.shape
    group = hq // hkv
    q = queries.to(torch.float64).transpose(0, 1)                      # [hq, n, d]
    k = keys.to(torch.float64).transpose(0, 1).repeat_interleave(group, dim=0)
    v = values.to(torch.float64).transpose(0, 1).repeat_interleave(group, dim=0)
    # Query i sits at position t - n + i and sees keys [0, t - n + i].
    visible = (torch.arange(t)[None, :] <= (t - n + torch.arange(n))[:, None])
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=visible, scale=scale if scale is not None else d ** -0.5)
    return out.transpose(0, 1).to(torch.float32)
