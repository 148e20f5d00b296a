// Centering (scheme option center=k|v|kv): exact by construction. Keys shifted by a random μ give
// the unshifted attention output to fp32 round-off (softmax shift invariance), values come back
// as Σ pₜ(vₜ − μ) + μ; the comparison is shown to catch wrong μ handling; SIMD and reference
// paths agree on centered TurboQuant caches; μ bytes are counted; parsing.
#include "turboquant/cache/kv_cache.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace tq {
namespace {

constexpr int kD = 64;
constexpr int kKvHeads = 2;
constexpr int kQHeads = 6;
constexpr std::size_t kTokens = 64;
constexpr std::size_t kPer = static_cast<std::size_t>(kKvHeads) * kD;

// Multiples of 1/16 in [-range, range]: sums and fp16 roundings of them are exact, so the
// centered cache stores exactly the unshifted tokens and only fp32 arithmetic differs.
std::vector<float> dyadic(std::size_t n, std::uint32_t seed, int range) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-16 * range, 16 * range);
  std::vector<float> x(n);
  for (auto& v : x) v = static_cast<float>(u(rng)) / 16.0f;
  return x;
}

// Tokens in ± pairs (token 2i+1 = −token 2i) so that each head's mean is exactly zero.
std::vector<float> zero_mean_tokens(std::uint32_t seed) {
  std::vector<float> x = dyadic(kTokens * kPer, seed, 2);
  for (std::size_t t = 1; t < kTokens; t += 2) {
    for (std::size_t j = 0; j < kPer; ++j) x[t * kPer + j] = -x[(t - 1) * kPer + j];
  }
  return x;
}

// Adds the per-head vector mu ([kKvHeads][kD]) to every token.
std::vector<float> shifted(std::vector<float> x, const std::vector<float>& mu) {
  for (std::size_t i = 0; i < x.size(); ++i) x[i] += mu[i % kPer];
  return x;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

LayerKvShape shape() {
  return LayerKvShape{0, 1, kQHeads, kKvHeads, kD};
}

// Attention of the 16 queries at positions [48, 64) over a cache filled in two chunks.
std::vector<float> attend_all(const std::string& scheme, const std::vector<float>& k,
                              const std::vector<float>& v) {
  LayerKvCache cache(parse_kv_scheme(scheme), shape());
  cache.append(k.data(), v.data(), 32);  // the first chunk: where μ comes from
  cache.append(k.data() + 32 * kPer, v.data() + 32 * kPer, kTokens - 32);
  const auto q = dyadic(16 * kQHeads * kD, 77, 1);
  std::vector<float> out(q.size());
  cache.attend(q.data(), 16, kTokens - 16, out.data());
  return out;
}

// fp32 round-off of outputs of magnitude ~10 summed over 64 tokens.
constexpr double kRoundOff = 2e-5;

TEST(Centering, ShiftedKeysGiveUnshiftedOutput) {
  const auto k = zero_mean_tokens(1);
  const auto v = shifted(zero_mean_tokens(2), dyadic(kPer, 3, 8));
  const auto mu_k = dyadic(kPer, 4, 8);
  const auto plain = attend_all("fp16", k, v);
  for (const char* center : {"k", "kv"}) {
    const auto centered = attend_all(std::string("fp16:center=") + center, shifted(k, mu_k), v);
    EXPECT_LT(max_abs_diff(centered, plain), kRoundOff) << center;
  }
  // Values: Σ pₜ(vₜ − μ) + μ against Σ pₜvₜ.
  EXPECT_LT(max_abs_diff(attend_all("fp16:center=v", k, v), plain), kRoundOff);
}

// The comparison must fail for wrong μ handling: forgetting to add μ_V back, or a key shift that
// is not one vector for all tokens (e.g. a μ re-estimated per chunk) — q·μ then differs per token.
TEST(Centering, ComparisonDetectsWrongMuHandling) {
  const auto k = zero_mean_tokens(1);
  const auto mu_v = dyadic(kPer, 3, 8);
  const auto v = shifted(zero_mean_tokens(2), mu_v);
  const auto plain = attend_all("fp16", k, v);
  auto forgot = attend_all("fp16:center=v", k, v);
  for (std::size_t i = 0; i < forgot.size(); ++i) {
    forgot[i] -= mu_v[(i / (kD * (kQHeads / kKvHeads))) % kKvHeads * kD + i % kD];
  }
  EXPECT_GT(max_abs_diff(forgot, plain), 1e-1);
  // Keys shifted by μ in the first chunk only: the stored keys then are not k shifted by one μ.
  auto k_bad = k;
  const auto mu_k = dyadic(kPer, 4, 8);
  for (std::size_t i = 0; i < 32 * kPer; ++i) k_bad[i] += mu_k[i % kPer];
  EXPECT_GT(max_abs_diff(attend_all("fp16:center=k", k_bad, v), plain), 1e-1);
}

TEST(Centering, MeanComesFromFirstAppendAndIsCountedAndReset) {
  const auto mu = dyadic(kPer, 5, 8);
  const auto k = shifted(zero_mean_tokens(6), mu);
  const auto v = zero_mean_tokens(7);
  LayerKvCache cache(parse_kv_scheme("tq3:center=kv,window=0"), shape());
  LayerKvCache plain(parse_kv_scheme("tq3:window=0"), shape());
  EXPECT_EQ(cache.mean(KvSide::Key, 0), nullptr);
  EXPECT_EQ(cache.bytes(), 0u);
  cache.append(k.data(), v.data(), kTokens);
  plain.append(k.data(), v.data(), kTokens);
  for (int h = 0; h < kKvHeads; ++h) {
    const float* m = cache.mean(KvSide::Key, h);
    ASSERT_NE(m, nullptr);
    for (int j = 0; j < kD; ++j) EXPECT_EQ(m[j], mu[h * kD + j]);
  }
  // One fp16 μ per head and side on top of the codes, as kv_cache_size counts it.
  EXPECT_EQ(cache.bytes(), plain.bytes() + 2u * kKvHeads * 2 * kD);
  const ModelShape model{"t", 1, kQHeads, kKvHeads, kD, 1024};
  EXPECT_EQ(cache.bytes(),
            kv_cache_size(model, parse_kv_scheme("tq3:center=kv,window=0"), kTokens).bytes);
  // Later appends do not move μ; clear() forgets it.
  const auto more = dyadic(kPer, 8, 4);
  cache.append(more.data(), more.data(), 1);
  EXPECT_EQ(cache.mean(KvSide::Key, 0)[0], mu[0]);
  cache.clear();
  EXPECT_EQ(cache.mean(KvSide::Key, 0), nullptr);
  // Protected layers store fp16 and are not centered.
  LayerKvCache prot(parse_kv_scheme("tq3:center=kv,protect=1/0"), LayerKvShape{0, 2, 6, 2, kD});
  prot.append(k.data(), v.data(), kTokens);
  EXPECT_EQ(prot.mean(KvSide::Key, 0), nullptr);
}

// The fast paths (SIMD, scalar) agree with the brute-force reference over the decoded (μ added
// back) cache for centered TurboQuant and block caches, window 0 and > 0.
TEST(Centering, FastPathsMatchReference) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> k(kTokens * kPer), v(kTokens * kPer), q(4 * kQHeads * kD);
  for (auto& x : k) x = g(rng);
  for (auto& x : v) x = g(rng);
  for (auto& x : q) x = g(rng);
  const auto bias = dyadic(kPer, 10, 3);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] += bias[i % kPer];
  for (const char* scheme : {"tq3.5:center=kv,window=0", "tq4:center=k,window=8",
                             "k4v3:center=v,window=0", "q4r:center=kv", "fp16:center=kv"}) {
    LayerKvCache cache(parse_kv_scheme(scheme), shape());
    cache.append(k.data(), v.data(), 20);
    cache.append(k.data() + 20 * kPer, v.data() + 20 * kPer, kTokens - 20);
    std::vector<float> fast(q.size()), scalar(q.size()), ref(q.size());
    cache.attend(q.data(), 4, kTokens - 4, fast.data());
    AttentionOptions opt;
    opt.simd = SimdLevel::Scalar;
    cache.attend(q.data(), 4, kTokens - 4, scalar.data(), opt);
    reference_attention(cache, q.data(), 4, kTokens - 4, ref.data());
    EXPECT_LT(max_abs_diff(fast, ref), 1e-4) << scheme;
    EXPECT_LT(max_abs_diff(scalar, ref), 1e-4) << scheme;
  }
}

TEST(Centering, SchemeOption) {
  EXPECT_FALSE(parse_kv_scheme("tq4").center_keys);
  const KvScheme kv = parse_kv_scheme("tq3.5:center=kv");
  EXPECT_TRUE(kv.center_keys && kv.center_values);
  EXPECT_EQ(kv.name, "tq3.5:center=kv");
  EXPECT_EQ(parse_kv_scheme(kv.name).name, kv.name);
  const KvScheme k = parse_kv_scheme("tq4:center=k");
  EXPECT_TRUE(k.center_keys && !k.center_values);
  const KvScheme v = parse_kv_scheme("q4r:center=v");
  EXPECT_TRUE(!v.center_keys && v.center_values);
  EXPECT_EQ(parse_kv_scheme("tq4:center=0").name, "tq4");
  try {
    parse_kv_scheme("tq4:center=q");
    FAIL() << "center=q accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("expected 0, k, v or kv"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tq
