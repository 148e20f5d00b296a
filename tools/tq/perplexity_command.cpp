// `tq perplexity -m MODEL -f TEXT -c CTX --kv SCHEME [--stride S] [--chunks N]
// [--save-logits FILE | --kld FILE] [--json] [--threads N]`: perplexity of a text with a KV-cache
// scheme, llama-perplexity style (non-overlapping chunks of CTX tokens, second half scored) or
// with a sliding window; with --kld, KL divergence, top-1 agreement and ΔPPL against the logits
// a reference run saved with --save-logits on the same tokens.
#include "command_registry.hpp"
#include "common_options.hpp"

#include "turboquant/eval/runner.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace tq::eval {
// The --json fields of a comparison with the reference.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(KldAccumulator::Summary, kld_mean, kld_mean_stderr, kld_median,
                                   kld_p99, kld_max, top1_agree, ppl_ref, delta_ppl,
                                   delta_ppl_stderr)
}  // namespace tq::eval

namespace tq::cli {
namespace {

struct PerplexityCliOptions {
  ModelOptions model;
  std::string text;
  std::string kv = "fp16";
  std::size_t context = 512;
  std::size_t stride = 0;
  std::size_t chunks = 0;
  std::string save_logits;
  std::string kld;
  bool logits_f32 = false;
  int batch = 256;
  ReportOptions report;
};

void run(const PerplexityCliOptions& o) {
  if (o.text.empty()) throw std::invalid_argument("perplexity needs a text file (-f FILE)");
  if (!o.save_logits.empty() && !o.kld.empty()) {
    throw std::invalid_argument("--save-logits and --kld are separate runs; give one of them");
  }
  if (o.stride == 0 && o.context < 3) {
    throw std::invalid_argument("-c " + std::to_string(o.context) +
                                " scores no token (each window scores its second half); expected "
                                "at least 3, or a --stride");
  }
  if (!o.save_logits.empty()) {
    check_output_file(o.save_logits, "--save-logits", {o.model.path, o.text, o.kld});
  }
  const KvScheme scheme = parse_kv_scheme(o.kv);
  eval::PerplexityOptions po;
  po.context = o.context;
  po.stride = o.stride;
  po.max_windows = o.chunks;

  const std::string text = read_text_file(o.text, "text file");
  const LoadedModel loaded(o.model);
  const Model& model = loaded.model;
  const bool bos = loaded.adds_bos();
  const std::vector<TokenId> tokens = loaded.tokenizer.encode(text, bos, false);
  if (bos) po.window_start_token = loaded.tokenizer.bos_id();
  if (po.context > static_cast<std::size_t>(model.config().context_length)) {
    throw std::invalid_argument("-c " + std::to_string(po.context) +
                                " exceeds the model's trained context of " +
                                std::to_string(model.config().context_length));
  }
  const std::vector<eval::EvalWindow> windows = eval::plan_windows(tokens.size(), po);

  SessionOptions so = session_options(o.model);
  so.prefill_chunk = o.batch;
  so.max_context = po.context;
  so.reserve = po.context;
  Session session(model, scheme, so);
  eval::SessionModel lm(session);

  std::unique_ptr<eval::LogitsWriter> writer;
  std::unique_ptr<eval::LogitsReader> reader;
  if (!o.save_logits.empty()) {
    writer = std::make_unique<eval::LogitsWriter>(
        o.save_logits, static_cast<std::uint32_t>(model.config().n_vocab),
        o.logits_f32 ? eval::LogitsDtype::kFloat32 : eval::LogitsDtype::kFloat16,
        eval::logits_metadata_json(o.model.path, o.text, scheme.name, po, windows.size(),
                                   tokens.size(), eval::text_hash(text)));
  }
  if (!o.kld.empty()) {
    reader = std::make_unique<eval::LogitsReader>(o.kld);
    eval::check_logits_metadata(reader->info().metadata, po, windows.size(), tokens.size(),
                                eval::text_hash(text));
  }
  if (!o.report.quiet) {
    std::fprintf(stderr, "perplexity: %s, %zu tokens, %zu windows of %zu (%s), kv %s\n",
                 o.text.c_str(), tokens.size(), windows.size(), po.context,
                 po.stride ? ("stride " + std::to_string(po.stride)).c_str() : "second half scored",
                 scheme.name.c_str());
  }
  const auto progress = [&](const eval::PerplexityProgress& p) {
    if (o.report.quiet) return;
    std::fprintf(stderr, "[%zu/%zu] %zu tokens scored, ppl %.4f", p.window, p.windows,
                 p.tokens_scored, p.ppl);
    if (p.kld_mean >= 0) std::fprintf(stderr, ", kld %.5f", p.kld_mean);
    const double eta = p.seconds / p.window * (p.windows - p.window);
    std::fprintf(stderr, "  (%.1f s, eta %.0f s)\n", p.seconds, eta);
  };
  const eval::PerplexityResult r =
      eval::run_perplexity(lm, tokens, po, writer.get(), reader.get(), progress);
  if (writer) writer->finish();

  const double ppl = r.ppl.ppl(), se = r.ppl.ppl_stderr();
  if (o.report.json) {
    nlohmann::json j = r.kld ? nlohmann::json(r.kld->summary()) : nlohmann::json::object();
    j["model"] = o.model.path;
    j["text"] = o.text;
    j["kv"] = scheme.name;
    j["context"] = po.context;
    j["stride"] = po.stride;
    j["windows"] = r.windows;
    j["text_tokens"] = tokens.size();
    j["tokens_evaluated"] = r.tokens_evaluated;
    j["tokens_scored"] = r.ppl.count();
    j["ppl"] = ppl;
    j["ppl_stderr"] = se;
    j["mean_nll"] = r.ppl.mean_nll();
    j["seconds"] = r.seconds;
    const KvSizeBreakdown kv = session.kv_bytes();
    j["kv_bits_per_value"] = kv.bits_per_value;
    j["kv_ratio"] = kv.ratio();
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("kv %s: PPL = %.4f +/- %.4f over %zu tokens (%zu windows of %zu)\n",
              scheme.name.c_str(), ppl, se, r.ppl.count(), r.windows, po.context);
  if (r.kld) {
    const eval::KldAccumulator::Summary s = r.kld->summary();
    std::printf(
        "vs reference: KLD mean %.6f +/- %.6f, median %.6f, p99 %.6f, max %.4f; top-1 agree "
        "%.2f%%; dPPL %+.4f +/- %.4f (ref %.4f)\n",
        s.kld_mean, s.kld_mean_stderr, s.kld_median, s.kld_p99, s.kld_max, 100 * s.top1_agree,
        s.delta_ppl, s.delta_ppl_stderr, s.ppl_ref);
  }
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<PerplexityCliOptions>();
  CLI::App* cmd = root.add_subcommand(
      "perplexity", "Perplexity (and KLD vs a saved reference) of a text with a KV scheme");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->text, "Text file (e.g. wikitext-2-raw/wiki.test.raw)")
      ->required();
  add_kv_option(*cmd, o->kv, "KV-cache scheme");
  cmd->add_option("-c,--ctx", o->context, "Tokens per window")
      ->capture_default_str()
      ->check(in_range<std::size_t>(2, kMaxTokens));
  cmd->add_option("--stride", o->stride,
                  "Sliding window every S tokens (0: llama-perplexity chunks, second half scored)")
      ->capture_default_str()
      ->check(in_range<std::size_t>(0, kMaxTokens));
  cmd->add_option("--chunks", o->chunks, "Evaluate at most N windows (0: all)")
      ->capture_default_str()
      ->check(in_range<std::size_t>(0, kMaxTokens));
  cmd->add_option("--save-logits", o->save_logits, "Write the scored tokens' logits (reference)");
  cmd->add_option("--kld", o->kld, "Compare with logits saved by --save-logits");
  cmd->add_flag("--logits-f32", o->logits_f32, "Save logits as float32 (default float16)");
  cmd->add_option("-b,--batch", o->batch, "Prefill chunk in tokens")
      ->capture_default_str()
      ->check(in_range<int>(1, kMaxTokens));
  add_report_options(*cmd, o->report, "Print a JSON summary");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
