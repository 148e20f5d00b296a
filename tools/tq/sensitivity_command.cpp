// `tq sensitivity -m MODEL -f TEXT --kv SCHEME [-c CTX] [--chunks N] [--out PREFIX [--plot]]`:
// quantizes one layer at a time with the scheme (all other layers exact), keys and values
// separately, and reports each run's KL divergence against the fp16 cache on the same tokens —
// the data behind the presets' protect-first/last choices. Writes PREFIX.json and PREFIX.md;
// --plot then draws PREFIX.png from the JSON with scripts/plot.py.
#include "command_registry.hpp"
#include "common_options.hpp"
#include "plot_script.hpp"

#include "turboquant/eval/sensitivity.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tq::eval {
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LayerSensitivity, layer, kld_keys, kld_values, top1_keys,
                                   top1_values)
}  // namespace tq::eval

namespace tq::cli {
namespace {

struct SensitivityOptions {
  ModelOptions model;
  std::string text;
  std::string kv = "tq3";
  std::size_t context = 512;
  std::size_t chunks = 2;
  std::string out;  // PREFIX for .json/.md (and .png with --plot); empty: print only
  bool plot = false;
  bool quiet = false;
};

void run(const SensitivityOptions& o) {
  if (o.text.empty()) throw std::invalid_argument("sensitivity needs a text file (-f FILE)");
  require_out_for_plot(o.plot, o.out);
  const KvScheme base = parse_kv_scheme(o.kv);
  eval::check_sensitivity_scheme(base);
  if (!o.out.empty()) {  // before the (long) work, not after it
    check_output_file(o.out + ".json", "--out", {o.model.path, o.text});
    check_output_file(o.out + ".md", "--out", {o.model.path, o.text});
  }
  const std::string text = read_text_file(o.text, "text file");
  if (o.plot) check_plot_script();
  const LoadedModel loaded(o.model);
  const bool bos = loaded.adds_bos();
  const std::vector<TokenId> tokens = loaded.tokenizer.encode(text, bos, false);
  eval::PerplexityOptions po;
  po.context = o.context;
  po.max_windows = o.chunks;
  if (bos) po.window_start_token = loaded.tokenizer.bos_id();
  const auto progress = [&](const eval::LayerSensitivity& r, int done, int n, double s) {
    if (o.quiet) return;
    std::fprintf(stderr, "[layer %d/%d] KLD K %.5f V %.5f  (%.0f s, eta %.0f s)\n", done, n,
                 r.kld_keys, r.kld_values, s, s / done * (n - done));
  };
  const std::vector<eval::LayerSensitivity> rows =
      eval::run_sensitivity(loaded.model, base, tokens, po, session_options(o.model), progress);

  nlohmann::json j;
  j["model"] = o.model.path;
  j["text"] = o.text;
  j["kv"] = base.name;
  j["context"] = po.context;
  j["chunks"] = o.chunks;
  std::ostringstream md;
  md << "# Per-layer KV sensitivity: " << base.name << "\n\n"
     << "One layer quantized with `" << base.name
     << "` (keys only or values only), all other layers fp16; mean KL divergence (nats) of the "
        "next-token distribution vs the fp16 cache. Model `"
     << o.model.path << "`, text `" << o.text << "`, " << o.chunks << " chunk(s) of " << po.context
     << " tokens (second half scored).\n\n| layer | KLD keys | KLD values | top-1 keys | top-1 "
        "values |\n|---:|---:|---:|---:|---:|\n";
  for (const eval::LayerSensitivity& r : rows) {
    char line[160];
    std::snprintf(line, sizeof line, "| %d | %.5f | %.5f | %.2f%% | %.2f%% |\n", r.layer,
                  r.kld_keys, r.kld_values, 100 * r.top1_keys, 100 * r.top1_values);
    md << line;
  }
  j["layers"] = rows;
  if (o.out.empty()) {
    std::cout << md.str();
    return;
  }
  write_text_file(o.out + ".json", j.dump(2) + "\n");
  write_text_file(o.out + ".md", md.str());
  std::cout << md.str();
  if (o.plot) run_plot_script(o.out + ".json");
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<SensitivityOptions>();
  CLI::App* cmd = root.add_subcommand(
      "sensitivity", "Per-layer KLD with one layer's keys or values quantized, others exact");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->text, "Text file")->required();
  add_kv_option(*cmd, o->kv, "Scheme applied to the one layer");
  // Chunks score their second half: 3 tokens are the least that score one.
  cmd->add_option("-c,--ctx", o->context, "Tokens per chunk")
      ->capture_default_str()
      ->check(in_range<std::size_t>(3, kMaxTokens));
  cmd->add_option("--chunks", o->chunks, "Chunks per run")
      ->capture_default_str()
      ->check(in_range<std::size_t>(1, kMaxTokens));
  cmd->add_option("--out", o->out, "Output prefix (writes PREFIX.json and PREFIX.md)");
  cmd->add_flag("--plot", o->plot,
                "Also draw PREFIX.png (KLD per layer) with scripts/plot.py (python3 + matplotlib)");
  add_quiet_flag(*cmd, o->quiet);
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
