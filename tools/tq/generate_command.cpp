// `tq generate -m MODEL -p PROMPT|--prompts FILE -n N --kv SCHEME [--chat] [--temp T --top-p P
// --top-k K
// --seed S] [--threads N] [--json]`: runs a GGUF model with the chosen KV-cache scheme, streams
// the generated text, then reports prefill and decode speed and the KV-cache bytes against fp16
// (and, for a scheme with an fp16 window, how many tokens are compressed: none while the window
// holds them all).
#include "command_registry.hpp"
#include "common_options.hpp"
#include "session_report.hpp"

#include "turboquant/model/chat_template.hpp"
#include "turboquant/model/sampler.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <climits>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

namespace tq::cli {
namespace {

struct GenerateOptions {
  ModelOptions model;
  PromptOptions prompt;
  int n_predict = 64;
  std::string kv = "fp16";
  bool chat = false;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  std::uint64_t seed = 0;
  int chunk = 256;
  bool json = false;
  bool ignore_eos = false;
  std::string prompts_file;  // --prompts: one prompt per line, decoded together
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The prompt's tokens: plain text, or wrapped in the model's chat template (--chat), cut to
// --prompt-tokens. Shared by the single and the batched run.
std::vector<TokenId> encode_prompt(const LoadedModel& loaded, const GenerateOptions& opt,
                                   const std::string& prompt) {
  const Tokenizer& tokenizer = loaded.tokenizer;
  std::vector<TokenId> ids;
  if (opt.chat) {
    const ChatTemplate tmpl = detect_chat_template(loaded.file);
    const std::vector<ChatMessage> messages = {{"user", prompt}};
    const std::string text = apply_chat_template(tmpl, messages, true);
    ids = tokenizer.encode(text, tokenizer.add_bos_by_default(), /*parse_special=*/true);
  } else {
    ids = tokenizer.encode(prompt, tokenizer.add_bos_by_default(), /*parse_special=*/false);
  }
  truncate_prompt(ids, opt.prompt);
  return ids;
}

SamplerOptions sampler_options(const GenerateOptions& opt, std::uint64_t seed) {
  SamplerOptions so;
  so.temperature = opt.temperature;
  so.top_p = opt.top_p;
  so.top_k = opt.top_k;
  so.seed = seed;
  return so;
}

// --prompts FILE: every non-empty line is one sequence; all are prefilled one after another and
// then decoded together (Session::decode_batch: one batched step per token, a CUDA graph on the
// GPU), each with its own sampler (seed + line index). A sequence that reaches EOS (or n tokens)
// sits the remaining steps out. Prints each completion, then the aggregate decode speed.
void run_generate_batch(const GenerateOptions& opt) {
  const std::string file = read_text_file(opt.prompts_file, "prompts file");
  std::vector<std::string> prompts;
  std::size_t start = 0;
  while (start <= file.size()) {
    const std::size_t end = std::min(file.find('\n', start), file.size());
    std::string line = file.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) prompts.push_back(line);
    start = end + 1;
  }
  if (prompts.empty()) {
    throw std::invalid_argument("prompts file " + opt.prompts_file + " has no non-empty line");
  }
  const KvScheme scheme = parse_kv_scheme(opt.kv);
  const LoadedModel loaded(opt.model);
  const Tokenizer& tokenizer = loaded.tokenizer;
  std::vector<std::vector<TokenId>> ids;
  std::size_t longest = 0;
  for (const std::string& p : prompts) {
    ids.push_back(encode_prompt(loaded, opt, p));
    longest = std::max(longest, ids.back().size());
  }
  const auto trained = static_cast<std::size_t>(loaded.model.config().context_length);
  check_prompt_fits(longest, opt.n_predict, trained);
  const int B = static_cast<int>(prompts.size());
  SessionOptions so = session_options(opt.model);
  so.prefill_chunk = opt.chunk;
  so.batch = B;
  so.reserve = longest + static_cast<std::size_t>(opt.n_predict);
  if (so.device == Device::Cuda) so.max_context = so.reserve;
  Session session(loaded.model, scheme, so);
  const std::size_t V = static_cast<std::size_t>(loaded.model.config().n_vocab);

  std::vector<Sampler> samplers;
  std::vector<std::vector<TokenId>> generated(static_cast<std::size_t>(B));
  std::vector<TokenId> next(static_cast<std::size_t>(B));
  const auto t_prefill = std::chrono::steady_clock::now();
  std::size_t prefill_tokens = 0;
  for (int b = 0; b < B; ++b) {
    samplers.emplace_back(sampler_options(opt, opt.seed + static_cast<std::uint64_t>(b)));
    const auto logits = session.eval(b, ids[static_cast<std::size_t>(b)]);
    next[static_cast<std::size_t>(b)] = samplers.back().sample(logits);
    prefill_tokens += ids[static_cast<std::size_t>(b)].size();
  }
  const double prefill_s = seconds_since(t_prefill);
  std::vector<bool> done(static_cast<std::size_t>(B), false);
  double decode_s = 0.0;
  int steps = 0;
  std::size_t decoded_tokens = 0;
  for (int i = 0; i < opt.n_predict; ++i) {
    std::vector<TokenId> step(static_cast<std::size_t>(B), Session::kNoToken);
    bool any = false;
    for (int b = 0; b < B; ++b) {
      const std::size_t u = static_cast<std::size_t>(b);
      if (done[u]) continue;
      generated[u].push_back(next[u]);
      if ((!opt.ignore_eos && next[u] == tokenizer.eos_id()) || i + 1 == opt.n_predict) {
        done[u] = true;  // the last token needs no forward pass
        continue;
      }
      step[u] = next[u];
      any = true;
    }
    if (!any) break;
    const auto t0 = std::chrono::steady_clock::now();
    const auto logits = session.decode_batch(step);
    decode_s += seconds_since(t0);
    ++steps;
    for (int b = 0; b < B; ++b) {
      const std::size_t u = static_cast<std::size_t>(b);
      if (step[u] == Session::kNoToken) continue;
      ++decoded_tokens;
      next[u] = samplers[u].sample(logits.subspan(u * V, V));
    }
  }
  nlohmann::json j;
  j["model"] = opt.model.path;
  j["kv"] = scheme.name;
  j["device"] = device_name(so.device);
  j["batch"] = B;
  j["prefill_tokens"] = prefill_tokens;
  j["prefill_seconds"] = prefill_s;
  j["decode_steps"] = steps;
  j["decoded_tokens"] = decoded_tokens;
  j["decode_seconds"] = decode_s;
  j["decode_tokens_per_second"] = decode_s > 0 ? decoded_tokens / decode_s : 0.0;
  nlohmann::json seqs = nlohmann::json::array();
  for (int b = 0; b < B; ++b) {
    const std::size_t u = static_cast<std::size_t>(b);
    StreamDecoder decoder(tokenizer);
    std::string text;
    for (const TokenId t : generated[u]) {
      if (!opt.ignore_eos && t == tokenizer.eos_id()) break;
      text += decoder.push(t);
    }
    text += decoder.flush();
    seqs.push_back({{"prompt", prompts[u]},
                    {"prompt_tokens", ids[u].size()},
                    {"generated_ids", generated[u]},
                    {"text", text}});
    if (!opt.json) std::printf("[%d] %s%s\n", b, prompts[u].c_str(), text.c_str());
  }
  j["sequences"] = seqs;
  if (opt.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::fprintf(stderr,
               "\n--- %s | %s | batch %d\nprefill: %zu tokens in %.3f s\n"
               "decode:  %zu tokens in %d batched steps, %.3f s = %.2f tokens/s\n",
               scheme.name.c_str(), device_name(so.device), B, prefill_tokens, prefill_s,
               decoded_tokens, steps, decode_s, decode_s > 0 ? decoded_tokens / decode_s : 0.0);
}

void run_generate(const GenerateOptions& opt) {
  if (!opt.prompts_file.empty()) {
    if (!opt.prompt.text.empty() || !opt.prompt.file.empty()) {
      throw std::invalid_argument("--prompts replaces -p/-f: give one of them");
    }
    run_generate_batch(opt);
    return;
  }
  const std::string prompt = prompt_text(opt.prompt);
  const KvScheme scheme = parse_kv_scheme(opt.kv);

  const auto t_load = std::chrono::steady_clock::now();
  const LoadedModel loaded(opt.model);
  const Tokenizer& tokenizer = loaded.tokenizer;
  const double load_s = seconds_since(t_load);

  const std::vector<TokenId> ids = encode_prompt(loaded, opt, prompt);

  SessionOptions so = session_options(opt.model);
  so.prefill_chunk = opt.chunk;
  so.reserve = ids.size() + static_cast<std::size_t>(opt.n_predict);
  const auto trained = static_cast<std::size_t>(loaded.model.config().context_length);
  check_prompt_fits(ids.size(), opt.n_predict, trained);
  // The GPU caches are allocated up front: for this run's tokens, not the trained context.
  if (so.device == Device::Cuda) so.max_context = so.reserve;
  Session session(loaded.model, scheme, so);
  Sampler sampler(sampler_options(opt, opt.seed));

  const bool stream = !opt.json;
  if (stream && !opt.chat && opt.prompt.file.empty()) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
  }

  eval::GenerationTiming timing;
  timing.prefill_tokens = ids.size();
  const auto t_prefill = std::chrono::steady_clock::now();
  std::span<const float> logits = session.eval(ids);
  timing.prefill_seconds = seconds_since(t_prefill);

  StreamDecoder decoder(tokenizer);
  std::vector<TokenId> generated;
  generated.reserve(static_cast<std::size_t>(opt.n_predict));
  std::string text;
  for (int i = 0; i < opt.n_predict; ++i) {
    const TokenId next = sampler.sample(logits);
    generated.push_back(next);
    if (!opt.ignore_eos && next == tokenizer.eos_id()) break;
    const std::string piece = decoder.push(next);
    text += piece;
    if (stream && !piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    if (i + 1 == opt.n_predict) break;  // the last token needs no forward pass
    const auto t0 = std::chrono::steady_clock::now();
    logits = session.decode(next);
    timing.decode_seconds += seconds_since(t0);
    ++timing.decode_steps;
  }
  const std::string tail = decoder.flush();
  text += tail;
  if (stream) std::fputs((tail + "\n").c_str(), stdout);

  const KvCacheReport kv = kv_cache_report(session);
  const ModelLoadStats& ls = loaded.model.load_stats();
  if (opt.json) {
    nlohmann::json j = kv;
    j.update(timing_json(timing));
    j["model"] = opt.model.path;
    j["kv"] = scheme.name;
    j["threads"] = opt.model.threads;
    j["prompt_tokens"] = ids.size();
    j["generated_tokens"] = generated.size();
    j["generated_ids"] = generated;
    j["text"] = text;
    j["load_seconds"] = load_s;
    j["weight_bytes"] = ls.weight_bytes;
    j["weight_fp32_bytes"] = ls.fp32_bytes;
    j["device"] = device_name(so.device);
    j["device_weight_bytes"] = session.device_weight_bytes();
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::fprintf(stderr,
               "\n--- %s | %s | load %.2f s (weights held %.1f MiB)\n"
               "prefill: %zu tokens in %.3f s = %.1f tokens/s\n"
               "decode:  %d tokens in %.3f s = %.2f tokens/s\n"
               "KV cache (%zu tokens): %zu bytes vs fp16 %zu bytes (%.3fx, %.2f bits/value)\n",
               scheme.name.c_str(), device_name(so.device), load_s,
               session.device_weight_bytes() / 1048576.0, ids.size(), timing.prefill_seconds,
               timing.prefill_tokens_per_second(), timing.decode_steps, timing.decode_seconds,
               timing.decode_tokens_per_second(), kv.context_tokens, kv.kv_bytes, kv.kv_fp16_bytes,
               kv.kv_ratio, kv.kv_bits_per_value);
  const std::string note = kv_window_note(kv);
  if (!note.empty()) std::fprintf(stderr, "KV cache: %s\n", note.c_str());
}

const CommandRegistrar kRegisterGenerate([](CLI::App& root) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd =
      root.add_subcommand("generate", "Generate text with a GGUF model and a KV scheme");
  add_model_options(*cmd, opt->model);
  add_prompt_options(*cmd, opt->prompt);
  cmd->add_option("-n,--n-predict", opt->n_predict, "Tokens to generate")
      ->capture_default_str()
      ->check(in_range<int>(0, kMaxTokens));
  add_kv_option(*cmd, opt->kv, "KV-cache scheme (fp16, q8, q4, q4r, tq4, tq3.5, k4v3, ...)");
  cmd->add_flag("--chat", opt->chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--temp", opt->temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top-p", opt->top_p, "Nucleus sampling mass")->capture_default_str();
  cmd->add_option("--top-k", opt->top_k, "Keep the k most likely tokens (0: all)")
      ->capture_default_str()
      ->check(in_range<int>(0, INT_MAX));
  cmd->add_option("--seed", opt->seed, "Sampling seed")->capture_default_str()->check(any_uint64());
  cmd->add_option("--chunk", opt->chunk, "Prefill chunk size in tokens")
      ->capture_default_str()
      ->check(in_range<int>(1, kMaxTokens));
  cmd->add_flag("--ignore-eos", opt->ignore_eos, "Keep generating after the end-of-text token");
  cmd->add_flag("--json", opt->json, "Print a JSON summary instead of streaming text");
  cmd->add_option("--prompts", opt->prompts_file,
                  "File of prompts, one per line, generated together as one batch");
  cmd->callback([opt] { run_generate(*opt); });
});

}  // namespace
}  // namespace tq::cli
