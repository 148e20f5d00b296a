// `tq make-model --shape NAME --weights TYPE --seed S -o FILE.gguf [--layers N] [--context N]`:
// writes a GGUF file with seeded random weights in the shape of a real model (random_model.hpp),
// for speed and GPU-vs-CPU agreement tests without downloading the model. Progress on stderr.
#include "command_registry.hpp"
#include "common_options.hpp"

#include "turboquant/model/random_model.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

namespace tq::cli {
namespace {

struct MakeModelOptions {
  std::string shape;
  std::string weights = "q4_0";
  std::uint64_t seed = 0;
  std::string out;
  int layers = 0;   // 0: the shape's
  int context = 0;  // 0: the shape's
  int threads = 0;
  bool quiet = false;
};

void run_make_model(const MakeModelOptions& o) {
  RandomModelOptions options;
  options.shape = find_random_model_shape(o.shape);
  options.weights = parse_random_weight_type(o.weights);
  options.seed = o.seed;
  options.threads = o.threads;
  if (o.layers > 0) options.shape.layers = o.layers;
  if (o.context > 0) options.shape.context = o.context;

  check_output_file(o.out, "-o");
  const auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  const auto progress = [&](std::size_t index, std::size_t count, std::uint64_t done,
                            std::uint64_t total) {
    const auto now = std::chrono::steady_clock::now();
    // A line at most every half second (and at the end): an 8B file has ~300 tensors.
    if (now - last < std::chrono::milliseconds(500) && done != total) return;
    last = now;
    std::fprintf(stderr, "make-model: tensor %zu of %zu, %.2f of %.2f GB\n", index + 1, count,
                 static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9);
  };
  write_random_model(options, o.out, o.quiet ? gguf::WriteProgress{} : progress);
  if (!o.quiet) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr,
                 "make-model: wrote %s (random %s, %d layers, %s weights, seed %llu) in %.1f s\n",
                 o.out.c_str(), options.shape.name.c_str(), options.shape.layers,
                 gguf::tensor_type_name(options.weights).c_str(),
                 static_cast<unsigned long long>(o.seed), s);
  }
}

const CommandRegistrar kRegisterMakeModel([](CLI::App& root) {
  auto opt = std::make_shared<MakeModelOptions>();
  CLI::App* cmd = root.add_subcommand(
      "make-model", "Write a GGUF file with seeded random weights in the shape of a real model");
  cmd->add_option("--shape", opt->shape,
                  "Model shape: llama-3.1-8b, qwen2.5-7b, mistral-7b, smollm2-135m or gemma3-270m")
      ->required();
  cmd->add_option("--weights", opt->weights, "Matrix type: q4_0, q8_0, f16, bf16 or f32")
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed of the weights")
      ->capture_default_str()
      ->check(any_uint64());
  cmd->add_option("-o,--out", opt->out, "GGUF file to write")->required();
  cmd->add_option("--layers", opt->layers, "Layers (0: the shape's)")
      ->capture_default_str()
      ->check(in_range<int>(0, kMaxShapeSize));
  cmd->add_option("--context", opt->context, "Context length in the metadata (0: the shape's)")
      ->capture_default_str()
      ->check(in_range<int>(0, kMaxTokens));
  cmd->add_option("-t,--threads", opt->threads,
                  "Threads (0: all cores); the bytes do not depend on it")
      ->capture_default_str()
      ->check(in_range<int>(0, kMaxThreads));
  add_quiet_flag(*cmd, opt->quiet);
  cmd->callback([opt] { run_make_model(*opt); });
});

}  // namespace
}  // namespace tq::cli
