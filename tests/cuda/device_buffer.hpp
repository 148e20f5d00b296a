// Test helpers of the CUDA suites: an owning device buffer (null when cudaMalloc fails, so a test
// can ASSERT on it), the NaN/0xff poisoning of outputs before a kernel runs, a codec spec in one
// call, the CK assertion on a CUDA call and the skip when no GPU is visible.
#pragma once

#include "turboquant/cuda/attention.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace tq::cuda::testing {

template <typename T>
struct DevBuf {
  T* p = nullptr;
  explicit DevBuf(std::size_t n) {
    if (cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(T)) != cudaSuccess) p = nullptr;
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

inline void poison(void* p, std::size_t bytes) {
  ASSERT_EQ(cudaMemset(p, 0xff, bytes), cudaSuccess);
}

inline CodecSpec spec(int d, double bits, CodecKind kind, std::uint64_t seed,
                      RotationKind rot = RotationKind::Hadamard, bool nc = false) {
  CodecSpec s;
  s.dim = d;
  s.bits = bits;
  s.kind = kind;
  s.seed = seed;
  s.rotation = rot;
  s.norm_correction = nc;
  return s;
}

}  // namespace tq::cuda::testing

#define CK(call) ASSERT_EQ((call), cudaSuccess) << #call
#define REQUIRE_GPU() \
  if (!::tq::cuda::device_available()) GTEST_SKIP() << "no CUDA device"
