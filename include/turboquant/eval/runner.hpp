// Shared driver code of the evaluation commands (`tq perplexity`, `tq niah`, `tq sensitivity`,
// `tq bench`, `tq report`): the window plan and scoring loop of perplexity (llama-perplexity
// chunks or a sliding window), KL divergence against a saved logits file on the same tokens, one
// NIAH cell (prompt through the chat template, greedy answer, strict scoring) and decode timing
// with the share of time spent in attention.
//
// The loops talk to a model through the small LogitsModel interface, so the metric plumbing is
// tested on a synthetic model in milliseconds; SessionModel adapts a tq::Session to it.
#pragma once

#include "turboquant/eval/metrics.hpp"
#include "turboquant/eval/niah.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tq {
struct KvScheme;
struct ModelConfig;
class Session;
class Tokenizer;
struct ChatTemplate;
}  // namespace tq

namespace tq::eval {

// A causal language model as the evaluation loops see it: one sequence, appended to in calls.
class LogitsModel {
 public:
  virtual ~LogitsModel() = default;
  virtual std::size_t n_vocab() const = 0;
  virtual void reset() = 0;  // forget the sequence
  // Appends tokens; writes the logits after every token into all_logits ([n][n_vocab]) when it
  // is not null, and returns the logits after the last one (valid until the next call).
  virtual std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits) = 0;
};

// Adapts a tq::Session (which must outlive it).
class SessionModel final : public LogitsModel {
 public:
  explicit SessionModel(Session& session) : session_(&session) {}
  std::size_t n_vocab() const override;
  void reset() override;
  std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits) override;

 private:
  Session* session_;
};

// ---------------------------------------------------------------------------------------------
// Perplexity

// One evaluated window of the token stream: tokens [start, start + length) are run from an empty
// cache, and the logits at window positions [first_scored, length − 1) are scored against the
// next token (so the window scores length − 1 − first_scored tokens).
struct EvalWindow {
  std::size_t start = 0;
  std::size_t length = 0;
  std::size_t first_scored = 0;
  std::size_t scored() const { return length - 1 - first_scored; }
};

struct PerplexityOptions {
  std::size_t context = 512;  // tokens per window
  // 0: llama-perplexity chunks — non-overlapping windows of `context` tokens, each scoring its
  // second half (positions [context/2, context − 1)). > 0: sliding window — windows of `context`
  // tokens every `stride` tokens; the first scores every token it can, each later one only the
  // tokens the previous windows did not (the last `stride`), so every token after the first is
  // scored exactly once with at least context − stride tokens of history.
  std::size_t stride = 0;
  std::size_t max_windows = 0;  // 0: as many as the text gives
  // Replace the first token of every window by this id (llama-perplexity does this with BOS so
  // that each chunk starts like a document); -1: keep the text's token.
  TokenId window_start_token = -1;
};

// The windows for a stream of n_tokens tokens. Throws std::invalid_argument when context < 2,
// context < 3 with stride 0 (the second half of 2 tokens scores none), stride > context − 1
// (tokens would be skipped), or the text holds no full window (it names the token count and the
// context).
std::vector<EvalWindow> plan_windows(std::size_t n_tokens, const PerplexityOptions& options);

struct PerplexityProgress {
  std::size_t window = 0, windows = 0;  // windows done / planned
  std::size_t tokens_scored = 0;
  double ppl = 0;        // running perplexity
  double seconds = 0;    // elapsed
  double kld_mean = -1;  // running mean KLD when a reference is given, else −1
};
using PerplexityProgressFn = std::function<void(const PerplexityProgress&)>;

struct PerplexityResult {
  PerplexityAccumulator ppl;
  std::optional<KldAccumulator> kld;  // with a reference
  std::size_t windows = 0;
  std::size_t tokens_evaluated = 0;  // tokens run through the model
  double seconds = 0;
};

// Runs every window from an empty cache and scores it. With `save`, every scored token's target
// and logits are written in scoring order; with `reference`, the same is read back and compared
// (KLD, top-1, ΔPPL): its record count and every target must match this run, else
// std::runtime_error names the first mismatch.
PerplexityResult run_perplexity(LogitsModel& model, std::span<const TokenId> tokens,
                                const PerplexityOptions& options, LogitsWriter* save = nullptr,
                                LogitsReader* reference = nullptr,
                                const PerplexityProgressFn& progress = {});

// FNV-1a 64 of a text's bytes as 16 hex digits: names the text a logits file was made on.
std::string text_hash(std::string_view text);

// Metadata stored in a logits file so that --kld can refuse a reference made on other tokens:
// model and text paths, scheme, context, stride, windows, token count and the text's hash.
std::string logits_metadata_json(const std::string& model, const std::string& text,
                                 const std::string& scheme, const PerplexityOptions& options,
                                 std::size_t n_windows, std::size_t n_tokens,
                                 const std::string& text_hash);
// Throws std::runtime_error when the reference's metadata is not this JSON or lacks a field
// (a file from elsewhere or an older tq), or disagrees with this run on context, stride, window
// count, token count or text hash (naming the field and both values). The model and scheme may
// differ: comparing them is what --kld is for.
void check_logits_metadata(const std::string& reference_metadata, const PerplexityOptions& options,
                           std::size_t n_windows, std::size_t n_tokens,
                           const std::string& text_hash);

// ---------------------------------------------------------------------------------------------
// Needle in a haystack

struct NiahCellSpec {
  NeedleKind kind = NeedleKind::kMagicNumber;
  std::size_t n_needles = 1;
  std::size_t context = 1024;  // token budget of the whole templated prompt
  double depth = 0.5;
  std::uint64_t seed = 0;
  int max_new_tokens = 0;  // 0: 12 + 12 per needle
};

struct NiahCellResult {
  NiahCellSpec spec;
  std::size_t prompt_tokens = 0;  // templated prompt incl. the answer prefix
  std::vector<double> needle_depths;
  std::string answer;  // generated text after the answer prefix
  NiahScore score;
  double seconds = 0;          // the whole cell
  double prefill_seconds = 0;  // running the prompt
  int decode_steps = 0;  // forward passes of the answer (one per generated token but the last)
  double decode_seconds = 0;
};

// How the model reads a NIAH prompt: the chat template (user turn = prompt text, assistant turn
// opened and started with the answer prefix) and the tokenizer.
class NiahPromptEncoder {
 public:
  NiahPromptEncoder(const Tokenizer& tokenizer, const ChatTemplate& chat_template);
  // Token ids of the full model input for a prompt text and answer prefix.
  std::vector<TokenId> encode(const std::string& text, const std::string& answer_prefix) const;
  // Counts the tokens the prompt text costs inside the template, answer prefix included
  // (the prefix depends on the needles only through the city names, so a fixed allowance of 32
  // tokens is reserved for it).
  std::size_t count(const std::string& text) const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  std::vector<TokenId> stop_tokens() const;  // EOS and the template's end-of-turn token

 private:
  const Tokenizer* tokenizer_;
  const ChatTemplate* template_;
};

// Builds the cell's prompt from the haystack, runs it from an empty cache, greedily generates up
// to max_new_tokens (stopping at a stop token or a newline after some digits) and scores it.
NiahCellResult run_niah_cell(LogitsModel& model, const NiahPromptEncoder& encoder,
                             const Haystack& haystack, const NiahCellSpec& spec);

struct NiahGrid {
  NeedleKind kind = NeedleKind::kMagicNumber;
  std::size_t n_needles = 1;
  std::vector<std::size_t> contexts;  // rows of the heatmap
  std::vector<double> depths;         // columns, in [0, 1]
  std::size_t seeds = 1;  // cells per (context, depth); seeds base_seed, base_seed + 1, ...
  std::uint64_t base_seed = 0;
  int max_new_tokens = 0;
};
using NiahProgressFn =
    std::function<void(const NiahCellResult&, std::size_t done, std::size_t total)>;
// Runs every cell of the grid (contexts outermost). Throws std::invalid_argument for an empty
// grid, zero seeds or a depth outside [0, 1].
std::vector<NiahCellResult> run_niah_grid(LogitsModel& model, const NiahPromptEncoder& encoder,
                                          const Haystack& haystack, const NiahGrid& grid,
                                          const NiahProgressFn& progress = {});
// Accuracy per (context, depth) cell, [row][col] in grid order (NaN where no cell ran), and the
// overall accuracy (cells correct / cells).
std::vector<std::vector<double>> niah_accuracy_table(const NiahGrid& grid,
                                                     std::span<const NiahCellResult> cells);
double niah_accuracy(std::span<const NiahCellResult> cells);
const char* needle_kind_name(NeedleKind kind, std::size_t n_needles);

// Greedy continuation: the argmax token of `logits`, fed back until max_new_tokens, a stop token,
// or (when stop_after_numbers > 0 and piece is given) once that many numbers of 4+ digits are
// complete in the text. Returns the generated ids (stop token excluded).
std::vector<TokenId> greedy_continue(LogitsModel& model, std::span<const float> logits,
                                     int max_new_tokens, std::span<const TokenId> stop_tokens,
                                     const std::function<std::string(TokenId)>& piece = {},
                                     int stop_after_numbers = 0, int* forward_passes = nullptr);

// ---------------------------------------------------------------------------------------------
// Decode speed

struct DecodeTiming {
  std::size_t context = 0;       // tokens in the cache when the timed steps start
  int steps = 0;                 // decode steps timed
  double ms_per_token = 0;       // median over the steps
  double tokens_per_second = 0;  // 1000 / ms_per_token
  double attention_ms = 0;       // median time of one token's attention over all layers (CPU
                                 // sessions; 0 on a GPU session: not measured here)
  double attention_share = 0;    // attention_ms / ms_per_token
  double kv_bytes = 0;           // cache bytes at `context`
  double kv_bits_per_value = 0;
};

// Prefills `prompt` into an empty session, then times `steps` decode steps (greedy tokens) and,
// separately, each layer's attention of one query over the cache as it stands after them
// (LayerKvCache::attend, the call a decode step makes; median of `steps` repetitions, summed over
// layers). Throws when the prompt plus steps exceed the session's context.
DecodeTiming time_decode(Session& session, std::span<const TokenId> prompt, int steps,
                         int threads = 0);

struct AttentionTiming {
  std::size_t context = 0;
  double ms = 0;  // median time of one decode query's attention summed over all layers
  double kv_bytes = 0;
  double kv_bits_per_value = 0;
};
// Attention cost of a decode step at `context` tokens without running the model to get there:
// every layer's LayerKvCache (same scheme and shapes as a Session) is filled with `context`
// synthetic tokens, then one query per layer attends (median of `reps` repetitions after one
// warm-up). The stored formats cost the same whatever the values are, so this equals the
// attention part of a real decode step at that context (checked against time_decode in tests).
AttentionTiming time_attention(const KvScheme& scheme, const ModelConfig& config,
                               std::size_t context, int reps, int threads = 0);

}  // namespace tq::eval
