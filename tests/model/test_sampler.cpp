// Sampler: greedy is argmax, a seed reproduces the same tokens, top-k and top-p keep exactly the
// tokens they should (with renormalised probabilities), and sampling frequencies follow the
// tempered softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "turboquant/model/sampler.hpp"

namespace {

TEST(Sampler, GreedyIsArgmax) {
  const std::vector<float> logits = {0.1f, 3.0f, -2.0f, 2.9f, 3.0f};
  EXPECT_EQ(tq::argmax(logits), 1);  // first of equal maxima
  tq::Sampler s;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(logits), 1);
  EXPECT_THROW(tq::argmax(std::span<const float>()), std::invalid_argument);
}

TEST(Sampler, SeededRunsRepeat) {
  std::vector<float> logits(1000);
  for (int i = 0; i < 1000; ++i) logits[i] = std::sin(0.37f * i) * 3.0f;
  auto run = [&](std::uint64_t seed) {
    tq::Sampler s({1.0f, 0.95f, 0, seed});
    std::vector<tq::TokenId> out;
    for (int i = 0; i < 50; ++i) out.push_back(s.sample(logits));
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, TopPKeepsSmallestSetWithMass) {
  // Probabilities at T=1: 0.5, 0.25, 0.125, 0.0625, 0.0625.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                     std::log(0.0625f), std::log(0.0625f)};
  tq::Sampler s({1.0f, 0.8f, 0, 1});
  s.sample(logits);
  const auto& c = s.last_candidates();
  ASSERT_EQ(c.size(), 3u);  // 0.5 + 0.25 < 0.8 <= 0.875
  EXPECT_EQ(c[0].first, 0);
  EXPECT_EQ(c[1].first, 1);
  EXPECT_EQ(c[2].first, 2);
  EXPECT_NEAR(c[0].second, 0.5 / 0.875, 1e-5);
  EXPECT_NEAR(c[2].second, 0.125 / 0.875, 1e-5);
}

TEST(Sampler, TopPOverLargeVocabularyWidensPrefix) {
  // A flat distribution over 5000 tokens needs most of them for 0.9 mass (beyond the first
  // sorted prefix of 256).
  std::vector<float> logits(5000, 0.0f);
  logits[17] = 1.0f;
  tq::Sampler s({1.0f, 0.9f, 0, 3});
  s.sample(logits);
  const auto& c = s.last_candidates();
  EXPECT_EQ(c[0].first, 17);
  double sum = 0;
  for (const auto& e : c) sum += e.second;
  EXPECT_NEAR(sum, 1.0, 1e-4);
  const double z = std::exp(1.0) + 4999.0;
  const double mass = static_cast<double>(c.size() - 1) / z + std::exp(1.0) / z;
  EXPECT_GE(mass, 0.9 - 1e-6);
  EXPECT_LT(mass - 1.0 / z, 0.9);
}

TEST(Sampler, TopKAndFrequencies) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  tq::Sampler s({0.5f, 1.0f, 2, 9});
  std::map<tq::TokenId, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits)];
  EXPECT_EQ(counts.size(), 2u);  // top-k = 2
  // With T = 0.5 the kept logits become 4 and 2: p0 = 1 / (1 + e^-2) ≈ 0.881.
  const double p0 = 1.0 / (1.0 + std::exp(-2.0));
  EXPECT_NEAR(counts[0] / double(n), p0, 0.01);
}

TEST(Sampler, RejectsBadOptions) {
  EXPECT_THROW(tq::Sampler({1.0f, 0.0f, 0, 0}), std::invalid_argument);
  EXPECT_THROW(tq::Sampler({1.0f, 1.5f, 0, 0}), std::invalid_argument);
  EXPECT_THROW(tq::Sampler({1.0f, 1.0f, -1, 0}), std::invalid_argument);
}

}  // namespace
