// Random, valid GGUF rows of every block type the matrix kernels store (F32, F16, BF16, Q4_0,
// Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, plus Q5_K for the fp32 fallback), shared by the CPU (test_qmatmul)
// and GPU (test_gpu_weights) matmul tests. Scales are finite fp16 of a size that keeps the weights
// around O(0.1), as in real checkpoints; quants are uniform random bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "turboquant/base/half.hpp"
#include "turboquant/model/gguf.hpp"

namespace tq::testing {

inline void put_half(std::vector<std::uint8_t>& out, float v) {
  const std::uint16_t h = tq::float_to_half(v);
  out.push_back(static_cast<std::uint8_t>(h & 0xff));
  out.push_back(static_cast<std::uint8_t>(h >> 8));
}

// rows × cols values of `type` (cols a multiple of the type's block) from `seed`.
inline std::vector<std::uint8_t> random_blocks(gguf::TensorType type, int rows, int cols,
                                               unsigned seed) {
  using gguf::TensorType;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  std::vector<std::uint8_t> out;
  const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  auto bytes = [&](int k) {
    for (int i = 0; i < k; ++i) out.push_back(static_cast<std::uint8_t>(byte(rng)));
  };
  switch (type) {
    case TensorType::kF32:
      for (std::size_t i = 0; i < n; ++i) {
        const float v = normal(rng);
        std::uint8_t b[4];
        std::memcpy(b, &v, 4);
        out.insert(out.end(), b, b + 4);
      }
      break;
    case TensorType::kF16:
      for (std::size_t i = 0; i < n; ++i) put_half(out, normal(rng));
      break;
    case TensorType::kBF16:
      // The top half of an fp32 normal: a valid, finite bf16.
      for (std::size_t i = 0; i < n; ++i) {
        const float v = normal(rng);
        std::uint32_t bits;
        std::memcpy(&bits, &v, 4);
        out.push_back(static_cast<std::uint8_t>((bits >> 16) & 0xff));
        out.push_back(static_cast<std::uint8_t>(bits >> 24));
      }
      break;
    case TensorType::kQ4_0:
      for (std::size_t b = 0; b < n / 32; ++b) put_half(out, scale(rng)), bytes(16);
      break;
    case TensorType::kQ4_1:
      for (std::size_t b = 0; b < n / 32; ++b) {
        put_half(out, scale(rng));
        put_half(out, -8.0f * scale(rng));
        bytes(16);
      }
      break;
    case TensorType::kQ8_0:
      for (std::size_t b = 0; b < n / 32; ++b) put_half(out, scale(rng) / 8), bytes(32);
      break;
    case TensorType::kQ5_0:
      for (std::size_t b = 0; b < n / 32; ++b) put_half(out, scale(rng)), bytes(20);
      break;
    case TensorType::kQ4_K:
      // d and dmin multiply 6-bit scales and mins (up to 63): divide by 32 to keep weights small.
      for (std::size_t b = 0; b < n / 256; ++b) {
        put_half(out, scale(rng) / 32);
        put_half(out, scale(rng) / 32);
        bytes(12 + 128);
      }
      break;
    case TensorType::kQ6_K:
      // ql, qh, 16 int8 scales (any value, up to ±128), then d.
      for (std::size_t b = 0; b < n / 256; ++b) {
        bytes(128 + 64 + 16);
        put_half(out, scale(rng) / 64);
      }
      break;
    case TensorType::kQ5_K:
      for (std::size_t b = 0; b < n / 256; ++b) {
        put_half(out, scale(rng) / 32);
        put_half(out, scale(rng) / 32);
        bytes(12 + 32 + 128);
      }
      break;
    default:
      throw std::invalid_argument("random_blocks: no generator for " +
                                  gguf::tensor_type_name(type));
  }
  if (out.size() !=
      gguf::row_bytes(type, static_cast<std::uint64_t>(cols)) * static_cast<std::size_t>(rows)) {
    throw std::logic_error("random_blocks: wrong size for " + gguf::tensor_type_name(type));
  }
  return out;
}

}  // namespace tq::testing
