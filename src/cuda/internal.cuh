// Internal helpers shared by the CUDA sources: error checking, the device-side codec constants
// (DeviceCodec::Impl) and the code layout as the kernels read it. Not a public header.
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

namespace detail {

// Makes `ptr` (a device allocation of `held` elements of `element_bytes`, or null) hold at least
// n elements: kept when it does, else freed and replaced by exactly n, zero-filled when `zero`.
// A failing CUDA call throws and leaves ptr null and held 0.
template <typename T>
inline void grow(T*& ptr, std::size_t& held, std::size_t n, std::size_t element_bytes, bool zero) {
  if (n <= held && ptr) return;
  if (ptr) {
    TQ_CUDA_CHECK(cudaFree(ptr));
    ptr = nullptr;
    held = 0;
  }
  T* p = nullptr;
  TQ_CUDA_CHECK(cudaMalloc(&p, n * element_bytes));
  if (zero) TQ_CUDA_CHECK(cudaMemset(p, 0, n * element_bytes));
  ptr = p;
  held = n;
}

}  // namespace detail

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

// The CodeLayout fields that kernels read, as ints, in this order (SplitParams and QuantizeParams
// embed it, so its layout is part of theirs). kernel_layout() is the one place that copies them.
struct KernelCodeLayout {
  int hi_count, hi_bits, lo_bits, hi_bytes, code_bytes, sign_bytes;
};

inline KernelCodeLayout kernel_layout(const CodeLayout& L) {
  return {L.hi_count,
          L.hi_bits,
          L.lo_bits,
          static_cast<int>(L.hi_bytes),
          static_cast<int>(L.code_bytes),
          static_cast<int>(L.sign_bytes)};
}

inline cudaStream_t as_stream(void* s) {
  return static_cast<cudaStream_t>(s);
}

}  // namespace tq::cuda
