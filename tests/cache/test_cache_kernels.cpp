// The cache's token kernels, AVX2 against the scalar reference on random inputs: the exact path
// (fp16 dot / axpy, softmax numerator; src/cache/exact_kernels.hpp) and the block int8 / int4
// baselines q8_0 / q4_0 (src/cache/block_int.hpp), for dims that are and are not a multiple of
// 8 and of 32.
#include "cache/block_int.hpp"
#include "cache/exact_kernels.hpp"
#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/base/simd.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace tq {
namespace {

class CacheKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_avx2()) GTEST_SKIP() << "CPU has no AVX2/FMA/F16C";
  }
  Xoshiro256 rng_{31};

  std::vector<float> gaussian(std::size_t n, double sd = 1.0) {
    std::vector<float> x(n);
    for (auto& v : x) v = static_cast<float>(rng_.gaussian() * sd);
    return x;
  }
};

constexpr int kDims[] = {8, 64, 96, 128, 13, 20};
constexpr std::size_t kTokens = 45;  // more than one 32-token tile of the axpys

TEST_F(CacheKernelsTest, Fp16DotAndAxpyMatchScalar) {
  const exact::Kernels& scalar = exact::scalar_kernels();
  const exact::Kernels& fast = exact::avx2_kernels();
  for (int dim : kDims) {
    const std::vector<float> values = gaussian(kTokens * dim), q = gaussian(dim),
                             w = gaussian(kTokens);
    std::vector<half_bits> rows(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) rows[i] = float_to_half(values[i]);
    std::vector<float> dot_s(kTokens, NAN), dot_v(kTokens, NAN);
    scalar.fp16_dot(q.data(), dim, rows.data(), kTokens, dot_s.data());
    fast.fp16_dot(q.data(), dim, rows.data(), kTokens, dot_v.data());
    for (std::size_t t = 0; t < kTokens; ++t) {
      ASSERT_NEAR(dot_s[t], dot_v[t], 1e-5f * (1.0f + std::fabs(dot_s[t]))) << "dim=" << dim;
    }
    std::vector<float> acc_s(dim, 0.5f), acc_v(dim, 0.5f);
    scalar.fp16_axpy(w.data(), dim, rows.data(), kTokens, acc_s.data());
    fast.fp16_axpy(w.data(), dim, rows.data(), kTokens, acc_v.data());
    for (int j = 0; j < dim; ++j) {
      ASSERT_NEAR(acc_s[j], acc_v[j], 1e-5f * (1.0f + std::fabs(acc_s[j]))) << "dim=" << dim;
    }
  }
}

TEST_F(CacheKernelsTest, SoftmaxNumeratorMatchesScalar) {
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{100}}) {
    for (float scale : {0.125f, 1.0f, 30.0f}) {  // 30: most terms underflow to 0
      const std::vector<float> scores = gaussian(n, 3.0);
      std::vector<float> s = scores, v = scores;
      const float sum_s = exact::scalar_kernels().softmax_exp(s.data(), n, scale);
      const float sum_v = exact::avx2_kernels().softmax_exp(v.data(), n, scale);
      // The AVX2 path forms scale·s − max with one FMA (no rounding of scale·s), so its exponent
      // may differ by half an ulp of scale·s; its exp polynomial adds ~1e-7 relative.
      float max_abs = 0.0f;
      for (float x : scores) max_abs = std::max(max_abs, std::fabs(x));
      const float tolerance = 1e-6f + 1.2e-7f * scale * max_abs;
      ASSERT_NEAR(sum_s, sum_v, tolerance * static_cast<float>(n))
          << "n=" << n << " scale=" << scale;
      for (std::size_t t = 0; t < n; ++t) {
        ASSERT_NEAR(s[t], v[t], tolerance) << "n=" << n << " scale=" << scale << " t=" << t;
        ASSERT_LE(v[t], 1.0f + tolerance);  // the maximum maps to exp(0)
      }
    }
  }
}

TEST_F(CacheKernelsTest, BlockIntDotAndAxpyMatchScalar) {
  const blockint::Kernels& scalar = blockint::scalar_kernels();
  const blockint::Kernels& fast = blockint::avx2_kernels();
  for (bool four : {false, true}) {
    for (int dim : kDims) {
      const std::vector<float> values = gaussian(kTokens * dim), q = gaussian(dim),
                               w = gaussian(kTokens);
      const blockint::Format format = four ? blockint::Format::Q4_0 : blockint::Format::Q8_0;
      const std::size_t row_bytes = blockint::row_code_bytes(format, dim);
      const std::size_t blocks = static_cast<std::size_t>(blockint::num_blocks(dim));
      std::vector<std::uint8_t> codes(kTokens * row_bytes);
      std::vector<half_bits> scales(kTokens * blocks);
      for (std::size_t t = 0; t < kTokens; ++t) {
        blockint::quantize(format, values.data() + t * dim, dim, codes.data() + t * row_bytes,
                           scales.data() + t * blocks);
      }
      std::vector<float> dot_s(kTokens, NAN), dot_v(kTokens, NAN);
      (four ? scalar.int4_dot : scalar.int8_dot)(q.data(), dim, codes.data(), scales.data(),
                                                 kTokens, dot_s.data());
      (four ? fast.int4_dot : fast.int8_dot)(q.data(), dim, codes.data(), scales.data(), kTokens,
                                             dot_v.data());
      for (std::size_t t = 0; t < kTokens; ++t) {
        ASSERT_NEAR(dot_s[t], dot_v[t], 1e-5f * (1.0f + std::fabs(dot_s[t])))
            << (four ? "int4" : "int8") << " dim=" << dim;
      }
      std::vector<float> acc_s(dim, 0.5f), acc_v(dim, 0.5f);
      (four ? scalar.int4_axpy : scalar.int8_axpy)(w.data(), dim, codes.data(), scales.data(),
                                                   kTokens, acc_s.data());
      (four ? fast.int4_axpy : fast.int8_axpy)(w.data(), dim, codes.data(), scales.data(), kTokens,
                                               acc_v.data());
      for (int j = 0; j < dim; ++j) {
        ASSERT_NEAR(acc_s[j], acc_v[j], 1e-5f * (1.0f + std::fabs(acc_s[j])))
            << (four ? "int4" : "int8") << " dim=" << dim;
      }
    }
  }
}

}  // namespace
}  // namespace tq
