// The CUDA backend of the forward pass (forward_backend.hpp): every weight uploaded once in its
// GGUF block format (gpu_weights.cuh), activations in device buffers, one GpuLayerKvCache per
// layer from the session's scheme. Private to tq_model; built only with CUDA.
#pragma once

#include "../forward_backend.hpp"
#include "turboquant/model/model.hpp"

#include <memory>

namespace tq::gpu {

namespace fwd = ::tq::detail;  // the forward pass's seam (forward_backend.hpp)

// chunk: most rows of one step; capacity: tokens each layer cache holds (max_context).
std::unique_ptr<fwd::ForwardBackend> make_gpu_backend(const Model& model, const KvScheme& scheme,
                                                      const SessionOptions& options, int chunk,
                                                      std::size_t capacity);

}  // namespace tq::gpu
