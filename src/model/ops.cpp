// Forward-pass kernels: RMSNorm, RoPE (normal and NeoX pairings), SwiGLU, softmax and the
// column-split BLAS matmul. These are a tiny share of the runtime next to the matmuls and
// attention, so they stay plain loops the compiler vectorises.
#include "ops.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" void openblas_set_num_threads(int num_threads);

namespace tq::ops {

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<std::size_t>(r) * n;
    float* yr = y + static_cast<std::size_t>(r) * n;
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
    for (int i = 0; i < n; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

void rope_angles(std::size_t pos0, int n_pos, const double* inv_freq, int half, float* cos_out,
                 float* sin_out) {
  for (int p = 0; p < n_pos; ++p) {
    const double pos = static_cast<double>(pos0 + static_cast<std::size_t>(p));
    for (int i = 0; i < half; ++i) {
      const double theta = pos * inv_freq[i];
      cos_out[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::cos(theta));
      sin_out[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::sin(theta));
    }
  }
}

void rope(float* x, int n_heads, int head_dim, int rope_dim, const float* cos_row,
          const float* sin_row, RopeOrdering ordering) {
  const int half = rope_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<std::size_t>(h) * head_dim;
    if (ordering == RopeOrdering::kNormal) {
      for (int i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos_row[i] - b * sin_row[i];
        v[2 * i + 1] = a * sin_row[i] + b * cos_row[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_row[i] - b * sin_row[i];
        v[i + half] = a * sin_row[i] + b * cos_row[i];
      }
    }
  }
}

void swiglu(const float* gate, const float* up, float* out, int n) {
  for (int i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void geglu_tanh(const float* gate, const float* up, float* out, int n) {
  // gelu(g) ≈ g/2 · (1 + tanh(√(2/π) · (g + 0.044715 g³))), the approximation Gemma uses.
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void softmax(float* x, int n) {
  if (n <= 0) return;
  const float m = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

void set_blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void matmul_columns(const float* x, int rows, int inner, int ldx, const float* w, int c0, int c1,
                    const float* bias, float* y, int ldy, bool accumulate) {
  const int n = c1 - c0;
  if (n <= 0) return;
  const float* wb = w + static_cast<std::size_t>(c0) * inner;
  float* yb = y + c0;
  // The bias goes into y first so that BLAS adds the product on top (beta = 1).
  if (bias) {
    for (int r = 0; r < rows; ++r) {
      float* yr = yb + static_cast<std::size_t>(r) * ldy;
      if (accumulate) {
        for (int c = 0; c < n; ++c) yr[c] += bias[c0 + c];
      } else {
        std::copy(bias + c0, bias + c1, yr);
      }
    }
  }
  const float beta = (bias || accumulate) ? 1.0f : 0.0f;
  if (rows == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, inner, 1.0f, wb, inner, x, 1, beta, yb, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, inner, 1.0f, x, ldx, wb, inner,
                beta, yb, ldy);
  }
}

void matmul(const float* x, int rows, int inner, int ldx, const float* w, int cols,
            const float* bias, float* y, int ldy, int threads, bool accumulate) {
  set_blas_single_threaded();
  parallel_outputs(cols, static_cast<double>(rows) * inner * cols, threads, [&](int c0, int c1) {
    matmul_columns(x, rows, inner, ldx, w, c0, c1, bias, y, ldy, accumulate);
  });
}

void parallel_outputs(int outputs, double work, int threads,
                      const std::function<void(int begin, int end)>& part) {
#ifdef _OPENMP
  if (threads <= 0) threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  if (threads <= 1 || work < 65536.0 || outputs < 32 * threads) {
    part(0, outputs);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
    const int nt = omp_get_num_threads();
#else
    const int t = 0, nt = 1;
#endif
    const int per = ((outputs + nt - 1) / nt + 15) / 16 * 16;
    const int begin = std::min(outputs, t * per);
    const int end = std::min(outputs, begin + per);
    if (end > begin) part(begin, end);
  }
}

}  // namespace tq::ops
