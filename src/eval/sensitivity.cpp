// Per-layer KV sensitivity: one layer and one side compressed at a time, scored against an fp16
// reference run on the same perplexity windows (turboquant/eval/sensitivity.hpp).
#include "turboquant/eval/sensitivity.hpp"

#include "turboquant/model/model.hpp"

#include <unistd.h>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace tq::eval {
namespace {

bool is_fp16(const KvSideSpec& side) {
  return side.format == KvFormat::Fp16;
}

// The reference logits file of one run_sensitivity call; removed when the call ends, also when
// it ends by an exception. The name is unique per process and call.
class TemporaryLogitsFile {
 public:
  TemporaryLogitsFile() {
    static std::atomic<unsigned> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("tq_sensitivity_ref_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
             ".logits");
  }
  ~TemporaryLogitsFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  TemporaryLogitsFile(const TemporaryLogitsFile&) = delete;
  TemporaryLogitsFile& operator=(const TemporaryLogitsFile&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A Session and its LogitsModel adapter, owned together.
class OwnedSessionModel final : public LogitsModel {
 public:
  OwnedSessionModel(const Model& model, const KvScheme& scheme, const SessionOptions& options)
      : session_(model, scheme, options), adapter_(session_) {}
  std::size_t n_vocab() const override { return adapter_.n_vocab(); }
  void reset() override { adapter_.reset(); }
  std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits) override {
    return adapter_.eval(tokens, all_logits);
  }

 private:
  Session session_;
  SessionModel adapter_;
};

}  // namespace

KvScheme single_layer_scheme(const KvScheme& base, int layer, int n_layers, KvSide side) {
  if (layer < 0 || layer >= n_layers) {
    throw std::invalid_argument("layer " + std::to_string(layer) + " outside [0, " +
                                std::to_string(n_layers) + ")");
  }
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

void check_sensitivity_scheme(const KvScheme& base) {
  if (is_fp16(base.key) && is_fp16(base.value)) {
    throw std::invalid_argument("sensitivity needs a compressed scheme, got '" + base.name + "'");
  }
}

std::vector<LayerSensitivity> run_sensitivity(const SchemeModelFactory& make_model, int n_layers,
                                              const KvScheme& base, std::span<const TokenId> tokens,
                                              const PerplexityOptions& options,
                                              const SensitivityProgressFn& progress) {
  check_sensitivity_scheme(base);
  if (n_layers < 1) {
    throw std::invalid_argument("sensitivity needs at least one layer, got " +
                                std::to_string(n_layers));
  }
  const TemporaryLogitsFile reference;
  {
    const std::unique_ptr<LogitsModel> fp16 = make_model(parse_kv_scheme("fp16"));
    LogitsWriter writer(reference.path(), static_cast<std::uint32_t>(fp16->n_vocab()));
    run_perplexity(*fp16, tokens, options, &writer);
    writer.finish();
  }
  std::vector<LayerSensitivity> layers(static_cast<std::size_t>(n_layers));
  const auto t0 = std::chrono::steady_clock::now();
  for (int l = 0; l < n_layers; ++l) {
    LayerSensitivity& row = layers[static_cast<std::size_t>(l)];
    row.layer = l;
    for (const KvSide side : {KvSide::Key, KvSide::Value}) {
      if (is_fp16(side == KvSide::Key ? base.key : base.value)) continue;
      const std::unique_ptr<LogitsModel> lm =
          make_model(single_layer_scheme(base, l, n_layers, side));
      LogitsReader reader(reference.path());
      const PerplexityResult r = run_perplexity(*lm, tokens, options, nullptr, &reader);
      (side == KvSide::Key ? row.kld_keys : row.kld_values) = r.kld->mean();
      (side == KvSide::Key ? row.top1_keys : row.top1_values) = r.kld->top1_agreement();
    }
    if (progress) {
      progress(row, l + 1, n_layers,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  return layers;
}

std::vector<LayerSensitivity> run_sensitivity(const Model& model, const KvScheme& base,
                                              std::span<const TokenId> tokens,
                                              const PerplexityOptions& options,
                                              const SessionOptions& session,
                                              const SensitivityProgressFn& progress) {
  SessionOptions so = session;
  so.max_context = options.context;
  so.reserve = options.context;
  const SchemeModelFactory make_model = [&](const KvScheme& scheme) {
    return std::make_unique<OwnedSessionModel>(model, scheme, so);
  };
  return run_sensitivity(make_model, model.config().n_layers, base, tokens, options, progress);
}

}  // namespace tq::eval
