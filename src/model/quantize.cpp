// The quantizers of gguf_quantize.hpp, written from the ggml block definitions that
// dequantize.cpp decodes: Q8_0 is an fp16 scale d and 32 int8 q with x = q * d; Q4_0 an fp16 d
// and 32 nibbles q with x = (q - 8) * d (element i < 16 in the low nibble of byte i, i + 16 in
// its high nibble). The scales are rounded to fp16 first and the codes computed against the
// rounded scale, so that what is stored is the nearest code to x for the scale the reader sees.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "turboquant/base/half.hpp"
#include "turboquant/model/gguf_quantize.hpp"

namespace tq::gguf {

namespace {

constexpr std::size_t kQK = 32;  // elements per Q8_0 / Q4_0 block

void store_half(std::uint8_t* p, float v) {
  const half_bits h = float_to_half(v);
  std::memcpy(p, &h, 2);
}

// bfloat16: the top 16 bits of the float, rounded to nearest even; NaN stays a quiet NaN.
std::uint16_t float_to_bf16(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

// Q8_0: d = max|x| / 127, so the largest magnitude maps to ±127.
void quantize_q8_0(const float* x, std::uint8_t* b) {
  float amax = 0.0f;
  for (std::size_t i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = half_to_float(float_to_half(amax / 127.0f));
  store_half(b, d);
  auto* q = reinterpret_cast<std::int8_t*>(b + 2);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  for (std::size_t i = 0; i < kQK; ++i) {
    // Clamped: the fp16 rounding of d may make max|x| / d slightly exceed 127.
    q[i] = static_cast<std::int8_t>(std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f));
  }
}

// Q4_0 has 16 levels, -8..7 times d: the element of largest magnitude is mapped to -8 (d takes
// its sign), which uses the one level more on that side; the other side clamps at 7.
void quantize_q4_0(const float* x, std::uint8_t* b) {
  float extreme = 0.0f;
  for (std::size_t i = 0; i < kQK; ++i) {
    if (std::fabs(x[i]) > std::fabs(extreme)) extreme = x[i];
  }
  const float d = half_to_float(float_to_half(extreme / -8.0f));
  store_half(b, d);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  auto code = [&](float v) {
    return static_cast<std::uint8_t>(std::clamp(std::nearbyint(v * inv), -8.0f, 7.0f) + 8.0f);
  };
  std::uint8_t* qs = b + 2;
  for (std::size_t i = 0; i < kQK / 2; ++i) {
    qs[i] = static_cast<std::uint8_t>(code(x[i]) | (code(x[i + kQK / 2]) << 4));
  }
}

}  // namespace

bool can_quantize(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
    case TensorType::kQ8_0:
    case TensorType::kQ4_0:
      return true;
    default:
      return false;
  }
}

void quantize(TensorType type, const float* src, void* dst, std::size_t n) {
  if (!can_quantize(type)) {
    throw std::invalid_argument("quantize: type " + tensor_type_name(type) +
                                " is not written (expected F32, F16, BF16, Q8_0 or Q4_0)");
  }
  const std::size_t block = block_elements(type);
  if (n % block != 0) {
    throw std::invalid_argument("quantize: " + std::to_string(n) +
                                " elements is not a multiple of the " + tensor_type_name(type) +
                                " block size " + std::to_string(block));
  }
  auto* out = static_cast<std::uint8_t*>(dst);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, src, n * sizeof(float));
      break;
    case TensorType::kF16:
      for (std::size_t i = 0; i < n; ++i) store_half(out + 2 * i, src[i]);
      break;
    case TensorType::kBF16:
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = float_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    case TensorType::kQ8_0:
      for (std::size_t i = 0; i < n; i += kQK)
        quantize_q8_0(src + i, out + i / kQK * block_bytes(type));
      break;
    case TensorType::kQ4_0:
      for (std::size_t i = 0; i < n; i += kQK)
        quantize_q4_0(src + i, out + i / kQK * block_bytes(type));
      break;
    default:
      break;
  }
}

}  // namespace tq::gguf
