// Per-layer KV widths under a budget: the sensitivity table and the exact DP chooser
// (turboquant/eval/calibrate.hpp).
#include "turboquant/eval/calibrate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tq::eval {

LayerBitsChoice choose_layer_bits(const SensitivityTable& table, int head_dim, double budget_bits,
                                  RotationKind rotation) {
  const std::size_t n_layers = table.kld_keys.size();
  const std::size_t n_cand = table.candidates.size();
  if (n_layers == 0 || n_cand == 0 || table.kld_values.size() != n_layers) {
    throw std::invalid_argument(
        "calibrate: the sensitivity table is empty or its K and V rows "
        "differ in layer count");
  }
  if (head_dim <= 0) throw std::invalid_argument("calibrate: head dim must be positive");
  std::vector<std::size_t> weight(n_cand);
  for (std::size_t c = 0; c < n_cand; ++c) {
    KvSideSpec side;
    side.format = KvFormat::TurboQuant;
    side.bits = table.candidates[c];
    weight[c] = kv_side_bytes_per_token(side, head_dim, rotation);
  }
  // Items: layer l's keys (2l) and values (2l + 1).
  const std::size_t n_items = 2 * n_layers;
  std::vector<const std::vector<double>*> cost(n_items);
  for (std::size_t l = 0; l < n_layers; ++l) {
    cost[2 * l] = &table.kld_keys[l];
    cost[2 * l + 1] = &table.kld_values[l];
    if (table.kld_keys[l].size() != n_cand || table.kld_values[l].size() != n_cand) {
      throw std::invalid_argument("calibrate: layer " + std::to_string(l) + " has " +
                                  std::to_string(table.kld_keys[l].size()) + "/" +
                                  std::to_string(table.kld_values[l].size()) +
                                  " K/V entries; expected " + std::to_string(n_cand));
    }
  }
  const double values = 2.0 * static_cast<double>(n_layers) * head_dim;
  const std::size_t capacity =
      static_cast<std::size_t>(std::floor(budget_bits * values / 8.0 + 1e-9));
  const std::size_t min_w = *std::min_element(weight.begin(), weight.end());
  if (!(budget_bits > 0) || min_w * n_items > capacity) {
    std::ostringstream msg;
    msg << "calibrate: budget " << budget_bits << " bits/value is below the smallest candidate's "
        << 8.0 * static_cast<double>(min_w * n_items) / values << " bits/value";
    throw std::invalid_argument(msg.str());
  }
  // dp[i][w]: least cost of items [0, i) with exactly w bytes; choice kept for backtracking.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> dp(n_items + 1, std::vector<double>(capacity + 1, inf));
  std::vector<std::vector<int>> pick(n_items, std::vector<int>(capacity + 1, -1));
  dp[0][0] = 0.0;
  for (std::size_t i = 0; i < n_items; ++i) {
    for (std::size_t w = 0; w <= capacity; ++w) {
      if (dp[i][w] == inf) continue;
      for (std::size_t c = 0; c < n_cand; ++c) {
        const std::size_t nw = w + weight[c];
        if (nw > capacity) continue;
        const double v = dp[i][w] + (*cost[i])[c];
        if (v < dp[i + 1][nw]) {
          dp[i + 1][nw] = v;
          pick[i][nw] = static_cast<int>(c);
        }
      }
    }
  }
  std::size_t best_w = 0;
  for (std::size_t w = 0; w <= capacity; ++w) {
    if (dp[n_items][w] < dp[n_items][best_w]) best_w = w;
  }
  LayerBitsChoice out;
  out.bits.resize(n_layers);
  out.predicted_kld = dp[n_items][best_w];
  out.bytes_per_token = best_w;
  out.bits_per_value = 8.0 * static_cast<double>(best_w) / values;
  std::size_t w = best_w;
  for (std::size_t i = n_items; i-- > 0;) {
    const int c = pick[i][w];
    const double b = table.candidates[static_cast<std::size_t>(c)];
    (i % 2 == 0 ? out.bits[i / 2].key : out.bits[i / 2].value) = b;
    w -= weight[static_cast<std::size_t>(c)];
  }
  return out;
}

SensitivityTable measure_sensitivity_table(
    const Model& model, const std::vector<double>& candidates, const std::string& options,
    std::span<const TokenId> tokens, const PerplexityOptions& perplexity,
    const SessionOptions& session, const CalibrateProgressFn& progress) {
  const int n_layers = model.config().n_layers;
  SensitivityTable table;
  table.candidates = candidates;
  table.kld_keys.assign(static_cast<std::size_t>(n_layers), {});
  table.kld_values.assign(static_cast<std::size_t>(n_layers), {});
  for (std::size_t c = 0; c < candidates.size(); ++c) {
    std::ostringstream name;
    name << "tq" << candidates[c] << (options.empty() ? "" : ":" + options);
    const KvScheme base = parse_kv_scheme(name.str());
    const auto rows = run_sensitivity(model, base, tokens, perplexity, session,
                                      [&](const LayerSensitivity&, int done, int n, double s) {
                                        if (progress) progress(c, candidates[c], done, n, s);
                                      });
    for (const LayerSensitivity& r : rows) {
      table.kld_keys[static_cast<std::size_t>(r.layer)].push_back(r.kld_keys);
      table.kld_values[static_cast<std::size_t>(r.layer)].push_back(r.kld_values);
    }
  }
  return table;
}

}  // namespace tq::eval
