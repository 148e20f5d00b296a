// The writing quantizers (gguf_quantize.hpp) against the reader's dequantizers: on fresh random
// rows every type stays within its rounding bound (half a step of the block's scale for Q8_0,
// one step for Q4_0, whose far side clamps at +7; the fp16 / bf16 relative precision), and
// values that the format represents exactly (small integers times a power-of-two scale, fp16 /
// bf16 values) come back bit for bit. Types and sizes quantize() cannot write are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "turboquant/base/half.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/gguf_quantize.hpp"

namespace {

using tq::gguf::TensorType;

std::vector<float> round_trip(TensorType type, const std::vector<float>& x) {
  std::vector<std::uint8_t> bytes(tq::gguf::row_bytes(type, x.size()), 0xff);
  tq::gguf::quantize(type, x.data(), bytes.data(), x.size());
  std::vector<float> y(x.size(), std::nanf(""));
  tq::gguf::dequantize(type, bytes.data(), y.data(), x.size());
  return y;
}

float block_amax(const std::vector<float>& x, std::size_t begin) {
  float m = 0.0f;
  for (std::size_t i = begin; i < begin + 32; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

TEST(Quantize, ErrorsStayWithinTheRoundingBound) {
  std::random_device seed_source;
  const unsigned seed = seed_source();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  constexpr std::size_t n = 32 * 64;
  for (float scale : {1e-3f, 1.0f, 300.0f}) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> x(n);
    for (auto& v : x) v = dist(rng);
    x[5] = 0.0f;
    std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
    SCOPED_TRACE("scale " + std::to_string(scale));
    const auto q8 = round_trip(TensorType::kQ8_0, x);
    const auto q4 = round_trip(TensorType::kQ4_0, x);
    const auto f16 = round_trip(TensorType::kF16, x);
    const auto bf16 = round_trip(TensorType::kBF16, x);
    const auto f32 = round_trip(TensorType::kF32, x);
    for (std::size_t i = 0; i < n; ++i) {
      const float amax = block_amax(x, i / 32 * 32);
      // Steps: amax / 127 and amax / 8, each rounded to fp16 (relative 2^-11), plus the clamp.
      const float step8 = amax / 127.0f, step4 = amax / 8.0f;
      ASSERT_LE(std::fabs(q8[i] - x[i]), 0.5f * step8 + amax * 0x1p-10f) << "Q8_0 " << i;
      ASSERT_LE(std::fabs(q4[i] - x[i]), step4 * (1.0f + 0x1p-7f)) << "Q4_0 " << i;
      ASSERT_LE(std::fabs(f16[i] - x[i]), std::fabs(x[i]) * 0x1p-11f + 0x1p-25f) << "F16 " << i;
      ASSERT_LE(std::fabs(bf16[i] - x[i]), std::fabs(x[i]) * 0x1p-8f) << "BF16 " << i;
      ASSERT_EQ(f32[i], x[i]);
    }
    for (std::size_t i = 64; i < 96; ++i) ASSERT_EQ(q4[i], 0.0f) << i;
    // Q4_0 maps the block's largest magnitude to -8 steps exactly (the sign goes into d).
    for (std::size_t b = 0; b < n; b += 32) {
      if (b == 64) continue;
      std::size_t arg = b;
      for (std::size_t i = b; i < b + 32; ++i) {
        if (std::fabs(x[i]) > std::fabs(x[arg])) arg = i;
      }
      const float d16 = tq::half_to_float(tq::float_to_half(x[arg] / -8.0f));
      ASSERT_EQ(q4[arg], -8.0f * d16) << "block " << b / 32;
    }
  }
}

TEST(Quantize, RepresentableValuesRoundTripExactly) {
  std::random_device seed_source;
  const unsigned seed = seed_source();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  constexpr std::size_t n = 32 * 16;
  std::vector<float> q8(n), q4(n), half_values(n), bf16_values(n);
  for (std::size_t b = 0; b < n; b += 32) {
    const float d = std::ldexp(1.0f, static_cast<int>(rng() % 20) - 10);  // exact in fp16
    for (std::size_t i = b; i < b + 32; ++i) {
      q8[i] = static_cast<float>(static_cast<int>(rng() % 255) - 127) * d;
      q4[i] = static_cast<float>(static_cast<int>(rng() % 16) - 8) * d;
    }
    // The extremes that fix the scale: ±127 d for Q8_0, -8 d for Q4_0 (+8 d is not a level).
    q8[b + rng() % 32] = (rng() % 2 ? 127.0f : -127.0f) * d;
    q4[b + rng() % 32] = -8.0f * d;
  }
  for (std::size_t i = 0; i < n; ++i) {
    half_values[i] = tq::half_to_float(static_cast<tq::half_bits>(rng() & 0x7bff));  // finite
    const std::uint32_t bits = (rng() & 0xff7fffffu) & 0xffff0000u;                  // finite
    std::memcpy(&bf16_values[i], &bits, 4);
  }
  EXPECT_EQ(round_trip(TensorType::kQ8_0, q8), q8);
  EXPECT_EQ(round_trip(TensorType::kQ4_0, q4), q4);
  const auto h = round_trip(TensorType::kF16, half_values);
  const auto bf = round_trip(TensorType::kBF16, bf16_values);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::memcmp(&h[i], &half_values[i], 4), 0) << "F16 " << i << " " << half_values[i];
    ASSERT_EQ(std::memcmp(&bf[i], &bf16_values[i], 4), 0) << "BF16 " << i;
  }
}

TEST(Quantize, RoundsToNearestEven) {
  // bf16 keeps 8 mantissa bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and rounds to even
  // (1); 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6 and rounds to 1 + 2^-6.
  const std::vector<float> x = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
  const auto bf = round_trip(TensorType::kBF16, x);
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], 1.0f + 0x1p-6f);
}

TEST(Quantize, RefusesTypesAndSizesItCannotWrite) {
  std::vector<float> x(64, 1.0f);
  std::vector<std::uint8_t> out(1024);
  EXPECT_FALSE(tq::gguf::can_quantize(TensorType::kQ4_K));
  EXPECT_TRUE(tq::gguf::can_quantize(TensorType::kQ4_0));
  try {
    tq::gguf::quantize(TensorType::kQ4_K, x.data(), out.data(), 256);
    ADD_FAILURE() << "Q4_K accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Q4_K"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tq::gguf::quantize(TensorType::kQ8_0, x.data(), out.data(), 48),
               std::invalid_argument);
}

}  // namespace
