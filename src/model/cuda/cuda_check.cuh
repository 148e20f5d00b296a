// Error checking of CUDA runtime calls in tq_model's CUDA backend: a failing call throws
// std::runtime_error naming the call, the CUDA error string and file:line.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace tq::gpu::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
  throw std::runtime_error(std::string("CUDA call ") + call +
                           " failed: " + cudaGetErrorString(err) + " (" + file + ":" +
                           std::to_string(line) + ")");
}

}  // namespace tq::gpu::detail

#define TQ_GPU_CHECK(call)                                                     \
  do {                                                                         \
    const cudaError_t tq_err_ = (call);                                        \
    if (tq_err_ != cudaSuccess)                                                \
      ::tq::gpu::detail::throw_cuda_error(tq_err_, #call, __FILE__, __LINE__); \
  } while (0)
