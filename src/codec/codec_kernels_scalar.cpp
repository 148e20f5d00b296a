// Scalar reference implementations of the codec hot loops (see codec_kernels.hpp).
#include "codec_kernels.hpp"

#include "turboquant/codec/bitpack.hpp"

namespace tq::kernels {

void quantize_scalar(const float* y, int count, const float* thresholds, int bits,
                     std::uint8_t* idx) {
  const int levels = (1 << bits) - 1;
  for (int j = 0; j < count; ++j) {
    // Binary search for the first threshold >= y: codes are the number of thresholds < y.
    int lo = 0, hi = levels;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (thresholds[mid] < y[j])
        lo = mid + 1;
      else
        hi = mid;
    }
    idx[j] = static_cast<std::uint8_t>(lo);
  }
}

void segment_dot_scalar(const float* q, int count, int bits, const float* centroids,
                        const std::uint8_t* codes, std::size_t stride, std::size_t n, float* out) {
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* c = codes + t * stride;
    float acc = 0.0f;
    for (int j = 0; j < count; ++j) acc += q[j] * centroids[read_code(c, j, bits)];
    out[t] = acc;
  }
}

void segment_axpy_scalar(const float* w, int count, int bits, const float* centroids,
                         const std::uint8_t* codes, std::size_t stride, std::size_t n, float* acc) {
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* c = codes + t * stride;
    for (int j = 0; j < count; ++j) acc[j] += w[t] * centroids[read_code(c, j, bits)];
  }
}

void sign_dot_scalar(const float* sketch, int dim, const std::uint8_t* signs, std::size_t stride,
                     std::size_t n, float* out) {
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* s = signs + t * stride;
    float acc = 0.0f;
    for (int i = 0; i < dim; ++i) acc += ((s[i >> 3] >> (i & 7)) & 1u) ? sketch[i] : -sketch[i];
    out[t] = acc;
  }
}

void sign_axpy_scalar(const float* w, int dim, const std::uint8_t* signs, std::size_t stride,
                      std::size_t n, float* acc) {
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* s = signs + t * stride;
    for (int i = 0; i < dim; ++i) acc[i] += ((s[i >> 3] >> (i & 7)) & 1u) ? w[t] : -w[t];
  }
}

void segment_dot_multi_scalar(const float* const* q, int n_queries, int count, int bits,
                              const float* centroids, const std::uint8_t* codes, std::size_t stride,
                              std::size_t n, float* out, std::size_t out_stride) {
  for (int i = 0; i < n_queries; ++i) {
    segment_dot_scalar(q[i], count, bits, centroids, codes, stride, n, out + i * out_stride);
  }
}

void segment_axpy_multi_scalar(const float* const* w, int n_queries, int count, int bits,
                               const float* centroids, const std::uint8_t* codes,
                               std::size_t stride, std::size_t n, float* const* acc) {
  for (int i = 0; i < n_queries; ++i) {
    segment_axpy_scalar(w[i], count, bits, centroids, codes, stride, n, acc[i]);
  }
}

}  // namespace tq::kernels
