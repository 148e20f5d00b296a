// Tests for the evaluation metrics: log-softmax stability, NLL / perplexity of known
// distributions, KL divergence (identical rows, a hand-computed two-class case, asymmetry),
// accumulator statistics against hand-computed values and a brute-force reference, and the
// logits file (round trips in both dtypes, rejection of truncated, unfinished and corrupt files).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "turboquant/eval/metrics.hpp"

namespace tq::eval {
namespace {

std::vector<float> random_logits(std::size_t n, std::mt19937& rng, float scale = 3.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> row(n);
  for (float& v : row) v = dist(rng);
  return row;
}

TEST(EvalMetrics, LogSoftmaxSumsToOneAndIsShiftInvariant) {
  std::mt19937 rng(1);
  const auto row = random_logits(1000, rng);
  const auto lp = log_softmax(row);
  double sum = 0;
  for (double v : lp) sum += std::exp(v);
  EXPECT_NEAR(sum, 1.0, 1e-12);
  std::vector<float> shifted = row;
  for (float& v : shifted) v += 100.0f;
  const auto lp2 = log_softmax(shifted);
  for (std::size_t i = 0; i < row.size(); ++i) EXPECT_NEAR(lp[i], lp2[i], 2e-5);
}

TEST(EvalMetrics, LogSoftmaxStableForHugeLogits) {
  const std::vector<float> row = {1e4f, -1e4f, 1e4f - 1.0f, 0.0f};
  const auto lp = log_softmax(row);
  for (double v : lp) EXPECT_TRUE(std::isfinite(v));
  const double log_norm = std::log(1.0 + std::exp(-1.0));  // the two tokens near the top
  EXPECT_NEAR(lp[0], -log_norm, 1e-12);
  EXPECT_NEAR(lp[2], -1.0 - log_norm, 1e-12);
  EXPECT_NEAR(lp[1], -2e4 - log_norm, 1e-6);
  EXPECT_NEAR(lp[3], -1e4 - log_norm, 1e-6);
  EXPECT_NEAR(log_sum_exp(row), 1e4 + log_norm, 1e-9);
  // The same logits are fine in the NLL and the KLD paths.
  EXPECT_NEAR(negative_log_likelihood(row, 1), 2e4 + log_norm, 1e-6);
  EXPECT_EQ(kl_divergence(row, row), 0.0);
}

TEST(EvalMetrics, RejectsBadRows) {
  const float nan = std::nanf("");
  const float inf = INFINITY;
  EXPECT_THROW(log_sum_exp(std::vector<float>{}), std::invalid_argument);
  EXPECT_THROW(log_sum_exp(std::vector<float>{1.0f, nan}), std::invalid_argument);
  EXPECT_THROW(log_sum_exp(std::vector<float>{1.0f, inf}), std::invalid_argument);
  EXPECT_THROW(log_sum_exp(std::vector<float>{-inf, -inf}), std::invalid_argument);
  EXPECT_THROW(negative_log_likelihood(std::vector<float>{1, 2}, 2), std::invalid_argument);
  EXPECT_THROW(negative_log_likelihood(std::vector<float>{1, 2}, -1), std::invalid_argument);
  EXPECT_THROW(kl_divergence(std::vector<float>{1, 2}, std::vector<float>{1, 2, 3}),
               std::invalid_argument);
  // -inf is a legitimate zero-probability token.
  EXPECT_NEAR(negative_log_likelihood(std::vector<float>{0.0f, -inf}, 0), 0.0, 1e-15);
}

TEST(EvalMetrics, PerplexityOfUniformLogitsIsVocabularySize) {
  for (std::size_t vocab : {2u, 1000u, 49152u}) {
    const std::vector<float> row(vocab, 0.37f);
    PerplexityAccumulator acc;
    for (TokenId t : {0, 1, static_cast<TokenId>(vocab - 1)}) {
      acc.add(negative_log_likelihood(row, t));
    }
    EXPECT_NEAR(acc.ppl(), static_cast<double>(vocab), 1e-9 * vocab) << vocab;
    EXPECT_NEAR(acc.ppl_stderr(), 0.0, 1e-9);
  }
}

TEST(EvalMetrics, KlDivergenceKnownValues) {
  std::mt19937 rng(2);
  const auto row = random_logits(5000, rng);
  EXPECT_EQ(kl_divergence(row, row), 0.0);
  // Two classes: P = (1/2, 1/2), Q = (3/4, 1/4): KL(P||Q) = ½ ln(4/3); KL(Q||P) =
  // ¾ln(3/2)+¼ln(1/2).
  const std::vector<float> p = {0.0f, 0.0f};
  const std::vector<float> q = {static_cast<float>(std::log(3.0)), 0.0f};
  EXPECT_NEAR(kl_divergence(p, q), 0.5 * std::log(4.0 / 3.0), 1e-7);
  EXPECT_NEAR(kl_divergence(q, p), 0.75 * std::log(1.5) + 0.25 * std::log(0.5), 1e-7);
  // Different rows give a strictly positive divergence.
  auto other = row;
  other[argmax(row)] -= 0.5f;  // the most probable token, so the change is visible
  EXPECT_GT(kl_divergence(row, other), 1e-4);
  // The test distribution assigning zero probability where the reference does not: infinite.
  EXPECT_EQ(kl_divergence(p, std::vector<float>{0.0f, -INFINITY}), INFINITY);
  EXPECT_EQ(kl_divergence(std::vector<float>{0.0f, -INFINITY}, p), std::log(2.0));
}

TEST(EvalMetrics, CompareTokenMatchesSeparateFunctions) {
  std::mt19937 rng(3);
  const auto ref = random_logits(300, rng);
  auto test = ref;
  for (float& v : test) v += std::normal_distribution<float>(0.0f, 0.3f)(rng);
  const auto c = compare_token(ref, test, 42);
  EXPECT_DOUBLE_EQ(c.kld, kl_divergence(ref, test));
  EXPECT_NEAR(c.nll_ref, negative_log_likelihood(ref, 42), 1e-12);
  EXPECT_NEAR(c.nll_test, negative_log_likelihood(test, 42), 1e-12);
  EXPECT_EQ(c.top1_agree, argmax(ref) == argmax(test));
  // Brute force in long double from probabilities.
  long double zr = 0, zt = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    zr += std::exp(static_cast<long double>(ref[i]));
    zt += std::exp(static_cast<long double>(test[i]));
  }
  long double kl = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const long double pr = std::exp(static_cast<long double>(ref[i])) / zr;
    const long double pt = std::exp(static_cast<long double>(test[i])) / zt;
    kl += pr * std::log(pr / pt);
  }
  EXPECT_NEAR(c.kld, static_cast<double>(kl), 1e-12);
}

TEST(EvalMetrics, PerplexityAccumulatorHandComputed) {
  PerplexityAccumulator acc;
  for (double v : {1.0, 2.0, 3.0, 4.0}) acc.add(v);
  EXPECT_EQ(acc.count(), 4u);
  EXPECT_DOUBLE_EQ(acc.mean_nll(), 2.5);
  EXPECT_NEAR(acc.nll_stddev(), std::sqrt(5.0 / 3.0), 1e-14);
  EXPECT_NEAR(acc.ppl(), std::exp(2.5), 1e-12);
  // se = ppl · sd / √n = 12.182494 · 1.290994 / 2 = 7.863766
  EXPECT_NEAR(acc.ppl_stderr(), std::exp(2.5) * std::sqrt(5.0 / 3.0) / 2.0, 1e-12);
  EXPECT_NEAR(acc.ppl_stderr(), 7.863766, 1e-6);

  PerplexityAccumulator a, b, all;
  for (int i = 0; i < 10; ++i) {
    const double v = 0.1 * i * i;
    (i < 4 ? a : b).add(v);
    all.add(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_NEAR(a.mean_nll(), all.mean_nll(), 1e-12);
  EXPECT_NEAR(a.nll_stddev(), all.nll_stddev(), 1e-12);

  PerplexityAccumulator empty;
  EXPECT_THROW(empty.ppl(), std::logic_error);
  PerplexityAccumulator one;
  one.add(0.5);
  EXPECT_EQ(one.ppl_stderr(), 0.0);
}

TEST(EvalMetrics, QuantilesAreExact) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  std::shuffle(v.begin(), v.end(), std::mt19937(4));
  EXPECT_DOUBLE_EQ(quantile(v, 0.5), 50.5);
  EXPECT_DOUBLE_EQ(quantile(v, 0.99), 99.01);  // position 98.01 between 99 and 100
  EXPECT_DOUBLE_EQ(quantile(v, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(quantile(v, 1.0), 100.0);
  EXPECT_DOUBLE_EQ(quantile({7.0}, 0.99), 7.0);
  EXPECT_DOUBLE_EQ(quantile({1.0, 2.0, 3.0}, 0.5), 2.0);
  EXPECT_THROW(quantile({}, 0.5), std::logic_error);
  EXPECT_THROW(quantile({1.0}, 1.5), std::invalid_argument);
}

TEST(EvalMetrics, KldAccumulatorHandComputed) {
  KldAccumulator acc;
  // kld 0.1, 0.2, 0.3, 0.6; nll_ref 1,2,3,4; nll_test 1.5,2,3.5,4; top-1 agrees on 3 of 4.
  acc.add({0.1, 1.0, 1.5, true});
  acc.add({0.2, 2.0, 2.0, true});
  acc.add({0.3, 3.0, 3.5, false});
  acc.add({0.6, 4.0, 4.0, true});
  const auto s = acc.summary();
  EXPECT_EQ(s.tokens, 4u);
  EXPECT_NEAR(s.kld_mean, 0.3, 1e-15);
  EXPECT_NEAR(s.kld_median, 0.25, 1e-15);
  EXPECT_NEAR(s.kld_p99, 0.3 + 0.97 * 0.3, 1e-12);  // position 2.97 between 0.3 and 0.6
  EXPECT_DOUBLE_EQ(s.kld_max, 0.6);
  EXPECT_DOUBLE_EQ(s.top1_agree, 0.75);
  EXPECT_NEAR(s.ppl_ref, std::exp(2.5), 1e-12);
  EXPECT_NEAR(s.ppl_test, std::exp(2.75), 1e-12);
  EXPECT_NEAR(s.delta_ppl, std::exp(2.75) - std::exp(2.5), 1e-12);
  // sd of kld: deviations -0.2,-0.1,0,0.3 -> ss 0.14, var 0.14/3, se = sqrt(0.14/3/4).
  EXPECT_NEAR(s.kld_mean_stderr, std::sqrt(0.14 / 12.0), 1e-12);
}

TEST(EvalMetrics, DeltaPplStderrMatchesBruteForce) {
  std::mt19937 rng(5);
  std::normal_distribution<double> base(2.0, 1.0), noise(0.05, 0.2);
  std::vector<double> r, t;
  KldAccumulator acc;
  for (int i = 0; i < 500; ++i) {
    const double nr = std::abs(base(rng));
    const double nt = std::abs(nr + noise(rng));
    r.push_back(nr);
    t.push_back(nt);
    acc.add({0.01, nr, nt, true});
  }
  const double n = static_cast<double>(r.size());
  double mr = 0, mt = 0;
  for (std::size_t i = 0; i < r.size(); ++i) mr += r[i] / n, mt += t[i] / n;
  double vr = 0, vt = 0, c = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    vr += (r[i] - mr) * (r[i] - mr) / (n - 1);
    vt += (t[i] - mt) * (t[i] - mt) / (n - 1);
    c += (r[i] - mr) * (t[i] - mt) / (n - 1);
  }
  const double pr = std::exp(mr), pt = std::exp(mt);
  const double expected = std::sqrt((pt * pt * vt + pr * pr * vr - 2 * pt * pr * c) / n);
  EXPECT_NEAR(acc.delta_ppl_stderr(), expected, 1e-9 * expected);
  // Paired runs: much smaller than the unpaired combination.
  const double unpaired =
      std::hypot(acc.ref_perplexity().ppl_stderr(), acc.test_perplexity().ppl_stderr());
  EXPECT_LT(acc.delta_ppl_stderr(), 0.5 * unpaired);
}

// ---------------------------------------------------------------------------------------------
// Logits file.

class LogitsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tq_eval_logits_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `n` random rows; returns them.
  std::vector<std::vector<float>> write_file(const std::filesystem::path& path, LogitsDtype dtype,
                                             int n = 5, std::uint32_t vocab = 257) {
    std::mt19937 rng(6);
    std::vector<std::vector<float>> rows;
    LogitsWriter writer(path, vocab, dtype, R"({"model":"test"})");
    for (int i = 0; i < n; ++i) {
      rows.push_back(random_logits(vocab, rng, 4.0f));
      for (float& v : rows.back()) v += 30.0f;  // stored rows are shifted; check that
      writer.write(static_cast<TokenId>(i * 31 % vocab), rows.back());
    }
    EXPECT_EQ(writer.count(), static_cast<std::uint64_t>(n));
    writer.finish();
    return rows;
  }

  static void patch(const std::filesystem::path& path, std::streamoff offset,
                    const std::string& bytes) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(offset);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  static std::string read_error(const std::filesystem::path& path) {
    try {
      LogitsReader reader(path);
      std::vector<float> row(reader.info().n_vocab);
      TokenId target;
      while (reader.next(target, row)) {
      }
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(LogitsFileTest, RoundTripFloat32IsExactAfterShift) {
  const auto path = dir_ / "f32.logits";
  const auto rows = write_file(path, LogitsDtype::kFloat32);
  LogitsReader reader(path);
  EXPECT_EQ(reader.info().version, 1u);
  EXPECT_EQ(reader.info().dtype, LogitsDtype::kFloat32);
  EXPECT_EQ(reader.info().n_vocab, 257u);
  EXPECT_EQ(reader.info().n_tokens, 5u);
  EXPECT_EQ(reader.info().metadata, R"({"model":"test"})");
  EXPECT_EQ(std::filesystem::file_size(path), 32 + 16 + 5 * (4 + 4 * 257u));
  std::vector<float> row(257);
  TokenId target;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(reader.next(target, row));
    EXPECT_EQ(target, i * 31 % 257);
    const float max_value = *std::max_element(rows[i].begin(), rows[i].end());
    for (std::size_t j = 0; j < row.size(); ++j) EXPECT_EQ(row[j], rows[i][j] - max_value);
    EXPECT_NEAR(negative_log_likelihood(row, target), negative_log_likelihood(rows[i], target),
                1e-5);
  }
  EXPECT_FALSE(reader.next(target, row));
  EXPECT_EQ(reader.remaining(), 0u);
}

TEST_F(LogitsFileTest, RoundTripFloat16KeepsTheDistribution) {
  const auto path = dir_ / "f16.logits";
  const auto rows = write_file(path, LogitsDtype::kFloat16, 8, 4096);
  EXPECT_EQ(std::filesystem::file_size(path), 32 + 16 + 8 * (4 + 2 * 4096u));
  LogitsReader reader(path);
  std::vector<float> row(4096);
  TokenId target;
  for (const auto& original : rows) {
    ASSERT_TRUE(reader.next(target, row));
    EXPECT_LT(kl_divergence(original, row), 1e-5);
    EXPECT_NEAR(negative_log_likelihood(row, target), negative_log_likelihood(original, target),
                2e-2);
    EXPECT_EQ(argmax(row), argmax(original));
  }
  EXPECT_FALSE(reader.next(target, row));
}

TEST_F(LogitsFileTest, WriterRejectsBadRows) {
  LogitsWriter writer(dir_ / "w.logits", 4);
  EXPECT_THROW(writer.write(0, std::vector<float>{1, 2, 3}), std::invalid_argument);
  EXPECT_THROW(writer.write(4, std::vector<float>{1, 2, 3, 4}), std::invalid_argument);
  EXPECT_THROW(writer.write(0, std::vector<float>{1, 2, NAN, 4}), std::invalid_argument);
  EXPECT_THROW(LogitsWriter(dir_ / "x.logits", 0), std::invalid_argument);
  EXPECT_THROW(LogitsWriter(dir_ / "no_such_dir" / "x.logits", 4), std::runtime_error);
}

TEST_F(LogitsFileTest, RejectsTruncatedFile) {
  const auto path = dir_ / "t.logits";
  write_file(path, LogitsDtype::kFloat16);
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 10);
  EXPECT_NE(read_error(path).find("truncated"), std::string::npos) << read_error(path);
  std::filesystem::resize_file(path, 20);
  EXPECT_NE(read_error(path).find("header"), std::string::npos) << read_error(path);
  write_file(path, LogitsDtype::kFloat16);
  std::filesystem::resize_file(path, 40);  // inside the metadata
  EXPECT_NE(read_error(path).find("metadata"), std::string::npos) << read_error(path);
}

TEST_F(LogitsFileTest, RejectsCorruptHeaders) {
  const auto path = dir_ / "c.logits";
  const auto fresh = [&] { write_file(path, LogitsDtype::kFloat32, 2, 8); };
  fresh();
  patch(path, 0, "XQ");
  EXPECT_NE(read_error(path).find("magic"), std::string::npos);
  fresh();
  patch(path, 8, std::string("\x02\0\0\0", 4));
  EXPECT_NE(read_error(path).find("version 2"), std::string::npos);
  fresh();
  patch(path, 12, std::string("\x07\0\0\0", 4));
  EXPECT_NE(read_error(path).find("dtype 7"), std::string::npos);
  fresh();
  patch(path, 16, std::string("\x09\0\0\0", 4));  // vocabulary 9 instead of 8: sizes disagree
  EXPECT_FALSE(read_error(path).empty());
  fresh();
  patch(path, 24, std::string(8, '\xff'));
  EXPECT_NE(read_error(path).find("never finished"), std::string::npos);
  fresh();
  {
    std::ofstream f(path, std::ios::app | std::ios::binary);
    f << "junk";
  }
  EXPECT_NE(read_error(path).find("trailing"), std::string::npos);
}

TEST_F(LogitsFileTest, RejectsCorruptRecords) {
  const auto path = dir_ / "r.logits";
  const std::streamoff first_record = 32 + 16;
  write_file(path, LogitsDtype::kFloat32, 2, 8);
  patch(path, first_record, std::string("\x08\0\0\0", 4));  // target 8 in a vocabulary of 8
  EXPECT_NE(read_error(path).find("target token 8"), std::string::npos) << read_error(path);
  write_file(path, LogitsDtype::kFloat32, 2, 8);
  const float nan = std::nanf("");
  patch(path, first_record + 4 + 4 * 3, std::string(reinterpret_cast<const char*>(&nan), 4));
  EXPECT_NE(read_error(path).find("logit 3"), std::string::npos) << read_error(path);
  write_file(path, LogitsDtype::kFloat16, 2, 8);
  // Overwrite the whole second row with -1.0 (0xBC00): its maximum is no longer 0.
  std::string minus_one;
  for (int i = 0; i < 8; ++i) minus_one += std::string("\x00\xbc", 2);
  patch(path, first_record + (4 + 16) + 4, minus_one);
  EXPECT_NE(read_error(path).find("record 1"), std::string::npos) << read_error(path);
  EXPECT_NE(read_error(path).find("maximum"), std::string::npos) << read_error(path);
}

TEST_F(LogitsFileTest, UnfinishedWriterFileIsRejectedAndDestructorFinishes) {
  const auto path = dir_ / "u.logits";
  {
    LogitsWriter writer(path, 4);
    writer.write(1, std::vector<float>{0, 1, 2, 3});
    // No finish(): the destructor patches the count.
  }
  LogitsReader reader(path);
  EXPECT_EQ(reader.info().n_tokens, 1u);
}

}  // namespace
}  // namespace tq::eval
