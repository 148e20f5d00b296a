// Deterministic, platform-independent random numbers for rotations and QJL matrices.
// std::normal_distribution is implementation-defined, so we use SplitMix64 / xoshiro256** and
// Box-Muller ourselves: the same seed gives the same rotation on every compiler and machine,
// which is what lets a cache written by one build be read by another (and by the GPU).
#pragma once

#include "turboquant/base/kv_side.hpp"

#include <cmath>
#include <cstdint>

namespace tq {

inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// What a derived seed is used for; part of the derivation so that streams never collide.
enum class SeedPurpose : std::uint32_t { Rotation = 1, QjlMatrix = 2, Test = 3 };

// Seed for one (layer, K or V, purpose) stream, derived from a single user seed.
inline std::uint64_t derive_seed(std::uint64_t user_seed, std::uint32_t layer, KvSide side,
                                 SeedPurpose purpose) {
  std::uint64_t state = user_seed ^ 0x7475726271756e74ull;  // "turbqunt"
  std::uint64_t h = splitmix64(state);
  state = h ^ (static_cast<std::uint64_t>(layer) << 32 | static_cast<std::uint32_t>(side));
  h = splitmix64(state);
  state = h ^ static_cast<std::uint64_t>(purpose);
  return splitmix64(state);
}

class Xoshiro256 {
 public:
  explicit Xoshiro256(std::uint64_t seed) {
    std::uint64_t sm = seed;
    for (auto& word : state_) word = splitmix64(sm);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in (0, 1): never exactly 0, so log() in Box-Muller is safe.
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }

  double gaussian() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = 6.283185307179586476925 * uniform();
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

  bool coin() { return (next() >> 63) != 0; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace tq
