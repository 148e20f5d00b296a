// Tests of the evaluation driver (turboquant/eval/runner.hpp): the perplexity window plan (both
// conventions, limits and errors), metric plumbing through run_perplexity on synthetic models
// (uniform logits give PPL = vocabulary size, a run against its own saved logits gives KLD 0, a
// perturbed model gives KLD > 0, a reference from other tokens is refused), greedy continuation
// stops, and one NIAH cell end to end on the real model when it is present.
#include "turboquant/eval/runner.hpp"
#include "turboquant/model/chat_template.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/tokenizer.hpp"

#include "thrown_message.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

namespace tq::eval {
namespace {

// Logits depend on the previous token and the position in the sequence (so a reset that did not
// happen or a shifted window would change them); `noise` perturbs them deterministically.
class FakeModel : public LogitsModel {
 public:
  explicit FakeModel(std::size_t vocab, double noise = 0.0, bool uniform = false)
      : vocab_(vocab), noise_(noise), uniform_(uniform), last_(vocab) {}
  std::size_t n_vocab() const override { return vocab_; }
  void reset() override {
    pos_ = 0;
    ++resets;
  }
  std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits) override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (pos_ == 0) first_tokens.push_back(tokens[i]);
      row(tokens[i], pos_++, last_.data());
      if (all_logits) std::copy(last_.begin(), last_.end(), all_logits + i * vocab_);
      ++evaluated;
    }
    return last_;
  }
  std::size_t resets = 0, evaluated = 0;
  std::vector<TokenId> first_tokens;

 private:
  void row(TokenId prev, std::size_t pos, float* out) const {
    for (std::size_t v = 0; v < vocab_; ++v) {
      if (uniform_) {
        out[v] = 0.0f;
        continue;
      }
      double x = std::sin(0.37 * prev * (v + 1) + 0.01 * pos) * 2.0;
      if (v == static_cast<std::size_t>((prev + 1) % static_cast<TokenId>(vocab_))) x += 3.0;
      x += noise_ * std::cos(1.3 * v + 0.7 * prev);
      out[v] = static_cast<float>(x);
    }
  }
  std::size_t vocab_;
  double noise_;
  bool uniform_;
  std::size_t pos_ = 0;
  std::vector<float> last_;
};

std::vector<TokenId> stream(std::size_t n, std::size_t vocab) {
  std::vector<TokenId> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<TokenId>((i * 7 + i / 3) % vocab);
  return t;
}

TEST(EvalRunner, ChunkPlanFollowsLlamaPerplexity) {
  PerplexityOptions o;
  o.context = 100;
  const auto w = plan_windows(1050, o);
  ASSERT_EQ(w.size(), 10u);
  EXPECT_EQ(w[3].start, 300u);
  EXPECT_EQ(w[3].length, 100u);
  EXPECT_EQ(w[3].first_scored, 50u);
  EXPECT_EQ(w[3].scored(), 49u);  // positions 50..98 predict tokens 51..99
  o.max_windows = 4;
  EXPECT_EQ(plan_windows(1050, o).size(), 4u);
}

TEST(EvalRunner, SlidingWindowScoresEveryTokenOnce) {
  PerplexityOptions o;
  o.context = 64;
  o.stride = 24;
  const std::size_t n = 500;
  const auto w = plan_windows(n, o);
  std::vector<int> hits(n, 0);
  for (const EvalWindow& win : w) {
    EXPECT_EQ(win.length, 64u);
    for (std::size_t j = win.first_scored; j + 1 < win.length; ++j) ++hits[win.start + j + 1];
  }
  const std::size_t last_end = w.back().start + w.back().length;
  for (std::size_t t = 1; t < last_end; ++t) EXPECT_EQ(hits[t], 1) << "token " << t;
  EXPECT_EQ(hits[0], 0);
  EXPECT_GT(last_end + o.stride, n);             // no further full window fits
  EXPECT_EQ(w[1].first_scored, 64u - 24u - 1u);  // history of context − stride tokens
}

TEST(EvalRunner, PlanRejectsBadOptions) {
  PerplexityOptions o;
  o.context = 1;
  EXPECT_THROW(plan_windows(100, o), std::invalid_argument);
  o.context = 64;
  o.stride = 64;  // would skip a token between windows
  EXPECT_THROW(plan_windows(1000, o), std::invalid_argument);
  o.stride = 0;
  const std::string short_text = tests::thrown_message([&] { plan_windows(63, o); });
  EXPECT_NE(short_text.find("63"), std::string::npos) << short_text;
  // Two tokens with the second half scored score none (the model once got an empty batch).
  o.context = 2;
  const std::string too_small = tests::thrown_message([&] { plan_windows(100, o); });
  EXPECT_NE(too_small.find("expected at least 3"), std::string::npos) << too_small;
  o.stride = 1;  // a sliding window of two scores one token each
  EXPECT_EQ(plan_windows(100, o).size(), 99u);
}

TEST(EvalRunner, UniformLogitsGiveVocabularyPerplexity) {
  FakeModel model(37, 0.0, /*uniform=*/true);
  PerplexityOptions o;
  o.context = 32;
  const auto tokens = stream(200, 37);
  const PerplexityResult r = run_perplexity(model, tokens, o);
  EXPECT_EQ(r.windows, 6u);
  EXPECT_EQ(r.ppl.count(), 6u * 15u);
  EXPECT_NEAR(r.ppl.ppl(), 37.0, 1e-9);
  EXPECT_EQ(model.resets, 6u);
  EXPECT_EQ(r.tokens_evaluated, 6u * 31u);  // the window's last token is never run
  EXPECT_EQ(model.evaluated, r.tokens_evaluated);
}

TEST(EvalRunner, WindowStartTokenReplacesFirstToken) {
  FakeModel model(50);
  PerplexityOptions o;
  o.context = 16;
  o.window_start_token = 49;
  run_perplexity(model, stream(100, 50), o);
  ASSERT_EQ(model.first_tokens.size(), 6u);
  for (const TokenId t : model.first_tokens) EXPECT_EQ(t, 49);
}

class RunnerFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("tq_test_eval_runner_" +
             std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".logits");
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_;
};

TEST_F(RunnerFiles, KldAgainstOwnLogitsIsZeroAndPerturbedIsPositive) {
  const std::size_t V = 41;
  const auto tokens = stream(400, V);
  PerplexityOptions o;
  o.context = 40;
  o.stride = 10;
  PerplexityResult ref;
  {
    FakeModel model(V);
    LogitsWriter writer(path_, V, LogitsDtype::kFloat32);
    ref = run_perplexity(model, tokens, o, &writer);
    writer.finish();
  }
  {
    FakeModel model(V);
    LogitsReader reader(path_);
    const PerplexityResult r = run_perplexity(model, tokens, o, nullptr, &reader);
    ASSERT_TRUE(r.kld.has_value());
    EXPECT_EQ(r.kld->count(), ref.ppl.count());
    // The file stores each row minus its maximum in float: equal up to float rounding.
    EXPECT_NEAR(r.kld->mean(), 0.0, 1e-7);
    EXPECT_DOUBLE_EQ(r.kld->top1_agreement(), 1.0);
    EXPECT_NEAR(r.kld->delta_ppl(), 0.0, 1e-5);
    EXPECT_NEAR(r.ppl.ppl(), ref.ppl.ppl(), 1e-9);
  }
  {
    FakeModel model(V, /*noise=*/0.8);
    LogitsReader reader(path_);
    const PerplexityResult r = run_perplexity(model, tokens, o, nullptr, &reader);
    EXPECT_GT(r.kld->mean(), 1e-3);
    EXPECT_LT(r.kld->top1_agreement(), 1.0);
    // ΔPPL is the difference of the two runs' perplexities on the same tokens.
    EXPECT_NEAR(r.kld->delta_ppl(), r.ppl.ppl() - ref.ppl.ppl(), 1e-5);
  }
}

TEST_F(RunnerFiles, ReferenceFromOtherTokensIsRefused) {
  const std::size_t V = 23;
  PerplexityOptions o;
  o.context = 20;
  {
    FakeModel model(V);
    LogitsWriter writer(path_, V);
    run_perplexity(model, stream(100, V), o, &writer);
    writer.finish();
  }
  std::vector<TokenId> other = stream(100, V);
  other[15] = (other[15] + 1) % static_cast<TokenId>(V);  // a scored target differs
  FakeModel model(V);
  LogitsReader reader(path_);
  EXPECT_THROW(run_perplexity(model, other, o, nullptr, &reader), std::runtime_error);
  // More windows than the reference holds.
  LogitsReader reader2(path_);
  o.context = 10;
  EXPECT_THROW(run_perplexity(model, stream(100, V), o, nullptr, &reader2), std::runtime_error);
}

TEST(EvalRunner, MetadataMismatchIsRefused) {
  PerplexityOptions o;
  o.context = 512;
  const std::string hash = text_hash("the text");
  EXPECT_EQ(hash, "8384e0d974d4bc63");  // FNV-1a 64 of "the text"
  const std::string meta = logits_metadata_json("m", "t", "fp16", o, 4, 1000, hash);
  EXPECT_NO_THROW(check_logits_metadata(meta, o, 4, 1000, hash));
  EXPECT_THROW(check_logits_metadata(meta, o, 5, 1000, hash), std::runtime_error);
  // Another text with the same token count (issue 17: a mixed or foreign file was accepted).
  EXPECT_THROW(check_logits_metadata(meta, o, 4, 1000, text_hash("other text")),
               std::runtime_error);
  // Metadata without the hash (an older tq) or not JSON at all is refused, not trusted.
  const std::string old = R"({"context":)" + std::to_string(o.context) +
                          R"(,"stride":0,"windows":4,"text_tokens":1000})";
  EXPECT_THROW(check_logits_metadata(old, o, 4, 1000, hash), std::runtime_error);
  PerplexityOptions other = o;
  other.context = 256;
  EXPECT_THROW(check_logits_metadata(meta, other, 4, 1000, hash), std::runtime_error);
  EXPECT_THROW(check_logits_metadata("not json", o, 4, 1000, hash), std::runtime_error);
}

// Emits a fixed script of tokens: the argmax of each returned row is the next scripted id.
class ScriptModel : public LogitsModel {
 public:
  explicit ScriptModel(std::vector<TokenId> script) : script_(std::move(script)), row_(16) {}
  std::size_t n_vocab() const override { return 16; }
  void reset() override { next_ = 0; }
  std::span<const float> eval(std::span<const TokenId>, float*) override {
    std::fill(row_.begin(), row_.end(), 0.0f);
    row_[static_cast<std::size_t>(script_[std::min(next_, script_.size() - 1)])] = 1.0f;
    ++next_;
    ++calls;
    return row_;
  }
  int calls = 0;

 private:
  std::vector<TokenId> script_;
  std::size_t next_ = 0;
  std::vector<float> row_;
};

TEST(EvalRunner, GreedyContinueStopsAtStopTokenOrAfterNumbers) {
  // Tokens 0-9 are digits, 10 a space, 11 a period, 15 the stop token.
  const auto piece = [](TokenId id) -> std::string {
    if (id < 10) return std::string(1, static_cast<char>('0' + id));
    return id == 10 ? " " : id == 11 ? "." : "x";
  };
  const std::vector<TokenId> stops = {15};
  {
    ScriptModel m({1, 2, 3, 15, 4});
    const auto first = m.eval({}, nullptr);
    int passes = -1;
    const auto out = greedy_continue(m, first, 10, stops, piece, 0, &passes);
    EXPECT_EQ(out, (std::vector<TokenId>{1, 2, 3}));
    EXPECT_EQ(passes, 3);
  }
  {
    ScriptModel m({10, 4, 8, 2, 1, 11, 12, 12, 12});
    const auto first = m.eval({}, nullptr);
    const auto out = greedy_continue(m, first, 20, stops, piece, 1);
    EXPECT_EQ(out, (std::vector<TokenId>{10, 4, 8, 2, 1, 11}));  // " 4821." then stop
  }
  {
    ScriptModel m({12, 12, 12, 12, 12});
    const auto first = m.eval({}, nullptr);
    int passes = -1;
    const auto out = greedy_continue(m, first, 4, stops, piece, 1, &passes);
    EXPECT_EQ(out.size(), 4u);
    EXPECT_EQ(passes, 3);  // the last token needs no forward pass
  }
}

TEST(EvalRunner, NiahCellOnRealModel) {
  const std::filesystem::path path = TQ_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model missing: " << path;
  const gguf::File file = gguf::File::open(path);
  const Model model = Model::from_gguf(file);
  const Tokenizer tokenizer = Tokenizer::from_gguf(file);
  const ChatTemplate chat = detect_chat_template(file);
  const NiahPromptEncoder encoder(tokenizer, chat);
  SessionOptions so;
  so.max_context = 512;
  Session session(model, "fp16", so);
  SessionModel lm(session);
  NiahCellSpec spec;
  spec.context = 256;
  spec.depth = 0.5;
  spec.seed = 3;
  const NiahCellResult r = run_niah_cell(lm, encoder, Haystack::filler(5, 1 << 14), spec);
  EXPECT_LE(r.prompt_tokens + static_cast<std::size_t>(r.decode_steps) + 1, spec.context);
  EXPECT_GT(r.prompt_tokens, spec.context / 2);
  ASSERT_EQ(r.score.found.size(), 1u);
  EXPECT_TRUE(r.score.correct) << "answer: '" << r.answer << "'";
}

}  // namespace
}  // namespace tq::eval
