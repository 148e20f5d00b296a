// Per-layer KV widths under a memory budget (`tq calibrate`): per-layer, per-side sensitivity at
// each candidate width (one layer's keys or values quantized, everything else fp16, KLD vs fp16;
// see sensitivity.hpp), then the widths that minimise the predicted total KLD — the sum of the
// chosen per-layer-side KLDs (an additive model) — with the stored bytes per token within the
// budget. The choice is an exact multiple-choice knapsack over integer bytes (a DP), not greedy.
#pragma once

#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/eval/sensitivity.hpp"

#include <cstddef>
#include <vector>

namespace tq::eval {

// kld_keys[l][c] / kld_values[l][c]: layer l's KLD with that side at candidates[c] bits.
struct SensitivityTable {
  std::vector<double> candidates;
  std::vector<std::vector<double>> kld_keys, kld_values;
};

struct LayerBitsChoice {
  std::vector<KvLayerBits> bits;    // one per layer
  double predicted_kld = 0.0;       // sum of the chosen entries of the table
  std::size_t bytes_per_token = 0;  // K+V code bytes of one token of one KV head, all layers
  double bits_per_value = 0.0;      // 8 * bytes_per_token / (2 * layers * head_dim)
};

// The exact optimum of the additive model: per layer and side one candidate, total
// kv_side_bytes_per_token over all layers and sides <= floor(budget_bits * 2 * layers *
// head_dim / 8). Ties go to fewer bytes. Throws std::invalid_argument for an empty or ragged
// table, a width the codec rejects, or a budget below the smallest candidate everywhere.
LayerBitsChoice choose_layer_bits(const SensitivityTable& table, int head_dim, double budget_bits,
                                  RotationKind rotation = RotationKind::Hadamard);

// The table measured on a model: for every candidate c, run_sensitivity with the scheme
// "tq<c>" + (options.empty() ? "" : ":" + options). Progress: candidate index and its result rows.
using CalibrateProgressFn = std::function<void(std::size_t candidate, double bits, int layer_done,
                                               int n_layers, double seconds)>;
SensitivityTable measure_sensitivity_table(
    const Model& model, const std::vector<double>& candidates, const std::string& options,
    std::span<const TokenId> tokens, const PerplexityOptions& perplexity,
    const SessionOptions& session = {}, const CalibrateProgressFn& progress = {});

}  // namespace tq::eval
