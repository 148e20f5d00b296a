// SlidingWindowCache against a brute-force reference that keeps every token (rounded to fp16 as
// the cache stores them) and attends, in double, to exactly the keys at positions
// (pos − window, pos]: chunks of several sizes wrap the ring many times, GQA groups share a KV
// head, and queries early in the sequence see fewer than `window` tokens. A window off by one
// token (one key too many or too few) changes outputs by far more than the 1e-5 tolerance.
#include "turboquant/cache/sliding_window_cache.hpp"

#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

std::vector<float> gaussian(std::size_t n, tq::Xoshiro256& rng) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.gaussian());
  return v;
}

float fp16(float x) {
  return tq::half_to_float(tq::float_to_half(x));
}

TEST(SlidingWindowCache, MatchesBruteForceWindowedAttention) {
  const tq::LayerKvShape shape{
      .layer = 0, .n_layers = 1, .n_q_heads = 4, .n_kv_heads = 2, .head_dim = 16};
  const int H = shape.n_kv_heads, QH = shape.n_q_heads, d = shape.head_dim, W = 7;
  tq::SlidingWindowCache cache(shape, W, 5);
  tq::Xoshiro256 rng(42);
  std::vector<float> all_k, all_v;  // every token, fp16-rounded: [pos][H][d]
  std::size_t pos = 0;
  for (const int n : {1, 3, 5, 2, 5, 1, 1, 4, 5, 5, 3}) {
    const auto k = gaussian(static_cast<std::size_t>(n) * H * d, rng);
    const auto v = gaussian(k.size(), rng);
    const auto q = gaussian(static_cast<std::size_t>(n) * QH * d, rng);
    cache.append(k.data(), v.data(), static_cast<std::size_t>(n));
    for (float x : k) all_k.push_back(fp16(x));
    for (float x : v) all_v.push_back(fp16(x));
    std::vector<float> out(q.size(), std::nanf(""));
    cache.attend(q.data(), n, pos, out.data(), 2);
    for (int i = 0; i < n; ++i) {
      const std::size_t p = pos + static_cast<std::size_t>(i);
      const std::size_t first = p + 1 > static_cast<std::size_t>(W) ? p + 1 - W : 0;
      for (int qh = 0; qh < QH; ++qh) {
        const int h = qh / (QH / H);
        const float* qr = &q[(static_cast<std::size_t>(i) * QH + qh) * d];
        std::vector<double> s;
        for (std::size_t t = first; t <= p; ++t) {
          double dot = 0.0;
          for (int j = 0; j < d; ++j) dot += qr[j] * all_k[(t * H + h) * d + j];
          s.push_back(dot / std::sqrt(static_cast<double>(d)));
        }
        const double m = *std::max_element(s.begin(), s.end());
        double z = 0.0;
        for (double& x : s) z += (x = std::exp(x - m));
        for (int j = 0; j < d; ++j) {
          double ref = 0.0;
          for (std::size_t t = first; t <= p; ++t)
            ref += s[t - first] / z * all_v[(t * H + h) * d + j];
          const float got = out[(static_cast<std::size_t>(i) * QH + qh) * d + j];
          ASSERT_NEAR(got, ref, 1e-5) << "pos " << p << " head " << qh << " coord " << j;
        }
      }
    }
    pos += static_cast<std::size_t>(n);
    EXPECT_EQ(cache.size(), pos);
    EXPECT_EQ(cache.bytes(), 2u * std::min<std::size_t>(pos, W) * H * d * 2);
  }
}

TEST(SlidingWindowCache, RefusesWhatItCannotHold) {
  const tq::LayerKvShape shape{
      .layer = 0, .n_layers = 1, .n_q_heads = 2, .n_kv_heads = 1, .head_dim = 8};
  EXPECT_THROW(tq::SlidingWindowCache(shape, 0, 4), std::invalid_argument);
  EXPECT_THROW(tq::SlidingWindowCache(shape, 4, 0), std::invalid_argument);
  tq::LayerKvShape odd = shape;
  odd.n_q_heads = 3;
  odd.n_kv_heads = 2;
  EXPECT_THROW(tq::SlidingWindowCache(odd, 4, 4), std::invalid_argument);
  tq::SlidingWindowCache cache(shape, 4, 2);
  std::vector<float> x(3 * 8, 1.0f), out(2 * 8);
  EXPECT_THROW(cache.append(x.data(), x.data(), 3), std::invalid_argument);        // > max_append
  for (int i = 0; i < 5; ++i) cache.append(x.data(), x.data(), 2);                 // 10 tokens
  EXPECT_THROW(cache.attend(x.data(), 1, 10, out.data()), std::invalid_argument);  // not held
  // The ring (window 4 + 2) holds positions 4..9: the query at 6 needs 3..6.
  EXPECT_THROW(cache.attend(x.data(), 1, 6, out.data()), std::invalid_argument);
  EXPECT_NO_THROW(cache.attend(x.data(), 1, 8, out.data()));
}

}  // namespace
