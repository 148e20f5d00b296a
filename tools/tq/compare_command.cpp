// `tq compare -m MODEL (-f FILE | -p TEXT) [--prompt-tokens N] [-n N] [--kv SCHEME ...] [--json]`:
// what each KV-cache scheme does on one long prompt, side by side in one table — memory (KV
// bytes, ratio to fp16, bits per value, tokens actually compressed), quality against the fp16
// cache (greedy tokens identical before the first difference, top-1 agreement and mean KL
// divergence over the generated positions, every scheme fed fp16's tokens: eval/compare.hpp)
// and speed (prefill and decode tokens/s). The fp16 cache is the reference and always the
// first row.
#include "command_registry.hpp"
#include "common_options.hpp"
#include "session_report.hpp"

#include "turboquant/eval/compare.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace tq::cli {
namespace {

// Long enough for the fp16 window of TurboQuant schemes (128 tokens) to be a small part of the
// cache, short enough for a few minutes on two cores with five schemes.
constexpr int kDefaultPromptTokens = 2048;

struct CompareOptions {
  ModelOptions model;
  PromptOptions prompt;
  int n_predict = 64;
  std::vector<std::string> kv = {"fp16", "q4r", "tq4", "tq3.5", "tq3"};
  int chunk = 256;
  ReportOptions report;
};

// One scheme's row of the table.
struct SchemeRow {
  std::string kv;
  KvCacheReport cache;
  eval::GenerationTiming timing;
  std::size_t common_prefix = 0;
  double top1_agree = 1;
  double kld_mean = 0, kld_max = 0;
};

nlohmann::json row_json(const SchemeRow& r) {
  nlohmann::json j = r.cache;
  j.update(timing_json(r.timing));
  j["kv"] = r.kv;
  j["common_prefix"] = r.common_prefix;
  j["top1_agree"] = r.top1_agree;
  j["kld_mean"] = r.kld_mean;
  j["kld_max"] = r.kld_max;
  return j;
}

std::string mib(std::size_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f MiB", bytes / 1048576.0);
  return s;
}

void print_table(const std::vector<SchemeRow>& rows, std::size_t n) {
  std::printf("%-14s %10s %7s %10s %10s %11s %6s %8s %13s %12s\n", "kv", "KV cache", "vs fp16",
              "bits/value", "compressed", "same tokens", "top-1", "mean KLD", "prefill tok/s",
              "decode tok/s");
  for (const SchemeRow& r : rows) {
    const std::string compressed =
        r.cache.compresses ? std::to_string(r.cache.kv_compressed_tokens) : "-";
    const std::string same = std::to_string(r.common_prefix) + "/" + std::to_string(n);
    std::printf("%-14s %10s %6.3fx %10.2f %10s %11s %5.1f%% %8.5f %13.1f %12.1f\n", r.kv.c_str(),
                mib(r.cache.kv_bytes).c_str(), r.cache.kv_ratio, r.cache.kv_bits_per_value,
                compressed.c_str(), same.c_str(), 100 * r.top1_agree, r.kld_mean,
                r.timing.prefill_tokens_per_second(), r.timing.decode_tokens_per_second());
  }
}

void run(const CompareOptions& o) {
  const std::string text = prompt_text(o.prompt);
  const KvScheme reference_scheme = parse_kv_scheme("fp16");
  std::vector<KvScheme> schemes;
  for (const std::string& s : o.kv) {
    KvScheme scheme = parse_kv_scheme(s);
    if (scheme.name != reference_scheme.name) schemes.push_back(std::move(scheme));
  }
  const LoadedModel loaded(o.model);
  std::vector<TokenId> prompt = loaded.tokenizer.encode(text, loaded.adds_bos(), false);
  truncate_prompt(prompt, o.prompt);
  check_prompt_fits(prompt.size(), o.n_predict,
                    static_cast<std::size_t>(loaded.model.config().context_length));

  SessionOptions so = session_options(o.model);
  so.prefill_chunk = o.chunk;
  so.reserve = prompt.size() + static_cast<std::size_t>(o.n_predict);
  if (so.device == Device::Cuda) so.max_context = so.reserve;  // GPU caches: allocated up front
  const auto progress = [&](const SchemeRow& r, std::size_t done, std::size_t total) {
    if (o.report.quiet) return;
    std::fprintf(stderr, "[%zu/%zu] %-14s prefill %.1f s, %d decode steps %.1f s\n", done, total,
                 r.kv.c_str(), r.timing.prefill_seconds, r.timing.decode_steps,
                 r.timing.decode_seconds);
  };

  std::vector<SchemeRow> rows;
  eval::Continuation reference;
  {
    Session session(loaded.model, reference_scheme, so);
    eval::SessionModel lm(session);
    reference = eval::greedy_continuation(lm, prompt, o.n_predict);
    SchemeRow r;
    r.kv = reference_scheme.name;
    r.cache = kv_cache_report(session);
    r.timing = reference.timing;
    r.common_prefix = reference.tokens.size();
    rows.push_back(r);
    progress(r, 1, schemes.size() + 1);
  }
  for (const KvScheme& scheme : schemes) {
    Session session(loaded.model, scheme, so);
    eval::SessionModel lm(session);
    const eval::ContinuationComparison c = eval::compare_with_reference(lm, prompt, reference);
    SchemeRow r;
    r.kv = scheme.name;
    r.cache = kv_cache_report(session);
    r.timing = c.timing;
    r.common_prefix = c.common_prefix;
    r.top1_agree = c.kld.top1_agreement();
    r.kld_mean = c.kld.mean();
    r.kld_max = c.kld.max();
    rows.push_back(r);
    progress(r, rows.size(), schemes.size() + 1);
  }

  const std::size_t n = reference.tokens.size();
  if (o.report.json) {
    nlohmann::json j;
    j["model"] = o.model.path;
    j["prompt_file"] = o.prompt.file;
    j["prompt_tokens"] = prompt.size();
    j["generated_tokens"] = n;
    j["reference"] = reference_scheme.name;
    j["reference_text"] = loaded.tokenizer.decode(reference.tokens);
    nlohmann::json jr = nlohmann::json::array();
    for (const SchemeRow& r : rows) jr.push_back(row_json(r));
    j["rows"] = jr;
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("Prompt: %zu tokens%s; %zu tokens generated greedily with the fp16 cache:\n",
              prompt.size(), o.prompt.file.empty() ? "" : (" of " + o.prompt.file).c_str(), n);
  std::string continuation = loaded.tokenizer.decode(reference.tokens);
  std::replace(continuation.begin(), continuation.end(), '\n', ' ');
  std::printf("  \"%s\"\n\n", continuation.c_str());
  print_table(rows, n);
  std::printf(
      "\nKV cache: bytes after the prompt and the generated tokens; compressed: tokens stored "
      "compressed (TurboQuant schemes keep the most recent ones, %d by default, in fp16).\n"
      "same tokens: greedy tokens identical to fp16's before the first difference; top-1 and mean "
      "KLD (nats): the next-token choice and distribution vs fp16 at all %zu generated "
      "positions, every scheme fed fp16's tokens.\n",
      kTurboQuantDefaultWindow, n);
  for (const SchemeRow& r : rows) {
    const std::string note = kv_window_note(r.cache);
    if (!note.empty() && r.cache.kv_compressed_tokens == 0) {
      std::printf("%s: %s\n", r.kv.c_str(), note.c_str());
    }
  }
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<CompareOptions>();
  CLI::App* cmd = root.add_subcommand(
      "compare",
      "KV schemes side by side on one prompt: memory, agreement with fp16, prefill/decode speed");
  add_model_options(*cmd, o->model);
  o->prompt.max_tokens = kDefaultPromptTokens;
  add_prompt_options(*cmd, o->prompt);
  cmd->get_option("--prompt-tokens")->capture_default_str();
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate and compare")
      ->capture_default_str()
      ->check(in_range<int>(1, kMaxTokens));
  add_kv_option(*cmd, o->kv, "KV-cache scheme (repeatable; fp16 is the reference, always run)");
  cmd->add_option("--chunk", o->chunk, "Prefill chunk size in tokens")
      ->capture_default_str()
      ->check(in_range<int>(1, kMaxTokens));
  add_report_options(*cmd, o->report, "Print the rows as JSON instead of the table");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
