// AVX2 fast paths vs the scalar reference on fresh random inputs: quantization, scoring, value
// accumulation, sign sketches, for every bit width and both codec kinds.
#include "codec/codec_kernels.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/codec/bitpack.hpp"
#include "turboquant/codec/codebook.hpp"
#include "turboquant/codec/codec.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tq {
namespace {

class SimdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_avx2()) GTEST_SKIP() << "CPU has no AVX2/FMA/F16C";
  }
};

TEST_F(SimdTest, KernelsMatchScalarForEveryWidth) {
  Xoshiro256 rng(2024);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int count : {8, 24, 64, 128, 13}) {
      const Codebook& book = lloyd_max_codebook(128, bits);
      const std::vector<float> centroids(book.centroids.begin(), book.centroids.end());
      const std::vector<float> thresholds(book.thresholds.begin(), book.thresholds.end());
      const std::size_t n = 37;
      const std::size_t stride = packed_bytes(count, bits) + 4;  // tokens need not be adjacent
      std::vector<float> y(count), q(count), w(n);
      std::vector<std::uint8_t> idx_s(count), idx_v(count), codes(n * stride);
      for (auto& v : q) v = static_cast<float>(rng.gaussian());
      for (auto& v : w) v = static_cast<float>(rng.gaussian());
      for (std::size_t t = 0; t < n; ++t) {
        for (auto& v : y) v = static_cast<float>(rng.gaussian() / std::sqrt(128.0));
        // Include values exactly on a threshold: both paths must agree on ties.
        y[0] = thresholds[rng.next() % thresholds.size()];
        kernels::quantize_scalar(y.data(), count, thresholds.data(), bits, idx_s.data());
        kernels::quantize_avx2(y.data(), count, thresholds.data(), bits, idx_v.data());
        ASSERT_EQ(idx_s, idx_v) << "bits=" << bits << " count=" << count;
        pack_codes(idx_s.data(), count, bits, codes.data() + t * stride);
      }
      std::vector<float> dot_s(n, NAN), dot_v(n, NAN);
      kernels::segment_dot_scalar(q.data(), count, bits, centroids.data(), codes.data(), stride, n,
                                  dot_s.data());
      const float* q_row = q.data();
      kernels::segment_dot_multi_avx2(&q_row, 1, count, bits, centroids.data(), codes.data(),
                                      stride, n, dot_v.data(), n);
      for (std::size_t t = 0; t < n; ++t) {
        ASSERT_NEAR(dot_s[t], dot_v[t], 1e-5f * (1.0f + std::fabs(dot_s[t]))) << "bits=" << bits;
      }
      std::vector<float> acc_s(count, 0.5f), acc_v(count, 0.5f);
      kernels::segment_axpy_scalar(w.data(), count, bits, centroids.data(), codes.data(), stride, n,
                                   acc_s.data());
      const float* w_row = w.data();
      float* acc_row = acc_v.data();
      kernels::segment_axpy_multi_avx2(&w_row, 1, count, bits, centroids.data(), codes.data(),
                                       stride, n, &acc_row);
      for (int j = 0; j < count; ++j)
        ASSERT_NEAR(acc_s[j], acc_v[j], 1e-5f * (1.0f + std::fabs(acc_s[j])));
    }
  }
}

TEST_F(SimdTest, SignSketchMatchesScalar) {
  Xoshiro256 rng(7);
  for (int dim : {64, 128, 256, 20}) {
    const std::size_t n = 29, stride = packed_bytes(dim, 1);
    std::vector<float> sketch(dim);
    std::vector<std::uint8_t> signs(n * stride);
    for (auto& v : sketch) v = static_cast<float>(rng.gaussian());
    for (auto& b : signs) b = static_cast<std::uint8_t>(rng.next());
    std::vector<float> s(n, NAN), v(n, NAN);
    kernels::sign_dot_scalar(sketch.data(), dim, signs.data(), stride, n, s.data());
    kernels::sign_dot_avx2(sketch.data(), dim, signs.data(), stride, n, v.data());
    for (std::size_t t = 0; t < n; ++t) ASSERT_NEAR(s[t], v[t], 1e-4f) << "dim=" << dim;
  }
}

TEST_F(SimdTest, CodecEndToEndMatchesScalar) {
  for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
    for (double bits : {2.0, 2.5, 3.0, 3.5, 4.0, 6.0}) {
      CodecSpec s;
      s.dim = 128;
      s.bits = bits;
      s.kind = kind;
      s.seed = 5;
      Codec scalar(s), fast(s);
      scalar.set_simd(SimdLevel::Scalar);
      fast.set_simd(SimdLevel::Avx2);
      const std::size_t n = 64;
      Xoshiro256 rng(static_cast<std::uint64_t>(bits * 7));
      std::vector<float> x(n * 128), q(128), w(n);
      for (auto& v : x) v = static_cast<float>(rng.gaussian());
      for (auto& v : q) v = static_cast<float>(rng.gaussian());
      for (auto& v : w) v = static_cast<float>(rng.uniform());
      EncodedBatch a(scalar.layout(), n), b(fast.layout(), n);
      scalar.encode(x.data(), n, a.view());
      fast.encode(x.data(), n, b.view());
      const std::size_t code_bytes = n * scalar.layout().code_bytes;
      ASSERT_TRUE(std::equal(a.view().codes, a.view().codes + code_bytes, b.view().codes));
      std::vector<float> sa(n), sb(n);
      scalar.score(scalar.prepare_query(q.data()), a.view(), n, sa.data());
      fast.score(fast.prepare_query(q.data()), a.view(), n, sb.data());
      for (std::size_t t = 0; t < n; ++t)
        ASSERT_NEAR(sa[t], sb[t], 1e-4f * (1.0f + std::fabs(sa[t])));
      ValueAccumulator acc_a = scalar.make_accumulator(), acc_b = fast.make_accumulator();
      scalar.accumulate(w.data(), a.view(), n, acc_a);
      fast.accumulate(w.data(), a.view(), n, acc_b);
      for (int j = 0; j < 128; ++j) ASSERT_NEAR(acc_a.rotated[j], acc_b.rotated[j], 1e-4f);
    }
  }
}

}  // namespace
}  // namespace tq

namespace tq {
namespace {

TEST_F(SimdTest, MultiQueryKernelsMatchScalar) {
  Xoshiro256 rng(99);
  for (int bits = 1; bits <= 5; ++bits) {
    for (int n_queries : {1, 2, 4, 8, 11}) {
      const int count = 64;
      const Codebook& book = lloyd_max_codebook(64, bits);
      const std::vector<float> centroids(book.centroids.begin(), book.centroids.end());
      const std::size_t n = 75, stride = packed_bytes(count, bits);
      std::vector<std::uint8_t> idx(count), codes(n * stride);
      for (std::size_t t = 0; t < n; ++t) {
        for (auto& c : idx) c = static_cast<std::uint8_t>(rng.next() % (1u << bits));
        pack_codes(idx.data(), count, bits, codes.data() + t * stride);
      }
      std::vector<float> qs(n_queries * count), ws(n_queries * n);
      for (auto& v : qs) v = static_cast<float>(rng.gaussian());
      for (auto& v : ws) v = static_cast<float>(rng.gaussian());
      std::vector<const float*> q(n_queries), w(n_queries);
      std::vector<float> acc_s(n_queries * count, 0.25f), acc_v(n_queries * count, 0.25f);
      std::vector<float*> as(n_queries), av(n_queries);
      for (int i = 0; i < n_queries; ++i) {
        q[i] = qs.data() + i * count;
        w[i] = ws.data() + i * n;
        as[i] = acc_s.data() + i * count;
        av[i] = acc_v.data() + i * count;
      }
      std::vector<float> out_s(n_queries * n, NAN), out_v(n_queries * n, NAN);
      kernels::segment_dot_multi_scalar(q.data(), n_queries, count, bits, centroids.data(),
                                        codes.data(), stride, n, out_s.data(), n);
      kernels::segment_dot_multi_avx2(q.data(), n_queries, count, bits, centroids.data(),
                                      codes.data(), stride, n, out_v.data(), n);
      for (std::size_t k = 0; k < out_s.size(); ++k) {
        ASSERT_NEAR(out_s[k], out_v[k], 1e-5f * (1.0f + std::fabs(out_s[k])))
            << "bits=" << bits << " nq=" << n_queries;
      }
      kernels::segment_axpy_multi_scalar(w.data(), n_queries, count, bits, centroids.data(),
                                         codes.data(), stride, n, as.data());
      kernels::segment_axpy_multi_avx2(w.data(), n_queries, count, bits, centroids.data(),
                                       codes.data(), stride, n, av.data());
      for (std::size_t k = 0; k < acc_s.size(); ++k) {
        ASSERT_NEAR(acc_s[k], acc_v[k], 1e-4f * (1.0f + std::fabs(acc_s[k])))
            << "bits=" << bits << " nq=" << n_queries;
      }
    }
  }
}

}  // namespace
}  // namespace tq
