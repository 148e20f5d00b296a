// Scheme parsing, model-shape presets and exact KV byte accounting (see kv_scheme.hpp).
#include "turboquant/cache/kv_scheme.hpp"

#include "block_int.hpp"

#include "turboquant/base/parse.hpp"
#include "turboquant/base/random.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tq {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

double parse_number(std::string_view text, std::string_view context) {
  double value = 0.0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
    throw std::invalid_argument("kv scheme '" + std::string(context) + "': '" + std::string(text) +
                                "' is not a number");
  }
  return value;
}

// A whole integer option of a scheme string in [min, max]; the message names the scheme, the
// option, the value and the range.
template <typename T>
T scheme_integer(std::string_view text, std::string_view option, std::string_view scheme, T min,
                 T max) {
  try {
    return parse_integer<T>(text, option, min, max);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("kv scheme '" + std::string(scheme) + "': " + e.what());
  }
}

KvSideSpec turboquant_side(double bits, std::string_view context) {
  if (!(bits >= 1.0 && bits <= 8.0)) {
    std::ostringstream msg;
    msg << "kv scheme '" << context << "': " << bits << " bits out of range; expected 1..8";
    throw std::invalid_argument(msg.str());
  }
  // A fractional width gives one more bit to a whole number of coordinates, so its fractional
  // part times the head dim must be an integer (checked for d = 128, the largest preset head dim;
  // the codec checks the real d when a cache is built).
  const double frac = bits - std::floor(bits);
  if (std::fabs(frac * 128.0 - std::round(frac * 128.0)) > 1e-9) {
    std::ostringstream msg;
    msg << "kv scheme '" << context << "': " << bits << " bits: the fractional part " << frac
        << " times the head dim must be a whole number of coordinates; expected a multiple of "
           "1/128 (1/64 for head dim 64), e.g. 4.5, 4.25 or 4.125";
    throw std::invalid_argument(msg.str());
  }
  KvSideSpec side;
  side.format = KvFormat::TurboQuant;
  side.bits = bits;
  return side;
}

std::string format_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string side_name(const KvSideSpec& s) {
  switch (s.format) {
    case KvFormat::Fp16:
      return "fp16";
    case KvFormat::Int8Block:
      return s.rotated ? "q8r" : "q8";
    case KvFormat::Int4Block:
      return s.rotated ? "q4r" : "q4";
    case KvFormat::Q4_1Block:
      return s.rotated ? "q4_1r" : "q4_1";
    case KvFormat::Q5_0Block:
      return s.rotated ? "q5_0r" : "q5_0";
    case KvFormat::Iq4NlBlock:
      return s.rotated ? "iq4nlr" : "iq4nl";
    case KvFormat::TurboQuant:
      return format_number(s.bits);
  }
  return "?";
}

// The block baselines by name (without the "r" suffix): format and nominal bits per value.
struct BlockName {
  const char* name;
  KvFormat format;
  double bits;
};
constexpr BlockName kBlockNames[] = {
    {"q8", KvFormat::Int8Block, 8.0},     {"q8_0", KvFormat::Int8Block, 8.0},
    {"q4", KvFormat::Int4Block, 4.0},     {"q4_0", KvFormat::Int4Block, 4.0},
    {"q4_1", KvFormat::Q4_1Block, 4.0},   {"q5_0", KvFormat::Q5_0Block, 5.0},
    {"iq4nl", KvFormat::Iq4NlBlock, 4.0}, {"iq4_nl", KvFormat::Iq4NlBlock, 4.0},
};

// Fills `side` when `base` names a block baseline (optionally with the "r" suffix).
bool block_side(const std::string& base, KvSideSpec& side) {
  for (const BlockName& b : kBlockNames) {
    const std::string name = b.name;
    if (base == name || base == name + "r") {
      side.format = b.format;
      side.rotated = base.size() > name.size();
      side.bits = b.bits;
      return true;
    }
  }
  return false;
}

// The scheme's name: its base, then every option whose value differs from `d`, the scheme its
// base alone gives (a plan's: with the plan's own base options applied), so that parsing the
// name again rebuilds the scheme.
std::string canonical_name(const KvScheme& s, const KvScheme& d) {
  std::string base;
  if (s.key.format == KvFormat::TurboQuant) {
    base = s.key.bits == s.value.bits
               ? "tq" + format_number(s.key.bits)
               : "k" + format_number(s.key.bits) + "v" + format_number(s.value.bits);
  } else {
    base = side_name(s.key);
  }
  std::vector<std::string> opts;
  if (s.key.format == KvFormat::TurboQuant) {
    if (s.key.codec != d.key.codec) opts.push_back("kcodec=" + to_string(s.key.codec));
    if (s.value.codec != d.value.codec) opts.push_back("vcodec=" + to_string(s.value.codec));
    if (s.rotation != d.rotation) opts.push_back("rot=" + to_string(s.rotation));
    if (s.norm_correction != d.norm_correction) {
      opts.push_back(std::string("normcorr=") + (s.norm_correction ? "1" : "0"));
    }
  }
  if (s.center_keys != d.center_keys || s.center_values != d.center_values) {
    const std::string which = std::string(s.center_keys ? "k" : "") + (s.center_values ? "v" : "");
    opts.push_back("center=" + (which.empty() ? std::string("0") : which));
  }
  if (s.protect_first != d.protect_first || s.protect_last != d.protect_last) {
    opts.push_back("protect=" + std::to_string(s.protect_first) + "/" +
                   std::to_string(s.protect_last));
  }
  if (s.window != d.window) opts.push_back("window=" + std::to_string(s.window));
  if (s.seed != d.seed) opts.push_back("seed=" + std::to_string(s.seed));
  if (!s.plan_path.empty()) {
    std::string name = "plan=" + s.plan_path;
    for (const std::string& o : opts) name += "," + o;
    return name;
  }
  std::string name = base;
  for (std::size_t i = 0; i < opts.size(); ++i) name += (i == 0 ? ":" : ",") + opts[i];
  return name;
}

// Applies comma-separated key=value options to `scheme` (errors name text_in, and `from` when
// the options came from somewhere else than the scheme string).
void apply_options(KvScheme& scheme, const std::string& list, std::string_view text_in,
                   const std::string& from) {
  const std::string where = std::string(text_in) + (from.empty() ? "" : " (" + from + ")");
  std::stringstream options(list);
  std::string option;
  while (std::getline(options, option, ',')) {
    const std::size_t eq = option.find('=');
    if (eq == std::string::npos) {
      throw std::invalid_argument("kv scheme '" + where + "': option '" + option +
                                  "' must be key=value");
    }
    const std::string key = option.substr(0, eq);
    const std::string value = option.substr(eq + 1);
    const bool tq_side = scheme.key.format == KvFormat::TurboQuant;
    if ((key == "kcodec" || key == "vcodec" || key == "rot" || key == "normcorr") && !tq_side) {
      throw std::invalid_argument("kv scheme '" + where + "': option '" + key +
                                  "' applies to TurboQuant schemes only");
    }
    if (key == "kcodec") {
      scheme.key.codec = parse_codec_kind(value);
    } else if (key == "vcodec") {
      scheme.value.codec = parse_codec_kind(value);
    } else if (key == "rot") {
      scheme.rotation = parse_rotation_kind(value);
    } else if (key == "protect") {
      const std::size_t slash = value.find('/');
      if (slash == std::string::npos) {
        throw std::invalid_argument("kv scheme '" + where +
                                    "': protect expects F/L (first/last layers), got '" + value +
                                    "'");
      }
      const std::string_view first = std::string_view(value).substr(0, slash);
      const std::string_view last = std::string_view(value).substr(slash + 1);
      scheme.protect_first =
          scheme_integer<int>(first, "protect first", where, 0, kMaxProtectedLayers);
      scheme.protect_last =
          scheme_integer<int>(last, "protect last", where, 0, kMaxProtectedLayers);
    } else if (key == "window") {
      scheme.window = scheme_integer<int>(value, "window", where, 0, INT_MAX);
    } else if (key == "normcorr") {
      scheme.norm_correction = scheme_integer<int>(value, "normcorr", where, 0, 1) != 0;
    } else if (key == "center") {
      if (value != "0" && value != "k" && value != "v" && value != "kv") {
        throw std::invalid_argument("kv scheme '" + where + "': center='" + value +
                                    "'; expected 0, k, v or kv");
      }
      scheme.center_keys = value == "k" || value == "kv";
      scheme.center_values = value == "v" || value == "kv";
    } else if (key == "seed") {
      scheme.seed = scheme_integer<std::uint64_t>(value, "seed", where, 0, UINT64_MAX);
    } else {
      throw std::invalid_argument("kv scheme '" + where + "': unknown option '" + key +
                                  "'; expected kcodec, vcodec, rot, protect, window, "
                                  "normcorr, center or seed");
    }
  }
}

}  // namespace

const std::vector<std::string>& kv_scheme_presets() {
  static const std::vector<std::string> presets = {"fp16", "q8",    "q8r",  "q4",  "q4r",
                                                   "tq4",  "tq3.5", "k4v3", "tq3", "tq2.5"};
  return presets;
}

KvScheme parse_kv_scheme(std::string_view text_in) {
  std::string text = lower(text_in);
  // plan=FILE[,options]: the file name keeps its case; the options follow as after ':'.
  std::string plan_path;
  if (text.rfind("plan=", 0) == 0) {
    const std::size_t comma = text.find(',');
    plan_path =
        std::string(text_in.substr(5, comma == std::string::npos ? std::string::npos : comma - 5));
    if (plan_path.empty()) {
      throw std::invalid_argument("kv scheme '" + std::string(text_in) +
                                  "': plan= expects a plan file (tq calibrate -o FILE)");
    }
    text = "plan" + (comma == std::string::npos ? std::string() : ":" + text.substr(comma + 1));
  }
  const std::size_t colon = text.find(':');
  const std::string base = text.substr(0, colon);
  KvScheme scheme;
  KvSideSpec block;
  std::string plan_base;
  if (!plan_path.empty()) {
    const KvPlan plan = read_kv_plan(plan_path);
    plan_base = lower(plan.base);
    scheme.key = turboquant_side(plan.bits.front().key, text_in);
    scheme.value = turboquant_side(plan.bits.front().value, text_in);
    scheme.plan_path = plan_path;
    scheme.layer_bits = plan.bits;
    scheme.plan_kv_heads = plan.kv_heads;
    scheme.plan_head_dim = plan.head_dim;
  } else if (base == "fp16" || base == "f16") {
    // default sides are fp16
  } else if (block_side(base, block)) {
    scheme.key = scheme.value = block;
  } else if (base.rfind("tq", 0) == 0) {
    const double bits = parse_number(std::string_view(base).substr(2), text_in);
    scheme.key = scheme.value = turboquant_side(bits, text_in);
  } else if (base.size() > 1 && base[0] == 'k' && base.find('v') != std::string::npos) {
    const std::size_t v = base.find('v');
    scheme.key =
        turboquant_side(parse_number(std::string_view(base).substr(1, v - 1), text_in), text_in);
    scheme.value =
        turboquant_side(parse_number(std::string_view(base).substr(v + 1), text_in), text_in);
  } else {
    std::string known;
    for (const auto& p : kv_scheme_presets()) known += (known.empty() ? "" : ", ") + p;
    throw std::invalid_argument("kv scheme '" + std::string(text_in) +
                                "' is unknown; expected one of " + known +
                                ", q4_1[r], q5_0[r], iq4nl[r], tqX or kAvB, optionally followed "
                                "by :options");
  }
  if (scheme.key.format == KvFormat::TurboQuant) scheme.window = kTurboQuantDefaultWindow;
  KvScheme defaults = scheme;
  if (!plan_base.empty()) {
    // The plan was measured with these options (tq calibrate --options): they are its defaults,
    // and the scheme string's own options come on top.
    apply_options(scheme, plan_base, text_in, "the plan's base options");
    defaults = scheme;
  }
  if (colon != std::string::npos) apply_options(scheme, text.substr(colon + 1), text_in, "");
  // prod needs b = 1 or b >= 2 (b−1 mse bits); validate each TurboQuant side now (every
  // layer's widths for a plan).
  const int n_specs = std::max<int>(1, static_cast<int>(scheme.layer_bits.size()));
  for (int l = 0; l < n_specs; ++l) {
    for (const KvSide which : {KvSide::Key, KvSide::Value}) {
      const KvSideSpec side = scheme.layer_side(which, l);
      if (side.format == KvFormat::TurboQuant) {
        CodecSpec probe;
        probe.dim = 128;
        probe.bits = side.bits;
        probe.kind = side.codec;
        make_code_layout(probe);
      }
    }
  }
  scheme.name = canonical_name(scheme, defaults);
  return scheme;
}

namespace {

// What a TurboQuant side's codes look like (dimension, bits, codec, rotation): all its layout
// depends on. Seeds and norm correction are per layer and scheme (kv_codec_spec).
CodecSpec side_codec_spec(const KvSideSpec& side, int head_dim, RotationKind rotation) {
  CodecSpec spec;
  spec.dim = head_dim;
  spec.bits = side.bits;
  spec.kind = side.codec;
  spec.rotation = rotation;
  return spec;
}

}  // namespace

std::size_t kv_side_bytes_per_token(const KvSideSpec& side, int head_dim, RotationKind rotation) {
  const std::size_t d = static_cast<std::size_t>(head_dim);
  switch (side.format) {
    case KvFormat::Fp16:
      return 2 * d;
    case KvFormat::Int8Block:
    case KvFormat::Int4Block:
    case KvFormat::Q4_1Block:
    case KvFormat::Q5_0Block:
    case KvFormat::Iq4NlBlock: {
      const blockint::Format f = blockint::format_of(side.format);
      return blockint::row_code_bytes(f, head_dim) + 2 * blockint::row_halves(f, head_dim);
    }
    case KvFormat::TurboQuant:
      return make_code_layout(side_codec_spec(side, head_dim, rotation)).bytes_per_token();
  }
  return 0;
}

CodecSpec kv_codec_spec(const KvScheme& scheme, KvSide side, int layer, int head_dim) {
  CodecSpec spec = side_codec_spec(scheme.layer_side(side, layer), head_dim, scheme.rotation);
  spec.norm_correction = scheme.norm_correction;
  spec.seed =
      derive_seed(scheme.seed, static_cast<std::uint32_t>(layer), side, SeedPurpose::Rotation);
  return spec;
}

const std::vector<ModelShape>& model_shape_presets() {
  static const std::vector<ModelShape> presets = {
      {"smollm2-135m", 30, 9, 3, 64, 8192},
      {"llama-3.1-8b", 32, 32, 8, 128, 131072},
      {"qwen2.5-7b", 28, 28, 4, 128, 131072},
      {"mistral-7b", 32, 32, 8, 128, 32768},
      // 15 of its 18 layers are sliding-window (512 tokens), as the GGUF file says.
      {"gemma3-270m", 18, 4, 1, 256, 32768, 512, 6},
  };
  return presets;
}

const ModelShape& find_model_shape(std::string_view name) {
  const std::string key = lower(name);
  for (const auto& shape : model_shape_presets()) {
    if (shape.name == key) return shape;
  }
  std::string known;
  for (const auto& shape : model_shape_presets()) known += (known.empty() ? "" : ", ") + shape.name;
  throw std::invalid_argument("model '" + std::string(name) +
                              "' is not a known shape; expected one of " + known +
                              " (or pass --layers, --kv-heads and --head-dim)");
}

KvPlan read_kv_plan(const std::string& path) {
  const auto bad = [&](const std::string& what) {
    return std::invalid_argument("kv plan '" + path + "': " + what);
  };
  std::ifstream in(path);
  if (!in) throw bad("cannot be read (expected a plan written by tq calibrate -o FILE)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("is not valid JSON (") + e.what() + ")");
  }
  KvPlan plan;
  try {
    if (!j.is_object()) throw bad("expected a JSON object");
    const int version = j.at("version").get<int>();
    if (version != kKvPlanVersion) {
      throw bad("version " + std::to_string(version) + "; expected " +
                std::to_string(kKvPlanVersion));
    }
    plan.model = j.at("model").get<std::string>();
    plan.layers = j.at("layers").get<int>();
    plan.kv_heads = j.at("kv_heads").get<int>();
    plan.head_dim = j.at("head_dim").get<int>();
    plan.budget_bits = j.value("budget_bits", 0.0);
    plan.predicted_kld = j.value("predicted_kld", 0.0);
    plan.base = j.value("base", std::string());
    for (const auto& row : j.at("bits")) {
      plan.bits.push_back({row.at("k").get<double>(), row.at("v").get<double>()});
    }
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("missing or mistyped field (") + e.what() +
              "); expected version, model, layers, kv_heads, head_dim and bits [{k, v}...]");
  }
  if (plan.layers < 1 || plan.kv_heads < 1 || plan.head_dim < 1) {
    throw bad("layers, kv_heads and head_dim must be positive");
  }
  if (static_cast<int>(plan.bits.size()) != plan.layers) {
    throw bad("has " + std::to_string(plan.bits.size()) + " layer widths; expected " +
              std::to_string(plan.layers) + " (its layers field)");
  }
  for (std::size_t l = 0; l < plan.bits.size(); ++l) {
    for (const double b : {plan.bits[l].key, plan.bits[l].value}) {
      const double cells = b * plan.head_dim;
      if (!(b >= 1.0 && b <= 8.0) || std::fabs(cells - std::round(cells)) > 1e-9) {
        std::ostringstream msg;
        msg << "layer " << l << " width " << b << " is not supported; expected 1..8 bits, a "
            << "multiple of 1/" << plan.head_dim << " (head dim " << plan.head_dim << ")";
        throw bad(msg.str());
      }
    }
  }
  return plan;
}

std::string kv_plan_json(const KvPlan& plan) {
  nlohmann::json j;
  j["version"] = kKvPlanVersion;
  j["model"] = plan.model;
  j["layers"] = plan.layers;
  j["kv_heads"] = plan.kv_heads;
  j["head_dim"] = plan.head_dim;
  j["budget_bits"] = plan.budget_bits;
  j["predicted_kld"] = plan.predicted_kld;
  j["base"] = plan.base;
  nlohmann::json rows = nlohmann::json::array();
  for (const KvLayerBits& b : plan.bits) rows.push_back({{"k", b.key}, {"v", b.value}});
  j["bits"] = rows;
  return j.dump(2) + "\n";
}

void check_scheme_fits_shape(const KvScheme& scheme, int n_layers, int kv_heads, int head_dim) {
  if (scheme.layer_bits.empty()) return;
  if (static_cast<int>(scheme.layer_bits.size()) != n_layers || scheme.plan_kv_heads != kv_heads ||
      scheme.plan_head_dim != head_dim) {
    throw std::invalid_argument("kv plan '" + scheme.plan_path + "' was made for a model with " +
                                std::to_string(scheme.layer_bits.size()) + " layers, " +
                                std::to_string(scheme.plan_kv_heads) + " KV heads, head dim " +
                                std::to_string(scheme.plan_head_dim) + "; this model has " +
                                std::to_string(n_layers) + ", " + std::to_string(kv_heads) + ", " +
                                std::to_string(head_dim) +
                                " (calibrate a plan for it with tq calibrate)");
  }
}

void check_scheme_fits_layers(const KvScheme& scheme, int n_layers) {
  if (!scheme.layer_bits.empty() && static_cast<int>(scheme.layer_bits.size()) != n_layers) {
    throw std::invalid_argument("kv plan '" + scheme.plan_path + "' has " +
                                std::to_string(scheme.layer_bits.size()) +
                                " layers; this model has " + std::to_string(n_layers) +
                                " (calibrate a plan for it with tq calibrate)");
  }
  const long long named = static_cast<long long>(scheme.protect_first) + scheme.protect_last;
  if (named > n_layers) {
    throw std::invalid_argument(
        "kv scheme '" + scheme.name + "': protect=" + std::to_string(scheme.protect_first) + "/" +
        std::to_string(scheme.protect_last) + " names " + std::to_string(named) +
        " layers, the model has " + std::to_string(n_layers) +
        "; expected first + last <= " + std::to_string(n_layers));
  }
}

KvSizeBreakdown kv_cache_size(const ModelShape& shape, const KvScheme& scheme,
                              std::size_t context) {
  if (shape.layers <= 0 || shape.kv_heads <= 0 || shape.head_dim <= 0) {
    throw std::invalid_argument("kv size: layers, kv heads and head dim must be positive (got " +
                                std::to_string(shape.layers) + ", " +
                                std::to_string(shape.kv_heads) + ", " +
                                std::to_string(shape.head_dim) + ")");
  }
  check_scheme_fits_layers(scheme, shape.layers);
  // Every layer of one kind (protected: all fp16; else window fp16 + compressed rest) stores the
  // same bytes, and with F + L <= layers exactly F + L layers are protected.
  const std::size_t layers = static_cast<std::size_t>(shape.layers);
  // Global layers among [a, b) (!is_sliding_layer), counted in closed form: with sliding-window
  // layers, the l with (l + 1) % pattern == 0.
  const bool sliding = shape.sliding_window > 0 && shape.sliding_window_pattern > 0;
  const auto globals_in = [&](std::size_t a, std::size_t b) {
    if (!sliding) return b - a;
    const std::size_t p = static_cast<std::size_t>(shape.sliding_window_pattern);
    return b / p - a / p;
  };
  const std::size_t global_layers = globals_in(0, layers);
  const std::size_t sliding_layers = layers - global_layers;
  // The scheme's protected layers are counted by index; a sliding layer is exact anyway.
  const std::size_t protected_layers =
      globals_in(0, static_cast<std::size_t>(scheme.protect_first)) +
      globals_in(layers - static_cast<std::size_t>(scheme.protect_last), layers);
  const std::size_t heads = static_cast<std::size_t>(shape.kv_heads);
  // Each product is checked: a shape whose bytes do not fit std::size_t is an error.
  bool overflow = false;
  const auto mul = [&overflow](std::size_t a, std::size_t b) {
    std::size_t product = 0;
    overflow |= __builtin_mul_overflow(a, b, &product);
    return product;
  };
  const auto add = [&overflow](std::size_t a, std::size_t b) {
    std::size_t sum = 0;
    overflow |= __builtin_add_overflow(a, b, &sum);
    return sum;
  };
  const std::size_t kv_fp16_token = mul(4, static_cast<std::size_t>(shape.head_dim));  // K+V
  const std::size_t exact = std::min<std::size_t>(context, static_cast<std::size_t>(scheme.window));
  const std::size_t compressed = context - exact;
  // A scheme whose every layer is protected never compresses (nor needs a codec for the dim).
  const std::size_t compressed_token =
      global_layers == protected_layers
          ? 0
          : kv_side_bytes_per_token(scheme.key, shape.head_dim, scheme.rotation) +
                kv_side_bytes_per_token(scheme.value, shape.head_dim, scheme.rotation);
  const std::size_t fp16_head = mul(kv_fp16_token, context);
  const std::size_t mixed_head = add(mul(kv_fp16_token, exact), mul(compressed, compressed_token));
  // Centering stores one fp16 μ of head_dim values per centered side, head and unprotected
  // layer, once the cache holds any token.
  const std::size_t centered_sides =
      static_cast<std::size_t>(scheme.center_keys) + static_cast<std::size_t>(scheme.center_values);
  const std::size_t mean_head =
      context > 0 ? mul(centered_sides, mul(2, static_cast<std::size_t>(shape.head_dim))) : 0;
  const std::size_t window_tokens =
      sliding ? std::min<std::size_t>(context, static_cast<std::size_t>(shape.sliding_window)) : 0;
  const std::size_t sliding_head = mul(kv_fp16_token, window_tokens);
  KvSizeBreakdown out;
  out.bytes = mul(add(add(mul(protected_layers, fp16_head),
                          mul(global_layers - protected_layers, add(mixed_head, mean_head))),
                      mul(sliding_layers, sliding_head)),
                  heads);
  if (!scheme.layer_bits.empty()) {
    // Per-layer widths: each compressed layer counted with its own code bytes.
    check_scheme_fits_shape(scheme, shape.layers, shape.kv_heads, shape.head_dim);
    std::size_t total = 0;
    for (int l = 0; l < shape.layers; ++l) {
      if (shape.is_sliding_layer(l)) {
        total = add(total, sliding_head);
      } else if (scheme.layer_is_protected(l, shape.layers)) {
        total = add(total, fp16_head);
      } else {
        const std::size_t token = kv_side_bytes_per_token(scheme.layer_side(KvSide::Key, l),
                                                          shape.head_dim, scheme.rotation) +
                                  kv_side_bytes_per_token(scheme.layer_side(KvSide::Value, l),
                                                          shape.head_dim, scheme.rotation);
        total = add(total, add(add(mul(kv_fp16_token, exact), mul(compressed, token)), mean_head));
      }
    }
    out.bytes = mul(total, heads);
  }
  out.fp16_bytes =
      mul(add(mul(global_layers, fp16_head), mul(sliding_layers, sliding_head)), heads);
  if (overflow) {
    throw std::overflow_error("kv size: " + std::to_string(shape.layers) + " layers x " +
                              std::to_string(shape.kv_heads) + " KV heads x head dim " +
                              std::to_string(shape.head_dim) + " x " + std::to_string(context) +
                              " tokens is more bytes than 64 bits count");
  }
  // Values held: a sliding-window layer holds its window, not the context.
  const double values = 2.0 * shape.kv_heads * shape.head_dim *
                        (static_cast<double>(global_layers) * static_cast<double>(context) +
                         static_cast<double>(sliding_layers) * static_cast<double>(window_tokens));
  out.bits_per_value = values > 0 ? 8.0 * static_cast<double>(out.bytes) / values : 0.0;
  return out;
}

}  // namespace tq
