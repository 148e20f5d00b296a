// AVX2 + FMA + F16C versions of the fp16 / int8 / int4 token kernels (see block_int.hpp).
// Same semantics as the scalar reference; dims that are not a multiple of 8 use the scalar code.
// Dots work token by token (one horizontal sum per token); axpys work on tiles of tokens with the
// accumulator chunk held in a register, so each token row is read from L1 and acc is touched once
// per tile instead of once per token.
#include "base/avx2_math.hpp"
#include "block_int.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

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

// 8 int4 values (4 bytes, value j low nibble of byte j/2 for even j) -> floats in [−8, 7].
inline __m256 load_i4x8(const std::uint8_t* p) {
  std::uint32_t word;
  std::memcpy(&word, p, 4);
  const __m128i x = _mm_cvtsi32_si128(static_cast<int>(word));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(x, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), mask);
  const __m256i v = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
  return _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8)));
}

void fp16_dot(const float* q, int dim, const half_bits* x, std::size_t n, float* out) {
  if (dim % 8 != 0) return scalar_kernels().fp16_dot(q, dim, x, n, out);
  for (std::size_t t = 0; t < n; ++t) {
    const half_bits* row = x + t * dim;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= dim; j += 16) {
      a0 = _mm256_fmadd_ps(
          _mm256_loadu_ps(q + j),
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j))), a0);
      a1 = _mm256_fmadd_ps(
          _mm256_loadu_ps(q + j + 8),
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 8))), a1);
    }
    for (; j < dim; j += 8) {
      a0 = _mm256_fmadd_ps(
          _mm256_loadu_ps(q + j),
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j))), a0);
    }
    out[t] = horizontal_sum(_mm256_add_ps(a0, a1));
  }
}

void fp16_axpy(const float* w, int dim, const half_bits* x, std::size_t n, float* acc) {
  if (dim % 8 != 0) return scalar_kernels().fp16_axpy(w, dim, x, n, acc);
  for (std::size_t t0 = 0; t0 < n; t0 += kTile) {
    const std::size_t t1 = std::min(n, t0 + kTile);
    for (int j = 0; j < dim; j += 8) {
      __m256 a = _mm256_loadu_ps(acc + j);
      for (std::size_t t = t0; t < t1; ++t) {
        const __m256 v =
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + t * dim + j)));
        a = _mm256_fmadd_ps(_mm256_set1_ps(w[t]), v, a);
      }
      _mm256_storeu_ps(acc + j, a);
    }
  }
}

template <bool Four>
void int_dot(const float* q, int dim, const std::uint8_t* codes, const half_bits* scales,
             std::size_t n, float* out) {
  if (dim % 8 != 0) {
    return Four ? scalar_kernels().int4_dot(q, dim, codes, scales, n, out)
                : scalar_kernels().int8_dot(q, dim, codes, scales, n, out);
  }
  const std::size_t stride = Four ? int4_bytes(dim) : int8_bytes(dim);
  const int blocks = num_blocks(dim);
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* row = codes + t * stride;
    __m256 total = _mm256_setzero_ps();
    for (int b = 0; b < blocks; ++b) {
      const int end = std::min(dim, (b + 1) * kBlock);
      __m256 a = _mm256_setzero_ps();
      for (int j = b * kBlock; j < end; j += 8) {
        const __m256 v = Four ? load_i4x8(row + j / 2) : load_i8x8(row + j);
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
  if (dim % 8 != 0) {
    return Four ? scalar_kernels().int4_axpy(w, dim, codes, scales, n, acc)
                : scalar_kernels().int8_axpy(w, dim, codes, scales, n, acc);
  }
  const std::size_t stride = Four ? int4_bytes(dim) : int8_bytes(dim);
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
          const __m256 v = Four ? load_i4x8(row + j / 2) : load_i8x8(row + j);
          a = _mm256_fmadd_ps(_mm256_set1_ps(ws[(t - t0) * 8 + bj]), v, a);
        }
        _mm256_storeu_ps(acc + j, a);
      }
    }
  }
}

// exp(x) for x <= 0 (softmax arguments): range reduction x = n·ln2 + r, |r| <= ln2/2, a degree-6
// polynomial for e^r (relative error ~1e-7) and 2^n built in the exponent bits.
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

float softmax_exp(float* s, std::size_t n, float scale) {
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  std::size_t t = 0;
  for (; t + 8 <= n; t += 8)
    vmax = _mm256_max_ps(vmax, _mm256_mul_ps(vscale, _mm256_loadu_ps(s + t)));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float max_value = _mm_cvtss_f32(m4);
  for (std::size_t u = t; u < n; ++u) max_value = std::max(max_value, scale * s[u]);
  const __m256 shift = _mm256_set1_ps(max_value);
  __m256 vsum = _mm256_setzero_ps();
  for (t = 0; t + 8 <= n; t += 8) {
    const __m256 e = exp_nonpositive(_mm256_fmsub_ps(vscale, _mm256_loadu_ps(s + t), shift));
    _mm256_storeu_ps(s + t, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = horizontal_sum(vsum);
  for (; t < n; ++t) {
    s[t] = std::exp(scale * s[t] - max_value);
    sum += s[t];
  }
  return sum;
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{fp16_dot,      fp16_axpy,      int_dot<false>, int_axpy<false>,
                         int_dot<true>, int_axpy<true>, softmax_exp};
  return k;
}

}  // namespace tq::blockint
