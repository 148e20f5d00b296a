"""TurboQuant codecs on NumPy arrays: ``Codec``, ``Encoded``, ``PreparedQuery``, ``CodeLayout``.

A thin layer over ``turboquant._core.Codec`` (``tq::Codec``, include/turboquant/codec/codec.hpp):
this module allocates the output arrays with NumPy and the extension fills them with the GIL
released. Inputs are taken as they are, never converted: vectors and queries must be C-contiguous
``float32`` arrays of the codec's dimension, else ``TypeError`` (wrong dtype or not an array) or
``ValueError`` (wrong shape, strided view) says what was expected. Any object that exports DLPack
or the buffer protocol on the CPU is accepted; outputs are NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from . import _core

__all__ = ["Codec", "CodeLayout", "Encoded", "PreparedQuery"]


def _check_array(value, where: str, name: str) -> None:
    # The extension checks dtype and shape; this only turns "not an array at all" (a list, a
    # scalar) into a TypeError that says so instead of nanobind's signature dump.
    if not (isinstance(value, np.ndarray) or hasattr(value, "__dlpack__")):
        raise TypeError(
            f"{where}: {name} must be a float32 array (NumPy or any DLPack array), "
            f"got {type(value).__name__}; use np.asarray({name}, dtype=np.float32)"
        )


@dataclass(frozen=True)
class CodeLayout:
    """Byte layout of one encoded token (docs/LAYOUT.md; ``tq::CodeLayout``).

    Rotated coordinates ``[0, hi_count)`` use ``hi_bits`` bits, the rest ``lo_bits``; each segment
    is padded to whole 32-bit words. ``bytes_per_token`` counts codes, signs (prod) and the fp16
    norm (and residual norm, prod).
    """

    dim: int
    hi_count: int
    hi_bits: int
    lo_count: int
    lo_bits: int
    hi_bytes: int
    lo_bytes: int
    code_bytes: int
    sign_bytes: int
    has_residual_norm: bool
    bytes_per_token: int
    bits_per_value: float


@dataclass(frozen=True)
class Encoded:
    """``count`` encoded vectors as token-major NumPy arrays (the arrays of ``tq::EncodedView``).

    - ``codes``: ``uint8 [count, layout.code_bytes]``, packed codes, hi segment first;
    - ``norms``: ``float16 [count]``, the stored norm of each vector;
    - ``signs``: ``uint8 [count, layout.sign_bytes]``, the QJL sign bits (prod codecs; else None);
    - ``residual_norms``: ``float16 [count]``, the QJL residual norm (prod codecs; else None).

    The bytes are exactly what the C++ cache stores per token, so ``nbytes`` equals
    ``count * layout.bytes_per_token``. Decode and score it with the codec that made it: only the
    array shapes are checked, a codec of another seed would read the codes in another rotation.
    """

    codes: np.ndarray
    norms: np.ndarray
    signs: Optional[np.ndarray] = None
    residual_norms: Optional[np.ndarray] = None

    @property
    def count(self) -> int:
        return int(self.codes.shape[0])

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        total = self.codes.nbytes + self.norms.nbytes
        if self.signs is not None:
            total += self.signs.nbytes
        if self.residual_norms is not None:
            total += self.residual_norms.nbytes
        return total

    def __getitem__(self, rows) -> "Encoded":
        """A subset of the vectors (a slice or an index array); the arrays are copied contiguous."""
        if isinstance(rows, (int, np.integer)):
            rows = slice(rows, rows + 1 if rows != -1 else None)

        def take(a):
            return None if a is None else np.ascontiguousarray(a[rows])

        return Encoded(take(self.codes), take(self.norms), take(self.signs),
                       take(self.residual_norms))


@dataclass(frozen=True)
class PreparedQuery:
    """Queries prepared once for scoring many vectors: ``rotated = Π q`` and, for prod codecs,
    ``sketch = √(π/2)/d · S Π q`` (DESIGN.md §2.7). Both are ``float32 [m, dim]``; ``single`` is
    True when it came from one 1-D query, so ``Codec.score`` returns ``[n]`` rather than ``[1, n]``.
    """

    rotated: np.ndarray
    sketch: Optional[np.ndarray]
    single: bool


class Codec:
    """A TurboQuant vector codec (DESIGN.md §2).

    ``kind="mse"``: ``b``-bit Lloyd-Max codes of the rotated unit vector plus its fp16 norm.
    ``kind="prod"``: a ``(b-1)``-bit mse code plus a 1-bit QJL sketch of the residual, which makes
    inner-product estimates unbiased. ``bits`` may be fractional (2.5, 3.5, ...) when
    ``(bits - floor(bits)) * dim`` is an integer. ``rotation`` is ``"hadamard"`` (randomized
    Hadamard, power-of-two ``dim``), ``"haar"`` (dense random orthogonal) or
    ``"overlap-hadamard"`` (three overlapped Hadamard rounds, any ``dim``, O(d log d)). Invalid
    arguments raise ``ValueError`` with the C++ library's message.
    """

    def __init__(self, dim: int, bits: float, kind: str = "mse", rotation: str = "hadamard",
                 seed: int = 0, norm_correction: bool = False):
        for name, value in (("dim", dim), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Codec: {name} must be an int, got {value!r}")
        if not 0 <= seed < 2**64:
            raise ValueError(f"Codec: seed must be in [0, 2**64), got {seed}")
        if not 1 <= dim < 2**31:
            raise ValueError(f"Codec: dim must be >= 1, got {dim}")
        if not isinstance(kind, str) or not isinstance(rotation, str):
            raise TypeError(f"Codec: kind and rotation are strings, got {kind!r}, {rotation!r}")
        self._c = _core.Codec(int(dim), float(bits), kind, rotation, int(seed),
                              bool(norm_correction))
        self._layout = CodeLayout(**self._c.layout)

    @classmethod
    def for_scheme(cls, scheme, side: str, layer: int, head_dim: int) -> "Codec":
        """The codec a KV scheme's TurboQuant side uses at one layer (seeds derived per layer and
        side exactly as the C++ cache derives them). ``side`` is ``"key"`` or ``"value"``."""
        text = scheme if isinstance(scheme, str) else scheme.name
        return cls(**_core.kv_codec_spec(text, side, int(layer), int(head_dim)))

    # --- parameters -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._c.dim

    @property
    def bits(self) -> float:
        return self._c.bits

    @property
    def kind(self) -> str:
        return self._c.kind

    @property
    def rotation(self) -> str:
        return self._c.rotation

    @property
    def seed(self) -> int:
        return self._c.seed

    @property
    def norm_correction(self) -> bool:
        return self._c.norm_correction

    @property
    def simd(self) -> str:
        """The CPU kernels in use: ``"avx2"`` or ``"scalar"``."""
        return self._c.simd

    @property
    def layout(self) -> CodeLayout:
        return self._layout

    @property
    def bits_per_value(self) -> float:
        """Stored bits per coordinate, norms included (8 · bytes_per_token / dim; DESIGN §2.8)."""
        return self._layout.bits_per_value

    def expected_mse(self) -> float:
        """The theoretical d·MSE of the mse part on unit vectors, from the codebooks' integrals
        (what ``tq codec`` prints as theory for mse codecs)."""
        return self._c.expected_unit_vector_mse()

    def __repr__(self) -> str:
        return (f"Codec(dim={self.dim}, bits={self.bits:g}, kind={self.kind!r}, "
                f"rotation={self.rotation!r}, seed={self.seed}, "
                f"norm_correction={self.norm_correction})")

    # --- encode / decode --------------------------------------------------------------------
    def _empty(self, n: int) -> Encoded:
        L = self._layout
        prod = self.kind == "prod"
        return Encoded(
            codes=np.empty((n, L.code_bytes), np.uint8),
            norms=np.empty(n, np.float16),
            signs=np.empty((n, L.sign_bytes), np.uint8) if prod else None,
            residual_norms=np.empty(n, np.float16) if prod else None,
        )

    def encode(self, x) -> Encoded:
        """Encodes ``x``, a C-contiguous ``float32 [n, dim]`` array, into an ``Encoded``."""
        _check_array(x, "Codec.encode", "x")
        shape = tuple(getattr(x, "shape", ()))
        n = int(shape[0]) if len(shape) == 2 else 0
        out = self._empty(n)
        self._c.encode_into(x, out.codes, out.signs, out.norms, out.residual_norms)
        return out

    def _check_encoded(self, encoded: Encoded, where: str) -> None:
        if not isinstance(encoded, Encoded):
            raise TypeError(f"{where}: expected an Encoded (from Codec.encode), "
                            f"got {type(encoded).__name__}")

    def decode(self, encoded: Encoded) -> np.ndarray:
        """The reconstruction ``float32 [n, dim]``: x̂ for mse, x̃ (with the QJL term) for prod."""
        self._check_encoded(encoded, "Codec.decode")
        out = np.empty((encoded.count, self.dim), np.float32)
        self._c.decode_into(encoded.codes, encoded.signs, encoded.norms, encoded.residual_norms,
                            out)
        return out

    # --- scoring ----------------------------------------------------------------------------
    def prepare_query(self, q) -> PreparedQuery:
        """Prepares ``q``: ``float32 [dim]`` (one query) or ``[m, dim]`` (a batch)."""
        _check_array(q, "Codec.prepare_query", "q")
        shape = tuple(getattr(q, "shape", ()))
        single = len(shape) == 1
        m = 1 if single else int(shape[0]) if len(shape) == 2 else 0
        rotated = np.empty((m, self.dim), np.float32)
        sketch = np.empty((m, self.dim), np.float32) if self.kind == "prod" else None
        self._c.prepare_query_into(q, rotated, sketch)
        return PreparedQuery(rotated, sketch, single)

    def score(self, query: Union[PreparedQuery, np.ndarray], encoded: Encoded) -> np.ndarray:
        """Estimated inner products ⟨q, x_t⟩ straight from the codes, without decoding.

        ``query`` is a ``PreparedQuery`` or a raw ``float32`` query (``[dim]`` or ``[m, dim]``,
        prepared on the fly). Returns ``float32 [n]`` for one query, ``[m, n]`` for a batch.
        The estimate equals ``q · decode(encoded)[t]`` (up to float rounding). For ``prod`` it is
        an unbiased estimate of ``q · x_t``; for ``mse`` it is biased towards zero: the
        reconstruction of a unit vector is shrunk by ≈ 1 − d·MSE (``1 - expected_mse()``: 0.64 ≈ 2/π
        at 1 bit, 0.99 at 4 bits), so ``E[estimate] ≈ (1 − d·MSE) · q · x``.
        """
        self._check_encoded(encoded, "Codec.score")
        prepared = query if isinstance(query, PreparedQuery) else self.prepare_query(query)
        out = np.empty((prepared.rotated.shape[0], encoded.count), np.float32)
        self._c.score_into(prepared.rotated, prepared.sketch, encoded.codes, encoded.signs,
                           encoded.norms, encoded.residual_norms, out)
        return out[0] if prepared.single else out
