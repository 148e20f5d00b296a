// Picks the forward backend a Session runs on (SessionOptions::device). Private to tq_model.
#pragma once

#include "forward_backend.hpp"
#include "turboquant/model/model.hpp"

#include <memory>

namespace tq::detail {

// chunk: most rows of one step; capacity: most tokens one sequence reaches (max_context).
// Device::Cuda without a CUDA build or without a visible GPU throws std::runtime_error saying
// which of the two it is.
std::unique_ptr<ForwardBackend> make_backend(const Model& model, const KvScheme& scheme,
                                             const SessionOptions& options, int chunk,
                                             std::size_t capacity);

}  // namespace tq::detail
