// Side-by-side comparison of KV-cache schemes on one prompt (`tq compare`): a reference model
// (the fp16 cache) continues the prompt greedily; every other scheme then runs the same tokens
// — the prompt as one prefill, the reference's continuation fed back as decode steps — so its
// next-token distribution is compared with the reference's at every generated position:
//   common prefix   how many of the reference's greedy tokens come first from the scheme too,
//                   i.e. how long the scheme's own greedy run would match the reference's (the
//                   two feed identical tokens up to the first difference);
//   top-1, KLD      top-1 agreement and KL divergence over all generated positions (after the
//                   first difference, on the reference's tokens, so the positions stay aligned).
// Both runs are timed (prefill, and the decode steps), so speed sits beside quality.
#pragma once

#include "turboquant/eval/metrics.hpp"
#include "turboquant/eval/runner.hpp"

#include <cstddef>
#include <span>
#include <vector>

namespace tq::eval {

// What running a prompt and a continuation cost.
struct GenerationTiming {
  std::size_t prefill_tokens = 0;
  double prefill_seconds = 0;
  int decode_steps = 0;  // forward passes after the prefill, one token each
  double decode_seconds = 0;
  double prefill_tokens_per_second() const {
    return prefill_seconds > 0 ? prefill_tokens / prefill_seconds : 0.0;
  }
  double decode_tokens_per_second() const {
    return decode_seconds > 0 ? decode_steps / decode_seconds : 0.0;
  }
};

// A greedy continuation and the distributions it was picked from.
struct Continuation {
  std::vector<TokenId> tokens;  // n generated tokens (end-of-text is not special)
  std::vector<float> logits;    // [n][n_vocab]: logits[i] chose tokens[i]
  GenerationTiming timing;      // n − 1 decode steps: the last token needs no forward pass
};

// Runs `prompt` from an empty sequence, then picks n_tokens tokens greedily (argmax), feeding
// each back. Throws std::invalid_argument for an empty prompt or n_tokens < 1.
Continuation greedy_continuation(LogitsModel& model, std::span<const TokenId> prompt, int n_tokens);

struct ContinuationComparison {
  std::size_t positions = 0;      // generated positions compared (the reference's n)
  std::size_t common_prefix = 0;  // leading positions whose argmax is the reference's token
  KldAccumulator kld;             // per position vs the reference: KLD, top-1, NLL of its token
  GenerationTiming timing;
};

// Runs `prompt` from an empty sequence and the reference's tokens after it, comparing the
// logits before each of them with the reference's.
ContinuationComparison compare_with_reference(LogitsModel& model, std::span<const TokenId> prompt,
                                              const Continuation& reference);

}  // namespace tq::eval
