// Kernels of attention's exact path: dot products and weighted sums over fp16 rows (the fp16
// format and the exact recent window), and the softmax numerator. Each has a scalar reference
// (exact_kernels.cpp) and an AVX2 + FMA + F16C version (exact_kernels_avx2.cpp) with the same
// semantics; the AVX2 fp16 kernels fall back to scalar for dims that are not a multiple of 8.
// tests/cache/test_cache_kernels.cpp checks one against the other.
#pragma once

#include "turboquant/base/half.hpp"

#include <cmath>
#include <cstddef>

namespace tq::exact {

// Token-major kernels over n fp16 rows of `dim` halves each (x_t = x + t·dim).
struct Kernels {
  // out[t] = ⟨q, x_t⟩ (overwrites).
  void (*fp16_dot)(const float* q, int dim, const half_bits* x, std::size_t n, float* out);
  // acc += Σ_t w[t] x_t.
  void (*fp16_axpy)(const float* w, int dim, const half_bits* x, std::size_t n, float* acc);
  // Softmax numerator in place: s[t] = exp(scale·s[t] − max_u scale·s[u]); returns Σ_t s[t].
  float (*softmax_exp)(float* s, std::size_t n, float scale);
};

const Kernels& scalar_kernels();
const Kernels& avx2_kernels();  // call only when the CPU has AVX2 + FMA + F16C

// s[t] = exp(scale·s[t] − max_value) for t in [begin, n); returns sum plus those, added in order:
// the softmax numerator of the scalar reference, and of the AVX2 version for its last n mod 8
// scores. Static on purpose: each file compiles its own copy with its own flags (FMA contraction
// in the AVX2 one), so no AVX2 code can end up in the scalar path.
static inline float add_exp_shifted(float sum, float* s, std::size_t begin, std::size_t n,
                                    float scale, float max_value) {
  for (std::size_t t = begin; t < n; ++t) {
    s[t] = std::exp(scale * s[t] - max_value);
    sum += s[t];
  }
  return sum;
}

}  // namespace tq::exact
