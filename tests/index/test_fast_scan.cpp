// Fast scan: AVX2 == scalar on random codes and tables (odd and even dimensions, partial last
// block), the scalar sums against a plain unpacked computation, and the quantized score's error
// against the float table within the quantization bound.
#include "turboquant/index/fast_scan.hpp"

#include "thrown_message.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/base/simd.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tq::index {
namespace {

struct Case {
  std::vector<std::uint8_t> codes;
  std::vector<float> lut;
};

Case random_case(std::size_t n, int dim, std::uint64_t seed) {
  Xoshiro256 rng(seed);
  Case c;
  c.codes.resize(n * dim);
  for (auto& v : c.codes) v = static_cast<std::uint8_t>(rng.next() & 15);
  c.lut.resize(static_cast<std::size_t>(dim) * 16);
  for (auto& v : c.lut) v = static_cast<float>(rng.gaussian());
  return c;
}

TEST(FastScan, ScalarMatchesUnpackedSumsAndFloatScores) {
  for (int dim : {2, 7, 64, 576}) {
    const std::size_t n = 77;
    const Case c = random_case(n, dim, 100 + dim);
    const auto blocks = pack_fast_scan_blocks(c.codes.data(), n, dim);
    const QuantizedLut q = quantize_lut(c.lut.data(), dim);
    std::vector<std::uint16_t> sums((n + 31) / 32 * 32);
    fast_scan_scalar(blocks.data(), (n + 31) / 32, q, sums.data());
    for (std::size_t v = 0; v < n; ++v) {
      unsigned expect = 0;
      double exact = 0.0;
      for (int j = 0; j < dim; ++j) {
        expect += q.table[j * 16 + c.codes[v * dim + j]];
        exact += c.lut[j * 16 + c.codes[v * dim + j]];
      }
      ASSERT_EQ(sums[v], expect) << dim << " " << v;
      // Each entry is rounded by at most scale/2.
      EXPECT_NEAR(q.bias + q.scale * sums[v], exact, 0.5 * q.scale * dim + 1e-4) << dim;
    }
  }
}

TEST(FastScan, Avx2MatchesScalar) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  for (int dim : {2, 3, 16, 63, 128, 576, 1024}) {
    for (std::size_t n : {std::size_t{1}, std::size_t{32}, std::size_t{95}}) {
      const Case c = random_case(n, dim, dim * 1000 + n);
      const auto blocks = pack_fast_scan_blocks(c.codes.data(), n, dim);
      const QuantizedLut q = quantize_lut(c.lut.data(), dim);
      const std::size_t nb = (n + 31) / 32;
      std::vector<std::uint16_t> a(nb * 32), b(nb * 32, 0xffff);
      fast_scan_scalar(blocks.data(), nb, q, a.data());
      fast_scan_avx2(blocks.data(), nb, q, b.data());
      ASSERT_EQ(a, b) << "dim " << dim << " n " << n;
    }
  }
}

// The whole-block writer gives the bytes of 32 single-vector writes (odd dim: the padding
// dimension zero), whatever the block held before.
TEST(FastScan, SetBlockMatchesPerVectorSets) {
  for (int dim : {33, 64, 577}) {
    const Case c = random_case(32, dim, 40 + dim);
    const std::size_t bb = fast_scan_block_bytes(dim);
    std::vector<std::uint8_t> ref(bb, 0), fast(bb, 0xA5);
    for (std::size_t v = 0; v < 32; ++v)
      fast_scan_set(ref.data(), v, dim, c.codes.data() + v * dim);
    fast_scan_set_block(fast.data(), dim, c.codes.data());
    EXPECT_EQ(fast, ref) << "dim=" << dim;
  }
  std::vector<std::uint8_t> codes(32 * 8, 3), block(fast_scan_block_bytes(8));
  codes[5 * 8 + 2] = 16;
  const std::string e =
      tq::tests::thrown_message([&] { fast_scan_set_block(block.data(), 8, codes.data()); });
  EXPECT_NE(e.find("code 16 of block vector 5"), std::string::npos) << e;
}

TEST(FastScan, BadInputsAreClearErrors) {
  const std::vector<std::uint8_t> codes = {3, 16};
  EXPECT_NE(
      tq::tests::thrown_message([&] { pack_fast_scan_blocks(codes.data(), 1, 2); }).find("code 16"),
      std::string::npos);
  std::vector<float> lut(32, 0.0f);
  lut[5] = NAN;
  EXPECT_NE(tq::tests::thrown_message([&] { quantize_lut(lut.data(), 2); }).find("[0][5]"),
            std::string::npos);
}

}  // namespace
}  // namespace tq::index
