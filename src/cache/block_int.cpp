// Block-wise int8 / int4 quantization and the scalar reference kernels (see block_int.hpp).
#include "block_int.hpp"

#include <algorithm>
#include <cmath>

namespace tq::blockint {
namespace {

// Quantizes one vector block by block; `store(j, q)` writes integer q of value j.
template <class Store>
void quantize_blocks(const float* x, int dim, int qmax, half_bits* scales, Store store) {
  for (int b = 0; b * kBlock < dim; ++b) {
    const int begin = b * kBlock;
    const int end = std::min(dim, begin + kBlock);
    float absmax = 0.0f;
    for (int j = begin; j < end; ++j) absmax = std::max(absmax, std::fabs(x[j]));
    // Quantize against the fp16-rounded scale so that reconstruction errors are centred.
    const half_bits scale_half = float_to_half(absmax / static_cast<float>(qmax));
    scales[b] = scale_half;
    const float scale = half_to_float(scale_half);
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int j = begin; j < end; ++j) {
      const float r = std::nearbyint(x[j] * inv);
      store(j,
            static_cast<int>(std::clamp(r, static_cast<float>(-qmax), static_cast<float>(qmax))));
    }
  }
}

inline int int4_value(const std::uint8_t* q, int j) {
  return static_cast<int>((q[j >> 1] >> ((j & 1) * 4)) & 0xfu) - 8;
}

// Integer j of a stored row of either width.
template <bool Four>
int int_value(const std::uint8_t* row, int j) {
  return Four ? int4_value(row, j) : static_cast<int>(static_cast<std::int8_t>(row[j]));
}

template <bool Four>
void int_dot(const float* q, int dim, const std::uint8_t* codes, const half_bits* scales,
             std::size_t n, float* out) {
  const std::size_t stride = int_bytes(Four, dim);
  const int blocks = num_blocks(dim);
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* row = codes + t * stride;
    float total = 0.0f;
    for (int b = 0; b < blocks; ++b) {
      float acc = 0.0f;
      const int end = std::min(dim, (b + 1) * kBlock);
      for (int j = b * kBlock; j < end; ++j) {
        acc += q[j] * static_cast<float>(int_value<Four>(row, j));
      }
      total += acc * half_to_float(scales[t * blocks + b]);
    }
    out[t] = total;
  }
}

template <bool Four>
void int_axpy(const float* w, int dim, const std::uint8_t* codes, const half_bits* scales,
              std::size_t n, float* acc) {
  const std::size_t stride = int_bytes(Four, dim);
  const int blocks = num_blocks(dim);
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* row = codes + t * stride;
    for (int b = 0; b < blocks; ++b) {
      const float ws = w[t] * half_to_float(scales[t * blocks + b]);
      const int end = std::min(dim, (b + 1) * kBlock);
      for (int j = b * kBlock; j < end; ++j) {
        acc[j] += ws * static_cast<float>(int_value<Four>(row, j));
      }
    }
  }
}

}  // namespace

void quantize_int8(const float* x, int dim, std::uint8_t* q, half_bits* scales) {
  quantize_blocks(x, dim, 127, scales, [q](int j, int v) {
    q[j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(v));
  });
}

void quantize_int4(const float* x, int dim, std::uint8_t* q, half_bits* scales) {
  std::fill(q, q + int4_bytes(dim), 0);
  quantize_blocks(x, dim, 7, scales, [q](int j, int v) {
    q[j >> 1] |= static_cast<std::uint8_t>((v + 8) << ((j & 1) * 4));
  });
}

void dequantize_int8(const std::uint8_t* q, const half_bits* scales, int dim, float* x) {
  for (int j = 0; j < dim; ++j) {
    x[j] = static_cast<float>(static_cast<std::int8_t>(q[j])) * half_to_float(scales[j / kBlock]);
  }
}

void dequantize_int4(const std::uint8_t* q, const half_bits* scales, int dim, float* x) {
  for (int j = 0; j < dim; ++j) {
    x[j] = static_cast<float>(int4_value(q, j)) * half_to_float(scales[j / kBlock]);
  }
}

const Kernels& scalar_kernels() {
  static const Kernels k{int_dot<false>, int_axpy<false>, int_dot<true>, int_axpy<true>};
  return k;
}

}  // namespace tq::blockint
