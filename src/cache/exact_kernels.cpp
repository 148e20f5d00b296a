// Scalar reference kernels of attention's exact path (see exact_kernels.hpp).
#include "exact_kernels.hpp"

#include <algorithm>
#include <limits>

namespace tq::exact {
namespace {

void fp16_dot(const float* q, int dim, const half_bits* x, std::size_t n, float* out) {
  for (std::size_t t = 0; t < n; ++t) {
    const half_bits* row = x + t * dim;
    float acc = 0.0f;
    for (int j = 0; j < dim; ++j) acc += q[j] * half_to_float(row[j]);
    out[t] = acc;
  }
}

void fp16_axpy(const float* w, int dim, const half_bits* x, std::size_t n, float* acc) {
  for (std::size_t t = 0; t < n; ++t) {
    const half_bits* row = x + t * dim;
    for (int j = 0; j < dim; ++j) acc[j] += w[t] * half_to_float(row[j]);
  }
}

float softmax_exp(float* s, std::size_t n, float scale) {
  float max_value = -std::numeric_limits<float>::infinity();
  for (std::size_t t = 0; t < n; ++t) max_value = std::max(max_value, scale * s[t]);
  return add_exp_shifted(0.0f, s, 0, n, scale, max_value);
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k{fp16_dot, fp16_axpy, softmax_exp};
  return k;
}

}  // namespace tq::exact
