"""Vector search over TurboQuant codes, with FAISS-like calls (issue #15).

``FlatIndex`` scans every code (no training: vectors are encoded the moment they are added);
``IvfIndex`` first trains ``nlist`` k-means centroids and searches the ``nprobe`` nearest lists.
Both wrap ``tq::index`` (include/turboquant/index/) and behave like the CLI's ``tq vsearch``:

    index = turboquant.FlatIndex(dim, bits=4, metric="ip", center=True, fast_scan=True)
    index.add(x)                       # float32 [n, dim]; ids 0, 1, 2, ... unless given
    distances, ids = index.search(q, k=10)

``search`` returns two ``[n_queries, k]`` arrays, best first: scores (inner product and cosine:
higher is better; ``"l2"``: squared distance, lower is better) and int64 ids, padded with -1
where the index holds fewer than ``k`` vectors. Vectors are taken as they are: C-contiguous
float32 (a float64 array is refused, not silently converted). Bad arguments raise ``ValueError``
(``TypeError`` for a wrong type) naming the value; a damaged index file raises ``ValueError``.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

from . import _core

__all__ = ["FlatIndex", "IvfIndex"]

_MAX_K = 1000


def _vectors(value, where: str, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where}: {name} must be a float32 NumPy array [n, dim], "
                        f"got {type(value).__name__}")
    if value.ndim == 1:  # one vector
        value = value.reshape(1, -1)
    return value


def _int(where: str, name: str, value, low: int, high: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{where}: {name} must be in [{low}, {high}], got {value}")
    return value


def _ids(value, n: int, where: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    ids = np.asarray(value)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{where}: ids must be integers, got dtype {ids.dtype}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"{where}: ids must have shape ({n},) to match the vectors, "
                         f"got {ids.shape}")
    return ids


def _path(value, where: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(value).__name__}")
    return os.fspath(value)


def _existing(value, where: str) -> str:
    path = _path(value, where)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no index file at {path!r}")
    return path


class _Index:
    """What both index kinds share; ``self._impl`` is the extension's object."""

    _name = "Index"

    @classmethod
    def load(cls, path):
        """Reads an index ``save`` wrote (a missing file: ``FileNotFoundError``; a truncated,
        corrupted or other kind of file: ``ValueError`` naming what is wrong)."""
        where = f"{cls._name}.load"
        self = cls.__new__(cls)
        self._impl = getattr(_core, cls._name).load(_existing(path, where))
        return self

    def add(self, x, ids=None) -> None:
        """Encodes and adds vectors ``x`` (float32 ``[n, dim]``) under ``ids`` (int64 ``[n]``;
        default: consecutive ids from 0 in order of addition). A duplicate id is an error."""
        where = f"{self._name}.add"
        x = _vectors(x, where, "x")
        self._impl.add(x, _ids(ids, x.shape[0], where))

    def search(self, queries, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of each query (float32 ``[n_queries, dim]``): ``(distances, ids)``."""
        where = f"{self._name}.search"
        q = _vectors(queries, where, "queries")
        k = _int(where, "k", k, 1, _MAX_K)
        distances = np.empty((q.shape[0], k), dtype=np.float32)
        ids = np.empty((q.shape[0], k), dtype=np.int64)
        self._impl.search_into(q, k, distances, ids)
        return distances, ids

    def remove(self, ids) -> int:
        """Removes the listed ids; returns how many were present."""
        where = f"{self._name}.remove"
        ids = np.atleast_1d(np.asarray(ids))
        return self._impl.remove(_ids(ids, ids.shape[0], where))

    def save(self, path) -> None:
        """Writes the index to one file (versioned header, checksummed)."""
        self._impl.save(_path(path, f"{self._name}.save"))

    @property
    def ntotal(self) -> int:
        """Vectors held (FAISS's name for ``len(index)``)."""
        return self._impl.size

    def __len__(self) -> int:
        return self._impl.size

    @property
    def dim(self) -> int:
        return self._impl.dim

    @property
    def bits(self) -> float:
        return self._impl.bits

    @property
    def metric(self) -> str:
        return self._impl.metric

    @property
    def bytes_per_vector(self) -> int:
        """Bytes stored per vector: the code record (+4 for L2's exact norm, +4*dim for the exact
        vectors rerank keeps), not counting the 8-byte id."""
        return self._impl.bytes_per_vector

    @property
    def threads(self) -> int:
        return self._impl.threads

    @threads.setter
    def threads(self, value: int) -> None:
        self._impl.threads = _int(f"{self._name}.threads", "threads", value, 0)


def _options(where: str, dim, bits, kind, seed, metric, rerank, threads) -> dict:
    if isinstance(bits, bool) or not isinstance(bits, (int, float)):
        raise TypeError(f"{where}: bits must be a number, got {bits!r}")
    for name, value in (("kind", kind), ("metric", metric)):
        if not isinstance(value, str):
            raise TypeError(f"{where}: {name} must be a str, got {value!r}")
    return dict(dim=_int(where, "dim", dim, 1), bits=float(bits), kind=kind,
                seed=_int(where, "seed", seed, 0, 2**64 - 1), metric=metric,
                rerank=_int(where, "rerank", rerank, 0), threads=_int(where, "threads", threads, 0))


class FlatIndex(_Index):
    """Exhaustive search over TurboQuant codes.

    ``bits``: bits per dimension (fractional widths such as 3.5 split the dimensions between two
    codebooks); ``kind``: ``"mse"`` or ``"prod"``; ``metric``: ``"ip"``, ``"cosine"`` or
    ``"l2"``; ``center``: subtract the mean of the first added batch before encoding (exact:
    the mean's terms are added back); ``norm_correction``: the codec's per-vector norm rescale;
    ``fast_scan``: score 4-bit mse codes with in-register SIMD tables, then re-score the best
    candidates; ``rerank`` > 0: keep exact vectors and re-score that many top candidates;
    ``threads``: search threads (0: all).
    """

    _name = "FlatIndex"

    def __init__(self, dim: int, bits: float = 4.0, *, kind: str = "mse", seed: int = 0,
                 metric: str = "ip", center: bool = False, norm_correction: bool = False,
                 rerank: int = 0, fast_scan: bool = False, threads: int = 0) -> None:
        o = _options(self._name, dim, bits, kind, seed, metric, rerank, threads)
        self._impl = _core.FlatIndex(center=bool(center), norm_correction=bool(norm_correction),
                                     fast_scan=bool(fast_scan), **o)

    def __repr__(self) -> str:
        return (f"FlatIndex(dim={self.dim}, bits={self.bits:g}, metric={self.metric!r}, "
                f"ntotal={self.ntotal})")


class IvfIndex(_Index):
    """Inverted-file search: ``nlist`` k-means partitions, each a centred ``FlatIndex`` of the
    residuals; ``nprobe`` lists are searched per query (settable between searches). ``train``
    must run before ``add``; it uses at most ``max_train`` random rows."""

    _name = "IvfIndex"

    def __init__(self, dim: int, nlist: int, bits: float = 4.0, *, nprobe: int = 8,
                 kind: str = "mse", seed: int = 0, metric: str = "ip",
                 norm_correction: bool = False, rerank: int = 0, fast_scan: bool = False,
                 threads: int = 0, kmeans_iters: int = 10, max_train: int = 65536) -> None:
        where = self._name
        o = _options(where, dim, bits, kind, seed, metric, rerank, threads)
        self._impl = _core.IvfIndex(nlist=_int(where, "nlist", nlist, 1),
                                    nprobe=_int(where, "nprobe", nprobe, 1),
                                    norm_correction=bool(norm_correction),
                                    fast_scan=bool(fast_scan),
                                    kmeans_iters=_int(where, "kmeans_iters", kmeans_iters, 1),
                                    max_train=_int(where, "max_train", max_train, 1, 2**62),
                                    **o)

    def train(self, x) -> None:
        """Trains the coarse centroids on ``x`` (float32 ``[n, dim]``, n >= nlist)."""
        self._impl.train(_vectors(x, "IvfIndex.train", "x"))

    @property
    def is_trained(self) -> bool:
        return self._impl.trained

    @property
    def nlist(self) -> int:
        return self._impl.nlist

    @property
    def nprobe(self) -> int:
        return self._impl.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._impl.nprobe = _int("IvfIndex.nprobe", "nprobe", value, 1)

    def __repr__(self) -> str:
        return (f"IvfIndex(dim={self.dim}, nlist={self.nlist}, nprobe={self.nprobe}, "
                f"bits={self.bits:g}, metric={self.metric!r}, ntotal={self.ntotal})")
