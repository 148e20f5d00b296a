// Token sampling: argmax, and temperature + top-k + top-p over a candidate list that is reused
// between calls. For top-p alone it first sorts only the leading candidates (nucleus mass is
// almost always inside the top few hundred) and falls back to a full sort when it is not.
#include "turboquant/model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tq {

TokenId argmax(std::span<const float> logits) {
  if (logits.empty()) throw std::invalid_argument("argmax: empty logits");
  return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  if (std::isnan(options.temperature)) {
    throw std::invalid_argument("sampler: temperature is NaN");
  }
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f)) {
    throw std::invalid_argument("sampler: top_p = " + std::to_string(options.top_p) +
                                " (expected 0 < top_p <= 1)");
  }
  if (options.top_k < 0) {
    throw std::invalid_argument("sampler: top_k = " + std::to_string(options.top_k) +
                                " (expected >= 0; 0 means no limit)");
  }
}

TokenId Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) throw std::invalid_argument("sampler: empty logits");
  if (options_.temperature <= 0.0f) return argmax(logits);

  const std::size_t n = logits.size();
  candidates_.resize(n);
  for (std::size_t i = 0; i < n; ++i) candidates_[i] = {static_cast<TokenId>(i), logits[i]};
  auto by_logit = [](const std::pair<TokenId, float>& a, const std::pair<TokenId, float>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  std::size_t keep = n;
  if (options_.top_k > 0) keep = std::min<std::size_t>(keep, options_.top_k);

  // Probabilities over all tokens need only the maximum and the partition function.
  const float inv_t = 1.0f / options_.temperature;
  float max_logit = -INFINITY;
  for (std::size_t i = 0; i < n; ++i) max_logit = std::max(max_logit, logits[i]);
  double z = 0.0;
  for (std::size_t i = 0; i < n; ++i) z += std::exp((logits[i] - max_logit) * inv_t);

  // Sort a prefix; widen it until it holds the top-p mass (or everything top-k allows).
  std::size_t sorted = std::min<std::size_t>(keep, 256);
  for (;;) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + sorted, candidates_.end(),
                      by_logit);
    if (sorted == keep || options_.top_p >= 1.0f) {
      if (sorted == keep) break;
    } else {
      double mass = 0.0;
      for (std::size_t i = 0; i < sorted; ++i) {
        mass += std::exp((candidates_[i].second - max_logit) * inv_t) / z;
      }
      if (mass >= options_.top_p) break;
    }
    sorted = std::min(keep, sorted * 4);
  }
  // Probabilities (relative to all tokens), top-p cut, renormalise.
  double mass = 0.0;
  std::size_t cut = sorted;
  for (std::size_t i = 0; i < sorted; ++i) {
    const double p = std::exp((candidates_[i].second - max_logit) * inv_t) / z;
    candidates_[i].second = static_cast<float>(p);
    mass += p;
    if (mass >= options_.top_p && options_.top_p < 1.0f) {
      cut = i + 1;
      break;
    }
  }
  candidates_.resize(cut);
  double total = 0.0;
  for (const auto& cand : candidates_) total += cand.second;
  for (auto& cand : candidates_) cand.second = static_cast<float>(cand.second / total);

  const double u = rng_.uniform();
  double acc = 0.0;
  for (const auto& cand : candidates_) {
    acc += cand.second;
    if (u < acc) return cand.first;
  }
  return candidates_.back().first;  // rounding left u just above the final sum
}

}  // namespace tq
