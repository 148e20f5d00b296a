// Next-token sampling from logits: greedy (argmax), or temperature with optional top-k and top-p
// (nucleus) truncation, driven by a seeded platform-independent generator so that a seed gives
// the same tokens on every machine.
#pragma once

#include "turboquant/base/random.hpp"

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace tq {

using TokenId = std::int32_t;

struct SamplerOptions {
  float temperature = 0.0f;  // <= 0: greedy
  float top_p = 1.0f;        // keep the smallest set of most likely tokens with mass >= top_p
  int top_k = 0;             // keep the k most likely tokens; 0: all
  std::uint64_t seed = 0;
};

// Index of the largest logit (the lowest index among equal maxima). Throws on empty input.
TokenId argmax(std::span<const float> logits);

class Sampler {
 public:
  // Throws std::invalid_argument for top_p outside (0, 1], negative top_k or a NaN temperature.
  explicit Sampler(const SamplerOptions& options = {});

  TokenId sample(std::span<const float> logits);

  // The candidates and probabilities the last non-greedy sample() drew from, most likely first
  // (after temperature, top-k and top-p, renormalised). Exposed for tests.
  const std::vector<std::pair<TokenId, float>>& last_candidates() const { return candidates_; }
  const SamplerOptions& options() const { return options_; }

 private:
  SamplerOptions options_;
  Xoshiro256 rng_;
  std::vector<std::pair<TokenId, float>> candidates_;  // reused between calls
};

}  // namespace tq
