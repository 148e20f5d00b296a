// `tq sensitivity -m MODEL -f TEXT --kv SCHEME [-c CTX] [--chunks N] [--out PREFIX [--plot]]`:
// quantizes one layer at a time with the scheme (all other layers exact), keys and values
// separately, and reports each run's KL divergence against the fp16 cache on the same tokens —
// the data behind the presets' protect-first/last choices. Writes PREFIX.json and PREFIX.md;
// --plot then draws PREFIX.png from the JSON with scripts/plot.py.
#include "command_registry.hpp"
#include "plot_script.hpp"

#include "turboquant/eval/runner.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tq::cli {
namespace {

struct SensitivityOptions {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string text;
  std::string kv = "tq3";
  std::size_t context = 512;
  std::size_t chunks = 2;
  std::string out;  // PREFIX for .json/.md (and .png with --plot); empty: print only
  int threads = 0;
  bool plot = false;
  bool quiet = false;
};

// The scheme with every layer but `layer` protected and the other side kept fp16.
KvScheme single_layer_scheme(const KvScheme& base, int layer, int n_layers, KvSide side) {
  KvScheme s = base;
  s.protect_first = layer;
  s.protect_last = n_layers - 1 - layer;
  if (side == KvSide::Key) {
    s.value = KvSideSpec{};
  } else {
    s.key = KvSideSpec{};
  }
  s.name = base.name + "@layer" + std::to_string(layer) + (side == KvSide::Key ? "K" : "V");
  return s;
}

void run(const SensitivityOptions& o) {
  if (o.text.empty()) throw std::invalid_argument("sensitivity needs a text file (-f FILE)");
  if (o.plot && o.out.empty()) {
    throw std::invalid_argument("--plot draws PREFIX.png from PREFIX.json: give --out PREFIX");
  }
  const KvScheme base = parse_kv_scheme(o.kv);
  if (base.key.format == KvFormat::Fp16 && base.value.format == KvFormat::Fp16) {
    throw std::invalid_argument("sensitivity needs a compressed scheme, got '" + o.kv + "'");
  }
  std::ifstream in(o.text, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read text file '" + o.text + "'");
  if (o.plot) check_plot_script();
  std::stringstream ss;
  ss << in.rdbuf();
  const gguf::File file = gguf::File::open(o.model);
  const Model model = Model::from_gguf(file, o.threads);
  const Tokenizer tokenizer = Tokenizer::from_gguf(file);
  const bool bos = tokenizer.add_bos_by_default() && tokenizer.bos_id() >= 0;
  const std::vector<TokenId> tokens = tokenizer.encode(ss.str(), bos, false);
  eval::PerplexityOptions po;
  po.context = o.context;
  po.max_windows = o.chunks;
  if (bos) po.window_start_token = tokenizer.bos_id();
  const int L = model.config().n_layers;

  SessionOptions so;
  so.threads = o.threads;
  so.max_context = po.context;
  so.reserve = po.context;
  const auto ref_path = std::filesystem::temp_directory_path() /
                        ("tq_sensitivity_ref_" + std::to_string(::getpid()) + ".logits");
  {
    Session session(model, "fp16", so);
    eval::SessionModel lm(session);
    eval::LogitsWriter writer(ref_path, static_cast<std::uint32_t>(model.config().n_vocab));
    eval::run_perplexity(lm, tokens, po, &writer);
    writer.finish();
  }
  struct Row {
    double kld_k = 0, kld_v = 0, top1_k = 0, top1_v = 0;
  };
  std::vector<Row> rows(static_cast<std::size_t>(L));
  const auto t0 = std::chrono::steady_clock::now();
  for (int l = 0; l < L; ++l) {
    for (const KvSide side : {KvSide::Key, KvSide::Value}) {
      const KvSideSpec& spec = side == KvSide::Key ? base.key : base.value;
      if (spec.format == KvFormat::Fp16) continue;
      Session session(model, single_layer_scheme(base, l, L, side), so);
      eval::SessionModel lm(session);
      eval::LogitsReader reader(ref_path);
      const eval::PerplexityResult r = eval::run_perplexity(lm, tokens, po, nullptr, &reader);
      Row& row = rows[static_cast<std::size_t>(l)];
      (side == KvSide::Key ? row.kld_k : row.kld_v) = r.kld->mean();
      (side == KvSide::Key ? row.top1_k : row.top1_v) = r.kld->top1_agreement();
    }
    if (!o.quiet) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "[layer %d/%d] KLD K %.5f V %.5f  (%.0f s, eta %.0f s)\n", l + 1, L,
                   rows[static_cast<std::size_t>(l)].kld_k, rows[static_cast<std::size_t>(l)].kld_v,
                   s, s / (l + 1) * (L - l - 1));
    }
  }
  std::filesystem::remove(ref_path);

  nlohmann::json j;
  j["model"] = o.model;
  j["text"] = o.text;
  j["kv"] = base.name;
  j["context"] = po.context;
  j["chunks"] = o.chunks;
  nlohmann::json layers = nlohmann::json::array();
  std::ostringstream md;
  md << "# Per-layer KV sensitivity: " << base.name << "\n\n"
     << "One layer quantized with `" << base.name
     << "` (keys only or values only), all other layers fp16; mean KL divergence (nats) of the "
        "next-token distribution vs the fp16 cache. Model `"
     << o.model << "`, text `" << o.text << "`, " << o.chunks << " chunk(s) of " << po.context
     << " tokens (second half scored).\n\n| layer | KLD keys | KLD values | top-1 keys | top-1 "
        "values |\n|---:|---:|---:|---:|---:|\n";
  for (int l = 0; l < L; ++l) {
    const Row& r = rows[static_cast<std::size_t>(l)];
    layers.push_back({{"layer", l},
                      {"kld_keys", r.kld_k},
                      {"kld_values", r.kld_v},
                      {"top1_keys", r.top1_k},
                      {"top1_values", r.top1_v}});
    char line[160];
    std::snprintf(line, sizeof line, "| %d | %.5f | %.5f | %.2f%% | %.2f%% |\n", l, r.kld_k,
                  r.kld_v, 100 * r.top1_k, 100 * r.top1_v);
    md << line;
  }
  j["layers"] = layers;
  if (o.out.empty()) {
    std::cout << md.str();
    return;
  }
  std::filesystem::path prefix(o.out);
  if (prefix.has_parent_path()) std::filesystem::create_directories(prefix.parent_path());
  std::ofstream(o.out + ".json") << j.dump(2) << "\n";
  std::ofstream(o.out + ".md") << md.str();
  std::cout << md.str();
  if (o.plot) run_plot_script(o.out + ".json");
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<SensitivityOptions>();
  CLI::App* cmd = root.add_subcommand(
      "sensitivity", "Per-layer KLD with one layer's keys or values quantized, others exact");
  cmd->add_option("-m,--model", o->model, "GGUF model file")->capture_default_str();
  cmd->add_option("-f,--file", o->text, "Text file")->required();
  cmd->add_option("--kv", o->kv, "Scheme applied to the one layer")->capture_default_str();
  cmd->add_option("-c,--ctx", o->context, "Tokens per chunk")->capture_default_str();
  cmd->add_option("--chunks", o->chunks, "Chunks per run")->capture_default_str();
  cmd->add_option("--out", o->out, "Output prefix (writes PREFIX.json and PREFIX.md)");
  cmd->add_flag("--plot", o->plot,
                "Also draw PREFIX.png (KLD per layer) with scripts/plot.py (python3 + matplotlib)");
  cmd->add_option("-t,--threads", o->threads, "Threads (0: all cores)")->capture_default_str();
  cmd->add_flag("-q,--quiet", o->quiet, "No progress on stderr");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
