// `tq niah -m MODEL --kv SCHEME [--kv ...] [--mode single|multi|passkey ...] [--lengths L,...]
// [--depths PCT,...] [--seeds N] [--needles K] [--haystack FILE] [--json-out FILE] [--json]
// [--plot [--out DIR]]`: needle-in-a-haystack retrieval over a grid of context lengths × needle
// depths × seeds, answered greedily through the chat template and scored by exact digit runs.
// Writes a JSON record of every cell; --plot then draws one heatmap per scheme and mode
// (DIR/niah_<scheme>_<mode>.png) from it with scripts/plot.py.
#include "command_registry.hpp"
#include "common_options.hpp"
#include "plot_script.hpp"

#include "turboquant/eval/runner.hpp"
#include "turboquant/model/chat_template.hpp"

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

namespace tq::cli {
namespace {

struct NiahCliOptions {
  ModelOptions model;
  std::vector<std::string> kv = {"fp16"};
  std::vector<std::string> modes = {"single"};
  std::vector<std::size_t> lengths;  // empty: 1k, 2k, 4k, ... up to the trained context
  std::vector<double> depths = {0, 25, 50, 75, 100};
  std::size_t seeds = 2;
  std::uint64_t seed = 0;
  std::size_t needles = 3;  // multi-needle mode
  std::string haystack;     // empty: built-in filler
  std::string out_dir;      // heatmaps of --plot; empty: the current directory
  std::string json_file;    // empty: a temporary file when --plot needs one
  int max_new = 0;
  bool plot = false;
  ReportOptions report;
};

eval::NiahGrid grid_for_mode(const std::string& mode, const NiahCliOptions& o,
                             const std::vector<std::size_t>& lengths) {
  eval::NiahGrid grid;
  if (mode == "single") {
    grid.kind = eval::NeedleKind::kMagicNumber;
    grid.n_needles = 1;
  } else if (mode == "multi") {
    grid.kind = eval::NeedleKind::kMagicNumber;
    grid.n_needles = o.needles;
    if (o.needles < 2) {
      throw std::invalid_argument("--needles must be >= 2 for multi mode, got " +
                                  std::to_string(o.needles));
    }
  } else if (mode == "passkey") {
    grid.kind = eval::NeedleKind::kPasskey;
    grid.n_needles = 1;
  } else {
    throw std::invalid_argument("unknown NIAH mode '" + mode +
                                "'; expected single, multi or passkey");
  }
  grid.contexts = lengths;
  for (const double d : o.depths) {
    if (!(d >= 0 && d <= 100)) {
      throw std::invalid_argument("depth " + std::to_string(d) + "% outside [0, 100]");
    }
    grid.depths.push_back(d / 100.0);
  }
  grid.seeds = o.seeds;
  grid.base_seed = o.seed;
  grid.max_new_tokens = o.max_new;
  return grid;
}

nlohmann::json cell_json(const eval::NiahCellResult& c) {
  nlohmann::json j;
  j["context"] = c.spec.context;
  j["depth"] = c.spec.depth;
  j["seed"] = c.spec.seed;
  j["prompt_tokens"] = c.prompt_tokens;
  j["needle_depths"] = c.needle_depths;
  j["answer"] = c.answer;
  j["retrieved"] = c.score.retrieved;
  j["correct"] = c.score.correct;
  j["seconds"] = c.seconds;
  j["prefill_seconds"] = c.prefill_seconds;
  j["decode_steps"] = c.decode_steps;
  j["decode_seconds"] = c.decode_seconds;
  return j;
}

// --plot: plot.py reads the record from --json-out, else from a temporary copy.
void draw_heatmaps(const nlohmann::json& record, const NiahCliOptions& o) {
  const std::filesystem::path dir = o.out_dir.empty() ? "." : o.out_dir;
  if (!o.json_file.empty()) {
    run_plot_script(o.json_file, {"--out", dir.string()});
    return;
  }
  struct RemoveOnExit {
    std::filesystem::path path;
    ~RemoveOnExit() {
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
    }
  } tmp{std::filesystem::temp_directory_path() /
        ("tq_niah_" + std::to_string(::getpid()) + ".json")};
  write_text_file(tmp.path, record.dump(2) + "\n");
  run_plot_script(tmp.path, {"--out", dir.string()});
}

void run(const NiahCliOptions& o) {
  std::vector<KvScheme> schemes;
  for (const std::string& s : o.kv) schemes.push_back(parse_kv_scheme(s));
  if (!o.out_dir.empty() && !o.plot) {
    throw std::invalid_argument("--out " + o.out_dir +
                                " names the directory of the heatmaps; add --plot to draw them");
  }
  if (o.plot) check_plot_script();
  // Outputs are checked before the work: an unwritable --json-out used to be found only at the
  // end, and --out created missing parent directories.
  if (!o.json_file.empty())
    check_output_file(o.json_file, "--json-out", {o.model.path, o.haystack});
  if (!o.out_dir.empty() && !std::filesystem::is_directory(o.out_dir)) {
    throw std::invalid_argument("--out " + o.out_dir + " is not an existing directory");
  }
  // Check the modes and depths before the (slow) model load.
  for (const std::string& mode : o.modes) grid_for_mode(mode, o, {1024});
  const LoadedModel loaded(o.model);
  const Model& model = loaded.model;
  const ChatTemplate chat = detect_chat_template(loaded.file);
  const eval::NiahPromptEncoder encoder(loaded.tokenizer, chat);
  const eval::Haystack haystack =
      o.haystack.empty() ? eval::Haystack::filler(1) : eval::Haystack::from_file(o.haystack);
  const std::size_t trained = static_cast<std::size_t>(model.config().context_length);

  std::vector<std::size_t> lengths = o.lengths;
  if (lengths.empty()) {
    for (std::size_t n = 1024; n <= trained; n *= 2) lengths.push_back(n);
  }
  for (const std::size_t n : lengths) {
    if (n > trained) {
      throw std::invalid_argument("length " + std::to_string(n) +
                                  " exceeds the model's trained context of " +
                                  std::to_string(trained));
    }
  }
  std::vector<eval::NiahGrid> grids;
  for (const std::string& mode : o.modes) grids.push_back(grid_for_mode(mode, o, lengths));

  nlohmann::json runs = nlohmann::json::array();
  for (const KvScheme& scheme : schemes) {
    SessionOptions so = session_options(o.model);
    Session session(model, scheme, so);
    eval::SessionModel lm(session);
    for (std::size_t g = 0; g < grids.size(); ++g) {
      const eval::NiahGrid& grid = grids[g];
      const std::string mode = o.modes[g];
      const auto progress = [&](const eval::NiahCellResult& c, std::size_t done,
                                std::size_t total) {
        if (o.report.quiet) return;
        std::fprintf(stderr, "[%s %s %zu/%zu] ctx %zu depth %3.0f%%: %s (%zu/%zu) %.1f s  '%s'\n",
                     scheme.name.c_str(), mode.c_str(), done, total, c.spec.context,
                     100 * c.spec.depth, c.score.correct ? "ok  " : "MISS", c.score.retrieved,
                     c.score.found.size(), c.seconds, c.answer.c_str());
      };
      const std::vector<eval::NiahCellResult> cells =
          eval::run_niah_grid(lm, encoder, haystack, grid, progress);
      const double acc = eval::niah_accuracy(cells);
      nlohmann::json r;
      r["kv"] = scheme.name;
      r["mode"] = mode;
      r["needles"] = grid.n_needles;
      r["accuracy"] = acc;
      r["contexts"] = grid.contexts;
      r["depths"] = grid.depths;
      r["seeds"] = grid.seeds;
      r["table"] = eval::niah_accuracy_table(grid, cells);
      nlohmann::json jc = nlohmann::json::array();
      for (const auto& c : cells) jc.push_back(cell_json(c));
      r["cells"] = jc;
      if (!o.report.json) {
        std::printf("kv %-28s %-7s accuracy %.1f%% (%zu cells)\n", scheme.name.c_str(),
                    mode.c_str(), 100 * acc, cells.size());
        std::fflush(stdout);
      }
      runs.push_back(r);
    }
  }
  nlohmann::json out;
  out["model"] = o.model.path;
  out["haystack"] = o.haystack.empty() ? "built-in filler" : o.haystack;
  out["runs"] = runs;
  if (!o.json_file.empty()) write_text_file(o.json_file, out.dump(2) + "\n");
  if (o.report.json) std::cout << out.dump(2) << "\n";
  if (o.plot) draw_heatmaps(out, o);
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<NiahCliOptions>();
  CLI::App* cmd = root.add_subcommand(
      "niah", "Needle-in-a-haystack retrieval over context lengths x depths (JSON, heatmaps)");
  add_model_options(*cmd, o->model);
  add_kv_option(*cmd, o->kv, "KV-cache scheme (repeatable)");
  cmd->add_option("--mode", o->modes, "single, multi and/or passkey (repeatable)")
      ->capture_default_str();
  cmd->add_option("--lengths", o->lengths,
                  "Context lengths in tokens (default: 1k, 2k, ... up to the trained context)")
      ->delimiter(',')
      ->check(in_range<std::size_t>(1, kMaxTokens));
  cmd->add_option("--depths", o->depths, "Needle depths in percent")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--seeds", o->seeds, "Cells per (length, depth)")
      ->capture_default_str()
      ->check(in_range<std::size_t>(1, kMaxTokens));
  cmd->add_option("--seed", o->seed, "Base seed of the needles")
      ->capture_default_str()
      ->check(any_uint64());
  cmd->add_option("--needles", o->needles, "Needles in multi mode (all must be retrieved)")
      ->capture_default_str()
      ->check(in_range<std::size_t>(1, kMaxTokens));
  cmd->add_option("--haystack", o->haystack, "Haystack text file (default: built-in filler)");
  cmd->add_flag("--plot", o->plot,
                "Draw one heatmap PNG per scheme and mode with scripts/plot.py (python3 + "
                "matplotlib)");
  cmd->add_option("--out", o->out_dir,
                  "Directory for the --plot heatmaps, niah_<scheme>_<mode>.png (default: .)");
  cmd->add_option("--json-out", o->json_file, "Write the JSON record to this file");
  cmd->add_option("--max-new", o->max_new, "Answer tokens (0: 12 + 12 per needle)")
      ->check(in_range<int>(0, kMaxTokens));
  add_report_options(*cmd, o->report, "Print the JSON record on stdout");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
