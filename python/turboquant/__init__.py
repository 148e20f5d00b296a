"""turboquant: TurboQuant KV-cache codecs and the compressed KV cache from Python (issue #14).

Built from this repository's C++ sources (scikit-build-core + nanobind; ``pip install .``).
Layout of the package, with the parts still to come:

- ``turboquant._core``  the extension (tq_codec, tq_cache, tq_index) on DLPack arrays, CPU only;
- ``turboquant.codec``  ``Codec``, ``Encoded``, ``PreparedQuery``, ``CodeLayout`` on NumPy;
- ``turboquant.kv``     ``parse_scheme``, ``kv_size``, the model shape presets;
- ``turboquant.cache``  ``LayerKvCache``: one layer's compressed KV cache with attention on it;
- ``turboquant.index``  ``FlatIndex``, ``IvfIndex``: vector search on the same codecs (FAISS-like
  ``add`` / ``search(q, k)`` -> distances, ids);
- ``turboquant.torch_ops`` (``turboquant[torch]``, imported on its own) the cache as torch.library
  custom ops on CPU tensors, traceable by torch.compile;
- ``turboquant.hf`` (``turboquant[hf]``, imported on its own) ``TurboQuantCache``, a transformers
  Cache, and the ``"turboquant"`` attention function;
- later: the CUDA ops and paged caches.
"""

from .cache import LayerKvCache
from .codec import Codec, CodeLayout, Encoded, PreparedQuery
from .index import FlatIndex, IvfIndex
from .kv import (KvScheme, KvSideSpec, KvSize, ModelShape, kv_size, model_shape, model_shapes,
                 parse_scheme, scheme_presets)

__version__ = "0.1.0"

__all__ = ["Codec", "CodeLayout", "Encoded", "FlatIndex", "IvfIndex", "KvScheme", "KvSideSpec",
           "KvSize", "LayerKvCache", "ModelShape", "PreparedQuery", "kv_size", "model_shape",
           "model_shapes", "parse_scheme", "scheme_presets", "__version__"]
