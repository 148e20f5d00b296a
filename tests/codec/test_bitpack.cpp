// Bit packing: round trips for every width and odd lengths, the documented layout, errors.
#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/codec/bitpack.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace tq {
namespace {

TEST(BitPack, RoundTripEveryWidthAndOddLengths) {
  Xoshiro256 rng(11);
  for (int bits = 1; bits <= 8; ++bits) {
    for (std::size_t count : {1u, 3u, 7u, 31u, 33u, 64u, 97u, 128u, 255u}) {
      std::vector<std::uint8_t> codes(count), back(count);
      for (auto& c : codes) c = static_cast<std::uint8_t>(rng.next() & ((1u << bits) - 1u));
      std::vector<std::uint8_t> packed(packed_bytes(count, bits) + 8, 0xAB);  // poison + guard
      pack_codes(codes.data(), count, bits, packed.data());
      unpack_codes(packed.data(), count, bits, back.data());
      ASSERT_EQ(back, codes) << "bits=" << bits << " count=" << count;
      for (std::size_t j = 0; j < count; ++j)
        ASSERT_EQ(read_code(packed.data(), j, bits), codes[j]);
      // Guard bytes after the segment are untouched; the segment is whole 32-bit words.
      for (std::size_t g = packed_bytes(count, bits); g < packed.size(); ++g)
        ASSERT_EQ(packed[g], 0xAB);
      EXPECT_EQ(packed_bytes(count, bits) % 4, 0u);
    }
  }
}

TEST(BitPack, DocumentedLsbFirstLayout) {
  // 3-bit codes 1..8 (mod 8): code j at stream bits [3j, 3j+3), LSB first.
  const std::vector<std::uint8_t> codes = {1, 2, 3, 4, 5, 6, 7, 0, 5, 3, 6};
  std::vector<std::uint8_t> packed(packed_bytes(codes.size(), 3));
  pack_codes(codes.data(), codes.size(), 3, packed.data());
  std::uint64_t stream = 0;
  for (std::size_t j = 0; j < codes.size(); ++j)
    stream |= static_cast<std::uint64_t>(codes[j]) << (3 * j);
  for (std::size_t byte = 0; byte < packed.size(); ++byte) {
    EXPECT_EQ(packed[byte], static_cast<std::uint8_t>(stream >> (8 * byte))) << "byte " << byte;
  }
  // Eight 3-bit codes occupy exactly 3 whole bytes.
  EXPECT_EQ(packed_bytes(8, 3), 4u);
  EXPECT_EQ(packed_bytes(128, 3), 48u);
  EXPECT_EQ(packed_bytes(64, 4), 32u);
}

TEST(BitPack, RejectsBadArguments) {
  std::uint8_t code = 4, out[4];
  EXPECT_THROW(pack_codes(&code, 1, 2, out), std::invalid_argument);  // 4 does not fit in 2 bits
  EXPECT_THROW(packed_bytes(10, 0), std::invalid_argument);
  EXPECT_THROW(packed_bytes(10, 9), std::invalid_argument);
}

TEST(Half, RoundTripAndRounding) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(1e6f), 0x7c00);
  EXPECT_EQ(float_to_half(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 2048.0f), 0x3c00);   // tie rounds to even
  EXPECT_EQ(float_to_half(1.0f + 3.0f / 2048.0f), 0x3c02);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
  // Every finite half survives half -> float -> half.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    ASSERT_EQ(float_to_half(half_to_float(static_cast<half_bits>(h))), h) << std::hex << h;
  }
  // Random floats: the result is the nearest half.
  Xoshiro256 rng(3);
  for (int i = 0; i < 20000; ++i) {
    const float x = static_cast<float>(rng.gaussian() * 10.0);
    const half_bits h = float_to_half(x);
    const float y = half_to_float(h);
    const float up = half_to_float(static_cast<half_bits>(h + 1));
    const float down = half_to_float(static_cast<half_bits>(h - 1));
    ASSERT_LE(std::fabs(x - y), std::fabs(x - up));
    ASSERT_LE(std::fabs(x - y), std::fabs(x - down));
  }
}

}  // namespace
}  // namespace tq
