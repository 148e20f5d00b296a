"""turboquant: TurboQuant KV-cache codecs from Python (issue #14, first part).

Built from this repository's C++ sources (scikit-build-core + nanobind; ``pip install .``).
Layout of the package, with the parts still to come:

- ``turboquant._core``  the extension (tq_codec + tq_cache) on DLPack arrays, CPU only for now;
- ``turboquant.codec``  ``Codec``, ``Encoded``, ``PreparedQuery``, ``CodeLayout`` on NumPy;
- ``turboquant.kv``     ``parse_scheme``, ``kv_size``, the model shape presets;
- later: ``turboquant.torch`` (attention ops as torch.library custom ops, CPU and CUDA, paged
  caches) and ``turboquant.hf`` (a transformers Cache), both optional (``turboquant[torch]``).
"""

from .codec import Codec, CodeLayout, Encoded, PreparedQuery
from .kv import (KvScheme, KvSideSpec, KvSize, ModelShape, kv_size, model_shape, model_shapes,
                 parse_scheme, scheme_presets)

__version__ = "0.1.0"

__all__ = ["Codec", "CodeLayout", "Encoded", "KvScheme", "KvSideSpec", "KvSize", "ModelShape",
           "PreparedQuery", "kv_size", "model_shape", "model_shapes", "parse_scheme",
           "scheme_presets", "__version__"]
