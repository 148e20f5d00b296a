// Per-layer KV sensitivity (`tq sensitivity`): how much the next-token distribution moves when
// one layer's keys, or one layer's values, are stored in a compressed scheme and every other
// layer and side stays fp16. Each run is scored against an fp16 run on the same tokens by mean
// KL divergence and top-1 agreement (perplexity windows, runner.hpp) — the data behind the
// presets' protect-first/last choices.
//
// The loop talks to the model through a factory of LogitsModels, one per scheme, so it is
// tested on fake models whose error depends on the layer; the Model overload runs Sessions.
#pragma once

#include "turboquant/base/kv_side.hpp"
#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/eval/runner.hpp"
#include "turboquant/model/model.hpp"

#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace tq::eval {

// `base` applied to `layer` only, on one side: every other layer is protected (fp16) and the
// other side is fp16. Named "<base>@layer<L>K" or "...V". Throws std::invalid_argument for a
// layer outside [0, n_layers).
KvScheme single_layer_scheme(const KvScheme& base, int layer, int n_layers, KvSide side);

// Throws std::invalid_argument naming the scheme when it stores both sides in fp16 (there is
// nothing to measure).
void check_sensitivity_scheme(const KvScheme& base);

// One layer's result. A side the base scheme keeps in fp16 is not run and reads 0 (KLD and
// top-1 alike).
struct LayerSensitivity {
  int layer = 0;
  double kld_keys = 0, kld_values = 0;    // mean KLD vs fp16, nats
  double top1_keys = 0, top1_values = 0;  // top-1 agreement with fp16, in [0, 1]
};

// A model running with the given scheme, from an empty sequence.
using SchemeModelFactory = std::function<std::unique_ptr<LogitsModel>(const KvScheme&)>;
// Called after each layer: its result, layers done, layers in all, seconds since the first
// layer's runs began (the fp16 reference run excluded).
using SensitivityProgressFn =
    std::function<void(const LayerSensitivity&, int done, int n_layers, double seconds)>;

// Runs the fp16 reference once (its logits go to a temporary file, removed afterwards), then
// for every layer and compressed side a run with single_layer_scheme(base, layer, ...), all over
// the windows `options` plans on `tokens`. Returns one entry per layer, in layer order.
std::vector<LayerSensitivity> run_sensitivity(const SchemeModelFactory& make_model, int n_layers,
                                              const KvScheme& base, std::span<const TokenId> tokens,
                                              const PerplexityOptions& options,
                                              const SensitivityProgressFn& progress = {});

// The same on a model: Sessions made from `session` (threads, device) with room for one window.
std::vector<LayerSensitivity> run_sensitivity(const Model& model, const KvScheme& base,
                                              std::span<const TokenId> tokens,
                                              const PerplexityOptions& options,
                                              const SessionOptions& session = {},
                                              const SensitivityProgressFn& progress = {});

}  // namespace tq::eval
