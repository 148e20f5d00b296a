// Test helper: drives a batched Session (decode_batch) and, beside it, one single-sequence
// Session per sequence fed the same tokens, and reports how far each active row's logits are from
// its single-sequence twin. Sequences start from prompts of different lengths, one sits some
// steps out (Session::kNoToken) and one finishes early, so per-sequence positions, inactive rows
// and resumed sequences are all exercised. Used by the CPU (synthetic model) and GPU tests.
#pragma once

#include "turboquant/model/model.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace tq::testing {

struct BatchedDecodeResult {
  double max_abs = 0.0;  // over every active row of every step
  double sum_abs = 0.0;  // for the mean
  std::size_t values = 0;
  std::size_t rows = 0, top1_same = 0;
  bool positions_ok = true;  // each sequence's position advanced exactly when it was active
  double mean_abs() const { return values ? sum_abs / values : 0.0; }
  double top1() const { return rows ? static_cast<double>(top1_same) / rows : 0.0; }
};

// batched: options for the batched session (batch = prompts.size() is set here); single: for
// the per-sequence sessions. Step s feeds sequence b token (s * 7 + 3 * b + 1) % n_vocab unless
// it sits out: sequence 1 sits out steps [2, 5), the last sequence stops after steps/2 steps.
inline BatchedDecodeResult check_batched_decode(const Model& model, const std::string& scheme,
                                                SessionOptions batched, SessionOptions single,
                                                const std::vector<std::vector<TokenId>>& prompts,
                                                int steps) {
  const int B = static_cast<int>(prompts.size());
  const int V = model.config().n_vocab;
  batched.batch = B;
  single.batch = 1;
  Session many(model, scheme, batched);
  std::vector<Session> ones;
  for (int b = 0; b < B; ++b) {
    ones.emplace_back(model, scheme, single);
    many.eval(b, prompts[static_cast<std::size_t>(b)]);
    ones.back().eval(prompts[static_cast<std::size_t>(b)]);
  }
  BatchedDecodeResult r;
  for (int s = 0; s < steps; ++s) {
    std::vector<TokenId> tokens(static_cast<std::size_t>(B));
    for (int b = 0; b < B; ++b) {
      const bool out = (b == 1 && s >= 2 && s < 5) || (b == B - 1 && B > 2 && s >= steps / 2);
      tokens[static_cast<std::size_t>(b)] =
          out ? Session::kNoToken : static_cast<TokenId>((s * 7 + 3 * b + 1) % V);
    }
    std::vector<std::size_t> before(static_cast<std::size_t>(B));
    for (int b = 0; b < B; ++b) before[static_cast<std::size_t>(b)] = many.position(b);
    const std::span<const float> all = many.decode_batch(tokens);
    for (int b = 0; b < B; ++b) {
      const TokenId t = tokens[static_cast<std::size_t>(b)];
      const std::size_t want =
          before[static_cast<std::size_t>(b)] + (t == Session::kNoToken ? 0 : 1);
      if (many.position(b) != want) r.positions_ok = false;
      if (t == Session::kNoToken) continue;
      const std::span<const float> one = ones[static_cast<std::size_t>(b)].decode(t);
      const float* row = all.data() + static_cast<std::size_t>(b) * V;
      for (int i = 0; i < V; ++i) {
        const double e = std::abs(static_cast<double>(row[i]) - one[static_cast<std::size_t>(i)]);
        r.max_abs = std::max(r.max_abs, e);
        r.sum_abs += e;
      }
      r.values += static_cast<std::size_t>(V);
      r.rows += 1;
      r.top1_same += std::max_element(row, row + V) - row ==
                     std::max_element(one.begin(), one.end()) - one.begin();
    }
  }
  return r;
}

}  // namespace tq::testing
