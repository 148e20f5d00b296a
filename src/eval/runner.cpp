// Driver loops of the evaluation commands (see turboquant/eval/runner.hpp): perplexity windows and
// scoring with optional logits save / KLD against a reference, NIAH cells through the chat
// template with greedy answers, and decode timing with the attention share.
#include "turboquant/eval/runner.hpp"

#include "turboquant/base/hash.hpp"
#include "turboquant/model/chat_template.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/sampler.hpp"
#include "turboquant/model/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tq::eval {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SessionModel

std::size_t SessionModel::n_vocab() const {
  return static_cast<std::size_t>(session_->model().config().n_vocab);
}
void SessionModel::reset() {
  session_->reset();
}
std::span<const float> SessionModel::eval(std::span<const TokenId> tokens, float* all_logits) {
  return session_->eval(tokens, all_logits);
}

// ---------------------------------------------------------------------------------------------
// Perplexity

std::vector<EvalWindow> plan_windows(std::size_t n_tokens, const PerplexityOptions& options) {
  const std::size_t ctx = options.context;
  if (ctx < 2) {
    throw std::invalid_argument("perplexity context must be >= 2 tokens, got " +
                                std::to_string(ctx));
  }
  if (options.stride == 0 && ctx < 3) {
    throw std::invalid_argument("perplexity context of " + std::to_string(ctx) +
                                " tokens scores no token when each window scores its second "
                                "half; expected at least 3 (or a sliding stride)");
  }
  if (options.stride > ctx - 1) {
    throw std::invalid_argument("perplexity stride " + std::to_string(options.stride) +
                                " exceeds context − 1 = " + std::to_string(ctx - 1) +
                                " (tokens between windows would never be scored)");
  }
  if (n_tokens < ctx) {
    throw std::invalid_argument("the text has " + std::to_string(n_tokens) +
                                " tokens, fewer than one window of " + std::to_string(ctx) +
                                " (use a smaller -c or a longer text)");
  }
  std::vector<EvalWindow> windows;
  const auto full = [&] {
    return options.max_windows != 0 && windows.size() >= options.max_windows;
  };
  if (options.stride == 0) {
    for (std::size_t start = 0; start + ctx <= n_tokens && !full(); start += ctx) {
      windows.push_back({start, ctx, ctx / 2});
    }
    return windows;
  }
  // Sliding window: each window scores the targets past the previous window's end.
  std::size_t scored_end = 1;  // first target position not yet scored (token 0 never is)
  for (std::size_t start = 0; start + ctx <= n_tokens && !full(); start += options.stride) {
    const std::size_t end = start + ctx;
    if (end <= scored_end) continue;
    windows.push_back({start, ctx, scored_end - start - 1});
    scored_end = end;
  }
  return windows;
}

PerplexityResult run_perplexity(LogitsModel& model, std::span<const TokenId> tokens,
                                const PerplexityOptions& options, LogitsWriter* save,
                                LogitsReader* reference, const PerplexityProgressFn& progress) {
  const std::vector<EvalWindow> windows = plan_windows(tokens.size(), options);
  const std::size_t V = model.n_vocab();
  if (reference && reference->info().n_vocab != V) {
    throw std::runtime_error("reference logits have a vocabulary of " +
                             std::to_string(reference->info().n_vocab) + ", the model " +
                             std::to_string(V));
  }
  PerplexityResult result;
  if (reference) result.kld.emplace();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<TokenId> buf;
  std::vector<float> logits;
  std::vector<float> ref_row(reference ? V : 0);
  for (std::size_t w = 0; w < windows.size(); ++w) {
    const EvalWindow& win = windows[w];
    buf.assign(tokens.begin() + static_cast<std::ptrdiff_t>(win.start),
               tokens.begin() + static_cast<std::ptrdiff_t>(win.start + win.length));
    if (options.window_start_token >= 0) buf[0] = options.window_start_token;
    model.reset();
    // Positions before the first scored one only build the cache (no logits needed), and the
    // last token's logits would predict past the window, so it is not run at all.
    const std::size_t n_scored = win.scored();
    if (win.first_scored > 0) {
      model.eval(std::span<const TokenId>(buf.data(), win.first_scored), nullptr);
    }
    logits.resize(n_scored * V);
    model.eval(std::span<const TokenId>(buf.data() + win.first_scored, n_scored), logits.data());
    result.tokens_evaluated += win.first_scored + n_scored;
    for (std::size_t r = 0; r < n_scored; ++r) {
      const TokenId target = tokens[win.start + win.first_scored + r + 1];
      const std::span<const float> row(logits.data() + r * V, V);
      if (save) save->write(target, row);
      if (reference) {
        TokenId ref_target = -1;
        if (!reference->next(ref_target, ref_row)) {
          throw std::runtime_error("reference logits file ends after " +
                                   std::to_string(reference->position()) +
                                   " tokens; this run scores more (was it made with other "
                                   "options or text?)");
        }
        if (ref_target != target) {
          throw std::runtime_error("reference logits record " +
                                   std::to_string(reference->position() - 1) + " is for token " +
                                   std::to_string(ref_target) + ", this run scores token " +
                                   std::to_string(target) + " there (different text or options)");
        }
        const TokenComparison cmp = compare_token(ref_row, row, target);
        result.kld->add(cmp);
        result.ppl.add(cmp.nll_test);
      } else {
        result.ppl.add(negative_log_likelihood(row, target));
      }
    }
    result.windows = w + 1;
    if (progress) {
      PerplexityProgress p;
      p.window = w + 1;
      p.windows = windows.size();
      p.tokens_scored = result.ppl.count();
      p.ppl = result.ppl.ppl();
      p.seconds = seconds_since(t0);
      if (result.kld) p.kld_mean = result.kld->mean();
      progress(p);
    }
  }
  if (reference && reference->remaining() != 0) {
    throw std::runtime_error("reference logits file holds " +
                             std::to_string(reference->info().n_tokens) + " tokens, this run " +
                             "scored " + std::to_string(result.ppl.count()) +
                             " (was it made with other options or text?)");
  }
  result.seconds = seconds_since(t0);
  return result;
}

std::string text_hash(std::string_view text) {
  std::uint64_t h = fnv1a64(text.data(), text.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = kHex[h & 15];
  return out;
}

std::string logits_metadata_json(const std::string& model, const std::string& text,
                                 const std::string& scheme, const PerplexityOptions& options,
                                 std::size_t n_windows, std::size_t n_tokens,
                                 const std::string& text_hash) {
  nlohmann::json j;
  j["model"] = model;
  j["text"] = text;
  j["kv"] = scheme;
  j["context"] = options.context;
  j["stride"] = options.stride;
  j["windows"] = n_windows;
  j["text_tokens"] = n_tokens;
  j["text_fnv1a64"] = text_hash;
  return j.dump();
}

void check_logits_metadata(const std::string& reference_metadata, const PerplexityOptions& options,
                           std::size_t n_windows, std::size_t n_tokens,
                           const std::string& text_hash) {
  const nlohmann::json j = nlohmann::json::parse(reference_metadata, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw std::runtime_error(
        "reference logits carry no JSON metadata (not written by tq perplexity --save-logits?)");
  }
  const auto missing = [](const char* key) {
    return std::runtime_error(std::string("reference logits metadata has no ") + key +
                              " (written by an older tq? save the reference again)");
  };
  if (!j.contains("text_fnv1a64") || !j["text_fnv1a64"].is_string()) throw missing("text_fnv1a64");
  if (j["text_fnv1a64"].get<std::string>() != text_hash) {
    throw std::runtime_error("reference logits were made on another text (hash " +
                             j["text_fnv1a64"].get<std::string>() + ", this run's text has " +
                             text_hash + ")");
  }
  const auto check = [&](const char* key, std::size_t mine) {
    if (!j.contains(key) || !j[key].is_number_unsigned()) throw missing(key);
    const auto theirs = j[key].get<std::size_t>();
    if (theirs != mine) {
      throw std::runtime_error(std::string("reference logits were made with ") + key + " = " +
                               std::to_string(theirs) + ", this run has " + key + " = " +
                               std::to_string(mine));
    }
  };
  check("context", options.context);
  check("stride", options.stride);
  check("windows", n_windows);
  check("text_tokens", n_tokens);
}

// ---------------------------------------------------------------------------------------------
// NIAH

NiahPromptEncoder::NiahPromptEncoder(const Tokenizer& tokenizer, const ChatTemplate& chat_template)
    : tokenizer_(&tokenizer), template_(&chat_template) {}

std::vector<TokenId> NiahPromptEncoder::encode(const std::string& text,
                                               const std::string& answer_prefix) const {
  const std::vector<ChatMessage> messages = {{"user", text}};
  std::string full = apply_chat_template(*template_, messages, true);
  full += answer_prefix;
  return tokenizer_->encode(full, tokenizer_->add_bos_by_default(), /*parse_special=*/true);
}

std::size_t NiahPromptEncoder::count(const std::string& text) const {
  return encode(text, "").size() + 32;
}

std::vector<TokenId> NiahPromptEncoder::stop_tokens() const {
  std::vector<TokenId> stops;
  if (tokenizer_->eos_id() >= 0) stops.push_back(tokenizer_->eos_id());
  for (const char* marker : {"<|im_end|>", "<|eot_id|>", "<|endoftext|>"}) {
    const std::vector<TokenId> ids = tokenizer_->encode(marker, false, true);
    if (ids.size() == 1 && std::find(stops.begin(), stops.end(), ids[0]) == stops.end()) {
      stops.push_back(ids[0]);
    }
  }
  return stops;
}

std::vector<TokenId> greedy_continue(LogitsModel& model, std::span<const float> logits,
                                     int max_new_tokens, std::span<const TokenId> stop_tokens,
                                     const std::function<std::string(TokenId)>& piece,
                                     int stop_after_numbers, int* forward_passes) {
  std::vector<TokenId> out;
  int passes = 0;
  std::string text;
  for (int i = 0; i < max_new_tokens; ++i) {
    const TokenId next = tq::argmax(logits);
    if (std::find(stop_tokens.begin(), stop_tokens.end(), next) != stop_tokens.end()) break;
    out.push_back(next);
    if (stop_after_numbers > 0 && piece) {
      // Stop once enough numbers (digit runs of 4+) are complete: the answer is decided, and
      // the model's chatter after it only costs decode steps.
      text += piece(next);
      std::size_t complete = 0;
      for (const std::string_view run : digit_runs(text)) {
        const bool closed = run.data() + run.size() < text.data() + text.size();
        if (run.size() >= 4 && closed) ++complete;
      }
      if (complete >= static_cast<std::size_t>(stop_after_numbers)) break;
    }
    if (i + 1 == max_new_tokens) break;  // the last token needs no forward pass
    logits = model.eval(std::span<const TokenId>(&next, 1), nullptr);
    ++passes;
  }
  if (forward_passes) *forward_passes = passes;
  return out;
}

NiahCellResult run_niah_cell(LogitsModel& model, const NiahPromptEncoder& encoder,
                             const Haystack& haystack, const NiahCellSpec& spec) {
  const auto t0 = std::chrono::steady_clock::now();
  NiahCellResult result;
  result.spec = spec;
  const int max_new =
      spec.max_new_tokens > 0 ? spec.max_new_tokens : 12 + 12 * static_cast<int>(spec.n_needles);
  if (spec.context <= static_cast<std::size_t>(max_new) + 64) {
    throw std::invalid_argument("NIAH context " + std::to_string(spec.context) +
                                " too small for an answer of " + std::to_string(max_new) +
                                " tokens");
  }
  NiahOptions options;
  options.kind = spec.kind;
  options.n_needles = spec.n_needles;
  options.depth = spec.depth;
  options.seed = spec.seed;
  // The whole sequence (prompt, answer prefix allowance inside count(), answer) fits `context`.
  options.token_budget = spec.context - static_cast<std::size_t>(max_new);
  const NiahPrompt prompt = build_niah_prompt(
      haystack, options, [&](const std::string& text) { return encoder.count(text); });
  const std::vector<TokenId> ids = encoder.encode(prompt.text, prompt.answer_prefix);
  result.prompt_tokens = ids.size();
  for (const Needle& n : prompt.needles) result.needle_depths.push_back(n.depth);

  model.reset();
  const auto t_prefill = std::chrono::steady_clock::now();
  const std::span<const float> logits = model.eval(ids, nullptr);
  result.prefill_seconds = seconds_since(t_prefill);
  const auto t_decode = std::chrono::steady_clock::now();
  const std::vector<TokenId> stops = encoder.stop_tokens();
  const Tokenizer& tok = encoder.tokenizer();
  const std::vector<TokenId> answer = greedy_continue(
      model, logits, max_new, stops, [&](TokenId id) { return tok.token_to_bytes(id); },
      /*stop_after_numbers=*/static_cast<int>(spec.n_needles), &result.decode_steps);
  result.decode_seconds = seconds_since(t_decode);
  result.answer = tok.decode(answer);
  result.score = score_niah_answer(result.answer, prompt.needles);
  result.seconds = seconds_since(t0);
  return result;
}

std::vector<NiahCellResult> run_niah_grid(LogitsModel& model, const NiahPromptEncoder& encoder,
                                          const Haystack& haystack, const NiahGrid& grid,
                                          const NiahProgressFn& progress) {
  if (grid.contexts.empty() || grid.depths.empty()) {
    throw std::invalid_argument("NIAH grid needs at least one context length and one depth");
  }
  if (grid.seeds == 0) throw std::invalid_argument("NIAH grid needs at least one seed");
  for (const double d : grid.depths) {
    if (!(d >= 0.0 && d <= 1.0)) {
      throw std::invalid_argument("NIAH depth " + std::to_string(d) + " outside [0, 1]");
    }
  }
  const std::size_t total = grid.contexts.size() * grid.depths.size() * grid.seeds;
  std::vector<NiahCellResult> cells;
  cells.reserve(total);
  for (const std::size_t context : grid.contexts) {
    for (const double depth : grid.depths) {
      for (std::size_t s = 0; s < grid.seeds; ++s) {
        NiahCellSpec spec;
        spec.kind = grid.kind;
        spec.n_needles = grid.n_needles;
        spec.context = context;
        spec.depth = depth;
        // The seed picks needles; the same seed in every cell of a column would repeat them.
        spec.seed = grid.base_seed + s * 1000003 + context * 131 +
                    static_cast<std::uint64_t>(std::lround(depth * 1000));
        spec.max_new_tokens = grid.max_new_tokens;
        cells.push_back(run_niah_cell(model, encoder, haystack, spec));
        if (progress) progress(cells.back(), cells.size(), total);
      }
    }
  }
  return cells;
}

std::vector<std::vector<double>> niah_accuracy_table(const NiahGrid& grid,
                                                     std::span<const NiahCellResult> cells) {
  const std::size_t R = grid.contexts.size(), C = grid.depths.size();
  std::vector<std::vector<double>> hits(R, std::vector<double>(C, 0.0)), n = hits;
  for (const NiahCellResult& cell : cells) {
    const auto r = std::find(grid.contexts.begin(), grid.contexts.end(), cell.spec.context);
    const auto c = std::find(grid.depths.begin(), grid.depths.end(), cell.spec.depth);
    if (r == grid.contexts.end() || c == grid.depths.end()) continue;
    const std::size_t ri = static_cast<std::size_t>(r - grid.contexts.begin());
    const std::size_t ci = static_cast<std::size_t>(c - grid.depths.begin());
    hits[ri][ci] += cell.score.correct ? 1.0 : 0.0;
    n[ri][ci] += 1.0;
  }
  for (std::size_t r = 0; r < R; ++r) {
    for (std::size_t c = 0; c < C; ++c) {
      hits[r][c] = n[r][c] > 0 ? hits[r][c] / n[r][c] : std::nan("");
    }
  }
  return hits;
}

double niah_accuracy(std::span<const NiahCellResult> cells) {
  if (cells.empty()) return std::nan("");
  std::size_t ok = 0;
  for (const NiahCellResult& cell : cells) ok += cell.score.correct ? 1 : 0;
  return static_cast<double>(ok) / static_cast<double>(cells.size());
}

const char* needle_kind_name(NeedleKind kind, std::size_t n_needles) {
  if (kind == NeedleKind::kPasskey) return "passkey";
  return n_needles == 1 ? "single" : "multi";
}

// ---------------------------------------------------------------------------------------------
// Decode timing

DecodeTiming time_decode(Session& session, std::span<const TokenId> prompt, int steps,
                         int threads) {
  if (steps < 1)
    throw std::invalid_argument("decode steps must be >= 1, got " + std::to_string(steps));
  if (prompt.empty()) throw std::invalid_argument("decode timing needs a non-empty prompt");
  if (prompt.size() + static_cast<std::size_t>(steps) > session.max_context()) {
    throw std::invalid_argument("prompt of " + std::to_string(prompt.size()) + " tokens + " +
                                std::to_string(steps) + " decode steps exceed the context of " +
                                std::to_string(session.max_context()));
  }
  session.reset();
  std::span<const float> logits = session.eval(prompt);
  DecodeTiming t;
  t.context = session.position();
  t.steps = steps;
  std::vector<double> step_ms;
  for (int i = 0; i < steps; ++i) {
    const TokenId next = tq::argmax(logits);
    const auto t0 = std::chrono::steady_clock::now();
    logits = session.decode(next);
    step_ms.push_back(1e3 * seconds_since(t0));
  }
  t.ms_per_token = median(step_ms);
  t.tokens_per_second = t.ms_per_token > 0 ? 1e3 / t.ms_per_token : 0.0;

  const KvSizeBreakdown kv = session.kv_bytes();
  t.kv_bytes = static_cast<double>(kv.bytes);
  t.kv_bits_per_value = kv.bits_per_value;
  // The GPU caches live on the device; their attention is timed by the GPU benchmark.
  if (session.device() != Device::Cpu) return t;

  // Attention of one query per layer over the cache as it now stands: the call a decode step
  // makes, timed on its own (a random query; the cost does not depend on its values).
  const ModelConfig& c = session.model().config();
  std::vector<float> q(static_cast<std::size_t>(c.q_dim())), out(q.size());
  Xoshiro256 rng(7);
  for (float& x : q) x = static_cast<float>(rng.uniform() - 0.5);
  AttentionOptions ao;
  ao.threads = threads;
  std::vector<double> attn_ms;
  for (int rep = 0; rep < steps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerKvCache& cache = session.cache(l);
      cache.attend(q.data(), 1, cache.size() - 1, out.data(), ao);
    }
    attn_ms.push_back(1e3 * seconds_since(t0));
  }
  t.attention_ms = median(attn_ms);
  t.attention_share = t.ms_per_token > 0 ? t.attention_ms / t.ms_per_token : 0.0;
  return t;
}

}  // namespace tq::eval

namespace tq::eval {

AttentionTiming time_attention(const KvScheme& scheme, const ModelConfig& config,
                               std::size_t context, int reps, int threads) {
  if (context == 0) throw std::invalid_argument("attention timing needs context >= 1");
  if (reps < 1)
    throw std::invalid_argument("attention reps must be >= 1, got " + std::to_string(reps));
  const std::size_t kv = static_cast<std::size_t>(config.kv_dim());
  std::vector<LayerKvCache> caches;
  caches.reserve(static_cast<std::size_t>(config.n_layers));
  Xoshiro256 rng(11);
  // Synthetic keys and values: the stored formats cost the same whatever the values are.
  const std::size_t block = 256;
  std::vector<float> k(block * kv), v(block * kv);
  for (int l = 0; l < config.n_layers; ++l) {
    caches.emplace_back(scheme, layer_kv_shape(config, l));
    caches.back().reserve(context);
    for (std::size_t done = 0; done < context;) {
      const std::size_t n = std::min(block, context - done);
      for (std::size_t i = 0; i < n * kv; ++i) {
        k[i] = static_cast<float>(rng.uniform() - 0.5);
        v[i] = static_cast<float>(rng.uniform() - 0.5);
      }
      caches.back().append(k.data(), v.data(), n);
      done += n;
    }
  }
  std::vector<float> q(static_cast<std::size_t>(config.q_dim())), out(q.size());
  for (float& x : q) x = static_cast<float>(rng.uniform() - 0.5);
  AttentionOptions ao;
  ao.threads = threads;
  std::vector<double> ms;
  for (int rep = 0; rep < reps + 1; ++rep) {  // the first repetition warms caches, not counted
    const auto t0 = std::chrono::steady_clock::now();
    for (const LayerKvCache& cache : caches) {
      cache.attend(q.data(), 1, context - 1, out.data(), ao);
    }
    if (rep > 0) ms.push_back(1e3 * seconds_since(t0));
  }
  AttentionTiming t;
  t.context = context;
  t.ms = median(ms);
  for (const LayerKvCache& cache : caches) t.kv_bytes += static_cast<double>(cache.bytes());
  const double values = static_cast<double>(context) * config.n_layers * kv * 2;
  t.kv_bits_per_value = 8.0 * t.kv_bytes / values;
  return t;
}

}  // namespace tq::eval
