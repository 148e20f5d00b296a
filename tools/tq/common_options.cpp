// The shared `tq` options and the loading and file I/O of the model commands
// (common_options.hpp).
#include "common_options.hpp"

#include "turboquant/model/random_model.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tq::cli {

CLI::Validator any_uint64() {
  return CLI::Validator(
      [](std::string& text) {
        std::uint64_t value = 0;
        return integer_problem<std::uint64_t>(text, 0, UINT64_MAX, &value);
      },
      "");
}

void add_model_options(CLI::App& cmd, ModelOptions& options) {
  cmd.add_option("-m,--model", options.path, "GGUF model file")->capture_default_str();
  cmd.add_option("-t,--threads", options.threads, "Threads (0: all cores)")
      ->capture_default_str()
      ->check(in_range<int>(0, kMaxThreads));
  cmd.add_option_function<std::string>(
         "--device", [&options](const std::string& text) { options.device = parse_device(text); },
         "Where the model runs: cpu, or cuda (weights and KV cache on GPU 0)")
      ->default_str("cpu")
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

SessionOptions session_options(const ModelOptions& options) {
  SessionOptions so;
  so.threads = options.threads;
  so.device = options.device;
  return so;
}

void note_random_weights(const gguf::File& file, const std::string& path) {
  if (has_random_weights(file)) {
    std::fprintf(stderr,
                 "note: %s has random weights (tq make-model): speed and agreement tests only, "
                 "not quality\n",
                 path.c_str());
  }
}

namespace {
gguf::File open_model_file(const std::string& path) {
  gguf::File file = gguf::File::open(path);
  note_random_weights(file, path);
  return file;
}
}  // namespace

LoadedModel::LoadedModel(const ModelOptions& options)
    : file(open_model_file(options.path)),
      model(Model::from_gguf(file, options.threads)),
      tokenizer(Tokenizer::from_gguf(file)) {
  // The model copied every tensor; the commands read only metadata from the file afterwards.
  file.release_tensor_data();
}

bool LoadedModel::adds_bos() const {
  return tokenizer.add_bos_by_default() && tokenizer.bos_id() >= 0;
}

void add_kv_option(CLI::App& cmd, std::string& kv, const std::string& help) {
  cmd.add_option("--kv", kv, help)->capture_default_str();
}

void add_kv_option(CLI::App& cmd, std::vector<std::string>& kv, const std::string& help) {
  cmd.add_option("--kv", kv, help)->capture_default_str();
}

void add_prompt_options(CLI::App& cmd, PromptOptions& options) {
  cmd.add_option("-p,--prompt", options.text, "Prompt text");
  cmd.add_option("-f,--file", options.file, "Read the prompt from a file");
  cmd.add_option("--prompt-tokens", options.max_tokens,
                 "Keep only the first N prompt tokens (0: all)")
      ->check(in_range<int>(0, kMaxTokens));
}

std::string prompt_text(const PromptOptions& options) {
  const std::string text =
      options.file.empty() ? options.text : read_text_file(options.file, "prompt file");
  if (text.empty()) throw std::invalid_argument("empty prompt (give -p TEXT or -f FILE)");
  return text;
}

void truncate_prompt(std::vector<TokenId>& ids, const PromptOptions& options) {
  if (options.max_tokens > 0 && ids.size() > static_cast<std::size_t>(options.max_tokens)) {
    ids.resize(static_cast<std::size_t>(options.max_tokens));
  }
  if (ids.empty()) throw std::invalid_argument("the prompt tokenizes to nothing");
}

void check_prompt_fits(std::size_t prompt_tokens, int n_predict, std::size_t max_context) {
  if (prompt_tokens + static_cast<std::size_t>(n_predict) > max_context) {
    throw std::invalid_argument("prompt (" + std::to_string(prompt_tokens) + " tokens) + -n " +
                                std::to_string(n_predict) + " exceeds the context of " +
                                std::to_string(max_context) + " tokens");
  }
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

namespace {
// PATH.tmp.PID beside `path`: same directory, so the final rename is atomic.
std::filesystem::path temporary_beside(const std::filesystem::path& path) {
  return path.string() + ".tmp." + std::to_string(::getpid());
}
}  // namespace

void check_output_file(const std::filesystem::path& path, const std::string& option,
                       const std::vector<std::string>& inputs) {
  const std::string shown = option + " " + path.string();
  std::error_code ec;
  for (const std::string& input : inputs) {
    if (input.empty()) continue;
    std::error_code ea, eb;
    const std::filesystem::path a = std::filesystem::weakly_canonical(path, ea);
    const std::filesystem::path b = std::filesystem::weakly_canonical(input, eb);
    if (std::filesystem::equivalent(path, input, ec) || (!ea && !eb && a == b)) {
      throw std::invalid_argument(shown + " is an input of this run ('" + input +
                                  "'); refusing to write over it");
    }
  }
  if (std::filesystem::is_directory(path, ec)) {
    throw std::invalid_argument(shown + " is a directory; expected a file name");
  }
  const std::filesystem::path parent =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(parent, ec)) {
    throw std::invalid_argument(shown + ": directory '" + parent.string() +
                                "' does not exist (create it first)");
  }
  // Creating the temporary file the write will use is the only test that holds for root and
  // read-only file systems alike.
  const std::filesystem::path probe = temporary_beside(path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw std::invalid_argument(shown + ": cannot create a file in '" + parent.string() +
                                "': " + std::strerror(errno));
  }
  ::close(fd);
  std::filesystem::remove(probe, ec);
}

void write_text_file(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = temporary_beside(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw std::runtime_error("cannot write '" + path.string() + "' (via '" + tmp.string() + "')");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error("cannot write '" + path.string() + "': " + ec.message());
  }
}

void require_out_for_plot(bool plot, const std::string& out) {
  if (plot && out.empty()) {
    throw std::invalid_argument("--plot draws PREFIX.png from PREFIX.json: give --out PREFIX");
  }
}

}  // namespace tq::cli
