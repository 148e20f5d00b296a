// turboquant._core's KV-scheme functions: parse_kv_scheme (the CLI's --kv strings), the model
// shape presets, tq::kv_cache_size (what `tq kv-size` prints) and the per-layer codec spec of a
// scheme. They return plain dicts; python/turboquant/kv.py turns them into dataclasses. Errors
// keep the C++ messages: std::invalid_argument -> ValueError, std::overflow_error -> OverflowError.
#include "bindings.hpp"

#include "turboquant/cache/kv_scheme.hpp"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

namespace tq::python {
namespace {

// A side's storage format by the name the scheme grammar uses for it. Block formats take it from
// the canonical scheme name (keys and values share a block format), so formats added to the
// grammar show up here under their own name without a table to keep in step.
std::string side_format(const KvScheme& scheme, const KvSideSpec& side) {
  if (side.format == KvFormat::Fp16) return "fp16";
  if (side.format == KvFormat::TurboQuant) return "turboquant";
  std::string base = scheme.name.substr(0, scheme.name.find(':'));
  if (side.rotated && !base.empty() && base.back() == 'r') base.pop_back();
  return base;
}

nb::dict side_dict(const KvScheme& scheme, const KvSideSpec& side) {
  nb::dict d;
  d["format"] = side_format(scheme, side);
  d["rotated"] = side.rotated;
  d["codec"] = to_string(side.codec);
  d["bits"] = side.bits;
  return d;
}

nb::dict scheme_dict(const std::string& text) {
  const KvScheme s = parse_kv_scheme(text);
  nb::dict d;
  d["name"] = s.name;
  d["key"] = side_dict(s, s.key);
  d["value"] = side_dict(s, s.value);
  d["rotation"] = to_string(s.rotation);
  d["protect_first"] = s.protect_first;
  d["protect_last"] = s.protect_last;
  d["window"] = s.window;
  d["norm_correction"] = s.norm_correction;
  d["seed"] = s.seed;
  return d;
}

nb::dict shape_dict(const ModelShape& s) {
  nb::dict d;
  d["name"] = s.name;
  d["layers"] = s.layers;
  d["q_heads"] = s.q_heads;
  d["kv_heads"] = s.kv_heads;
  d["head_dim"] = s.head_dim;
  d["max_context"] = s.max_context;
  d["sliding_window"] = s.sliding_window;
  d["sliding_window_pattern"] = s.sliding_window_pattern;
  return d;
}

// The record `tq kv-size --json` prints for one (scheme, context), with the same keys.
nb::dict kv_size_dict(const std::string& scheme_text, const std::string& model, int layers,
                      int kv_heads, int head_dim, int q_heads, std::size_t context) {
  ModelShape shape;
  if (!model.empty()) {
    shape = find_model_shape(model);
  } else {
    shape.name = "custom";
  }
  // Like the CLI: a preset's fields may be overridden; without a preset all three are needed.
  if (layers) shape.layers = layers;
  if (kv_heads) shape.kv_heads = kv_heads;
  if (head_dim) shape.head_dim = head_dim;
  if (q_heads) shape.q_heads = q_heads;
  if (model.empty() && (!layers || !kv_heads || !head_dim)) {
    throw std::invalid_argument(
        "kv_size needs model=NAME or all of layers=, kv_heads=, head_dim= (got layers=" +
        std::to_string(layers) + ", kv_heads=" + std::to_string(kv_heads) +
        ", head_dim=" + std::to_string(head_dim) + ")");
  }
  if (context == 0) throw std::invalid_argument("kv_size: context must be >= 1 token, got 0");
  const KvScheme scheme = parse_kv_scheme(scheme_text);
  const KvSizeBreakdown s = kv_cache_size(shape, scheme, context);
  nb::dict d;
  d["model"] = shape.name;
  d["layers"] = shape.layers;
  d["kv_heads"] = shape.kv_heads;
  d["head_dim"] = shape.head_dim;
  d["q_heads"] = shape.q_heads;
  d["context"] = context;
  d["scheme"] = scheme.name;
  d["bytes"] = s.bytes;
  d["fp16_bytes"] = s.fp16_bytes;
  d["ratio"] = s.ratio();
  d["compression"] = s.bytes ? static_cast<double>(s.fp16_bytes) / s.bytes : 0.0;
  d["bits_per_value"] = s.bits_per_value;
  return d;
}

// The Codec arguments a TurboQuant side of a scheme uses at one layer (seeds derived per layer and
// side, as the cache does), so Python can build the very codec the cache would.
nb::dict codec_spec_dict(const std::string& scheme_text, const std::string& side, int layer,
                         int head_dim) {
  const KvScheme scheme = parse_kv_scheme(scheme_text);
  KvSide kv_side;
  if (side == "k" || side == "key") {
    kv_side = KvSide::Key;
  } else if (side == "v" || side == "value") {
    kv_side = KvSide::Value;
  } else {
    throw std::invalid_argument("side '" + side + "' is unknown; expected 'key' or 'value'");
  }
  const KvSideSpec& s = kv_side == KvSide::Key ? scheme.key : scheme.value;
  if (s.format != KvFormat::TurboQuant) {
    throw std::invalid_argument("kv scheme '" + scheme.name + "': the " + side +
                                " side is not a TurboQuant format, so it has no codec");
  }
  if (layer < 0) throw std::invalid_argument("layer must be >= 0, got " + std::to_string(layer));
  const CodecSpec spec = kv_codec_spec(scheme, kv_side, layer, head_dim);
  nb::dict d;
  d["dim"] = spec.dim;
  d["bits"] = spec.bits;
  d["kind"] = to_string(spec.kind);
  d["rotation"] = to_string(spec.rotation);
  d["seed"] = spec.seed;
  d["norm_correction"] = spec.norm_correction;
  return d;
}

}  // namespace

void bind_kv(nb::module_& m) {
  m.def("parse_kv_scheme", &scheme_dict, nb::arg("text"));
  m.def("kv_scheme_presets", &kv_scheme_presets);
  m.def(
      "model_shape", [](const std::string& name) { return shape_dict(find_model_shape(name)); },
      nb::arg("name"));
  m.def("model_shape_presets", [] {
    nb::list out;
    for (const ModelShape& s : model_shape_presets()) out.append(shape_dict(s));
    return out;
  });
  m.def("kv_size", &kv_size_dict, nb::arg("scheme"), nb::arg("model") = "", nb::arg("layers") = 0,
        nb::arg("kv_heads") = 0, nb::arg("head_dim") = 0, nb::arg("q_heads") = 0,
        nb::arg("context"));
  m.def("kv_codec_spec", &codec_spec_dict, nb::arg("scheme"), nb::arg("side"), nb::arg("layer"),
        nb::arg("head_dim"));
}

}  // namespace tq::python
