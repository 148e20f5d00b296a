// `tq bench -m MODEL --kv SCHEME [--kv ...] [--contexts N,...] [--steps S] [--out PREFIX
// [--plot]]`: decode speed (tokens/s, ms/token) against context length per KV scheme, with the
// share of each step spent in attention. A decode step at context N costs the model's fixed work
// (matrix- vector products, measured once on a real session at a short context, with its own
// attention subtracted) plus the attention over N cached tokens (measured on every layer's cache
// filled with N tokens in the scheme's format). Filling the cache synthetically makes contexts up
// to the trained maximum affordable on a small CPU; --full instead prefills the real model to each
// context and times real decode steps (slow: the prefill is quadratic). --out writes PREFIX.json;
// --plot then draws PREFIX.png (tokens/s vs context) from it with scripts/plot.py.
// --device cuda measures the GPU runner end to end instead (gpu_bench.hpp): real decode steps at
// each context and --batch size, prefill tokens/s at the --prefill lengths, memory per token and
// the tokens that fit in --memory-budget GiB.
#include "command_registry.hpp"
#include "common_options.hpp"
#include "gpu_bench.hpp"
#include "plot_script.hpp"

#include "turboquant/eval/runner.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace tq::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  std::vector<std::string> kv = {"fp16"};
  std::vector<std::size_t> contexts;  // empty: 1k, 2k, ... up to the trained context
  int steps = 8;
  bool full = false;
  std::vector<int> batches;                   // --device cuda only (default 1)
  std::vector<std::size_t> prefill_contexts;  // --device cuda only
  double memory_budget_gib = 80.0;
  std::string out;
  bool plot = false;
  ReportOptions report;
};

void run(const BenchOptions& o) {
  require_out_for_plot(o.plot, o.out);
  if (o.plot) check_plot_script();
  if (!o.out.empty()) check_output_file(o.out + ".json", "--out", {o.model.path});
  std::vector<KvScheme> schemes;
  for (const std::string& s : o.kv) schemes.push_back(parse_kv_scheme(s));
  const gguf::File file = gguf::File::open(o.model.path);
  note_random_weights(file, o.model.path);
  const Model model = Model::from_gguf(file, o.model.threads);
  const ModelConfig& c = model.config();
  std::vector<std::size_t> contexts = o.contexts;
  if (contexts.empty()) {
    for (std::size_t n = 1024; n <= static_cast<std::size_t>(c.context_length); n *= 2) {
      contexts.push_back(n);
    }
  }
  const std::size_t max_ctx = static_cast<std::size_t>(c.context_length);
  for (const std::size_t n : contexts) {
    // Synthetic caches may hold the full trained context; a real run needs room for the steps.
    // The GPU bench may go past the trained context (RoPE does not stop there; quality is not
    // measured here).
    const std::size_t limit = o.model.device == Device::Cuda ? static_cast<std::size_t>(kMaxTokens)
                              : o.full ? max_ctx - static_cast<std::size_t>(o.steps)
                                       : max_ctx;
    if (n < 2 || n > limit) {
      throw std::invalid_argument("context " + std::to_string(n) + " outside [2, " +
                                  std::to_string(limit) + "]" +
                                  (o.full ? " (the timed steps need room)" : ""));
    }
  }
  if (o.model.device == Device::Cuda) {
    if (o.full)
      throw std::invalid_argument(
          "--full is for --device cpu (the GPU bench fills caches synthetically and times real "
          "steps)");
    GpuBenchOptions g;
    g.schemes = schemes;
    g.contexts = contexts;
    if (!o.batches.empty()) g.batches = o.batches;
    g.prefill_contexts = o.prefill_contexts;
    g.steps = o.steps;
    g.memory_budget_gib = o.memory_budget_gib;
    g.quiet = o.report.quiet;
    nlohmann::json out = run_gpu_bench(model, g);
    out["model"] = o.model.path;
    if (!o.out.empty()) write_text_file(o.out + ".json", out.dump(2) + "\n");
    if (o.report.json) std::cout << out.dump(2) << "\n";
    if (o.plot) run_plot_script(o.out + ".json");
    return;
  }
  if (!o.batches.empty() || !o.prefill_contexts.empty()) {
    throw std::invalid_argument("--batch and --prefill need --device cuda");
  }
  // A fixed token stream: the values do not change the cost.
  std::vector<TokenId> prompt(
      contexts.empty() ? 64 : *std::max_element(contexts.begin(), contexts.end()));
  for (std::size_t i = 0; i < prompt.size(); ++i) {
    prompt[i] = static_cast<TokenId>((i * 7919 + 13) % static_cast<std::size_t>(c.n_vocab));
  }

  SessionOptions so = session_options(o.model);
  nlohmann::json rows = nlohmann::json::array();
  for (const KvScheme& scheme : schemes) {
    double base_ms = 0;
    eval::DecodeTiming shortrun;
    if (!o.full) {
      Session session(model, scheme, so);
      shortrun = eval::time_decode(session, std::span<const TokenId>(prompt.data(), 64), o.steps,
                                   o.model.threads);
      base_ms = shortrun.ms_per_token - shortrun.attention_ms;
    }
    for (const std::size_t n : contexts) {
      nlohmann::json r;
      r["kv"] = scheme.name;
      r["context"] = n;
      double ms = 0, attn = 0, bits = 0, bytes = 0;
      if (o.full) {
        Session session(model, scheme, so);
        const eval::DecodeTiming t = eval::time_decode(
            session, std::span<const TokenId>(prompt.data(), n), o.steps, o.model.threads);
        ms = t.ms_per_token;
        attn = t.attention_ms;
        bits = t.kv_bits_per_value;
        bytes = t.kv_bytes;
        r["method"] = "measured decode steps after a real prefill";
      } else {
        const eval::AttentionTiming a =
            eval::time_attention(scheme, c, n, o.steps, o.model.threads);
        attn = a.ms;
        ms = base_ms + a.ms;
        bits = a.kv_bits_per_value;
        bytes = a.kv_bytes;
        r["method"] = "fixed step cost (measured at 64 tokens) + attention measured at context";
        r["fixed_ms"] = base_ms;
      }
      r["ms_per_token"] = ms;
      r["tokens_per_second"] = 1e3 / ms;
      r["attention_ms"] = attn;
      r["attention_share"] = attn / ms;
      r["kv_bytes"] = bytes;
      r["kv_bits_per_value"] = bits;
      rows.push_back(r);
      if (!o.report.quiet) {
        std::fprintf(stderr,
                     "%-24s ctx %6zu: %8.2f ms/token (%6.2f tok/s), attention %7.2f ms (%4.1f%%)\n",
                     scheme.name.c_str(), n, ms, 1e3 / ms, attn, 100 * attn / ms);
      }
    }
  }
  nlohmann::json out;
  out["model"] = o.model.path;
  out["threads"] = o.model.threads;
  out["steps"] = o.steps;
  out["rows"] = rows;
  if (!o.out.empty()) write_text_file(o.out + ".json", out.dump(2) + "\n");
  if (o.report.json) std::cout << out.dump(2) << "\n";
  if (o.plot) run_plot_script(o.out + ".json");
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = root.add_subcommand(
      "bench", "Decode tokens/s and ms/token vs context per KV scheme, with the attention share");
  add_model_options(*cmd, o->model);
  add_kv_option(*cmd, o->kv, "KV-cache scheme (repeatable)");
  cmd->add_option("--contexts", o->contexts, "Context lengths (default 1k, 2k, ... max)")
      ->delimiter(',')
      ->check(in_range<std::size_t>(2, kMaxTokens));
  cmd->add_option("--steps", o->steps, "Timed decode steps / attention repetitions")
      ->capture_default_str()
      ->check(in_range<int>(1, kMaxTokens));
  cmd->add_flag("--full", o->full, "Prefill the real model to each context (slow; CPU only)");
  cmd->add_option("--batch", o->batches, "Sequences decoded together (--device cuda; default 1)")
      ->delimiter(',')
      ->check(in_range<int>(1, 4096));
  cmd->add_option("--prefill", o->prefill_contexts,
                  "Also time real prefills of these lengths (--device cuda)")
      ->delimiter(',')
      ->check(in_range<std::size_t>(1, kMaxTokens));
  cmd->add_option("--memory-budget", o->memory_budget_gib,
                  "GiB for the tokens-that-fit column (--device cuda)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e6));
  cmd->add_option("--out", o->out, "Output prefix (writes PREFIX.json)");
  cmd->add_flag("--plot", o->plot,
                "Also draw PREFIX.png (tokens/s vs context) with scripts/plot.py (python3 + "
                "matplotlib)");
  add_report_options(*cmd, o->report, "Print JSON on stdout");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
