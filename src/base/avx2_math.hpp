// Small AVX2 helpers shared by the *_avx2.cpp translation units (compiled with -mavx2 -mfma and
// called only after a run-time CPU check). Include from those files only.
#pragma once

#include <immintrin.h>

namespace tq::avx2 {

// Sum of the 8 lanes of v.
inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace tq::avx2
