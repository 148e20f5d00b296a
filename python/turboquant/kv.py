"""KV-cache schemes and their byte accounting: ``parse_scheme``, ``kv_size``, the shape presets.

``parse_scheme`` accepts exactly the strings of the CLI's ``--kv`` (the C++ parser does the work,
include/turboquant/cache/kv_scheme.hpp), and ``kv_size`` returns the record ``tq kv-size --json``
prints. Bad strings or shapes raise ``ValueError`` with the C++ message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

from . import _core

__all__ = ["KvScheme", "KvSideSpec", "KvSize", "ModelShape", "kv_size", "model_shape",
           "model_shapes", "parse_scheme", "scheme_presets"]


@dataclass(frozen=True)
class KvSideSpec:
    """How one side (keys or values) is stored (``tq::KvSideSpec``).

    ``format``: ``"fp16"``, ``"turboquant"`` or a block baseline by its scheme name (``"q8"``,
    ``"q4"``, ...); ``rotated``: block formats with the Hadamard rotation first; ``codec``:
    ``"mse"`` or ``"prod"`` (TurboQuant only); ``bits``: code bits per coordinate (TurboQuant) or
    the nominal width (block formats), 16 for fp16.
    """

    format: str
    rotated: bool
    codec: str
    bits: float


@dataclass(frozen=True)
class KvScheme:
    """A parsed KV-cache scheme (``tq::KvScheme``); ``name`` is the canonical string, which parses
    back to the same scheme."""

    name: str
    key: KvSideSpec
    value: KvSideSpec
    rotation: str
    protect_first: int
    protect_last: int
    window: int
    norm_correction: bool
    seed: int

    def layer_is_protected(self, layer: int, n_layers: int) -> bool:
        """Whether ``layer`` of an ``n_layers`` model stays fp16 under ``protect=F/L``."""
        return layer < self.protect_first or layer >= n_layers - self.protect_last

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ModelShape:
    """A model shape preset (``tq::ModelShape``), as ``tq kv-size --model`` knows them."""

    name: str
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    max_context: int
    # Sliding-window layers (Gemma 3): every layer l with (l + 1) % pattern != 0 keeps only its
    # last ``sliding_window`` tokens, exact (0: none); kv_size counts them at that window.
    sliding_window: int = 0
    sliding_window_pattern: int = 0


@dataclass(frozen=True)
class KvSize:
    """KV-cache bytes for ``context`` tokens (``tq::KvSizeBreakdown``; the keys of
    ``tq kv-size --json`` plus ``q_heads``): K+V over all layers and KV heads, the same in fp16,
    their ratio, its inverse ``compression`` and the bits per stored value."""

    model: str
    layers: int
    kv_heads: int
    head_dim: int
    q_heads: int
    context: int
    scheme: str
    bytes: int
    fp16_bytes: int
    ratio: float
    compression: float
    bits_per_value: float


def parse_scheme(text: str) -> KvScheme:
    """Parses a ``--kv`` string (``"tq4"``, ``"tq3.5:protect=1/1,window=64"``, ``"k4v3"``,
    ``"q8r"``, ...). Raises ``ValueError`` naming the bad part."""
    if not isinstance(text, str):
        raise TypeError(f"parse_scheme: expected a scheme string, got {type(text).__name__}")
    d = _core.parse_kv_scheme(text)
    d["key"] = KvSideSpec(**d["key"])
    d["value"] = KvSideSpec(**d["value"])
    return KvScheme(**d)


def scheme_presets() -> List[str]:
    """The preset scheme names, in the order the reports use."""
    return list(_core.kv_scheme_presets())


def model_shapes() -> List[ModelShape]:
    """The model shape presets (``tq kv-size --model NAME``)."""
    return [ModelShape(**d) for d in _core.model_shape_presets()]


def model_shape(name: str) -> ModelShape:
    """One preset by name (case-insensitive); ``ValueError`` lists the known names."""
    return ModelShape(**_core.model_shape(name))


_MAX_SHAPE = 2**31 - 1


def _positive(name: str, value) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"kv_size: {name} must be an int, got {value!r}")
    value = int(value)
    if not 1 <= value <= _MAX_SHAPE:
        raise ValueError(f"kv_size: {name} must be in [1, {_MAX_SHAPE}], got {value}")
    return value


def kv_size(scheme: Union[str, KvScheme], model: Optional[str] = None, *, context: int,
            layers: Optional[int] = None, kv_heads: Optional[int] = None,
            head_dim: Optional[int] = None, q_heads: Optional[int] = None) -> KvSize:
    """Exact KV-cache bytes of ``scheme`` for ``context`` tokens, as ``tq kv-size`` computes them.

    The shape is a preset (``model="llama-3.1-8b"``), optionally with fields overridden, or given in
    full (``layers``, ``kv_heads``, ``head_dim``; ``q_heads`` is recorded, it does not change the
    bytes). Windows and protected layers of the scheme are counted.
    """
    text = scheme.name if isinstance(scheme, KvScheme) else scheme
    if not isinstance(text, str):
        raise TypeError(f"kv_size: scheme must be a string or KvScheme, got {type(scheme).__name__}")
    if model is not None and not isinstance(model, str):
        raise TypeError(f"kv_size: model must be a preset name, got {model!r}")
    if isinstance(context, bool) or not hasattr(context, "__index__"):
        raise TypeError(f"kv_size: context must be an int number of tokens, got {context!r}")
    if not 1 <= int(context) < 2**63:
        raise ValueError(f"kv_size: context must be >= 1 token, got {int(context)}")
    d = _core.kv_size(text, model or "", _positive("layers", layers),
                      _positive("kv_heads", kv_heads), _positive("head_dim", head_dim),
                      _positive("q_heads", q_heads), int(context))
    return KvSize(**d)
