// `tq calibrate -m MODEL -f TEXT --budget B [--candidates 2,3,4] [--options window=0] [-c CTX]
// [--chunks N] -o PLAN.json`: measures each layer's key and value sensitivity (KLD vs fp16 with
// only that layer-side quantized) at every candidate width, chooses per-layer widths minimising
// the summed KLD with the stored bits per value within the budget (exact DP,
// turboquant/eval/calibrate.hpp) and writes a plan that `--kv plan=PLAN.json` loads.
#include "command_registry.hpp"
#include "common_options.hpp"

#include "turboquant/eval/calibrate.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tq::cli {
namespace {

struct CalibrateOptions {
  ModelOptions model;
  std::string text;
  double budget = 0.0;
  std::vector<double> candidates = {2, 2.5, 3, 3.5, 4, 4.5, 5};
  std::string options = "window=0";  // scheme options of the sensitivity runs and the plan
  std::size_t context = 256;
  std::size_t chunks = 1;
  std::size_t skip_tokens = 0;  // calibrate on the text after its first N tokens
  std::string out;
  std::string table;       // also write the measured table (JSON) here
  std::string from_table;  // choose from a table written by --table instead of measuring
  bool quiet = false;
};

void run(const CalibrateOptions& o) {
  if (o.text.empty()) throw std::invalid_argument("calibrate needs a text file (-f FILE)");
  if (o.out.empty()) throw std::invalid_argument("calibrate needs an output plan (-o FILE)");
  if (o.candidates.empty()) throw std::invalid_argument("calibrate: --candidates is empty");
  for (const double c : o.candidates) {  // every candidate a valid width, before the long work
    std::ostringstream name;
    name << "tq" << c << (o.options.empty() ? "" : ":" + o.options);
    parse_kv_scheme(name.str());
  }
  check_output_file(o.out, "-o", {o.model.path, o.text});
  const std::string text = read_text_file(o.text, "text file");
  const LoadedModel loaded(o.model);
  const ModelConfig& cfg = loaded.model.config();
  const bool bos = loaded.adds_bos();
  std::vector<TokenId> tokens = loaded.tokenizer.encode(text, bos, false);
  if (o.skip_tokens >= tokens.size()) {
    throw std::invalid_argument("calibrate: --skip " + std::to_string(o.skip_tokens) +
                                " leaves none of the text's " + std::to_string(tokens.size()) +
                                " tokens");
  }
  tokens.erase(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(o.skip_tokens));
  eval::PerplexityOptions po;
  po.context = o.context;
  po.max_windows = o.chunks;
  if (bos) po.window_start_token = loaded.tokenizer.bos_id();
  const auto progress = [&](std::size_t c, double bits, int done, int n, double s) {
    if (o.quiet) return;
    std::fprintf(stderr, "[candidate %zu/%zu: %g bits] layer %d/%d (%.0f s)\n", c + 1,
                 o.candidates.size(), bits, done, n, s);
  };
  eval::SensitivityTable table;
  if (!o.from_table.empty()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(o.from_table, "table file"));
      table.candidates = j.at("candidates").get<std::vector<double>>();
      table.kld_keys = j.at("kld_keys").get<std::vector<std::vector<double>>>();
      table.kld_values = j.at("kld_values").get<std::vector<std::vector<double>>>();
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument("calibrate: --from-table '" + o.from_table +
                                  "' is not a table written by --table (" + e.what() + ")");
    }
    if (static_cast<int>(table.kld_keys.size()) != cfg.n_layers) {
      throw std::invalid_argument("calibrate: --from-table '" + o.from_table + "' has " +
                                  std::to_string(table.kld_keys.size()) +
                                  " layers; the model has " + std::to_string(cfg.n_layers));
    }
  } else {
    table = eval::measure_sensitivity_table(loaded.model, o.candidates, o.options, tokens, po,
                                            session_options(o.model), progress);
  }
  const eval::LayerBitsChoice choice =
      eval::choose_layer_bits(table, cfg.head_dim, o.budget, RotationKind::Hadamard);
  KvPlan plan;
  plan.model = std::filesystem::path(o.model.path).filename().string();
  plan.layers = cfg.n_layers;
  plan.kv_heads = cfg.n_kv_heads;
  plan.head_dim = cfg.head_dim;
  plan.budget_bits = o.budget;
  plan.predicted_kld = choice.predicted_kld;
  plan.base = o.options;
  plan.bits = choice.bits;
  write_text_file(o.out, kv_plan_json(plan));
  if (!o.table.empty()) {
    nlohmann::json j;
    j["candidates"] = table.candidates;
    j["kld_keys"] = table.kld_keys;
    j["kld_values"] = table.kld_values;
    j["context"] = o.context;
    j["chunks"] = o.chunks;
    j["skip_tokens"] = o.skip_tokens;
    j["options"] = o.options;
    write_text_file(o.table, j.dump(2) + "\n");
  }
  std::printf("plan %s: %.4f bits/value (budget %g), predicted KLD %.5f\n", o.out.c_str(),
              choice.bits_per_value, o.budget, choice.predicted_kld);
  for (std::size_t l = 0; l < plan.bits.size(); ++l) {
    std::printf("  layer %2zu: K %g V %g\n", l, plan.bits[l].key, plan.bits[l].value);
  }
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<CalibrateOptions>();
  CLI::App* cmd = root.add_subcommand(
      "calibrate", "Per-layer K/V widths minimising predicted KLD under a bits/value budget");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->text, "Calibration text file")->required();
  cmd->add_option("--budget", o->budget, "Average stored bits per value (codes + norms)")
      ->required()
      ->check(CLI::Range(1.0, 16.0));
  cmd->add_option("--candidates", o->candidates, "Candidate widths (bits)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--options", o->options, "Scheme options of the runs and the plan")
      ->capture_default_str();
  cmd->add_option("-c,--ctx", o->context, "Tokens per chunk")
      ->capture_default_str()
      ->check(in_range<std::size_t>(3, kMaxTokens));
  cmd->add_option("--chunks", o->chunks, "Chunks per run")
      ->capture_default_str()
      ->check(in_range<std::size_t>(1, kMaxTokens));
  cmd->add_option("--skip", o->skip_tokens,
                  "Skip the text's first N tokens (keep calibration apart from evaluation)")
      ->capture_default_str();
  cmd->add_option("-o,--out", o->out, "Plan file to write (JSON)")->required();
  cmd->add_option("--table", o->table, "Also write the measured sensitivity table (JSON)");
  cmd->add_option("--from-table", o->from_table,
                  "Choose from a table written by --table instead of measuring");
  add_quiet_flag(*cmd, o->quiet);
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
