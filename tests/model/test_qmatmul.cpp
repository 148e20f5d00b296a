// Quantized matmul (src/model/qmatmul.*) against dequantize-then-fp64 references on random GGUF
// blocks of every kernel type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K; BF16, Q4_K and
// Q6_K only have the scalar path, so their AVX2 level must route there): gemv (one token) and the
// tiled gemm (several tokens, leading dimensions, bias, accumulation, two threads), scalar == AVX2,
// block dequantization, the fp32 fallback for a type without a kernel (Q5_K), and a corrupted
// kernel result that the comparison must catch.
#include <gtest/gtest.h>

#include "random_blocks.hpp"
#include "random_inputs.hpp"
#include "reference_matmul.hpp"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model/qmatmul.hpp"

namespace {

using tq::gguf::TensorType;

using tq::testing::random_blocks;
using tq::testing::random_normal_vector;

struct Case {
  TensorType type;
  const char* name;
};

const Case kCases[] = {{TensorType::kF32, "F32"},   {TensorType::kF16, "F16"},
                       {TensorType::kBF16, "BF16"}, {TensorType::kQ4_0, "Q4_0"},
                       {TensorType::kQ4_1, "Q4_1"}, {TensorType::kQ8_0, "Q8_0"},
                       {TensorType::kQ4_K, "Q4_K"}, {TensorType::kQ6_K, "Q6_K"},
                       {TensorType::kQ5_0, "Q5_0"}, {TensorType::kQ5_K, "Q5_K (fp32 fallback)"}};

using tq::testing::max_rel_error;
using tq::testing::reference_matmul;

std::vector<tq::SimdLevel> levels() {
  std::vector<tq::SimdLevel> v = {tq::SimdLevel::Scalar};
  if (tq::cpu_has_avx2()) v.push_back(tq::SimdLevel::Avx2);
  return v;
}

constexpr int kRows = 200;  // output rows: not a multiple of the 16-row thread slices
constexpr int kCols = 512;  // inner dimension: 16 blocks of 32, 2 K-quant super-blocks
constexpr double kTol = 1e-5;

TEST(QMatmul, MakeMatrixKeepsKernelTypesAndDequantizesOthers) {
  for (const Case& c : kCases) {
    const auto raw = random_blocks(c.type, kRows, kCols, 7);
    const tq::WeightMatrix w = tq::qmm::make_matrix(c.type, kRows, kCols, raw.data());
    const bool kernel = c.type != TensorType::kQ5_K;
    EXPECT_EQ(tq::qmm::has_kernel(c.type), kernel) << c.name;
    EXPECT_EQ(w.type, kernel ? c.type : TensorType::kF32) << c.name;
    EXPECT_EQ(w.bytes(), kernel ? raw.size() : sizeof(float) * kRows * kCols) << c.name;
    std::vector<float> want(static_cast<std::size_t>(kRows) * kCols), row(kCols);
    tq::gguf::dequantize(c.type, raw.data(), want.data(), want.size());
    for (int r : {0, 57, kRows - 1}) {
      w.dequantize_row(r, row.data());
      for (int k = 0; k < kCols; ++k) {
        ASSERT_NEAR(row[k], want[static_cast<std::size_t>(r) * kCols + k],
                    1e-6f * std::fabs(want[static_cast<std::size_t>(r) * kCols + k]))
            << c.name << " row " << r << " col " << k;
      }
    }
  }
  EXPECT_THROW(tq::qmm::allocate_matrix(TensorType::kQ5_K, 4, 256), std::invalid_argument);
  EXPECT_FALSE(tq::qmm::has_kernel(TensorType::kQ5_K));
  EXPECT_TRUE(tq::qmm::has_avx2_kernel(TensorType::kQ5_0));
  EXPECT_FALSE(tq::qmm::has_avx2_kernel(TensorType::kQ4_K));
}

TEST(QMatmul, DequantizeRowsScalarEqualsAvx2) {
  if (!tq::cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  for (const Case& c : kCases) {
    const auto raw = random_blocks(c.type, kRows, kCols, 8);
    const tq::WeightMatrix w = tq::qmm::make_matrix(c.type, kRows, kCols, raw.data());
    std::vector<float> a(static_cast<std::size_t>(20) * kCols), b(a.size());
    tq::qmm::dequantize_rows(w, 30, 20, a.data(), tq::SimdLevel::Scalar);
    tq::qmm::dequantize_rows(w, 30, 20, b.data(), tq::SimdLevel::Avx2);
    for (std::size_t i = 0; i < a.size(); ++i) {
      // Q4_1 is q·d + m: one fused multiply-add on AVX2, two roundings in the scalar loop.
      ASSERT_NEAR(a[i], b[i], 1e-6f * std::fabs(a[i])) << c.name << " at " << i;
    }
  }
}

TEST(QMatmul, GemvMatchesReference) {
  for (const Case& c : kCases) {
    const auto raw = random_blocks(c.type, kRows, kCols, 11);
    const tq::WeightMatrix w = tq::qmm::make_matrix(c.type, kRows, kCols, raw.data());
    std::vector<float> deq(static_cast<std::size_t>(kRows) * kCols);
    tq::gguf::dequantize(c.type, raw.data(), deq.data(), deq.size());
    const auto x = random_normal_vector(kCols, 12);
    const auto bias = random_normal_vector(kRows, 13);
    const auto y0 = random_normal_vector(kRows, 14);
    for (const tq::SimdLevel simd : levels()) {
      for (int threads : {1, 2}) {
        for (int variant = 0; variant < 3; ++variant) {  // plain, bias, accumulate
          const float* b = variant == 1 ? bias.data() : nullptr;
          const bool acc = variant == 2;
          std::vector<float> y = acc ? y0 : std::vector<float>(kRows, 99.0f);
          tq::qmm::matmul(x.data(), 1, kCols, w, b, y.data(), kRows, threads, acc, simd);
          std::vector<double> want, mag;
          reference_matmul(deq, kRows, kCols, x.data(), 1, kCols, b, acc ? y0.data() : nullptr,
                           kRows, want, mag);
          EXPECT_LT(max_rel_error(y, want, mag, 1, kRows, kRows), kTol)
              << c.name << " simd " << static_cast<int>(simd) << " threads " << threads
              << " variant " << variant;
        }
      }
    }
  }
}

TEST(QMatmul, GemmMatchesReference) {
  constexpr int kTokens = 7, kLdx = kCols + 5, kLdy = kRows + 3;
  for (const Case& c : kCases) {
    const auto raw = random_blocks(c.type, kRows, kCols, 21);
    const tq::WeightMatrix w = tq::qmm::make_matrix(c.type, kRows, kCols, raw.data());
    std::vector<float> deq(static_cast<std::size_t>(kRows) * kCols);
    tq::gguf::dequantize(c.type, raw.data(), deq.data(), deq.size());
    const auto x = random_normal_vector(static_cast<std::size_t>(kTokens) * kLdx, 22);
    const auto bias = random_normal_vector(kRows, 23);
    const auto y0 = random_normal_vector(static_cast<std::size_t>(kTokens) * kLdy, 24);
    for (const tq::SimdLevel simd : levels()) {
      for (int threads : {1, 2}) {
        for (int variant = 0; variant < 3; ++variant) {
          const float* b = variant == 1 ? bias.data() : nullptr;
          const bool acc = variant == 2;
          std::vector<float> y = acc ? y0 : std::vector<float>(y0.size(), 99.0f);
          tq::qmm::matmul(x.data(), kTokens, kLdx, w, b, y.data(), kLdy, threads, acc, simd);
          std::vector<double> want, mag;
          reference_matmul(deq, kRows, kCols, x.data(), kTokens, kLdx, b, acc ? y0.data() : nullptr,
                           kLdy, want, mag);
          EXPECT_LT(max_rel_error(y, want, mag, kTokens, kRows, kLdy), kTol)
              << c.name << " simd " << static_cast<int>(simd) << " threads " << threads
              << " variant " << variant;
        }
      }
    }
  }
}

TEST(QMatmul, GemvScalarEqualsAvx2) {
  if (!tq::cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  for (const Case& c : kCases) {
    const auto raw = random_blocks(c.type, kRows, kCols, 31);
    const tq::WeightMatrix w = tq::qmm::make_matrix(c.type, kRows, kCols, raw.data());
    const auto x = random_normal_vector(kCols, 32);
    std::vector<float> a(kRows), b(kRows), mag(kRows);
    tq::qmm::gemv_rows(w, x.data(), 0, kRows, a.data(), tq::SimdLevel::Scalar);
    tq::qmm::gemv_rows(w, x.data(), 0, kRows, b.data(), tq::SimdLevel::Avx2);
    std::vector<float> row(kCols);
    for (int r = 0; r < kRows; ++r) {
      w.dequantize_row(r, row.data());
      double m = 0.0;
      for (int k = 0; k < kCols; ++k) m += std::fabs(row[k] * x[k]);
      EXPECT_LE(std::fabs(a[r] - b[r]), kTol * m) << c.name << " row " << r;
    }
  }
}

// The comparison must notice a kernel that is wrong in one row: perturb one output by a relative
// 1e-3 of its magnitude and expect the check to fail.
TEST(QMatmul, ComparisonCatchesAWrongRow) {
  const auto raw = random_blocks(TensorType::kQ4_1, kRows, kCols, 41);
  const tq::WeightMatrix w = tq::qmm::make_matrix(TensorType::kQ4_1, kRows, kCols, raw.data());
  std::vector<float> deq(static_cast<std::size_t>(kRows) * kCols);
  tq::gguf::dequantize(TensorType::kQ4_1, raw.data(), deq.data(), deq.size());
  const auto x = random_normal_vector(kCols, 42);
  std::vector<float> y(kRows);
  tq::qmm::matmul(x.data(), 1, kCols, w, nullptr, y.data(), kRows, 1);
  std::vector<double> want, mag;
  reference_matmul(deq, kRows, kCols, x.data(), 1, kCols, nullptr, nullptr, kRows, want, mag);
  ASSERT_LT(max_rel_error(y, want, mag, 1, kRows, kRows), kTol);
  y[77] += static_cast<float>(1e-3 * mag[77]);
  EXPECT_GT(max_rel_error(y, want, mag, 1, kRows, kRows), kTol);
}

}  // namespace
