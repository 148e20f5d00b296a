// `tq generate -m MODEL -p PROMPT -n N --kv SCHEME [--chat] [--temp T --top-p P --top-k K
// --seed S] [--threads N] [--json]`: runs a GGUF model with the chosen KV-cache scheme, streams
// the generated text, then reports prefill and decode speed and the KV-cache bytes against fp16.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

#include "command_registry.hpp"
#include "turboquant/model/chat_template.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/sampler.hpp"
#include "turboquant/model/tokenizer.hpp"

namespace {

struct GenerateOptions {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string prompt;
  std::string prompt_file;
  int prompt_tokens = 0;  // truncate the tokenized prompt to this many tokens (0: keep all)
  int n_predict = 64;
  std::string kv = "fp16";
  bool chat = false;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  std::uint64_t seed = 0;
  int threads = 0;
  int chunk = 256;
  bool json = false;
  bool ignore_eos = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_generate(const GenerateOptions& opt) {
  std::string prompt = opt.prompt;
  if (!opt.prompt_file.empty()) {
    std::ifstream in(opt.prompt_file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read prompt file '" + opt.prompt_file + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }
  if (prompt.empty()) throw std::invalid_argument("empty prompt (give -p TEXT or -f FILE)");
  if (opt.n_predict < 0) {
    throw std::invalid_argument("-n must be >= 0, got " + std::to_string(opt.n_predict));
  }
  const tq::KvScheme scheme = tq::parse_kv_scheme(opt.kv);

  const auto t_load = std::chrono::steady_clock::now();
  const tq::gguf::File file = tq::gguf::File::open(opt.model);
  const tq::Model model = tq::Model::from_gguf(file, opt.threads);
  const tq::Tokenizer tokenizer = tq::Tokenizer::from_gguf(file);
  const double load_s = seconds_since(t_load);

  std::vector<tq::TokenId> ids;
  if (opt.chat) {
    const tq::ChatTemplate tmpl = tq::detect_chat_template(file);
    const std::vector<tq::ChatMessage> messages = {{"user", prompt}};
    const std::string text = tq::apply_chat_template(tmpl, messages, true);
    ids = tokenizer.encode(text, tokenizer.add_bos_by_default(), /*parse_special=*/true);
  } else {
    ids = tokenizer.encode(prompt, tokenizer.add_bos_by_default(), /*parse_special=*/false);
  }
  if (opt.prompt_tokens > 0 && ids.size() > static_cast<std::size_t>(opt.prompt_tokens)) {
    ids.resize(static_cast<std::size_t>(opt.prompt_tokens));
  }
  if (ids.empty()) throw std::invalid_argument("the prompt tokenizes to nothing");

  tq::SessionOptions so;
  so.threads = opt.threads;
  so.prefill_chunk = opt.chunk;
  so.reserve = ids.size() + static_cast<std::size_t>(opt.n_predict);
  tq::Session session(model, scheme, so);
  if (so.reserve > session.max_context()) {
    throw std::invalid_argument("prompt (" + std::to_string(ids.size()) + " tokens) + -n " +
                                std::to_string(opt.n_predict) + " exceeds the context of " +
                                std::to_string(session.max_context()) + " tokens");
  }
  tq::SamplerOptions sampler_options;
  sampler_options.temperature = opt.temperature;
  sampler_options.top_p = opt.top_p;
  sampler_options.top_k = opt.top_k;
  sampler_options.seed = opt.seed;
  tq::Sampler sampler(sampler_options);

  const bool stream = !opt.json;
  if (stream && !opt.chat && opt.prompt_file.empty()) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
  }

  const auto t_prefill = std::chrono::steady_clock::now();
  std::span<const float> logits = session.eval(ids);
  const double prefill_s = seconds_since(t_prefill);

  tq::StreamDecoder decoder(tokenizer);
  std::vector<tq::TokenId> generated;
  generated.reserve(static_cast<std::size_t>(opt.n_predict));
  std::string text;
  double decode_s = 0.0;
  int decode_steps = 0;
  for (int i = 0; i < opt.n_predict; ++i) {
    const tq::TokenId next = sampler.sample(logits);
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
    decode_s += seconds_since(t0);
    ++decode_steps;
  }
  const std::string tail = decoder.flush();
  text += tail;
  if (stream) std::fputs((tail + "\n").c_str(), stdout);

  const tq::KvSizeBreakdown kv = session.kv_bytes();
  const double prefill_tps = prefill_s > 0 ? ids.size() / prefill_s : 0.0;
  const double decode_tps = decode_s > 0 ? decode_steps / decode_s : 0.0;
  const tq::ModelLoadStats& ls = model.load_stats();
  if (opt.json) {
    nlohmann::json j;
    j["model"] = opt.model;
    j["kv"] = scheme.name;
    j["threads"] = opt.threads;
    j["prompt_tokens"] = ids.size();
    j["generated_tokens"] = generated.size();
    j["generated_ids"] = generated;
    j["text"] = text;
    j["load_seconds"] = load_s;
    j["weight_bytes"] = ls.weight_bytes;
    j["weight_fp32_bytes"] = ls.fp32_bytes;
    j["prefill_seconds"] = prefill_s;
    j["prefill_tokens_per_second"] = prefill_tps;
    j["decode_steps"] = decode_steps;
    j["decode_seconds"] = decode_s;
    j["decode_tokens_per_second"] = decode_tps;
    j["context_tokens"] = session.position();
    j["kv_bytes"] = kv.bytes;
    j["kv_fp16_bytes"] = kv.fp16_bytes;
    j["kv_ratio"] = kv.ratio();
    j["kv_bits_per_value"] = kv.bits_per_value;
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::fprintf(stderr,
               "\n--- %s | load %.2f s (weights held %.1f MiB)\n"
               "prefill: %zu tokens in %.3f s = %.1f tokens/s\n"
               "decode:  %d tokens in %.3f s = %.2f tokens/s\n"
               "KV cache (%zu tokens): %zu bytes vs fp16 %zu bytes (%.3fx, %.2f bits/value)\n",
               scheme.name.c_str(), load_s, ls.weight_bytes / 1048576.0, ids.size(), prefill_s,
               prefill_tps, decode_steps, decode_s, decode_tps, session.position(), kv.bytes,
               kv.fp16_bytes, kv.ratio(), kv.bits_per_value);
}

const tq::cli::CommandRegistrar kRegisterGenerate([](CLI::App& root) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd =
      root.add_subcommand("generate", "Generate text with a GGUF model and a KV scheme");
  cmd->add_option("-m,--model", opt->model, "GGUF model file")->capture_default_str();
  cmd->add_option("-p,--prompt", opt->prompt, "Prompt text");
  cmd->add_option("-f,--file", opt->prompt_file, "Read the prompt from a file");
  cmd->add_option("--prompt-tokens", opt->prompt_tokens,
                  "Keep only the first N prompt tokens (0: all)");
  cmd->add_option("-n,--n-predict", opt->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_option("--kv", opt->kv, "KV-cache scheme (fp16, q8, q4, q4r, tq4, tq3.5, k4v3, ...)")
      ->capture_default_str();
  cmd->add_flag("--chat", opt->chat, "Wrap the prompt in the model's chat template");
  cmd->add_option("--temp", opt->temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top-p", opt->top_p, "Nucleus sampling mass")->capture_default_str();
  cmd->add_option("--top-k", opt->top_k, "Keep the k most likely tokens (0: all)")
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("-t,--threads", opt->threads, "Threads (0: all cores)")->capture_default_str();
  cmd->add_option("--chunk", opt->chunk, "Prefill chunk size in tokens")->capture_default_str();
  cmd->add_flag("--ignore-eos", opt->ignore_eos, "Keep generating after the end-of-text token");
  cmd->add_flag("--json", opt->json, "Print a JSON summary instead of streaming text");
  cmd->callback([opt] { run_generate(*opt); });
});

}  // namespace
