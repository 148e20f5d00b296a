"""One layer's compressed KV cache on the CPU, with attention computed on what it stores.

``LayerKvCache`` wraps ``tq::LayerKvCache`` (include/turboquant/cache/kv_cache.hpp): keys and
values go in as float32 ``[n, kv_heads, head_dim]`` and are stored in the format the scheme gives
this layer (TurboQuant codes, a block format, or fp16 on protected layers and in the exact
window); ``attend`` scores the queries against the stored codes without materialising the
dequantized cache. The scheme strings are exactly the CLI's ``--kv`` strings.

Arrays are taken as they are, never converted: C-contiguous ``float32`` NumPy arrays or any CPU
array that exports DLPack (a torch CPU tensor works). Wrong dtype -> ``TypeError``; wrong shape,
strided view or another device -> ``ValueError``; both name the argument and what was expected.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core

__all__ = ["LayerKvCache"]


def _check_array(value, where: str, name: str) -> None:
    if not (isinstance(value, np.ndarray) or hasattr(value, "__dlpack__")):
        raise TypeError(
            f"{where}: {name} must be a float32 array (NumPy or any DLPack array), "
            f"got {type(value).__name__}; use np.asarray({name}, dtype=np.float32)"
        )


def _check_int(where: str, name: str, value, low: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    value = int(value)
    if not low <= value <= 2**31 - 1:
        raise ValueError(f"{where}: {name} must be in [{low}, {2**31 - 1}], got {value}")
    return value


class LayerKvCache:
    """The compressed keys and values of one layer of one sequence.

    ``scheme`` is a ``--kv`` string (``"tq4"``, ``"tq3.5:protect=1/1,window=64"``, ``"q8"``,
    ...); ``layer`` and ``n_layers`` place this layer in the model, which picks its codec seeds
    and whether ``protect=F/L`` keeps it fp16. ``q_heads`` must be a multiple of ``kv_heads``
    (grouped-query attention: query head ``h`` reads KV head ``h // (q_heads // kv_heads)``).
    """

    def __init__(self, scheme: str, *, layer: int = 0, n_layers: int = 1, q_heads: int,
                 kv_heads: int, head_dim: int) -> None:
        where = "LayerKvCache"
        if not isinstance(scheme, str):
            raise TypeError(f"{where}: scheme must be a --kv string, got {type(scheme).__name__}")
        self._impl = _core.LayerKvCache(
            scheme, _check_int(where, "layer", layer, 0),
            _check_int(where, "n_layers", n_layers, 1),
            _check_int(where, "q_heads", q_heads, 1), _check_int(where, "kv_heads", kv_heads, 1),
            _check_int(where, "head_dim", head_dim, 1))

    # --- shape and state -------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        """The canonical scheme string (parses back to the same scheme)."""
        return self._impl.scheme

    @property
    def layer(self) -> int:
        return self._impl.layer

    @property
    def n_layers(self) -> int:
        return self._impl.n_layers

    @property
    def q_heads(self) -> int:
        return self._impl.q_heads

    @property
    def kv_heads(self) -> int:
        return self._impl.kv_heads

    @property
    def head_dim(self) -> int:
        return self._impl.head_dim

    @property
    def window(self) -> int:
        """Most recent tokens kept exact in fp16 (0 on layers that are fp16 anyway)."""
        return self._impl.window

    @property
    def is_protected(self) -> bool:
        """Whether ``protect=F/L`` keeps this layer in fp16."""
        return self._impl.is_protected

    def side_format(self, side: str) -> str:
        """The format ``side`` (``"key"`` or ``"value"``) is stored in on this layer:
        ``"turboquant"``, ``"fp16"`` or a block format's scheme name (``"q8"``, ...)."""
        return self._impl.side_format(side)

    @property
    def size(self) -> int:
        """Tokens held."""
        return self._impl.size

    def __len__(self) -> int:
        return self._impl.size

    @property
    def compressed_size(self) -> int:
        """Tokens in the compressed segment (the rest are in the exact window)."""
        return self._impl.compressed_size

    @property
    def bytes(self) -> int:
        """Bytes of what is stored (the per-layer share of ``turboquant.kv_size``)."""
        return self._impl.bytes

    @property
    def capacity_bytes(self) -> int:
        """Bytes allocated for token storage."""
        return self._impl.capacity_bytes

    # --- operations ------------------------------------------------------------------------
    def append(self, keys, values) -> None:
        """Appends ``n`` tokens: ``keys`` and ``values`` are float32 ``[n, kv_heads, head_dim]``."""
        _check_array(keys, "LayerKvCache.append", "keys")
        _check_array(values, "LayerKvCache.append", "values")
        self._impl.append(keys, values)

    def attend(self, queries, *, first_position: Optional[int] = None,
               scale: Optional[float] = None, threads: int = 0, out=None) -> np.ndarray:
        """Softmax attention of ``n >= 1`` queries (float32 ``[n, q_heads, head_dim]``) over the
        cache, causal: query ``i`` sits at position ``first_position + i`` and sees tokens
        ``[0, first_position + i]``. ``first_position`` defaults to ``size - n``, i.e. the
        queries belong to the last ``n`` tokens appended (append the chunk, then attend).
        ``scale`` defaults to ``1/sqrt(head_dim)``; ``threads=0`` uses all OpenMP threads.
        Returns float32 ``[n, q_heads, head_dim]`` (written into ``out`` when given)."""
        where = "LayerKvCache.attend"
        _check_array(queries, where, "queries")
        first = -1 if first_position is None else _check_int(where, "first_position",
                                                             first_position, 0)
        s = 0.0 if scale is None else float(scale)
        if scale is not None and not (s > 0.0 and np.isfinite(s)):
            raise ValueError(f"{where}: scale must be a finite number > 0, got {scale!r}")
        if out is None:
            shape = getattr(queries, "shape", None)
            n = int(shape[0]) if shape is not None and len(shape) == 3 else 0
            out = np.empty((n, self.q_heads, self.head_dim), dtype=np.float32)
        else:
            _check_array(out, where, "out")
        self._impl.attend_into(queries, out, first, s, _check_int(where, "threads", threads, 0))
        return out

    def decode(self, side: str, kv_head: int, first: int = 0,
               count: Optional[int] = None) -> np.ndarray:
        """Tokens ``[first, first + count)`` of one KV head as attention sees them (decoded),
        float32 ``[count, head_dim]``; ``count`` defaults to the rest of the cache."""
        where = "LayerKvCache.decode"
        first = _check_int(where, "first", first, 0)
        count = self.size - first if count is None else _check_int(where, "count", count, 0)
        if count < 0:
            raise ValueError(f"{where}: first {first} is past the {self.size} tokens held")
        out = np.empty((count, self.head_dim), dtype=np.float32)
        self._impl.decode_into(side, _check_int(where, "kv_head", kv_head, 0), first, out)
        return out

    def clear(self) -> None:
        """Forgets all tokens (keeps the allocation)."""
        self._impl.clear()

    def reserve(self, tokens: int) -> None:
        """Makes room for ``tokens`` tokens in total."""
        if isinstance(tokens, bool) or not hasattr(tokens, "__index__") or int(tokens) < 0:
            raise ValueError(f"LayerKvCache.reserve: tokens must be an int >= 0, got {tokens!r}")
        self._impl.reserve(int(tokens))

    def __repr__(self) -> str:
        return (f"LayerKvCache(scheme={self.scheme!r}, layer={self.layer}/{self.n_layers}, "
                f"q_heads={self.q_heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}, "
                f"size={self.size}, bytes={self.bytes})")
