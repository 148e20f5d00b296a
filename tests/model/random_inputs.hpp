// Fresh random inputs shared by the model-area tests.
#pragma once

#include <cstddef>
#include <random>
#include <vector>

namespace tq::testing {

// n standard-normal floats from seed.
inline std::vector<float> random_normal_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace tq::testing
