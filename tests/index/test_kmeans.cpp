// k-means and the GEMM nearest-centroid assignment of IvfIndex (src/index/kmeans.hpp) against a
// brute-force double-precision reference.
#include "index/kmeans.hpp"
#include "turboquant/base/random.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <tuple>
#include <vector>

namespace tq::index {
namespace {

double l2_sq(const float* a, const float* b, int d) {
  double s = 0.0;
  for (int j = 0; j < d; ++j) s += (static_cast<double>(a[j]) - b[j]) * (a[j] - b[j]);
  return s;
}

TEST(KMeans, AssignNearestMatchesBruteForce) {
  for (const auto& [n, k, d] : {std::tuple{5000, 64, 96}, {300, 7, 33}, {10, 1, 8}}) {
    Xoshiro256 rng(static_cast<std::uint64_t>(n + k + d));
    std::vector<float> x(static_cast<std::size_t>(n) * d), c(static_cast<std::size_t>(k) * d);
    for (auto& v : x) v = static_cast<float>(rng.gaussian() + 0.5);  // off-centre: ‖x‖² ≫ 0
    for (auto& v : c) v = static_cast<float>(rng.gaussian() + 0.5);
    std::vector<int> got(n, -1);
    assign_nearest(x.data(), n, c.data(), k, d, got.data());
    for (int i = 0; i < n; ++i) {
      const float* xi = x.data() + static_cast<std::size_t>(i) * d;
      double best = std::numeric_limits<double>::infinity();
      for (int j = 0; j < k; ++j) best = std::min(best, l2_sq(xi, c.data() + j * d, d));
      ASSERT_GE(got[i], 0);
      ASSERT_LT(got[i], k);
      // The chosen centroid is the nearest up to fp32 rounding of ‖c‖² − 2⟨x, c⟩.
      const double mine = l2_sq(xi, c.data() + static_cast<std::size_t>(got[i]) * d, d);
      ASSERT_LE(mine, best + 1e-4 * (best + 1.0)) << "row " << i << " k=" << k;
    }
  }
}

TEST(KMeans, RecoversSeparatedClusters) {
  const int d = 16, k = 5, per = 200;
  Xoshiro256 rng(42);
  std::vector<float> centers(k * d), rows;
  for (auto& v : centers) v = static_cast<float>(rng.gaussian() * 20.0);
  // Interleaved so that the first k rows (the start) come from different clusters.
  for (int i = 0; i < per; ++i) {
    for (int c = 0; c < k; ++c) {
      for (int j = 0; j < d; ++j)
        rows.push_back(centers[c * d + j] + static_cast<float>(rng.gaussian()));
    }
  }
  const std::vector<float> got = kmeans(rows.data(), rows.size() / d, d, k, 10, 1);
  ASSERT_EQ(got.size(), centers.size());
  for (int c = 0; c < k; ++c) {
    double best = std::numeric_limits<double>::infinity();
    for (int j = 0; j < k; ++j)
      best = std::min(best, l2_sq(centers.data() + c * d, got.data() + j * d, d));
    // The mean of 200 unit-variance points lies within ~0.3 of the centre (d = 16).
    EXPECT_LT(std::sqrt(best), 1.0) << "cluster " << c;
  }
}

}  // namespace
}  // namespace tq::index
