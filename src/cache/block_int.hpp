// The llama.cpp block baselines of the cache (docs/DESIGN.md §3): q8_0, q4_0, q4_1, q5_0 and
// iq4_nl, bit-exact with ggml's reference quantizers (quantize_row_*_ref) of a 32-value block —
// same scale, same fp16 rounding of it (round to nearest even), same rounding of the values:
//   q8_0    d = absmax / 127, q = roundf(x / d) in [−127, 127]
//   q4_0    d = m / −8 with m the value of largest magnitude (its sign kept, first one on ties),
//           q = min(15, trunc(x / d + 8.5)), value (q − 8)·d: all 16 levels are used
//   q4_1    d = (max − min) / 15, m = min, q = min(15, trunc((x − min) / d + 0.5)), value q·d + m
//   q5_0    as q4_0 with d = m / −16 and q in [0, 31], value (q − 16)·d
//   iq4_nl  16 codebook levels kIq4nlValues; d = m / −127, each x to its nearest level, then d
//           refitted by least squares weighted by x² (ggml's reference path, no scale search)
// The divisions use 1/d computed in fp32 from the unrounded d, products are rounded separately
// (no fused multiply-add): this file is compiled without -mfma, like ggml's C reference.
//
// Storage of one vector of `dim` values: blocks of kBlock = 32 values (the last one shorter when
// dim is not a multiple of 32); per block an fp16 scale d (q4_1 also an fp16 minimum m, after d)
// in the `halves` array and the block's code bytes in the `codes` array:
//   q8_0    n int8 values
//   4-bit   ceil(n/2) bytes: value i < h = ceil(n/2) in the low nibble of byte i, value i ≥ h in
//           the high nibble of byte i − h (for n = 32 this is the GGUF layout: j and j + 16)
//   q5_0    ceil(n/8) bytes of fifth bits (bit i of the little-endian word = value i), then the
//           4-bit low parts as above (a full block: GGUF's qh[4] then qs[16])
// So a full block's halves + code bytes are the GGUF block (d [m] [qh] qs) field by field.
// Every kernel has a scalar reference (block_int.cpp); the q8_0 / q4_0 token kernels also have
// AVX2 versions (block_int_avx2.cpp) with the same semantics, which fall back to scalar for dims
// that are not a multiple of 8 (q8_0) or 32 (q4_0). The fp16 kernels of the exact formats and
// the softmax are in exact_kernels.hpp.
#pragma once

#include "turboquant/base/half.hpp"
#include "turboquant/cache/kv_scheme.hpp"

#include <cstddef>
#include <cstdint>

namespace tq::blockint {

inline constexpr int kBlock = 32;

enum class Format { Q8_0, Q4_0, Q4_1, Q5_0, Iq4Nl };

// The published iq4_nl codebook (ggml's kvalues_iq4nl).
inline constexpr std::int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113};

// The block format of a cache side format; throws std::invalid_argument for fp16 / TurboQuant.
Format format_of(KvFormat format);

inline int num_blocks(int dim) {
  return (dim + kBlock - 1) / kBlock;
}
// Code bytes of one block of n values.
inline std::size_t block_code_bytes(Format f, int n) {
  const std::size_t un = static_cast<std::size_t>(n);
  switch (f) {
    case Format::Q8_0:
      return un;
    case Format::Q5_0:
      return (un + 7) / 8 + (un + 1) / 2;
    default:
      return (un + 1) / 2;
  }
}
inline int halves_per_block(Format f) {
  return f == Format::Q4_1 ? 2 : 1;
}
// Code bytes and fp16 halves of one vector.
inline std::size_t row_code_bytes(Format f, int dim) {
  const int full = dim / kBlock, tail = dim % kBlock;
  return static_cast<std::size_t>(full) * block_code_bytes(f, kBlock) +
         (tail ? block_code_bytes(f, tail) : 0);
}
inline std::size_t row_halves(Format f, int dim) {
  return static_cast<std::size_t>(num_blocks(dim)) * static_cast<std::size_t>(halves_per_block(f));
}

// Quantize / dequantize one vector of `dim` floats (codes: row_code_bytes, halves: row_halves).
void quantize(Format f, const float* x, int dim, std::uint8_t* codes, half_bits* halves);
void dequantize(Format f, const std::uint8_t* codes, const half_bits* halves, int dim, float* x);

// Scalar token-major kernels of any format over n tokens (records row_code_bytes /
// row_halves wide): dot: out[t] = ⟨q, x_t⟩ (overwrites); axpy: acc += Σ_t w[t] x_t.
void dot(Format f, const float* q, int dim, const std::uint8_t* codes, const half_bits* halves,
         std::size_t n, float* out);
void axpy(Format f, const float* w, int dim, const std::uint8_t* codes, const half_bits* halves,
          std::size_t n, float* acc);

// The q8_0 ("int8") and q4_0 ("int4") token kernels, with an AVX2 version.
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
