// Tests of the scheme comparison (turboquant/eval/compare.hpp) on fake models: the greedy
// continuation picks each row's argmax and feeds it back; a model identical to the reference
// agrees everywhere with zero KLD; one whose choice changes from a known position has exactly
// that common prefix, top-1 below 1 and a positive KLD; the compared model is fed the
// reference's tokens; the steps are counted; bad inputs are refused.
#include "turboquant/eval/compare.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace tq::eval {
namespace {

constexpr std::size_t kVocab = 16;

// Logits from the previous token and the position; at absolute positions [flip_from, flip_to)
// the runner-up of every row is pushed above the top (so the argmax changes there and only
// there).
class FlippingModel : public LogitsModel {
 public:
  explicit FlippingModel(std::size_t flip_from = SIZE_MAX, std::size_t flip_to = SIZE_MAX)
      : flip_from_(flip_from), flip_to_(flip_to), last_(kVocab) {}
  std::size_t n_vocab() const override { return kVocab; }
  void reset() override {
    pos_ = 0;
    fed.clear();
  }
  std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits) override {
    for (const TokenId t : tokens) {
      fed.push_back(t);
      for (std::size_t v = 0; v < kVocab; ++v) {
        last_[v] = static_cast<float>(2.0 * std::sin(0.37 * t * (v + 1) + 0.05 * pos_) + 0.1 * v);
      }
      if (pos_ >= flip_from_ && pos_ < flip_to_) {
        const std::size_t top = argmax(last_);
        last_[(top + 1) % kVocab] = last_[top] + 1.0f;
      }
      ++pos_;
    }
    EXPECT_EQ(all_logits, nullptr);
    return last_;
  }
  std::vector<TokenId> fed;  // every token since the last reset

 private:
  std::size_t flip_from_, flip_to_;
  std::size_t pos_ = 0;
  std::vector<float> last_;
};

const std::vector<TokenId> kPrompt = {3, 1, 4, 1, 5, 9, 2, 6};

TEST(EvalCompare, GreedyContinuationFeedsBackEachArgmax) {
  FlippingModel m;
  const Continuation c = greedy_continuation(m, kPrompt, 6);
  ASSERT_EQ(c.tokens.size(), 6u);
  ASSERT_EQ(c.logits.size(), 6 * kVocab);
  for (std::size_t i = 0; i < c.tokens.size(); ++i) {
    const std::span<const float> row(c.logits.data() + i * kVocab, kVocab);
    EXPECT_EQ(c.tokens[i], static_cast<TokenId>(argmax(row))) << "position " << i;
  }
  // The prompt, then every generated token but the last.
  std::vector<TokenId> expected = kPrompt;
  expected.insert(expected.end(), c.tokens.begin(), c.tokens.end() - 1);
  EXPECT_EQ(m.fed, expected);
  EXPECT_EQ(c.timing.prefill_tokens, kPrompt.size());
  EXPECT_EQ(c.timing.decode_steps, 5);
  EXPECT_GE(c.timing.prefill_seconds, 0.0);
}

TEST(EvalCompare, IdenticalModelAgreesEverywhere) {
  FlippingModel ref_model, same;
  const Continuation ref = greedy_continuation(ref_model, kPrompt, 10);
  compare_with_reference(same, kPrompt, ref);  // a model is reused from an empty sequence
  const ContinuationComparison r = compare_with_reference(same, kPrompt, ref);
  EXPECT_EQ(r.positions, 10u);
  EXPECT_EQ(r.common_prefix, 10u);
  EXPECT_EQ(r.kld.count(), 10u);
  EXPECT_EQ(r.kld.mean(), 0.0);
  EXPECT_EQ(r.kld.top1_agreement(), 1.0);
  EXPECT_EQ(r.timing.decode_steps, 9);
}

TEST(EvalCompare, DivergenceAtAKnownPosition) {
  FlippingModel ref_model;
  const Continuation ref = greedy_continuation(ref_model, kPrompt, 10);
  // Absolute position p predicts continuation position p − (prompt − 1): flipping positions
  // [prompt − 1 + 4, prompt − 1 + 6) changes the argmax at continuation positions 4 and 5 only.
  const std::size_t first = kPrompt.size() - 1 + 4;
  FlippingModel flipped(first, first + 2);
  const ContinuationComparison r = compare_with_reference(flipped, kPrompt, ref);
  EXPECT_EQ(r.common_prefix, 4u);  // counted up to the first difference only
  EXPECT_EQ(r.kld.top1_agreement(), 0.8);
  EXPECT_GT(r.kld.mean(), 0.0);
  EXPECT_EQ(r.kld.values()[3], 0.0);
  EXPECT_GT(r.kld.values()[4], 0.0);
  EXPECT_EQ(r.kld.values()[6], 0.0);
  // Fed the reference's tokens, not its own choices, after the prompt.
  std::vector<TokenId> expected = kPrompt;
  expected.insert(expected.end(), ref.tokens.begin(), ref.tokens.end() - 1);
  EXPECT_EQ(flipped.fed, expected);
}

TEST(EvalCompare, RefusesBadInputs) {
  FlippingModel m;
  EXPECT_THROW(greedy_continuation(m, {}, 4), std::invalid_argument);
  EXPECT_THROW(greedy_continuation(m, kPrompt, 0), std::invalid_argument);
  Continuation ref = greedy_continuation(m, kPrompt, 3);
  ref.logits.pop_back();
  EXPECT_THROW(compare_with_reference(m, kPrompt, ref), std::invalid_argument);
  EXPECT_THROW(compare_with_reference(m, kPrompt, Continuation{}), std::invalid_argument);
}

}  // namespace
}  // namespace tq::eval
