// Test helper: the double-precision reference of the matrix products (y = x·Wᵀ + bias + y0 from a
// dequantized W) and the relative error measure both matmul suites use (CPU test_qmatmul, GPU
// test_gpu_weights): |got − want| / (Σ|terms| + 1e-6), so that the tolerance scales with the
// magnitudes summed. A NaN output (a poisoned element left unwritten) is the worst error.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace tq::testing {

// w: [mrows][cols] floats; x: [rows] rows of leading dimension ldx; y, mag: [rows][ldy] with the
// first mrows of each row set (bias [mrows] and y0 [rows][ldy] optional).
inline void reference_matmul(const std::vector<float>& w, int mrows, int cols, const float* x,
                             int rows, int ldx, const float* bias, const float* y0, int ldy,
                             std::vector<double>& y, std::vector<double>& mag) {
  y.assign(static_cast<std::size_t>(rows) * ldy, 0.0);
  mag.assign(y.size(), 0.0);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < mrows; ++c) {
      double s = 0.0, a = 0.0;
      for (int k = 0; k < cols; ++k) {
        const double p = static_cast<double>(w[static_cast<std::size_t>(c) * cols + k]) *
                         x[static_cast<std::size_t>(r) * ldx + k];
        s += p;
        a += std::fabs(p);
      }
      const std::size_t i = static_cast<std::size_t>(r) * ldy + c;
      if (bias) s += bias[c], a += std::fabs(bias[c]);
      if (y0) s += y0[i], a += std::fabs(y0[i]);
      y[i] = s;
      mag[i] = a;
    }
  }
}

// Largest relative error over the first `cols` outputs of each of `rows` rows (NaN if any is NaN).
inline double max_rel_error(const std::vector<float>& got, const std::vector<double>& want,
                            const std::vector<double>& mag, int rows, int cols, int ldy) {
  double worst = 0.0;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r) * ldy + c;
      const double e = std::fabs(got[i] - want[i]) / (mag[i] + 1e-6);
      if (std::isnan(e)) return e;
      if (e > worst) worst = e;
    }
  }
  return worst;
}

}  // namespace tq::testing
