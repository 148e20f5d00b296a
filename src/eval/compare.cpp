// The reference continuation and the per-position comparison of `tq compare`
// (turboquant/eval/compare.hpp).
#include "turboquant/eval/compare.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace tq::eval {
namespace {

// Runs the prompt from an empty sequence, then feeds feed[0 .. n − 2] one decode step each
// (the logits after the last token are never used), timing the prefill and the steps.
// visit(i, logits) sees the logits that predict position i of the continuation (i = 0: after
// the prompt); feed[i] is read only after visit(i), so a visit may append it.
template <typename Visit>
GenerationTiming run_timed(LogitsModel& model, std::span<const TokenId> prompt, std::size_t n,
                           const std::vector<TokenId>& feed, Visit&& visit) {
  using clock = std::chrono::steady_clock;
  GenerationTiming timing;
  model.reset();
  auto t0 = clock::now();
  std::span<const float> logits = model.eval(prompt, nullptr);
  timing.prefill_tokens = prompt.size();
  timing.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  for (std::size_t i = 0; i < n; ++i) {
    visit(i, logits);
    if (i + 1 == n) break;
    t0 = clock::now();
    logits = model.eval(std::span<const TokenId>(&feed[i], 1), nullptr);
    timing.decode_seconds += std::chrono::duration<double>(clock::now() - t0).count();
    ++timing.decode_steps;
  }
  return timing;
}

}  // namespace

Continuation greedy_continuation(LogitsModel& model, std::span<const TokenId> prompt,
                                 int n_tokens) {
  if (prompt.empty()) throw std::invalid_argument("greedy_continuation: empty prompt");
  if (n_tokens < 1) {
    throw std::invalid_argument("greedy_continuation: n_tokens must be >= 1, got " +
                                std::to_string(n_tokens));
  }
  const std::size_t n = static_cast<std::size_t>(n_tokens), vocab = model.n_vocab();
  Continuation c;
  c.tokens.reserve(n);
  c.logits.resize(n * vocab);
  c.timing = run_timed(model, prompt, n, c.tokens, [&](std::size_t i, std::span<const float> row) {
    std::copy(row.begin(), row.end(), c.logits.begin() + static_cast<std::ptrdiff_t>(i * vocab));
    c.tokens.push_back(static_cast<TokenId>(argmax(row)));
  });
  return c;
}

ContinuationComparison compare_with_reference(LogitsModel& model, std::span<const TokenId> prompt,
                                              const Continuation& reference) {
  const std::size_t n = reference.tokens.size(), vocab = model.n_vocab();
  if (n == 0) throw std::invalid_argument("compare_with_reference: empty reference");
  if (reference.logits.size() != n * vocab) {
    throw std::invalid_argument("compare_with_reference: reference holds " +
                                std::to_string(reference.logits.size()) + " logits, expected " +
                                std::to_string(n) + " tokens x " + std::to_string(vocab) +
                                " (another vocabulary?)");
  }
  ContinuationComparison r;
  r.positions = n;
  bool diverged = false;
  r.timing = run_timed(model, prompt, n, reference.tokens, [&](std::size_t i, auto row) {
    const TokenId target = reference.tokens[i];
    const std::span<const float> ref(reference.logits.data() + i * vocab, vocab);
    r.kld.add(ref, row, target);
    diverged = diverged || static_cast<TokenId>(argmax(row)) != target;
    if (!diverged) ++r.common_prefix;
  });
  return r;
}

}  // namespace tq::eval
