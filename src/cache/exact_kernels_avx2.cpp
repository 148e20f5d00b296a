// AVX2 + FMA + F16C versions of attention's exact-path kernels (see exact_kernels.hpp): same
// semantics as the scalar reference; fp16 rows whose dim is not a multiple of 8 use the scalar
// code. The dot works token by token (one horizontal sum per token); the axpy works on tiles of
// tokens with the accumulator chunk held in a register, so each row is read from L1 and acc is
// touched once per tile instead of once per token.
#include "base/avx2_math.hpp"
#include "exact_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <limits>

namespace tq::exact {
namespace {

constexpr std::size_t kTile = 32;

using avx2::horizontal_sum;

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
  return add_exp_shifted(horizontal_sum(vsum), s, t, n, scale, max_value);
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{fp16_dot, fp16_axpy, softmax_exp};
  return k;
}

}  // namespace tq::exact
