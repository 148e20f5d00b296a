// Property test of LayerKvCache (issue 17, item 6): random sequences of append (random token
// counts), attend and clear, for schemes of every storage kind, checked after every step against
// a plain reference that keeps every appended float:
//   - size, compressed and window sizes follow the token count (no token lost or duplicated);
//   - bytes() equals a cache that received the same tokens in one append (and grows with them);
//   - the window holds the last W tokens exactly (fp16 of the floats), in order;
//   - every decoded token equals the one-append cache's decode and is close to its float
//     (relative error per token bounded per format: a shifted or duplicated token is not);
//   - attend equals reference_attention over the same cache at the last position.
#include "turboquant/cache/kv_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace tq {
namespace {

struct Reference {
  std::vector<float> k, v;  // every appended token since the last clear, [t][head][d]
};

double token_error(const float* a, const float* b, int d) {
  double num = 0, den = 0;
  for (int j = 0; j < d; ++j) {
    num += (static_cast<double>(a[j]) - b[j]) * (static_cast<double>(a[j]) - b[j]);
    den += static_cast<double>(b[j]) * b[j];
  }
  return std::sqrt(num / den);
}

// Checks every invariant of `cache` against the reference (fatal assertions).
void check(const LayerKvCache& cache, const Reference& ref, const KvScheme& scheme,
           const LayerKvShape& s, double max_token_error, const std::string& where) {
  const int H = s.n_kv_heads, d = s.head_dim;
  const std::size_t stride = static_cast<std::size_t>(H) * d;
  const std::size_t n = ref.k.size() / stride;
  ASSERT_EQ(cache.size(), n) << where;
  const std::size_t W = static_cast<std::size_t>(cache.window());
  ASSERT_EQ(cache.compressed_size(), n > W ? n - W : 0) << where;
  ASSERT_EQ(cache.window_size(), std::min(n, W)) << where;

  LayerKvCache whole(scheme, s);
  if (n) whole.append(ref.k.data(), ref.v.data(), n);
  ASSERT_EQ(cache.bytes(), whole.bytes()) << where;
  ASSERT_EQ(cache.bytes() == 0, n == 0) << where;

  for (KvSide side : {KvSide::Key, KvSide::Value}) {
    const std::vector<float>& x = side == KvSide::Key ? ref.k : ref.v;
    for (int h = 0; h < H; ++h) {
      std::vector<float> got(n * d), want(n * d);
      if (n) {
        cache.decode(side, h, 0, n, got.data());
        whole.decode(side, h, 0, n, want.data());
      }
      const auto window = cache.window_tokens(side, h);
      ASSERT_EQ(window.size(), cache.window_size() * d) << where;
      for (std::size_t t = 0; t < n; ++t) {
        const float* xt = x.data() + t * stride + static_cast<std::size_t>(h) * d;
        for (int j = 0; j < d; ++j) {
          ASSERT_EQ(got[t * d + j], want[t * d + j])
              << where << " token " << t << " of " << n << " head " << h << " j " << j;
        }
        ASSERT_LT(token_error(got.data() + t * d, xt, d), max_token_error)
            << where << " token " << t << " of " << n << " head " << h;
        if (t >= n - cache.window_size()) {
          const std::size_t w = t - (n - cache.window_size());
          for (int j = 0; j < d; ++j) {
            ASSERT_EQ(window[w * d + j], float_to_half(xt[j])) << where << " window token " << t;
          }
        }
      }
    }
  }
}

struct Case {
  const char* scheme;
  double max_token_error;  // per-token relative error of the decoded token
};

class KvCacheProperty : public ::testing::TestWithParam<Case> {};

TEST_P(KvCacheProperty, RandomAppendAttendClearMatchesPlainReference) {
  const Case c = GetParam();
  const KvScheme scheme = parse_kv_scheme(c.scheme);
  const LayerKvShape s{1, 4, 4, 2, 64};
  const int H = s.n_kv_heads, d = s.head_dim;
  const std::size_t stride = static_cast<std::size_t>(H) * d;
  std::mt19937 rng(1234);
  std::normal_distribution<float> g(0.0f, 1.0f);
  LayerKvCache cache(scheme, s);
  Reference ref;
  int appends = 0, attends = 0, clears = 0;
  for (int step = 0; step < 60; ++step) {
    const std::string where = std::string(c.scheme) + " step " + std::to_string(step);
    const int op = static_cast<int>(rng() % 10);
    if (op < 6) {  // append 1..40 tokens (sometimes exactly one, as in decode)
      const std::size_t count = rng() % 3 == 0 ? 1 : 1 + rng() % 40;
      std::vector<float> k(count * stride), v(count * stride);
      for (auto& x : k) x = g(rng);
      for (auto& x : v) x = g(rng);
      cache.append(k.data(), v.data(), count);
      ref.k.insert(ref.k.end(), k.begin(), k.end());
      ref.v.insert(ref.v.end(), v.begin(), v.end());
      ++appends;
    } else if (op < 9) {  // attend one query at the last position
      if (cache.size() == 0) continue;
      std::vector<float> q(static_cast<std::size_t>(s.n_q_heads) * d);
      for (auto& x : q) x = g(rng);
      std::vector<float> out(q.size()), want(q.size());
      cache.attend(q.data(), 1, cache.size() - 1, out.data());
      reference_attention(cache, q.data(), 1, cache.size() - 1, want.data());
      for (std::size_t i = 0; i < q.size(); ++i) {
        ASSERT_NEAR(out[i], want[i], 2e-4 * (1.0 + std::abs(want[i]))) << where << " i " << i;
      }
      ++attends;
    } else {  // clear
      cache.clear();
      ref.k.clear();
      ref.v.clear();
      ++clears;
    }
    check(cache, ref, scheme, s, c.max_token_error, where);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(appends, 10);
  EXPECT_GT(attends, 5);
  EXPECT_GT(clears, 1);
}

INSTANTIATE_TEST_SUITE_P(Schemes, KvCacheProperty,
                         ::testing::Values(Case{"fp16", 1e-3}, Case{"q8", 0.03}, Case{"q4r", 0.3},
                                           Case{"q4_1", 0.3}, Case{"iq4nlr:window=7", 0.3},
                                           Case{"tq4:window=0", 0.3}, Case{"tq3.5:window=16", 0.4},
                                           Case{"k4v3:window=5", 0.4},
                                           Case{"tq3:protect=2/0", 1e-3}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name;
                           for (const char* p = info.param.scheme; *p; ++p) {
                             name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace tq
