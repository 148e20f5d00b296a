// Dequantization tests: for each block format a reference quantizer in this file draws random
// codes and scales, packs them by the published layout, and computes the expected floats directly
// from the codes; dequantize() must reproduce them bit for bit. A float quantizer for Q8_0 and Q4_1
// checks the round trip error too, and the tensor path (rows, GGUF file) is exercised per type.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "test_gguf_writer.hpp"
#include "turboquant/base/half.hpp"
#include "turboquant/model/gguf.hpp"

namespace tq::gguf {
namespace {

struct Packed {
  std::vector<std::uint8_t> bytes;
  std::vector<float> expected;
};

class BlockMaker {
 public:
  explicit BlockMaker(std::uint32_t seed) : rng_(seed) {}

  int code(int bits) { return static_cast<int>(rng_() % (1u << bits)); }
  // A random fp16 scale; returns its value as float and appends its bits.
  float half(std::vector<std::uint8_t>& out, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    const half_bits h = float_to_half(dist(rng_));
    out.push_back(static_cast<std::uint8_t>(h & 0xff));
    out.push_back(static_cast<std::uint8_t>(h >> 8));
    return half_to_float(h);
  }

  // Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 (32 elements per block).
  void classic(TensorType type, Packed& p) {
    std::vector<std::uint8_t>& out = p.bytes;
    const bool has_min = type == TensorType::kQ4_1 || type == TensorType::kQ5_1;
    const float d = half(out);
    const float m = has_min ? half(out) : 0.0f;
    if (type == TensorType::kQ8_0) {
      for (int i = 0; i < 32; ++i) {
        const auto q = static_cast<std::int8_t>(code(8));
        out.push_back(static_cast<std::uint8_t>(q));
        p.expected.push_back(static_cast<float>(q) * d);
      }
      return;
    }
    const bool five = type == TensorType::kQ5_0 || type == TensorType::kQ5_1;
    const int offset = has_min ? 0 : (five ? 16 : 8);
    int q[32];
    for (int& x : q) x = code(five ? 5 : 4);
    if (five) {
      std::uint32_t qh = 0;
      for (int i = 0; i < 32; ++i) qh |= static_cast<std::uint32_t>(q[i] >> 4) << i;
      for (int k = 0; k < 4; ++k) out.push_back(static_cast<std::uint8_t>(qh >> (8 * k)));
    }
    for (int i = 0; i < 16; ++i) {
      out.push_back(static_cast<std::uint8_t>((q[i] & 15) | ((q[i + 16] & 15) << 4)));
    }
    for (int i = 0; i < 32; ++i) {
      p.expected.push_back(has_min ? static_cast<float>(q[i]) * d + m
                                   : static_cast<float>(q[i] - offset) * d);
    }
  }

  // Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins.
  void k_quant_45(bool five, Packed& p) {
    std::vector<std::uint8_t>& out = p.bytes;
    const float d = half(out, 0.0f, 0.1f);
    const float dmin = half(out, 0.0f, 0.1f);
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) sc[j] = code(6), mn[j] = code(6);
    std::uint8_t packed[12] = {};
    for (int j = 0; j < 4; ++j) {
      packed[j] = static_cast<std::uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
      packed[j + 4] = static_cast<std::uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
      packed[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    out.insert(out.end(), packed, packed + 12);
    int q[256];
    for (int& x : q) x = code(five ? 5 : 4);
    if (five) {
      // Element 64c + l uses bit 2c of byte l; element 64c + 32 + l uses bit 2c + 1.
      std::uint8_t qh[32] = {};
      for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) {
          qh[l] |= static_cast<std::uint8_t>(((q[64 * c + l] >> 4) & 1) << (2 * c));
          qh[l] |= static_cast<std::uint8_t>(((q[64 * c + 32 + l] >> 4) & 1) << (2 * c + 1));
        }
      }
      out.insert(out.end(), qh, qh + 32);
    }
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        out.push_back(
            static_cast<std::uint8_t>((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4)));
      }
    }
    for (int i = 0; i < 256; ++i) {
      const int j = i / 32;
      const float scale = d * static_cast<float>(sc[j]);
      const float min = dmin * static_cast<float>(mn[j]);
      p.expected.push_back(scale * static_cast<float>(q[i]) - min);
    }
  }

  // Q6_K: 16 int8 scales (one per 16 elements), 6-bit codes offset by 32.
  void q6_k(Packed& p) {
    int q[256];
    for (int& x : q) x = code(6);
    std::int8_t sc[16];
    for (auto& s : sc) s = static_cast<std::int8_t>(code(8));
    std::uint8_t ql[128] = {}, qh[64] = {};
    // Element 128h + 32r + l: low nibble in ql[64h + l + 32*(r & 1)] (high half when r >= 2),
    // top two bits in qh[32h + l] at bit 2r.
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < 4; ++r) {
        for (int l = 0; l < 32; ++l) {
          const int v = q[128 * h + 32 * r + l];
          const int lo_index = 64 * h + l + 32 * (r & 1);
          ql[lo_index] |= static_cast<std::uint8_t>((v & 15) << (r >= 2 ? 4 : 0));
          qh[32 * h + l] |= static_cast<std::uint8_t>((v >> 4) << (2 * r));
        }
      }
    }
    p.bytes.insert(p.bytes.end(), ql, ql + 128);
    p.bytes.insert(p.bytes.end(), qh, qh + 64);
    for (auto s : sc) p.bytes.push_back(static_cast<std::uint8_t>(s));
    const float d = half(p.bytes, -0.01f, 0.01f);
    for (int i = 0; i < 256; ++i) {
      p.expected.push_back(d * static_cast<float>(sc[i / 16]) * static_cast<float>(q[i] - 32));
    }
  }

  void block(TensorType type, Packed& p) {
    switch (type) {
      case TensorType::kQ4_K:
        return k_quant_45(false, p);
      case TensorType::kQ5_K:
        return k_quant_45(true, p);
      case TensorType::kQ6_K:
        return q6_k(p);
      case TensorType::kF16: {
        const float v = half(p.bytes, -100.0f, 100.0f);
        p.expected.push_back(v);
        return;
      }
      case TensorType::kBF16: {
        std::uniform_real_distribution<float> dist(-1e6f, 1e6f);
        const float f = dist(rng_);
        std::uint32_t bits;
        std::memcpy(&bits, &f, 4);
        bits &= 0xffff0000u;
        float expected;
        std::memcpy(&expected, &bits, 4);
        p.bytes.push_back(static_cast<std::uint8_t>(bits >> 16));
        p.bytes.push_back(static_cast<std::uint8_t>(bits >> 24));
        p.expected.push_back(expected);
        return;
      }
      case TensorType::kF32: {
        std::normal_distribution<float> dist;
        const float f = dist(rng_);
        const auto bytes = testing::f32_bytes({f});
        p.bytes.insert(p.bytes.end(), bytes.begin(), bytes.end());
        p.expected.push_back(f);
        return;
      }
      default:
        return classic(type, p);
    }
  }

 private:
  std::mt19937 rng_;
};

const TensorType kAllTypes[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                                TensorType::kQ5_1, TensorType::kQ8_0, TensorType::kQ4_K,
                                TensorType::kQ5_K, TensorType::kQ6_K};

class DequantizeType : public ::testing::TestWithParam<TensorType> {};

TEST_P(DequantizeType, MatchesReferenceExactly) {
  const TensorType type = GetParam();
  BlockMaker maker(static_cast<std::uint32_t>(type) * 7919u + 1);
  Packed p;
  const std::size_t n_blocks = 512 / block_elements(type) * 8;  // several rows worth
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::size_t before = p.bytes.size();
    maker.block(type, p);
    ASSERT_EQ(p.bytes.size() - before, block_bytes(type)) << tensor_type_name(type);
  }
  ASSERT_EQ(p.expected.size(), n_blocks * block_elements(type));
  std::vector<float> out(p.expected.size(), std::nanf(""));
  dequantize(type, p.bytes.data(), out.data(), out.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(out[i], p.expected[i]) << tensor_type_name(type) << " element " << i;
  }

  // The same data as a 2-D tensor in a GGUF file; rows dequantize independently.
  const std::uint64_t row = 512;
  const std::uint64_t rows = p.expected.size() / row;
  testing::GgufBuilder builder;
  builder.add_tensor({"w", {row, rows}, static_cast<std::uint32_t>(type), p.bytes, {}});
  const File f = File::from_bytes(builder.build());
  const TensorInfo& info = f.tensor("w");
  EXPECT_EQ(info.n_bytes, p.bytes.size());
  EXPECT_EQ(info.bytes_per_row(), row_bytes(type, row));
  EXPECT_EQ(f.dequantize(info), p.expected);
  std::vector<float> two_rows(2 * row);
  f.dequantize_rows(info, rows - 2, 2, two_rows.data());
  EXPECT_TRUE(std::equal(two_rows.begin(), two_rows.end(),
                         p.expected.end() - static_cast<std::ptrdiff_t>(2 * row)));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeType, ::testing::ValuesIn(kAllTypes),
                         [](const ::testing::TestParamInfo<TensorType>& info) {
                           return tensor_type_name(info.param);
                         });

TEST(Dequantize, BlockSizes) {
  EXPECT_EQ(block_bytes(TensorType::kQ4_0), 18u);
  EXPECT_EQ(block_bytes(TensorType::kQ4_1), 20u);
  EXPECT_EQ(block_bytes(TensorType::kQ5_0), 22u);
  EXPECT_EQ(block_bytes(TensorType::kQ5_1), 24u);
  EXPECT_EQ(block_bytes(TensorType::kQ8_0), 34u);
  EXPECT_EQ(block_bytes(TensorType::kQ4_K), 144u);
  EXPECT_EQ(block_bytes(TensorType::kQ5_K), 176u);
  EXPECT_EQ(block_bytes(TensorType::kQ6_K), 210u);
  EXPECT_THROW(block_bytes(TensorType::kQ2_K), FormatError);
  EXPECT_THROW(row_bytes(TensorType::kQ4_K, 100), FormatError);
  std::vector<float> out(16);
  std::vector<std::uint8_t> in(64);
  EXPECT_THROW(dequantize(TensorType::kQ8_0, in.data(), out.data(), 16), std::invalid_argument);
}

// Round trip through a simple float quantizer: the error stays within half a quantization step.
TEST(Dequantize, FloatQuantizerRoundTripQ8_0AndQ4_1) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist;
  std::vector<float> x(32 * 64);
  for (float& v : x) v = dist(rng);
  std::vector<std::uint8_t> q8, q41;
  std::vector<float> step8, step41;
  for (std::size_t b = 0; b < x.size() / 32; ++b) {
    const float* blk = &x[32 * b];
    float amax = 0, lo = blk[0], hi = blk[0];
    for (int i = 0; i < 32; ++i) {
      amax = std::max(amax, std::fabs(blk[i]));
      lo = std::min(lo, blk[i]);
      hi = std::max(hi, blk[i]);
    }
    const half_bits d8 = float_to_half(amax / 127.0f);
    q8.push_back(static_cast<std::uint8_t>(d8 & 0xff));
    q8.push_back(static_cast<std::uint8_t>(d8 >> 8));
    for (int i = 0; i < 32; ++i) {
      const float q = std::round(blk[i] / half_to_float(d8));
      q8.push_back(
          static_cast<std::uint8_t>(static_cast<std::int8_t>(std::clamp(q, -127.f, 127.f))));
    }
    const half_bits d4 = float_to_half((hi - lo) / 15.0f), m4 = float_to_half(lo);
    for (half_bits h : {d4, m4}) {
      q41.push_back(static_cast<std::uint8_t>(h & 0xff));
      q41.push_back(static_cast<std::uint8_t>(h >> 8));
    }
    int codes[32];
    for (int i = 0; i < 32; ++i) {
      const float q = std::round((blk[i] - half_to_float(m4)) / half_to_float(d4));
      codes[i] = static_cast<int>(std::clamp(q, 0.0f, 15.0f));
    }
    for (int i = 0; i < 16; ++i)
      q41.push_back(static_cast<std::uint8_t>(codes[i] | codes[i + 16] << 4));
    step8.push_back(half_to_float(d8));
    step41.push_back(half_to_float(d4));
  }
  std::vector<float> y8(x.size()), y41(x.size());
  dequantize(TensorType::kQ8_0, q8.data(), y8.data(), x.size());
  dequantize(TensorType::kQ4_1, q41.data(), y41.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    // Half a step plus slack for the fp16 rounding of the scale and min.
    EXPECT_LE(std::fabs(y8[i] - x[i]), 0.5f * step8[i / 32] * 1.01f + 1e-3f) << i;
    EXPECT_LE(std::fabs(y41[i] - x[i]), 0.5f * step41[i / 32] * 1.01f + 2e-3f) << i;
  }
}

}  // namespace
}  // namespace tq::gguf
