// Llama-family transformer runner (CPU, or GPU with SessionOptions::device): weights read from a
// GGUF file (llama, smollm, mistral, qwen2) and kept in their GGUF block format where an
// on-the-fly kernel exists (F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K; other types are
// dequantized to fp32 once at load), and a Session that runs a batch of sequences through the
// model with per-layer compressed KV caches (tq::LayerKvCache, or the GPU's GpuLayerKvCache) in
// any KvScheme. Attention always reads the cache as stored: each chunk's K/V are appended first,
// then the chunk's queries attend over what the cache holds (docs/DESIGN.md §3). Matrix work goes
// through BLAS on the CPU, the GPU backend's MatmulEngine on the GPU.
#pragma once

#include "turboquant/base/device.hpp"
#include "turboquant/base/token.hpp"
#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/codec/codec.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

namespace gguf {
class File;
enum class TensorType : std::uint32_t;
}  // namespace gguf

// How RoPE pairs up the coordinates of a head. kNormal ("llama" in llama.cpp): pairs
// (x[2i], x[2i+1]); llama.cpp's GGUF converter permutes Q/K weights so that this applies to
// Llama checkpoints. kNeox: pairs (x[i], x[i + rope_dim/2]), as Qwen2 GGUFs expect.
enum class RopeOrdering { kNormal, kNeox };

// Gate activation of the gated feed-forward block: SiLU (SwiGLU: Llama, Qwen2, Mistral) or the
// tanh approximation of GELU (GeGLU: Gemma 3).
enum class FfnActivation { kSilu, kGeluTanh };

struct ModelConfig {
  std::string architecture;  // general.architecture as written in the file
  int n_layers = 0;
  int n_embd = 0;
  int n_ff = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int n_vocab = 0;
  int context_length = 0;  // trained context (<arch>.context_length)
  int rope_dim = 0;        // leading coordinates of each head that RoPE rotates
  double rope_base = 10000.0;
  float rms_eps = 1e-5f;
  RopeOrdering rope = RopeOrdering::kNormal;
  bool qkv_bias = false;         // Q/K/V projections carry a bias (qwen2)
  bool tied_embeddings = false;  // no output.weight: logits use token_embd.weight
  // Gemma 3 blocks (architecture gemma3); the defaults are the Llama family's.
  float embedding_scale = 1.0f;  // token embeddings are multiplied by it (√n_embd for gemma3)
  bool qk_norm = false;  // per-head RMSNorm of Q and K (attn_q_norm / attn_k_norm) before RoPE
  bool sandwich_norms = false;  // RMSNorm of the attention and FFN outputs before the residual add
  FfnActivation ffn_activation = FfnActivation::kSilu;
  // Sliding-window layers attend to their last `sliding_window` tokens only (0: none); every
  // sliding_window_pattern-th layer (l + 1 ≡ 0 mod pattern) is global. They use their own RoPE
  // base.
  int sliding_window = 0;
  int sliding_window_pattern = 0;
  double rope_base_sliding = 10000.0;
  bool is_sliding_layer(int l) const {
    return tq::is_sliding_layer(l, sliding_window, sliding_window_pattern);
  }

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
};

// The KV-cache shape of one layer of a model with this configuration.
inline LayerKvShape layer_kv_shape(const ModelConfig& config, int layer) {
  return {.layer = layer,
          .n_layers = config.n_layers,
          .n_q_heads = config.n_heads,
          .n_kv_heads = config.n_kv_heads,
          .head_dim = config.head_dim};
}

// A weight matrix [rows][cols] (row-major, rows = outputs) as the matrix kernels read it: the raw
// GGUF rows of a type with an on-the-fly kernel (F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K; the
// GPU backend uploads these bytes as they are), or fp32 for any other type, for a fused matrix
// whose parts differ in type, or when fp32 weights were asked for. Products go through
// src/model/qmatmul.hpp.
struct WeightMatrix {
  gguf::TensorType type{};  // storage type (kF32 for the fp32 representation)
  int rows = 0;
  int cols = 0;
  std::size_t row_bytes = 0;       // bytes of one stored row
  std::vector<std::uint8_t> data;  // rows × row_bytes
  std::size_t bytes() const { return data.size(); }
  bool empty() const { return rows == 0; }
  // Dequantizes row r into dst (cols floats).
  void dequantize_row(int r, float* dst) const;
};

// One block's weights, row-major [out][in] as stored in GGUF. Q/K/V are fused into one
// [q_dim + 2·kv_dim][n_embd] matrix and gate/up into one [2·n_ff][n_embd] matrix so that a decode
// step issues fewer, larger matrix-vector products.
struct LayerWeights {
  std::vector<float> attn_norm;  // [n_embd]
  WeightMatrix wqkv;             // [q_dim + 2·kv_dim][n_embd]
  std::vector<float> bqkv;       // [q_dim + 2·kv_dim], empty without biases
  WeightMatrix wo;               // [n_embd][q_dim]
  std::vector<float> ffn_norm;   // [n_embd]
  WeightMatrix w_gate_up;        // [2·n_ff][n_embd]: gate rows first, then up rows
  WeightMatrix w_down;           // [n_embd][n_ff]
  // Gemma 3 only (empty otherwise): Q/K norms [head_dim], post-attention / post-FFN norms [n_embd].
  std::vector<float> q_norm, k_norm, post_attn_norm, post_ffn_norm;
};

struct ModelLoadStats {
  double seconds = 0.0;          // wall time of reading + dequantizing the weights
  std::size_t weight_bytes = 0;  // bytes of weights held by the model (quantized + fp32)
  std::size_t fp32_bytes = 0;    // of which fp32 (norms, biases, fallback types)
  std::size_t file_bytes = 0;    // tensor bytes in the file (quantized)
};

struct ModelOptions {
  int threads = 0;            // load threads; <= 0: all OpenMP threads
  bool fp32_weights = false;  // dequantize every matrix to fp32 at load (the reference path)
};

class Model {
 public:
  // Reads hyper-parameters and weights. Throws std::invalid_argument for an unsupported
  // architecture and gguf::FormatError for a missing key or tensor or a tensor of the wrong
  // shape, naming it and the expected shape. threads <= 0: all OpenMP threads. The environment
  // variable TQ_FP32_WEIGHTS=1 forces fp32_weights (for comparisons from the CLI).
  static Model from_gguf(const gguf::File& file, int threads = 0);
  static Model from_gguf(const gguf::File& file, const ModelOptions& options);
  static Model load(const std::filesystem::path& path, int threads = 0);

  // Hyper-parameters only (no weights), with the same validation of metadata.
  static ModelConfig read_config(const gguf::File& file);

  const ModelConfig& config() const { return config_; }
  const ModelLoadStats& load_stats() const { return stats_; }

  const WeightMatrix& token_embd() const { return token_embd_; }  // [n_vocab][n_embd]
  const std::vector<float>& output_norm() const { return output_norm_; }
  // [n_vocab][n_embd]; the embedding table when tied.
  const WeightMatrix& output_weight() const { return output_.empty() ? token_embd_ : output_; }
  const LayerWeights& layer(int i) const { return layers_[static_cast<std::size_t>(i)]; }
  // Per-pair inverse frequencies θ_i = base^(−2i/rope_dim) (divided by rope_freqs.weight where
  // the file has one), rope_dim/2 values.
  const std::vector<double>& rope_inv_freq() const { return rope_inv_freq_; }
  // The frequencies layer `layer` uses: sliding-window layers have their own base.
  const std::vector<double>& rope_inv_freq(int layer) const {
    return config_.is_sliding_layer(layer) ? rope_inv_freq_sliding_ : rope_inv_freq_;
  }

  // The model's layer/head shape, in the form kv_cache_size() takes.
  ModelShape kv_shape() const;

 private:
  ModelConfig config_;
  ModelLoadStats stats_;
  WeightMatrix token_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<double> rope_inv_freq_, rope_inv_freq_sliding_;
};

struct SessionOptions {
  int threads = 0;              // 0: all cores (OpenMP threads); used for matmuls and attention
  int prefill_chunk = 256;      // tokens per forward pass during prefill
  std::size_t max_context = 0;  // 0: the model's context_length
  std::size_t reserve = 0;      // tokens to reserve in every layer's cache up front
  SimdLevel simd = SimdLevel::Auto;  // attention and quantized-matmul kernels (Scalar: references)
  // Cpu: this process's runner (BLAS, LayerKvCache). Cuda: weights and caches on GPU 0, the
  // same scheme meaning the same codes (src/model/cuda/); threads and simd then only affect
  // host-side work. The GPU caches are allocated for max_context tokens up front.
  Device device = Device::Cpu;
  // Sequences held at once (eval(sequence, ...) and decode_batch); each has its own caches.
  int batch = 1;
};

// One sequence being run through a model: its position, its per-layer KV caches and the
// scratch buffers of the forward pass (allocated once, so decode steps do not allocate), on the
// CPU or the GPU (SessionOptions::device). The Model must outlive the Session.
class Session {
 public:
  Session(const Model& model, const KvScheme& scheme, const SessionOptions& options = {});
  Session(const Model& model, std::string_view kv_scheme, const SessionOptions& options = {});
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  // Runs `tokens` at positions [position(), position() + n), in chunks of prefill_chunk, and
  // returns the logits after the last one (n_vocab floats, valid until the next call).
  // Throws std::invalid_argument for an empty input, a token id outside the vocabulary or a
  // position past max_context.
  std::span<const float> eval(std::span<const TokenId> tokens);
  // Same, and also writes the logits after every token into all_logits ([n][n_vocab]).
  std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits);
  std::span<const float> decode(TokenId token) { return eval(std::span<const TokenId>(&token, 1)); }
  // The same for sequence `sequence` of the batch (the calls above are sequence 0).
  std::span<const float> eval(int sequence, std::span<const TokenId> tokens,
                              float* all_logits = nullptr);

  // One decode step for the whole batch: tokens[b] is sequence b's next token, or kNoToken for a
  // sequence that sits the step out (finished, or not started: its cache and position stay).
  // Returns the logits [batch][n_vocab], valid until the next call (inactive rows unspecified).
  // On the GPU the step runs as a CUDA graph recorded once per batch shape and length bucket.
  static constexpr TokenId kNoToken = -1;
  std::span<const float> decode_batch(std::span<const TokenId> tokens);

  std::size_t position() const { return position(0); }  // tokens held by sequence 0
  std::size_t position(int sequence) const;
  int batch() const;
  std::size_t max_context() const;
  // Benchmarks: appends `tokens` random K/V to every layer's cache of `sequence` without running
  // the model (the cost of attention does not depend on the values), so that decode speed at a
  // long context can be measured without its prefill. Throws past max_context.
  void fill_synthetic(int sequence, std::size_t tokens, std::uint64_t seed = 1);
  void reset();  // forget every sequence, keep the allocations
  void reset(int sequence);

  const Model& model() const;
  const KvScheme& scheme() const;
  Device device() const;
  // The CPU cache of a layer (of sequence 0); throws std::logic_error on a GPU session (its
  // caches live on the device: use kv_bytes() for the accounting).
  const LayerKvCache& cache(int layer) const;
  // Exact bytes stored in all layers' caches (all sequences) now, the same tokens in fp16, and
  // bits per value.
  KvSizeBreakdown kv_bytes() const;
  // Whether any layer stores something other than fp16, and how many of the tokens held are in
  // those layers' compressed segments (the rest are in the exact window); either device.
  bool compresses() const;
  // Bytes of weights held on the session's device (GPU sessions: the uploaded GGUF blocks and
  // norms; CPU sessions: the Model's weights).
  std::size_t device_weight_bytes() const;
  std::size_t compressed_tokens(int sequence = 0) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tq
