// KV-cache schemes: what format keys and values are stored in, per layer, and the exact byte
// accounting that every memory figure in the project comes from (docs/DESIGN.md §3).
// A scheme string is a preset name with optional overrides:
//   fp16 | q8 | q8r | q4 | q4r | q4_1 | q4_1r | q5_0 | q5_0r | iq4nl | iq4nlr | tqX | kAvB
//   [ ":" option ("," option)* ]
//   tqX   keys and values at X bits (X may be fractional: 3.5, 2.5), MSE codec
//   kAvB  keys at A bits, values at B bits
//   q8/q4 llama.cpp's q8_0 / q4_0 (an fp16 scale per 32 values), bit-exact with ggml's reference
//         quantizers; q4_1 (fp16 scale and minimum), q5_0 and iq4nl (iq4_nl: a 16-level
//         non-uniform codebook) likewise; the "r" suffix adds the Hadamard rotation first.
//         q4_0, q8_0 and iq4_nl are accepted as spellings of q4, q8 and iq4nl.
// options: kcodec=mse|prod, vcodec=mse|prod, rot=hadamard|haar, protect=F/L (first F and last L
//          layers kept fp16), window=W (last W tokens kept fp16; TurboQuant schemes default to
//          W = 128, the others to 0), normcorr=0|1, seed=N,
//          center=0|k|v|kv (subtract a per-(layer, KV head) mean from keys and/or values before
//          storing; exact by construction, see LayerKvCache; its fp16 vectors are counted)
// Example: "tq3.5:protect=1/1,window=64", "k4v3:kcodec=prod".
// plan=FILE[,option...]: per-layer TurboQuant widths from a `tq calibrate` plan (KvPlan, JSON);
//          the options above follow after commas, e.g. "plan=p.json,center=k,window=0".
#pragma once

#include "turboquant/base/kv_side.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/codec/codec.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

// Int8Block is llama.cpp's q8_0 and Int4Block its q4_0; the other block formats are named after
// theirs. All block formats store 32-value blocks (src/cache/block_int.hpp).
enum class KvFormat { Fp16, Int8Block, Int4Block, TurboQuant, Q4_1Block, Q5_0Block, Iq4NlBlock };
inline constexpr int kIntBlockSize = 32;  // values per fp16 scale in the block baselines
inline bool is_block_format(KvFormat f) {
  return f == KvFormat::Int8Block || f == KvFormat::Int4Block || f == KvFormat::Q4_1Block ||
         f == KvFormat::Q5_0Block || f == KvFormat::Iq4NlBlock;
}
// TurboQuant schemes keep the most recent 128 tokens exact unless `window=` says otherwise: the
// question and the answer being written are what the window keeps exact (docs/DESIGN.md §3 says
// which measurements chose 128). Block baselines default to 0 so that they stay the plain
// formats they are named after.
inline constexpr int kTurboQuantDefaultWindow = 128;

struct KvSideSpec {
  KvFormat format = KvFormat::Fp16;
  bool rotated = false;              // block formats: Hadamard rotation before quantization
  CodecKind codec = CodecKind::Mse;  // TurboQuant only
  double bits = 16.0;  // TurboQuant: code bits per coordinate; block formats: nominal width
};

// One layer's TurboQuant widths (bits per coordinate) for keys and values.
struct KvLayerBits {
  double key = 0.0, value = 0.0;
  bool operator==(const KvLayerBits&) const = default;
};

struct KvScheme {
  std::string name;  // canonical string, parseable again
  KvSideSpec key, value;
  RotationKind rotation = RotationKind::Hadamard;
  int protect_first = 0;  // layers [0, protect_first) stay fp16
  int protect_last = 0;   // the last protect_last layers stay fp16
  int window = 0;         // most recent tokens kept exact (fp16)
  bool norm_correction = false;
  // center=: keys / values are stored minus a per-(layer, KV head) mean μ (fp16, d halves per
  // head and side), estimated from the first append. Off on protected layers.
  bool center_keys = false;
  bool center_values = false;
  std::uint64_t seed = 0x5eed;
  // plan=FILE: per-layer widths (one entry per model layer) and the shape the plan was made for
  // (checked by check_scheme_fits_layers / LayerKvCache). Empty: key / value apply to every layer.
  std::string plan_path;
  std::vector<KvLayerBits> layer_bits;
  int plan_kv_heads = 0, plan_head_dim = 0;

  bool layer_is_protected(int layer, int n_layers) const {
    return layer < protect_first || layer >= n_layers - protect_last;
  }
  // The side spec layer `layer` stores (before protection): key / value with the plan's width
  // for that layer when the scheme has per-layer widths. Every cache (CPU and GPU) builds from it.
  KvSideSpec layer_side(KvSide side, int layer) const {
    KvSideSpec s = side == KvSide::Key ? key : value;
    if (!layer_bits.empty() && layer >= 0 && layer < static_cast<int>(layer_bits.size())) {
      const KvLayerBits& b = layer_bits[static_cast<std::size_t>(layer)];
      s.bits = side == KvSide::Key ? b.key : b.value;
    }
    return s;
  }
};

// A per-layer width plan (`tq calibrate` writes it, plan=FILE reads it): versioned JSON with the
// model it was measured on. Widths must be TurboQuant widths parse_kv_scheme accepts (1..8).
inline constexpr int kKvPlanVersion = 1;
struct KvPlan {
  std::string model;  // model name (GGUF general.name or file name)
  int layers = 0, kv_heads = 0, head_dim = 0;
  double budget_bits = 0.0;       // the budget it was chosen under (bits per stored value)
  double predicted_kld = 0.0;     // the chooser's additive prediction, nats
  std::string base;               // options of the sensitivity runs, e.g. "window=0"
  std::vector<KvLayerBits> bits;  // one per layer
};
// Throws std::invalid_argument naming the file and what is wrong (missing, not JSON, wrong
// version, missing fields, layer count != layers, widths out of range or not 1/64 multiples).
KvPlan read_kv_plan(const std::string& path);
std::string kv_plan_json(const KvPlan& plan);

// The most layers protect=F/L accepts on either side; a model's own count bounds F + L further
// (check_scheme_fits_layers).
inline constexpr int kMaxProtectedLayers = 65536;

// Parses a scheme string (grammar above); throws std::invalid_argument naming the bad part.
KvScheme parse_kv_scheme(std::string_view text);
// Throws std::invalid_argument when protect=F/L names more layers (F + L) than the model's
// n_layers: such a scheme would silently keep every layer fp16; or when a plan= scheme's layer
// count is not n_layers.
void check_scheme_fits_layers(const KvScheme& scheme, int n_layers);
// Throws std::invalid_argument when a plan= scheme was made for another shape (layers, KV heads,
// head dim); no-op for schemes without a plan.
void check_scheme_fits_shape(const KvScheme& scheme, int n_layers, int kv_heads, int head_dim);
// The preset names accepted by parse_kv_scheme, in report order.
const std::vector<std::string>& kv_scheme_presets();

// Stored bytes of one token of one head on one side (K or V), compressed part, head dim d.
std::size_t kv_side_bytes_per_token(const KvSideSpec& side, int head_dim, RotationKind rotation);
// The codec spec a TurboQuant side uses for (layer, K/V): seeds derived from the scheme seed.
CodecSpec kv_codec_spec(const KvScheme& scheme, KvSide side, int layer, int head_dim);

// Whether layer `layer` is a sliding-window layer (Gemma 3) of a model with the given window and
// pattern: every layer l with (l + 1) % pattern != 0; none when window or pattern is 0.
inline bool is_sliding_layer(int layer, int sliding_window, int sliding_window_pattern) {
  return sliding_window > 0 && sliding_window_pattern > 0 &&
         (layer + 1) % sliding_window_pattern != 0;
}

struct ModelShape {
  std::string name;
  int layers = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_context = 0;
  // Sliding-window layers (Gemma 3, see is_sliding_layer) keep only their last sliding_window
  // tokens, exact in fp16 whatever the scheme (0: no such layers).
  int sliding_window = 0;
  int sliding_window_pattern = 0;
  bool is_sliding_layer(int l) const {
    return tq::is_sliding_layer(l, sliding_window, sliding_window_pattern);
  }
};

const std::vector<ModelShape>& model_shape_presets();
// Looks up a preset by name (case-insensitive); throws listing the known names.
const ModelShape& find_model_shape(std::string_view name);

struct KvSizeBreakdown {
  std::size_t bytes = 0;        // total K+V bytes for `context` tokens, all layers and heads
  std::size_t fp16_bytes = 0;   // the same cache in fp16
  double bits_per_value = 0.0;  // 8·bytes / (number of stored K and V values)
  double ratio() const { return fp16_bytes ? static_cast<double>(bytes) / fp16_bytes : 0.0; }
};

// Exact bytes for `context` tokens of the shape (no per-layer work, so any layer count is quick);
// throws std::invalid_argument for a non-positive shape or a protect=F/L beyond its layers and
// std::overflow_error when the byte count does not fit std::size_t.
KvSizeBreakdown kv_cache_size(const ModelShape& shape, const KvScheme& scheme, std::size_t context);

}  // namespace tq
