"""Hugging Face transformers integration: a ``Cache`` that attends on the compressed KV cache.

``TurboQuantCache(model.config, scheme="tq4")`` holds one compressed cache per layer and batch row
(``turboquant.LayerKvCache`` through the ``turboquant::`` torch ops), with the scheme's per-layer
policy: ``protect=F/L`` keeps the first F and last L layers fp16, ``window=W`` the last W tokens of
every layer. Attention runs on what the cache stores, through the attention function this module
registers with transformers' ``AttentionInterface`` under the name ``"turboquant"``::

    from transformers import AutoModelForCausalLM
    from turboquant.hf import TurboQuantCache
    model = AutoModelForCausalLM.from_pretrained(...)           # Llama / Qwen2 / Mistral style
    cache = TurboQuantCache(model.config, scheme="tq4")         # switches the attention to ours
    out = model.generate(input_ids, cache=cache, max_new_tokens=32)

(transformers 5 names the argument ``cache``; ``past_key_values=cache`` still works there, with a
FutureWarning.) Tested with transformers 5.24.0 and torch 2.15.0 on Llama, Qwen2 and Mistral
(without a sliding window) configs.

How the pieces meet: the model calls ``cache.update(keys, values, layer)`` and then the attention
function with the same keys. ``update`` appends the chunk to the compressed caches and returns
the chunk marked with its layer; the ``"turboquant"`` attention function sees the mark and
attends over the whole compressed cache (causal; the queries are the chunk's tokens). Keys
without a mark (no cache, or a ``DynamicCache``) get exact causal attention over the keys given,
so the attention implementation stays correct for any cache. If the model's attention is not the
``"turboquant"`` one, the next ``update`` raises instead of letting it attend over the chunk alone.

Limits (each raises a clear error, none is silently wrong): CPU tensors only; no padded batches
(every row of a batch must be real tokens: the padding mask would have to reach the cache);
no sliding-window or chunked layers (Gemma 3, Mistral with ``sliding_window``), no logit
soft-capping, no attention dropout; no beam search, cropping or batch reordering.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

try:
    import torch
    from transformers.cache_utils import Cache, CacheLayerMixin
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface
except ImportError as exc:  # pragma: no cover - exercised only without the extras
    raise ImportError(
        "turboquant.hf needs PyTorch and transformers: pip install 'turboquant[torch]' transformers"
    ) from exc

from . import torch_ops
from .kv import parse_scheme

__all__ = ["ATTENTION_NAME", "TurboQuantCache", "TurboQuantLayer", "enable", "turboquant_attention"]

ATTENTION_NAME = "turboquant"
_MARK = "_turboquant_layer"


def _text_config(config):
    getter = getattr(config, "get_text_config", None)
    return getter(decoder=True) if getter is not None else config


def _layer_shape(config) -> Tuple[int, int, int, int]:
    cfg = _text_config(config)
    n_layers = int(cfg.num_hidden_layers)
    q_heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or q_heads)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // q_heads
    return n_layers, q_heads, kv_heads, int(head_dim)


def _check_full_attention(config) -> None:
    cfg = _text_config(config)
    types = getattr(cfg, "layer_types", None)
    if types is None:
        sliding = getattr(cfg, "sliding_window", None)
        if sliding is not None and getattr(cfg, "use_sliding_window", True):
            types = ["sliding_attention"]
        elif getattr(cfg, "attention_chunk_size", None) is not None:
            types = ["chunked_attention"]
        else:
            types = []
    others = sorted({t for t in types if t != "full_attention"})
    if others:
        raise NotImplementedError(
            f"TurboQuantCache: layer types {others} of {type(cfg).__name__} are not supported; "
            "only full-attention layers are (sliding-window layers, e.g. Gemma 3's, are not "
            "built yet)")


class TurboQuantLayer(CacheLayerMixin):
    """One model layer: a ``torch_ops.TorchKvCache`` per batch row, created on the first update."""

    is_compileable = False
    is_croppable = False
    is_sliding = False

    def __init__(self, scheme: str, layer: int, n_layers: int, q_heads: int, kv_heads: int,
                 head_dim: int) -> None:
        super().__init__()
        self.scheme = scheme
        self.layer = layer
        self.n_layers = n_layers
        self.q_heads = q_heads
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.caches: List[torch_ops.TorchKvCache] = []
        self.handles: List[int] = []
        self.attended = True  # the last update's keys went through the turboquant attention

    def __repr__(self) -> str:
        return (f"TurboQuantLayer(layer={self.layer}, scheme={self.scheme!r}, "
                f"batch={len(self.caches)}, tokens={self.get_seq_length()})")

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        if key_states.device.type != "cpu":
            raise NotImplementedError(
                f"TurboQuantCache: the model runs on '{key_states.device}', but only CPU tensors "
                "are supported (the CUDA ops are not built yet); use model.to('cpu')")
        self.device = key_states.device
        self.dtype = key_states.dtype
        self.caches = [torch_ops.TorchKvCache(self.scheme, layer=self.layer,
                                              n_layers=self.n_layers, q_heads=self.q_heads,
                                              kv_heads=self.kv_heads, head_dim=self.head_dim)
                       for _ in range(key_states.shape[0])]
        self.handles = [c.handle for c in self.caches]
        self.batch_size = len(self.caches)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor]:
        """Appends keys/values ``[B, kv_heads, n, head_dim]``; returns them marked for the
        ``"turboquant"`` attention function, which attends over the whole compressed cache."""
        if not self.attended:
            raise RuntimeError(
                f"TurboQuantCache layer {self.layer}: the previous chunk's attention did not go "
                f"through the '{ATTENTION_NAME}' attention function, so the model attended over "
                "that chunk alone; load the model with attn_implementation='turboquant' or call "
                "turboquant.hf.enable(model) (TurboQuantCache(config) does it for that config)")
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        b, h, _, d = key_states.shape
        if (b, h, d) != (len(self.caches), self.kv_heads, self.head_dim):
            raise ValueError(
                f"TurboQuantCache layer {self.layer}: keys must be [B={len(self.caches)}, "
                f"{self.kv_heads}, n, {self.head_dim}], got {tuple(key_states.shape)}")
        torch_ops.append(self.caches, key_states.transpose(1, 2), value_states.transpose(1, 2))
        marked = key_states.view(key_states.shape)
        setattr(marked, _MARK, self)
        self.attended = False
        return marked, value_states

    def attend(self, query: torch.Tensor, scaling: Optional[float]) -> torch.Tensor:
        """``query`` ``[B, q_heads, n, d]`` (the last n tokens) -> ``[B, n, q_heads, d]``."""
        self.attended = True
        out = torch.ops.turboquant.cache_attend(self.handles, query.transpose(1, 2),
                                                torch_ops._scale(scaling))
        return out.to(query.dtype)

    def get_seq_length(self) -> int:
        return self.caches[0].cache.size if self.caches else 0

    def get_mask_sizes(self, query_length: int) -> Tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def get_max_cache_shape(self) -> int:
        return -1

    @property
    def bytes(self) -> int:
        """Bytes stored over the batch rows (``turboquant.kv_size``'s per-layer share each)."""
        return sum(c.cache.bytes for c in self.caches)

    def reset(self) -> None:
        for c in self.caches:
            c.cache.clear()
        self.attended = True

    def offload(self) -> None:
        raise NotImplementedError("TurboQuantCache: offloading is not supported")

    def prefetch(self) -> None:
        raise NotImplementedError("TurboQuantCache: offloading is not supported")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("TurboQuantCache: beam search (reorder_cache) is not supported")

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise NotImplementedError("TurboQuantCache: crop is not supported (the compressed "
                                      "cache cannot forget single tokens)")

    def batch_repeat_interleave(self, repeats: int) -> None:
        if repeats != 1:
            raise NotImplementedError("TurboQuantCache: batch_repeat_interleave is not supported")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("TurboQuantCache: batch_select_indices is not supported")


class TurboQuantCache(Cache):
    """A transformers ``Cache`` storing keys and values compressed with a TurboQuant scheme.

    ``scheme`` is a ``--kv`` string of the CLI (``"tq4"``, ``"tq3.5:protect=1/1,window=64"``,
    ``"k4v3"``, ``"q8"``, ``"fp16"``, ...); its options apply per layer as in the C++ runner.
    With ``attach=True`` (the default) the config's attention implementation is switched to
    ``"turboquant"`` (the model's modules read it from the same config object at every forward),
    which is what makes ``model.generate(..., past_key_values=cache)`` attend on the compressed
    cache; pass ``attach=False`` and load the model with ``attn_implementation="turboquant"``
    (or call ``enable(model)``) to leave the config alone.
    """

    def __init__(self, config, scheme: str = "tq4", *, attach: bool = True) -> None:
        if not isinstance(scheme, str):
            raise TypeError(f"TurboQuantCache: scheme must be a --kv string, got "
                            f"{type(scheme).__name__}")
        self.scheme = parse_scheme(scheme).name  # ValueError naming the bad part
        _check_full_attention(config)
        n_layers, q_heads, kv_heads, head_dim = _layer_shape(config)
        # Build one layer's cache now so that a scheme that does not fit this model (protect=F/L
        # beyond its layers, a head dim the rotation cannot take) fails here, not mid-generate.
        torch_ops.TorchKvCache(self.scheme, layer=0, n_layers=n_layers, q_heads=q_heads,
                               kv_heads=kv_heads, head_dim=head_dim)
        super().__init__(layers=[TurboQuantLayer(self.scheme, i, n_layers, q_heads, kv_heads,
                                                 head_dim) for i in range(n_layers)])
        self.config = config
        if attach:
            _attach(config)

    @property
    def bytes(self) -> int:
        """Bytes stored over all layers and batch rows."""
        return sum(layer.bytes for layer in self.layers)

    def __repr__(self) -> str:
        return (f"TurboQuantCache(scheme={self.scheme!r}, layers={len(self.layers)}, "
                f"tokens={self.get_seq_length()}, bytes={self.bytes})")


def _exact_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Optional[torch.Tensor],
                     scaling: Optional[float]) -> torch.Tensor:
    """Exact causal attention over the keys given (no TurboQuant cache behind them)."""
    n, t = query.shape[2], key.shape[2]
    group = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(group, dim=1)
    v = value.repeat_interleave(group, dim=1)
    if attention_mask is None:
        visible = torch.arange(t)[None, :] <= (t - n + torch.arange(n))[:, None]
        mask = visible.to(query.device)
    else:
        mask = attention_mask[..., :t]
    out = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=mask,
                                                           scale=scaling)
    return out.transpose(1, 2).contiguous()


def turboquant_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                         value: torch.Tensor, attention_mask: Optional[torch.Tensor],
                         scaling: Optional[float] = None, dropout: float = 0.0,
                         **kwargs: Any) -> Tuple[torch.Tensor, None]:
    """The ``"turboquant"`` attention function (transformers' AttentionInterface signature):
    ``query`` ``[B, q_heads, n, d]``; returns ``([B, n, q_heads, d], None)``."""
    if dropout:
        raise NotImplementedError(f"turboquant attention: dropout {dropout} is not supported "
                                  "(use model.eval())")
    for name in ("softcap", "sliding_window"):
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"turboquant attention: {name}={kwargs[name]} is not "
                                      "supported")
    layer = getattr(key, _MARK, None)
    if layer is None:
        return _exact_attention(query, key, value, attention_mask, scaling), None
    return layer.attend(query, scaling), None


def _turboquant_mask(*args: Any, attention_mask: Optional[torch.Tensor] = None,
                     **kwargs: Any) -> None:
    # The compressed cache is causal by construction, so no mask is built; a padding mask would
    # have to reach the cache, which is not supported, so it is refused here.
    if attention_mask is not None and not bool(attention_mask.all()):
        raise NotImplementedError(
            "turboquant attention: padded batches are not supported (the attention mask has "
            "masked tokens); generate unpadded sequences, one batch row each")
    return None


def _attach(config) -> None:
    config._attn_implementation = ATTENTION_NAME


def enable(model) -> None:
    """Switches ``model`` to the ``"turboquant"`` attention implementation."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter(ATTENTION_NAME)
    else:  # pragma: no cover - older transformers
        _attach(model.config)


AttentionInterface.register(ATTENTION_NAME, turboquant_attention)
AttentionMaskInterface.register(ATTENTION_NAME, _turboquant_mask)
