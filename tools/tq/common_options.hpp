// The options several `tq` subcommands share, declared once so that their names, defaults and
// help texts stay the same everywhere: the model file and thread count of every command that
// runs a model, the KV-cache scheme(s), --json and --quiet; the range checks of every integer
// option; plus the model loading and the small file I/O those commands all do.
#pragma once

#include "turboquant/base/device.hpp"
#include "turboquant/base/parse.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/tokenizer.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tq::cli {

// The model every command runs when -m is not given (scripts/fetch_model.sh downloads it),
// relative to the working directory.
inline constexpr const char* kDefaultModelPath = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

// Sane maxima of the integer options: token counts (contexts, windows, chunks, lengths), model
// shape sizes (kv-size), threads and codec vectors. They bound the work and the byte counts an
// option can ask for; real models are far inside them.
inline constexpr std::int64_t kMaxTokens = std::int64_t{1} << 30;
inline constexpr std::int64_t kMaxShapeSize = 65536;
inline constexpr std::int64_t kMaxThreads = 4096;
inline constexpr std::int64_t kMaxVectors = 1000000000;

// A check that an integer option's text (each element of a list) is a whole number in
// [min, max], run before CLI11 converts it to the option's type: "--ctx: -1 is out of range;
// expected 2..1073741824" instead of a negative value wrapped to 2^64 - 1 (tq::integer_problem).
// T is the option's type; the help text stays as it is (no description).
template <typename T>
CLI::Validator in_range(std::int64_t min, std::int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) {
        T value{};
        return integer_problem<T>(text, static_cast<T>(min), static_cast<T>(max), &value);
      },
      "");
}
// The whole range of an unsigned 64-bit option (seeds).
CLI::Validator any_uint64();

// What a command that runs a model needs to load and run it, including the device it runs on,
// so that add_model_options gives --device to every model command at once.
struct ModelOptions {
  std::string path = kDefaultModelPath;
  int threads = 0;  // CPU threads; 0: all cores
  Device device = Device::Cpu;
};

// Adds -m,--model, -t,--threads and --device cpu|cuda.
void add_model_options(CLI::App& cmd, ModelOptions& options);

// The session options every model command starts from: its threads and device.
SessionOptions session_options(const ModelOptions& options);

// Prints "note: FILE has random weights (tq make-model): ..." on stderr when `file` is marked as
// written by `tq make-model`, so that no number measured on it is mistaken for a model's quality.
void note_random_weights(const gguf::File& file, const std::string& path);

// A model opened for running: the GGUF file (its metadata kept for the model's lifetime; its
// tensor bytes released once the weights are loaded), the weights and the tokenizer.
struct LoadedModel {
  explicit LoadedModel(const ModelOptions& options);
  // Whether encoded texts start with BOS: the tokenizer asks for it and has one.
  bool adds_bos() const;

  gguf::File file;
  Model model;
  Tokenizer tokenizer;
};

// --kv with one scheme, or with several (repeatable: --kv a --kv b); the default is shown in the
// help.
void add_kv_option(CLI::App& cmd, std::string& kv, const std::string& help);
void add_kv_option(CLI::App& cmd, std::vector<std::string>& kv, const std::string& help);

// The prompt of the commands that continue one: -p,--prompt TEXT or -f,--file FILE, and
// --prompt-tokens N to keep only its first N tokens.
struct PromptOptions {
  std::string text;
  std::string file;
  int max_tokens = 0;  // 0: keep all
};
void add_prompt_options(CLI::App& cmd, PromptOptions& options);
// The file's contents when -f is given, else the -p text; throws std::invalid_argument when
// that is empty.
std::string prompt_text(const PromptOptions& options);
// Keeps the first max_tokens ids (all when 0); throws std::invalid_argument when none are left.
void truncate_prompt(std::vector<TokenId>& ids, const PromptOptions& options);
// Throws std::invalid_argument when the prompt and n_predict more tokens exceed max_context.
void check_prompt_fits(std::size_t prompt_tokens, int n_predict, std::size_t max_context);

// How a command reports: --json (machine-readable output, help text per command) and
// -q,--quiet (no progress on stderr).
struct ReportOptions {
  bool json = false;
  bool quiet = false;
};
void add_report_options(CLI::App& cmd, ReportOptions& options, const std::string& json_help);
void add_quiet_flag(CLI::App& cmd, bool& quiet);

// The whole file as text; `what` names it in the error ("text file", "prompt file").
std::string read_text_file(const std::string& path, const std::string& what);

// Checks an output file before the work starts: it is none of `inputs` (the model, the text; the
// same file under another name counts), not a directory, and a file can be created beside it (its
// directory exists and is writable; nothing is created on the way). Throws std::invalid_argument
// naming `option` and the path.
void check_output_file(const std::filesystem::path& path, const std::string& option,
                       const std::vector<std::string>& inputs = {});

// Writes `text` to `path` atomically: into PATH.tmp.PID, renamed over `path` once complete, so a
// failed or concurrent run never leaves a half-written file. Creates no directories; throws
// std::runtime_error naming the path when it cannot be written.
void write_text_file(const std::filesystem::path& path, const std::string& text);

// The common check of commands whose --plot draws PREFIX.png from the PREFIX.json they write.
void require_out_for_plot(bool plot, const std::string& out);

}  // namespace tq::cli
