// Codec statistics and behaviour: measured distortion vs the codebooks' exact expectation, prod
// unbiasedness vs mse shrinkage, prepared-query scoring == decode-then-dot, value accumulation,
// fractional bits, norm correction, argument errors — and negative controls showing that the
// statistical checks fail when the codec is deliberately broken.
#include "turboquant/base/random.hpp"
#include "turboquant/codec/codec.hpp"
#include "turboquant/codec/distortion.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

namespace tq {
namespace {

constexpr std::size_t kVectors = 20000;

// The acceptance checks, as predicates so that the negative controls can show they fail.
bool mse_matches_theory(const DistortionReport& r) {
  return std::fabs(r.mse - r.mse_theory) <= 0.03 * r.mse_theory;
}
bool unbiased(const DistortionReport& r) {
  return std::fabs(r.ip_bias) <= 4.0 * r.ip_bias_stderr &&
         std::fabs(r.ip_slope - 1.0) <= 4.0 * r.ip_slope_stderr + 0.003;
}

// The distortion report of reconstructions `recon` of the n unit vectors `x` (d·MSE per vector
// against the codec's expectation), for the negative controls.
DistortionReport mse_report(const Codec& codec, const std::vector<float>& x,
                            const std::vector<float>& recon, std::size_t n) {
  double err = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) err += (x[i] - recon[i]) * (x[i] - recon[i]);
  DistortionReport report;
  report.mse = err / static_cast<double>(n);
  report.mse_theory = codec.expected_unit_vector_mse();
  return report;
}

CodecSpec spec(int dim, double bits, CodecKind kind = CodecKind::Mse,
               RotationKind rot = RotationKind::Hadamard) {
  CodecSpec s;
  s.dim = dim;
  s.bits = bits;
  s.kind = kind;
  s.rotation = rot;
  s.seed = 1234 + dim + static_cast<int>(bits * 10);
  return s;
}

TEST(CodecDistortion, MseMatchesCodebookExpectation) {
  const double reference[3][4] = {{0.3584, 0.1145, 0.03339, 0.00913},
                                  {0.3609, 0.1160, 0.03397, 0.00931},
                                  {0.3621, 0.1167, 0.03426, 0.00941}};
  const int dims[3] = {64, 128, 256};
  for (int i = 0; i < 3; ++i) {
    for (int b = 1; b <= 4; ++b) {
      const Codec codec(spec(dims[i], b));
      const DistortionReport r = measure_distortion(codec, kVectors, 77 + b);
      EXPECT_TRUE(mse_matches_theory(r))
          << "d=" << dims[i] << " b=" << b << " measured " << r.mse << " expected " << r.mse_theory;
      EXPECT_NEAR(r.mse, reference[i][b - 1], 0.03 * reference[i][b - 1]);
      EXPECT_NEAR(r.bits_per_value, b + 16.0 / dims[i], 1e-12);
    }
  }
}

TEST(CodecDistortion, HaarMatchesHadamard) {
  const Codec codec(spec(96, 3, CodecKind::Mse, RotationKind::Haar));
  const DistortionReport r = measure_distortion(codec, 5000, 3);
  EXPECT_TRUE(mse_matches_theory(r)) << r.mse << " vs " << r.mse_theory;
}

TEST(CodecDistortion, ProdIsUnbiasedAndMseShrinks) {
  // prod at every b: mean signed error on correlated pairs indistinguishable from 0, slope 1.
  const double expected_ip[4] = {1.571, 0.567, 0.182, 0.053};
  for (int b = 1; b <= 4; ++b) {
    const Codec codec(spec(128, b, CodecKind::Prod));
    const DistortionReport r = measure_distortion(codec, 8000, 500 + b);
    EXPECT_TRUE(unbiased(r)) << "prod b=" << b << " bias " << r.ip_bias << " ± " << r.ip_bias_stderr
                             << " slope " << r.ip_slope << " ± " << r.ip_slope_stderr;
    EXPECT_NEAR(r.ip_distortion, expected_ip[b - 1], 0.06 * expected_ip[b - 1]) << "prod b=" << b;
    EXPECT_NEAR(r.ip_distortion, r.ip_theory, 0.06 * r.ip_theory) << "prod b=" << b;
    EXPECT_NEAR(r.bits_per_value, b + 32.0 / 128, 1e-12);
  }
  // mse at b = 1 scales inner products by 2/π: clearly biased.
  const DistortionReport mse1 = measure_distortion(Codec(spec(128, 1)), 8000, 9);
  EXPECT_FALSE(unbiased(mse1));
  EXPECT_NEAR(mse1.ip_slope, 2.0 / M_PI, 0.01);
}

TEST(CodecDistortion, FractionalBitsSitBetweenNeighbours) {
  const double d3 = measure_distortion(Codec(spec(128, 3)), 4000, 1).mse;
  const double d4 = measure_distortion(Codec(spec(128, 4)), 4000, 1).mse;
  const Codec c35(spec(128, 3.5));
  EXPECT_EQ(c35.layout().hi_count, 64);
  EXPECT_EQ(c35.layout().hi_bits, 4);
  EXPECT_EQ(c35.layout().lo_bits, 3);
  EXPECT_NEAR(c35.layout().bits_per_value(), 3.5 + 16.0 / 128, 1e-12);
  const DistortionReport r = measure_distortion(c35, 4000, 1);
  EXPECT_TRUE(mse_matches_theory(r)) << r.mse << " vs " << r.mse_theory;
  EXPECT_NEAR(r.mse_theory, 0.5 * (d3 + d4), 0.02 * (d3 + d4));
  const Codec c25(spec(64, 2.5));
  EXPECT_TRUE(mse_matches_theory(measure_distortion(c25, 4000, 2)));
  EXPECT_EQ(Codec(spec(128, 3.25)).layout().hi_count, 32);
}

// --- Negative controls: the same predicates on deliberately broken codecs must fail. ---

TEST(CodecNegativeControl, CorruptedPackingFailsTheDistortionCheck) {
  // Emulate the racy-packing bug seen in a public port: one bit of every 32-bit code word lost.
  const Codec codec(spec(128, 4));
  const std::size_t n = 4000;
  std::vector<float> x(n * 128), recon(n * 128);
  random_unit_vectors(n, 128, 8, x.data());
  EncodedBatch batch(codec.layout(), n);
  codec.encode(x.data(), n, batch.view());
  for (std::size_t i = 0; i < n * codec.layout().code_bytes; i += 4) batch.view().codes[i] &= 0xFE;
  codec.decode(batch.view(), n, recon.data());
  const DistortionReport broken = mse_report(codec, x, recon, n);
  EXPECT_FALSE(mse_matches_theory(broken)) << "corrupted codes gave " << broken.mse;
}

TEST(CodecNegativeControl, WrongInverseRotationFailsTheDistortionCheck) {
  // Decoding with Π instead of Πᵀ (the H·D vs D·H trap) must be caught.
  const Codec codec(spec(128, 4));
  const std::size_t n = 2000;
  std::vector<float> x(n * 128), rotated(n * 128), recon(n * 128);
  random_unit_vectors(n, 128, 8, x.data());
  EncodedBatch batch(codec.layout(), n);
  codec.encode(x.data(), n, batch.view());
  codec.decode(batch.view(), n, recon.data());
  codec.rotation().apply(recon.data(), rotated.data(), n);  // back to the rotated domain
  codec.rotation().apply(rotated.data(), recon.data(), n);  // "inverse" with the wrong map
  const DistortionReport broken = mse_report(codec, x, recon, n);
  EXPECT_FALSE(mse_matches_theory(broken)) << "wrong inverse gave " << broken.mse;
}

TEST(CodecNegativeControl, FlippedQjlSignsFailTheUnbiasednessCheck) {
  // Storing sign(−S r) instead of sign(S r) (or a wrong QJL scale) biases the estimator.
  const Codec codec(spec(128, 3, CodecKind::Prod));
  const std::size_t n = 4000;
  std::vector<float> x(n * 128), q(n * 128);
  random_unit_vectors(n, 128, 21, x.data());
  random_unit_vectors(n, 128, 22, q.data());
  EncodedBatch batch(codec.layout(), n);
  codec.encode(x.data(), n, batch.view());
  for (std::size_t i = 0; i < n * codec.layout().sign_bytes; ++i) batch.view().signs[i] ^= 0xFF;
  double sum = 0.0, sum_sq = 0.0;
  for (std::size_t v = 0; v < n; ++v) {
    std::vector<float> qc(128);
    double nn = 0.0, truth = 0.0;
    for (int j = 0; j < 128; ++j) {
      qc[j] = x[v * 128 + j] + q[v * 128 + j];
      nn += qc[j] * qc[j];
    }
    for (int j = 0; j < 128; ++j) {
      qc[j] = static_cast<float>(qc[j] / std::sqrt(nn));
      truth += qc[j] * x[v * 128 + j];
    }
    float est = 0.0f;
    codec.score(codec.prepare_query(qc.data()), batch.view().offset(v, codec.layout()), 1, &est);
    sum += est - truth;
    sum_sq += (est - truth) * (est - truth);
  }
  DistortionReport broken;
  broken.ip_bias = sum / n;
  broken.ip_bias_stderr = std::sqrt((sum_sq / n - broken.ip_bias * broken.ip_bias) / n);
  broken.ip_slope = 1.0;
  EXPECT_FALSE(unbiased(broken)) << "bias " << broken.ip_bias << " ± " << broken.ip_bias_stderr;
}

// --- Functional behaviour ---

TEST(Codec, ScoreEqualsDotWithDecodedVector) {
  for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
    for (double bits : {2.0, 2.5, 3.0, 4.0, 8.0}) {
      for (int dim : {64, 128}) {
        const Codec codec(spec(dim, bits, kind));
        const std::size_t n = 50;
        Xoshiro256 rng(static_cast<std::uint64_t>(bits * 100) + dim);
        std::vector<float> x(n * dim), q(dim), recon(n * dim), scores(n, NAN);
        for (auto& v : x) v = static_cast<float>(rng.gaussian() * 3.0);
        for (auto& v : q) v = static_cast<float>(rng.gaussian());
        EncodedBatch batch(codec.layout(), n);
        codec.encode(x.data(), n, batch.view());
        codec.decode(batch.view(), n, recon.data());
        codec.score(codec.prepare_query(q.data()), batch.view(), n, scores.data());
        for (std::size_t t = 0; t < n; ++t) {
          double dot = 0.0, qn = 0.0, xn = 0.0;
          for (int j = 0; j < dim; ++j) {
            dot += static_cast<double>(q[j]) * recon[t * dim + j];
            qn += q[j] * q[j];
            xn += recon[t * dim + j] * recon[t * dim + j];
          }
          ASSERT_NEAR(scores[t], dot, 2e-4 * std::sqrt(qn * xn) + 1e-5)
              << to_string(kind) << " b=" << bits << " d=" << dim << " t=" << t;
        }
      }
    }
  }
}

// encode_batch (GEMM rotation) writes the records encode() writes, except for the rare
// coordinate within fp32 rounding of a codebook threshold; encode_rotated on Π·x is encode().
TEST(Codec, EncodeBatchMatchesEncode) {
  for (const auto& [dim, rot] :
       {std::pair{576, RotationKind::Haar}, {128, RotationKind::Hadamard}}) {
    for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
      const Codec codec(spec(dim, 4.0, kind, rot));
      const std::size_t n = 700;  // more than one chunk
      Xoshiro256 rng(77 + dim);
      std::vector<float> x(n * dim);
      for (auto& v : x) v = static_cast<float>(rng.gaussian() * 2.0);
      EncodedBatch ref(codec.layout(), n), fast(codec.layout(), n), pre(codec.layout(), n);
      codec.encode(x.data(), n, ref.view());
      codec.encode_batch(x.data(), n, fast.view());
      std::vector<float> y(n * dim);
      codec.rotation().apply(x.data(), y.data(), n);
      codec.encode_rotated(y.data(), n, pre.view());
      const CodeLayout& L = codec.layout();
      const EncodedView r = ref.view(), f = fast.view(), p = pre.view();
      ASSERT_EQ(0, std::memcmp(r.codes, p.codes, n * L.code_bytes)) << "encode_rotated codes";
      ASSERT_EQ(0, std::memcmp(r.norms, p.norms, n * sizeof(half_bits))) << "encode_rotated norms";
      std::size_t code_bytes_differ = 0, sign_bytes_differ = 0;
      for (std::size_t i = 0; i < n * L.code_bytes; ++i)
        code_bytes_differ += r.codes[i] != f.codes[i];
      for (std::size_t i = 0; i < n * L.sign_bytes; ++i)
        sign_bytes_differ += r.signs[i] != f.signs[i];
      for (std::size_t t = 0; t < n; ++t) {
        const float nr = half_to_float(r.norms[t]), nf = half_to_float(f.norms[t]);
        ASSERT_NEAR(nf, nr, 2e-3 * nr) << "norm of token " << t;
      }
      // A code differs only where a rotated coordinate sits within fp32 rounding of a
      // threshold; a QJL sign where S·r is within rounding of zero.
      EXPECT_LT(code_bytes_differ, n * L.code_bytes / 500) << to_string(kind) << " d=" << dim;
      EXPECT_LE(sign_bytes_differ, n * L.sign_bytes / 50) << to_string(kind) << " d=" << dim;
    }
  }
}

TEST(Codec, AccumulateFinishEqualsWeightedSumOfDecoded) {
  for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
    const int dim = 128;
    const Codec codec(spec(dim, 3.5 + (kind == CodecKind::Prod ? 0.5 : 0.0), kind));
    const std::size_t n = 300;
    Xoshiro256 rng(17);
    std::vector<float> x(n * dim), w(n), recon(n * dim), out(dim, NAN);
    for (auto& v : x) v = static_cast<float>(rng.gaussian());
    for (auto& v : w) v = static_cast<float>(rng.uniform());
    EncodedBatch batch(codec.layout(), n);
    codec.encode(x.data(), n, batch.view());
    codec.decode(batch.view(), n, recon.data());
    ValueAccumulator acc = codec.make_accumulator();
    codec.accumulate(w.data(), batch.view(), 100, acc);  // in two chunks
    codec.accumulate(w.data() + 100, batch.view().offset(100, codec.layout()), n - 100, acc);
    codec.finish(acc, out.data());
    for (int j = 0; j < dim; ++j) {
      double expected = 0.0;
      for (std::size_t t = 0; t < n; ++t)
        expected += static_cast<double>(w[t]) * recon[t * dim + j];
      ASSERT_NEAR(out[j], expected, 1e-3 * (1.0 + std::fabs(expected)))
          << to_string(kind) << " j=" << j;
    }
  }
}

TEST(Codec, NormCorrectionKeepsTheNorm) {
  CodecSpec s = spec(128, 2);
  s.norm_correction = true;
  const Codec codec(s);
  const std::size_t n = 200;
  std::vector<float> x(n * 128), recon(n * 128);
  random_unit_vectors(n, 128, 4, x.data());
  for (auto& v : x) v *= 7.0f;
  EncodedBatch batch(codec.layout(), n);
  codec.encode(x.data(), n, batch.view());
  codec.decode(batch.view(), n, recon.data());
  for (std::size_t t = 0; t < n; ++t) {
    double norm = 0.0;
    for (int j = 0; j < 128; ++j) norm += recon[t * 128 + j] * recon[t * 128 + j];
    EXPECT_NEAR(std::sqrt(norm), 7.0, 7.0 * 1e-3);  // fp16 norm rounding only
  }
}

TEST(Codec, ZeroVectorEncodesToZero) {
  for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
    const Codec codec(spec(64, 3, kind));
    std::vector<float> x(64, 0.0f), recon(64, NAN);
    EncodedBatch batch(codec.layout(), 1);
    codec.encode(x.data(), 1, batch.view());
    codec.decode(batch.view(), 1, recon.data());
    for (float v : recon) EXPECT_EQ(v, 0.0f);
  }
}

TEST(Codec, LayoutIsWordAligned) {
  for (double bits : {1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0}) {
    for (int dim : {64, 96, 128, 256}) {
      const CodeLayout l = make_code_layout(spec(dim, bits));
      EXPECT_EQ(l.hi_bytes % 4, 0u);
      EXPECT_EQ(l.lo_bytes % 4, 0u);
      EXPECT_GE(l.code_bytes * 8, static_cast<std::size_t>(bits * dim));
    }
  }
  EXPECT_EQ(make_code_layout(spec(128, 4)).bytes_per_token(), 66u);  // 64 B codes + 2 B norm
  EXPECT_EQ(make_code_layout(spec(128, 4, CodecKind::Prod)).bytes_per_token(), 48u + 16u + 4u);
}

TEST(Codec, RejectsInvalidArguments) {
  EXPECT_THROW(Codec(spec(128, 0)), std::invalid_argument);
  EXPECT_THROW(Codec(spec(128, 9)), std::invalid_argument);
  EXPECT_THROW(Codec(spec(0, 3)), std::invalid_argument);
  EXPECT_THROW(Codec(spec(96, 3)), std::invalid_argument);  // hadamard needs 2^k
  EXPECT_NO_THROW(Codec(spec(96, 3, CodecKind::Mse, RotationKind::Haar)));
  EXPECT_THROW(Codec(spec(128, 1.5, CodecKind::Prod)), std::invalid_argument);
  EXPECT_THROW(Codec(spec(100, 2.33)), std::invalid_argument);  // 0.33·100 not integral
  EXPECT_THROW(parse_codec_kind("lattice"), std::invalid_argument);
  // Mismatched buffers: a query prepared for another dimension, an accumulator of the wrong size,
  // an output view missing the sign buffer.
  const Codec c128(spec(128, 3)), c64(spec(64, 3));
  const PreparedQuery q64 = c64.prepare_query(std::vector<float>(64, 1.0f).data());
  EncodedBatch batch(c128.layout(), 1);
  float score = 0.0f;
  EXPECT_THROW(c128.score(q64, batch.view(), 1, &score), std::invalid_argument);
  ValueAccumulator acc64 = c64.make_accumulator();
  float w = 1.0f;
  EXPECT_THROW(c128.accumulate(&w, batch.view(), 1, acc64), std::invalid_argument);
  const Codec prod(spec(128, 3, CodecKind::Prod));
  EncodedView missing = batch.view();  // has no signs / residual norms
  std::vector<float> x(128, 1.0f);
  EXPECT_THROW(prod.encode(x.data(), 1, missing), std::invalid_argument);
  try {
    Codec(spec(128, 9));
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("9"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tq

namespace tq {
namespace {

TEST(Codec, MultiQueryScoringAndAccumulationMatchSingleQuery) {
  for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
    for (double bits : {2.0, 3.0, 3.5, 4.0, 6.0}) {
      for (int n_queries : {1, 3, 4, 9}) {
        const Codec codec(spec(64, bits, kind));
        const std::size_t n = 45;
        Xoshiro256 rng(static_cast<std::uint64_t>(bits * 13 + n_queries));
        std::vector<float> x(n * 64), q(64);
        for (auto& v : x) v = static_cast<float>(rng.gaussian());
        EncodedBatch batch(codec.layout(), n);
        codec.encode(x.data(), n, batch.view());
        std::vector<PreparedQuery> prepared;
        std::vector<float> weights(n_queries * n);
        for (auto& w : weights) w = static_cast<float>(rng.uniform());
        for (int i = 0; i < n_queries; ++i) {
          for (auto& v : q) v = static_cast<float>(rng.gaussian());
          prepared.push_back(codec.prepare_query(q.data()));
        }
        std::vector<float> multi(n_queries * n, NAN), single(n, NAN);
        codec.score_multi(prepared.data(), n_queries, batch.view(), n, multi.data());
        std::vector<ValueAccumulator> accs(n_queries, codec.make_accumulator());
        codec.accumulate_multi(weights.data(), n_queries, batch.view(), n, accs.data());
        for (int i = 0; i < n_queries; ++i) {
          codec.score(prepared[i], batch.view(), n, single.data());
          for (std::size_t t = 0; t < n; ++t) {
            ASSERT_NEAR(multi[i * n + t], single[t], 1e-4f * (1.0f + std::fabs(single[t])))
                << to_string(kind) << " b=" << bits << " nq=" << n_queries;
          }
          ValueAccumulator one = codec.make_accumulator();
          codec.accumulate(weights.data() + i * n, batch.view(), n, one);
          for (int j = 0; j < 64; ++j) ASSERT_NEAR(accs[i].rotated[j], one.rotated[j], 1e-4f);
          for (std::size_t j = 0; j < one.sketch.size(); ++j) {
            ASSERT_NEAR(accs[i].sketch[j], one.sketch[j], 1e-4f);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tq
