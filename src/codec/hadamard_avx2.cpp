// AVX2 fast Walsh–Hadamard transform (compiled with -mavx2; only called after cpu_has_avx2()).
// Every stage computes the scalar reference's butterflies (a + b, a − b) on the same pairs in
// the same stage order, so the result is bit-identical to fast_walsh_hadamard_scalar: the three
// smallest strides run inside one 8-float register (a lane permute, an add, a subtract and a
// blend), the larger ones are plain vertical butterflies between two rows of 8.
#include "hadamard_kernels.hpp"

#include <immintrin.h>

namespace tq::kernels {

void fast_walsh_hadamard_avx2(float* x, int n) {
  if (n < 8) {
    fast_walsh_hadamard_scalar(x, n);
    return;
  }
  for (int i = 0; i < n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    // Stride 1: lane pairs (0,1), (2,3)…; even lanes keep a + b, odd lanes a − b.
    __m256 s = _mm256_permute_ps(v, 0xB1);
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xAA);
    // Stride 2.
    s = _mm256_permute_ps(v, 0x4E);
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xCC);
    // Stride 4: the two 128-bit halves.
    s = _mm256_permute2f128_ps(v, v, 0x01);
    v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xF0);
    _mm256_storeu_ps(x + i, v);
  }
  for (int half = 8; half < n; half <<= 1) {
    for (int start = 0; start < n; start += 2 * half) {
      for (int i = start; i < start + half; i += 8) {
        const __m256 a = _mm256_loadu_ps(x + i);
        const __m256 b = _mm256_loadu_ps(x + i + half);
        _mm256_storeu_ps(x + i, _mm256_add_ps(a, b));
        _mm256_storeu_ps(x + i + half, _mm256_sub_ps(a, b));
      }
    }
  }
}

}  // namespace tq::kernels
