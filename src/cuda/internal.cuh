// Internal helpers shared by the CUDA sources: error checking and the device-side codec
// constants (DeviceCodec::Impl). Not a public header.
#pragma once

#include "turboquant/cuda/attention.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace tq::cuda::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
  throw std::runtime_error(std::string("CUDA call ") + call +
                           " failed: " + cudaGetErrorString(err) + " (" + file + ":" +
                           std::to_string(line) + ")");
}

}  // namespace tq::cuda::detail

// Every CUDA runtime call goes through this; a kernel launch is followed by
// TQ_CUDA_CHECK(cudaGetLastError()).
#define TQ_CUDA_CHECK(call)                                                     \
  do {                                                                          \
    const cudaError_t tq_err_ = (call);                                         \
    if (tq_err_ != cudaSuccess)                                                 \
      ::tq::cuda::detail::throw_cuda_error(tq_err_, #call, __FILE__, __LINE__); \
  } while (0)

namespace tq::cuda {

// Device copies of one codec's constants. All arrays are float unless noted.
struct DeviceCodec::Impl {
  Codec codec;
  int dim = 0;
  bool hadamard = false;
  bool prod = false;
  float* pi = nullptr;       // Π row-major d×d
  float* pi_t = nullptr;     // Πᵀ row-major
  float* signs = nullptr;    // Hadamard D (d)
  float* qjl = nullptr;      // S row-major (prod)
  float* qjl_t = nullptr;    // Sᵀ row-major (prod)
  float* cent_hi = nullptr;  // 2^hi_bits
  float* cent_lo = nullptr;  // 2^lo_bits
  float* thr_hi = nullptr;   // 2^hi_bits − 1
  float* thr_lo = nullptr;
  explicit Impl(const CodecSpec& spec) : codec(spec) {}
  ~Impl();
};

inline cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

}  // namespace tq::cuda
