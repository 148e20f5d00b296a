// The registration functions of turboquant._core, one per binding file; module.cpp calls them.
#pragma once

#include <nanobind/nanobind.h>

namespace tq::python {

namespace nb = nanobind;

void bind_codec(nb::module_& m);    // codec_bindings.cpp: Codec on DLPack arrays
void bind_kv(nb::module_& m);       // kv_bindings.cpp: schemes, shapes, kv_size
void bind_cache(nb::module_& m);    // cache_bindings.cpp: LayerKvCache (append, attend)
void bind_index(nb::module_& m);    // index_bindings.cpp: FlatIndex, IvfIndex (vector search)
void bind_testing(nb::module_& m);  // module.cpp: helpers shared with the C++ tests

}  // namespace tq::python
