// `tq info MODEL [--json] [--all]`: summarises a GGUF model — architecture, the shape numbers the
// KV cache depends on, tensor type counts and the KV-cache bytes per token.
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command_registry.hpp"
#include "common_options.hpp"
#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"

namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
  bool all_metadata = false;
};

// Integer metadata "<arch>.<suffix>", or `fallback` when absent.
std::int64_t arch_int(const tq::gguf::File& f, const std::string& arch, const char* suffix,
                      std::int64_t fallback) {
  return f.find_integer(arch + "." + suffix).value_or(fallback);
}

void run_info(const InfoOptions& opt) {
  const auto file = tq::gguf::File::open(opt.model);
  tq::cli::note_random_weights(file, opt.model);
  const std::string arch = file.find_string("general.architecture").value_or("unknown");
  const std::int64_t n_layers = arch_int(file, arch, "block_count", 0);
  const std::int64_t n_embd = arch_int(file, arch, "embedding_length", 0);
  const std::int64_t n_heads = arch_int(file, arch, "attention.head_count", 0);
  const std::int64_t n_kv_heads = arch_int(file, arch, "attention.head_count_kv", n_heads);
  const std::int64_t head_dim =
      arch_int(file, arch, "attention.key_length", n_heads > 0 ? n_embd / n_heads : 0);
  const std::int64_t context = arch_int(file, arch, "context_length", 0);
  double rope_base = 10000.0;
  if (const auto* v = file.find(arch + ".rope.freq_base")) rope_base = v->as_number().value_or(0);
  std::int64_t vocab = arch_int(file, arch, "vocab_size", 0);
  if (vocab == 0 && file.has("tokenizer.ggml.tokens")) {
    vocab = static_cast<std::int64_t>(file.get_array("tokenizer.ggml.tokens").items.size());
  }
  std::map<std::string, int> type_counts;
  std::uint64_t tensor_bytes = 0, n_params = 0;
  for (const auto& t : file.tensors()) {
    ++type_counts[tq::gguf::tensor_type_name(t.type)];
    tensor_bytes += t.n_bytes;
    n_params += t.n_elements;
  }

  // Every preset scheme, in report order; bytes per token are averaged over the full trained
  // context so that windows and protected layers (when a preset has them) are counted exactly.
  struct SchemeBytes {
    std::string scheme;
    double bytes_per_token;
    double bits_per_value;
    double ratio;
  };
  std::vector<SchemeBytes> kv_bytes_per_token;
  int sliding_window = 0, sliding_layers = 0;
  if (n_layers > 0 && n_kv_heads > 0 && head_dim > 0) {
    tq::ModelShape shape;
    shape.name = arch;
    shape.layers = static_cast<int>(n_layers);
    shape.kv_heads = static_cast<int>(n_kv_heads);
    shape.head_dim = static_cast<int>(head_dim);
    // Sliding-window layers (Gemma 3) hold only their window: the runner's reading of the file
    // says which; a file it cannot run is counted as all global layers.
    try {
      const tq::ModelConfig config = tq::Model::read_config(file);
      shape.sliding_window = config.sliding_window;
      shape.sliding_window_pattern = config.sliding_window_pattern;
    } catch (const std::exception&) {
    }
    sliding_window = shape.sliding_window;
    for (int l = 0; l < shape.layers; ++l) sliding_layers += shape.is_sliding_layer(l);
    const std::size_t ctx = context > 0 ? static_cast<std::size_t>(context) : 4096;
    for (const std::string& name : tq::kv_scheme_presets()) {
      const tq::KvScheme scheme = tq::parse_kv_scheme(name);
      try {
        const tq::KvSizeBreakdown size = tq::kv_cache_size(shape, scheme, ctx);
        kv_bytes_per_token.push_back({scheme.name, static_cast<double>(size.bytes) / ctx,
                                      size.bits_per_value, size.ratio()});
      } catch (const std::invalid_argument&) {
        // e.g. a rotated scheme on a head dim that is not a power of two: not applicable.
      }
    }
  }

  if (opt.json) {
    nlohmann::json j;
    j["path"] = opt.model;
    j["gguf_version"] = file.version();
    j["architecture"] = arch;
    j["name"] = file.find_string("general.name").value_or("");
    j["n_layers"] = n_layers;
    j["n_embd"] = n_embd;
    j["n_heads"] = n_heads;
    j["n_kv_heads"] = n_kv_heads;
    j["head_dim"] = head_dim;
    j["context_length"] = context;
    j["rope_freq_base"] = rope_base;
    j["sliding_window"] = sliding_window;
    j["sliding_window_layers"] = sliding_layers;
    j["vocab_size"] = vocab;
    j["tokenizer"] = file.find_string("tokenizer.ggml.model").value_or("");
    j["tokenizer_pre"] = file.find_string("tokenizer.ggml.pre").value_or("");
    j["n_tensors"] = file.tensors().size();
    j["n_params"] = n_params;
    j["tensor_bytes"] = tensor_bytes;
    j["tensor_types"] = type_counts;
    for (const auto& row : kv_bytes_per_token) {
      j["kv_bytes_per_token"][row.scheme] = row.bytes_per_token;
      j["kv_bits_per_value"][row.scheme] = row.bits_per_value;
    }
    if (opt.all_metadata) {
      for (const auto& [key, value] : file.metadata()) j["metadata"][key] = value.to_string();
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("model:          %s\n", opt.model.c_str());
  std::printf("name:           %s\n", file.find_string("general.name").value_or("").c_str());
  std::printf("architecture:   %s (GGUF v%u)\n", arch.c_str(), file.version());
  std::printf("layers:         %lld\n", static_cast<long long>(n_layers));
  std::printf("embedding:      %lld\n", static_cast<long long>(n_embd));
  std::printf("heads:          %lld (kv heads %lld, head dim %lld)\n",
              static_cast<long long>(n_heads), static_cast<long long>(n_kv_heads),
              static_cast<long long>(head_dim));
  std::printf("context length: %lld\n", static_cast<long long>(context));
  std::printf("rope base:      %g\n", rope_base);
  if (sliding_window > 0) {
    std::printf("sliding window: %d tokens on %d of %lld layers (kept exact, counted below)\n",
                sliding_window, sliding_layers, static_cast<long long>(n_layers));
  }
  std::printf("vocab size:     %lld (%s, pre=%s)\n", static_cast<long long>(vocab),
              file.find_string("tokenizer.ggml.model").value_or("?").c_str(),
              file.find_string("tokenizer.ggml.pre").value_or("-").c_str());
  std::printf("tensors:        %zu, %.1f M params, %.1f MiB\n", file.tensors().size(),
              n_params / 1e6, tensor_bytes / 1048576.0);
  for (const auto& [type, count] : type_counts) std::printf("  %-6s %d\n", type.c_str(), count);
  std::printf("KV cache bytes per token (all layers, K+V):\n");
  for (const auto& row : kv_bytes_per_token) {
    std::printf("  %-8s %8.1f B/token  %6.3f bits/value  %5.3fx fp16  (%.1f MiB at context %lld)\n",
                row.scheme.c_str(), row.bytes_per_token, row.bits_per_value, row.ratio,
                row.bytes_per_token * static_cast<double>(context) / 1048576.0,
                static_cast<long long>(context));
  }
  if (opt.all_metadata) {
    std::printf("metadata:\n");
    for (const auto& [key, value] : file.metadata()) {
      std::printf("  %s = %s\n", key.c_str(), value.to_string().c_str());
    }
  }
}

const tq::cli::CommandRegistrar kRegisterInfo([](CLI::App& root) {
  auto opt = std::make_shared<InfoOptions>();
  CLI::App* cmd = root.add_subcommand("info", "Summarise a GGUF model and its KV-cache size");
  cmd->add_option("model", opt->model, "GGUF model file")->required();
  cmd->add_flag("--json", opt->json, "Print JSON instead of text");
  cmd->add_flag("--all", opt->all_metadata, "Also list every metadata key");
  cmd->callback([opt] { run_info(*opt); });
});

}  // namespace
