// The shared `tq` options and the loading and file I/O of the model commands
// (common_options.hpp).
#include "common_options.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tq::cli {

void add_model_options(CLI::App& cmd, ModelOptions& options) {
  cmd.add_option("-m,--model", options.path, "GGUF model file")->capture_default_str();
  cmd.add_option("-t,--threads", options.threads, "Threads (0: all cores)")->capture_default_str();
}

LoadedModel::LoadedModel(const ModelOptions& options)
    : file(gguf::File::open(options.path)),
      model(Model::from_gguf(file, options.threads)),
      tokenizer(Tokenizer::from_gguf(file)) {}

bool LoadedModel::adds_bos() const {
  return tokenizer.add_bos_by_default() && tokenizer.bos_id() >= 0;
}

void add_kv_option(CLI::App& cmd, std::string& kv, const std::string& help) {
  cmd.add_option("--kv", kv, help)->capture_default_str();
}

void add_kv_option(CLI::App& cmd, std::vector<std::string>& kv, const std::string& help) {
  cmd.add_option("--kv", kv, help)->capture_default_str();
}

void add_report_options(CLI::App& cmd, ReportOptions& options, const std::string& json_help) {
  cmd.add_flag("--json", options.json, json_help);
  add_quiet_flag(cmd, options.quiet);
}

void add_quiet_flag(CLI::App& cmd, bool& quiet) {
  cmd.add_flag("-q,--quiet", quiet, "No progress on stderr");
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + what + " '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
}

void require_out_for_plot(bool plot, const std::string& out) {
  if (plot && out.empty()) {
    throw std::invalid_argument("--plot draws PREFIX.png from PREFIX.json: give --out PREFIX");
  }
}

}  // namespace tq::cli
