// Block-wise int8 / int4 baselines (docs/DESIGN.md §3): each run of kIntBlockSize = 32 values of a
// vector gets one fp16 scale = absmax / qmax (absmax scaling), values are round-to-nearest
// integers in [−qmax, qmax] (127 for int8, 7 for int4). The last block of a vector whose length
// is not a multiple of 32 is shorter. int4 values are stored as q + 8 in nibbles, value j in the
// low nibble of byte j/2 for even j and the high nibble for odd j.
// Every kernel has a scalar reference (block_int.cpp) and an AVX2 version (block_int_avx2.cpp)
// with the same semantics; the AVX2 ones fall back to scalar for dims that are not a multiple of
// 8. The fp16 kernels of the exact formats and the softmax are in exact_kernels.hpp.
#pragma once

#include "turboquant/base/half.hpp"

#include <cstddef>
#include <cstdint>

namespace tq::blockint {

inline constexpr int kBlock = 32;

inline int num_blocks(int dim) {
  return (dim + kBlock - 1) / kBlock;
}
// Bytes of the integer part of one vector.
inline std::size_t int8_bytes(int dim) {
  return static_cast<std::size_t>(dim);
}
inline std::size_t int4_bytes(int dim) {
  return static_cast<std::size_t>(dim + 1) / 2;
}
inline std::size_t int_bytes(bool four, int dim) {
  return four ? int4_bytes(dim) : int8_bytes(dim);
}

// Quantize one vector of `dim` floats: q (int8_bytes / int4_bytes), scales (num_blocks halves).
void quantize_int8(const float* x, int dim, std::uint8_t* q, half_bits* scales);
void quantize_int4(const float* x, int dim, std::uint8_t* q, half_bits* scales);
void dequantize_int8(const std::uint8_t* q, const half_bits* scales, int dim, float* x);
void dequantize_int4(const std::uint8_t* q, const half_bits* scales, int dim, float* x);

// Token-major kernels over n tokens. q/acc have `dim` floats; codes are `dim`-wide records
// (int8: dim bytes, int4: (dim+1)/2 bytes), scales num_blocks(dim) per token.
// *_dot: out[t] = ⟨q, x_t⟩ (overwrites). *_axpy: acc += Σ_t w[t] x_t.
struct Kernels {
  void (*int8_dot)(const float* q, int dim, const std::uint8_t* codes, const half_bits* scales,
                   std::size_t n, float* out);
  void (*int8_axpy)(const float* w, int dim, const std::uint8_t* codes, const half_bits* scales,
                    std::size_t n, float* acc);
  void (*int4_dot)(const float* q, int dim, const std::uint8_t* codes, const half_bits* scales,
                   std::size_t n, float* out);
  void (*int4_axpy)(const float* w, int dim, const std::uint8_t* codes, const half_bits* scales,
                    std::size_t n, float* acc);
};

const Kernels& scalar_kernels();
const Kernels& avx2_kernels();  // call only when the CPU has AVX2 + FMA + F16C

}  // namespace tq::blockint
