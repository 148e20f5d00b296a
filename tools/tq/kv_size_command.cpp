// `tq kv-size`: KV-cache bytes for a model shape × context lengths × schemes, with the ratio to
// fp16 and the bits per stored value (codes plus norms/scales, windows and protected layers).
#include "command_registry.hpp"
#include "common_options.hpp"

#include "turboquant/cache/kv_scheme.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace tq::cli {
namespace {

struct KvSizeOptions {
  std::string model;
  int layers = 0, kv_heads = 0, head_dim = 0;
  std::vector<std::size_t> contexts;
  std::vector<std::string> schemes;
  bool json = false;
};

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

void run_kv_size(const KvSizeOptions& o) {
  ModelShape shape;
  if (!o.model.empty()) shape = find_model_shape(o.model);
  if (o.layers) shape.layers = o.layers;
  if (o.kv_heads) shape.kv_heads = o.kv_heads;
  if (o.head_dim) shape.head_dim = o.head_dim;
  if (o.model.empty()) {
    if (!o.layers || !o.kv_heads || !o.head_dim) {
      throw std::invalid_argument(
          "kv-size needs --model NAME or all of --layers, --kv-heads, --head-dim");
    }
    shape.name = "custom";
  }
  std::vector<std::size_t> contexts = o.contexts;
  if (contexts.empty()) {
    for (std::size_t c = 4096; c <= std::max<std::size_t>(shape.max_context, 4096); c *= 4)
      contexts.push_back(c);
    if (shape.max_context && contexts.back() != static_cast<std::size_t>(shape.max_context)) {
      contexts.push_back(shape.max_context);
    }
  }
  std::vector<std::string> schemes = o.schemes;
  if (schemes.empty()) schemes = kv_scheme_presets();

  nlohmann::json rows = nlohmann::json::array();
  if (!o.json) {
    std::printf("model %s: %d layers, %d KV heads, head dim %d\n", shape.name.c_str(), shape.layers,
                shape.kv_heads, shape.head_dim);
    std::printf("%-28s %10s %14s %14s %8s %10s\n", "scheme", "context", "KV bytes", "fp16 bytes",
                "ratio", "bits/value");
  }
  for (const std::string& text : schemes) {
    const KvScheme scheme = parse_kv_scheme(text);
    for (std::size_t ctx : contexts) {
      const KvSizeBreakdown s = kv_cache_size(shape, scheme, ctx);
      rows.push_back({{"model", shape.name},
                      {"layers", shape.layers},
                      {"kv_heads", shape.kv_heads},
                      {"head_dim", shape.head_dim},
                      {"context", ctx},
                      {"scheme", scheme.name},
                      {"bytes", s.bytes},
                      {"fp16_bytes", s.fp16_bytes},
                      {"ratio", s.ratio()},
                      {"compression", s.bytes ? static_cast<double>(s.fp16_bytes) / s.bytes : 0.0},
                      {"bits_per_value", s.bits_per_value}});
      if (!o.json) {
        std::printf("%-28s %10zu %14s %14s %7.3fx %10.3f\n", scheme.name.c_str(), ctx,
                    human_bytes(static_cast<double>(s.bytes)).c_str(),
                    human_bytes(static_cast<double>(s.fp16_bytes)).c_str(), s.ratio(),
                    s.bits_per_value);
      }
    }
  }
  // One (scheme, context) pair prints one object; several print an array of them.
  if (o.json) std::cout << (rows.size() == 1 ? rows[0] : rows).dump(2) << "\n";
}

const CommandRegistrar registrar([](CLI::App& root) {
  auto o = std::make_shared<KvSizeOptions>();
  CLI::App* cmd =
      root.add_subcommand("kv-size", "KV-cache bytes per model shape, context and scheme");
  std::string presets;
  for (const auto& s : model_shape_presets()) presets += (presets.empty() ? "" : ", ") + s.name;
  cmd->add_option("--model,-m", o->model, "Model shape preset: " + presets);
  cmd->add_option("--layers", o->layers, "Number of layers (overrides the preset)")
      ->check(in_range<int>(1, kMaxShapeSize));
  cmd->add_option("--kv-heads", o->kv_heads, "KV heads per layer (overrides the preset)")
      ->check(in_range<int>(1, kMaxShapeSize));
  cmd->add_option("--head-dim", o->head_dim, "Head dimension (overrides the preset)")
      ->check(in_range<int>(1, kMaxShapeSize));
  cmd->add_option("--context,-c", o->contexts, "Context length(s) in tokens")
      ->delimiter(',')
      ->check(in_range<std::size_t>(1, kMaxTokens));
  // Repeatable, not comma-separated: a scheme's own options are separated by commas.
  cmd->add_option("--kv", o->schemes,
                  "Scheme (repeatable): fp16, q8, q4r, tq4, tq3.5, k4v3, ... (see README)");
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->callback([o] { run_kv_size(*o); });
});

}  // namespace
}  // namespace tq::cli
