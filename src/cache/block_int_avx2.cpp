// AVX2 + FMA + F16C versions of the q8_0 / q4_0 token kernels (see block_int.hpp). Same
// semantics as the scalar reference; dims that are not a multiple of 8 (q8_0) or of 32 (q4_0,
// whose short last block splits its nibbles at a point that is not a multiple of 8) use the
// scalar code.
// Dots work token by token (one horizontal sum per token); axpys work on tiles of tokens with the
// accumulator chunk held in a register, so each token row is read from L1 and acc is touched once
// per tile instead of once per token.
#include "base/avx2_math.hpp"
#include "block_int.hpp"

#include <immintrin.h>

#include <algorithm>

namespace tq::blockint {
namespace {

constexpr std::size_t kTile = 32;

using avx2::horizontal_sum;

inline float h2f(half_bits h) {
  return _cvtsh_ss(h);
}

// 8 int8 values -> floats.
inline __m256 load_i8x8(const std::uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Values j..j+7 (j a multiple of 8) of a row of full q4_0 blocks -> floats in [−8, 7]: in block
// j/32 (16 bytes), offsets 0..15 are the low nibbles of bytes 0..15, offsets 16..31 the high ones.
inline __m256 load_i4x8(const std::uint8_t* row, int j) {
  const int off = j % kBlock;
  const std::uint8_t* p = row + (j / kBlock) * (kBlock / 2) + (off & 15);
  __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  if (off >= 16) x = _mm_srli_epi16(x, 4);
  const __m256i v = _mm256_cvtepu8_epi32(_mm_and_si128(x, _mm_set1_epi8(0x0f)));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8)));
}

template <bool Four>
void int_dot(const float* q, int dim, const std::uint8_t* codes, const half_bits* scales,
             std::size_t n, float* out) {
  const Kernels& scalar = scalar_kernels();
  if (dim % (Four ? kBlock : 8) != 0)
    return (Four ? scalar.int4_dot : scalar.int8_dot)(q, dim, codes, scales, n, out);
  const std::size_t stride = row_code_bytes(Four ? Format::Q4_0 : Format::Q8_0, dim);
  const int blocks = num_blocks(dim);
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* row = codes + t * stride;
    __m256 total = _mm256_setzero_ps();
    for (int b = 0; b < blocks; ++b) {
      const int end = std::min(dim, (b + 1) * kBlock);
      __m256 a = _mm256_setzero_ps();
      for (int j = b * kBlock; j < end; j += 8) {
        const __m256 v = Four ? load_i4x8(row, j) : load_i8x8(row + j);
        a = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), v, a);
      }
      total = _mm256_fmadd_ps(a, _mm256_set1_ps(h2f(scales[t * blocks + b])), total);
    }
    out[t] = horizontal_sum(total);
  }
}

template <bool Four>
void int_axpy(const float* w, int dim, const std::uint8_t* codes, const half_bits* scales,
              std::size_t n, float* acc) {
  const Kernels& scalar = scalar_kernels();
  if (dim % (Four ? kBlock : 8) != 0)
    return (Four ? scalar.int4_axpy : scalar.int8_axpy)(w, dim, codes, scales, n, acc);
  const std::size_t stride = row_code_bytes(Four ? Format::Q4_0 : Format::Q8_0, dim);
  const int blocks = num_blocks(dim);
  float ws[kTile * 8];  // w[t]·scale for the tile; blocks <= 8 here, otherwise chunked below
  for (std::size_t t0 = 0; t0 < n; t0 += kTile) {
    const std::size_t t1 = std::min(n, t0 + kTile);
    for (int b0 = 0; b0 < blocks; b0 += 8) {
      const int b1 = std::min(blocks, b0 + 8);
      for (std::size_t t = t0; t < t1; ++t) {
        for (int b = b0; b < b1; ++b)
          ws[(t - t0) * 8 + (b - b0)] = w[t] * h2f(scales[t * blocks + b]);
      }
      for (int j = b0 * kBlock; j < std::min(dim, b1 * kBlock); j += 8) {
        const int bj = j / kBlock - b0;
        __m256 a = _mm256_loadu_ps(acc + j);
        for (std::size_t t = t0; t < t1; ++t) {
          const std::uint8_t* row = codes + t * stride;
          const __m256 v = Four ? load_i4x8(row, j) : load_i8x8(row + j);
          a = _mm256_fmadd_ps(_mm256_set1_ps(ws[(t - t0) * 8 + bj]), v, a);
        }
        _mm256_storeu_ps(acc + j, a);
      }
    }
  }
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{int_dot<false>, int_axpy<false>, int_dot<true>, int_axpy<true>};
  return k;
}

}  // namespace tq::blockint
