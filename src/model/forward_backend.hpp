// The device seam of the runner: the operations one forward pass is made of, over activation
// buffers the backend owns, so that the pass itself (src/model/forward_pass.cpp) is written once
// for the CPU backend (cpu_backend.cpp: BLAS, the LayerKvCache) and the CUDA backend
// (cuda/gpu_backend.cu: weights and caches on the GPU). Private to tq_model.
#pragma once

#include "turboquant/base/token.hpp"
#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/model/model.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>

namespace tq::detail {

// Activation buffers, [rows][width] floats each, rows up to the session's prefill chunk.
enum class Act {
  X,       // residual stream [n_embd]
  Xn,      // normalised residual [n_embd]
  Qkv,     // fused projection [q_dim + 2·kv_dim]
  Att,     // attention output [q_dim]
  GateUp,  // gate and up projections [2·n_ff]; glu leaves act(gate)·up in the first n_ff
  Logits,  // [n_vocab]
};

// Floats per row of an activation buffer.
inline int activation_width(const ModelConfig& c, Act a) {
  switch (a) {
    case Act::X:
    case Act::Xn:
      return c.n_embd;
    case Act::Qkv:
      return c.q_dim() + 2 * c.kv_dim();
    case Act::Att:
      return c.q_dim();
    case Act::GateUp:
      return 2 * c.n_ff;
    case Act::Logits:
      return c.n_vocab;
  }
  return 0;
}

// Per-layer (or final) weights a step reads.
enum class NormWeight { Attention, Ffn, Output, PostAttention, PostFfn };
enum class MatrixWeight { Qkv, AttentionOut, GateUp, Down, Logits };

// The rows of one forward step; its activations use buffer rows [0, count).
// Prefill: `count` consecutive tokens of sequence `sequence` from position `first_position` on.
// Batched decode (positions != null): row b is the next token of sequence b, which holds
// positions[b] tokens before the step (host array of `count` = batch entries; −1: the sequence
// sits this step out, its row is computed but neither cached nor attended).
struct StepRows {
  int count = 0;
  int sequence = 0;
  std::size_t first_position = 0;
  const int* positions = nullptr;
  bool batched() const { return positions != nullptr; }
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  // Act::X rows = embeddings of the step's tokens.
  virtual void embed(const TokenId* tokens, const StepRows& rows) = 0;
  // out rows [first, first + n) = RMSNorm of in rows [first, first + n) with the weight `which`
  // of `layer` (ignored for Output).
  virtual void rms_norm(Act in, NormWeight which, int layer, Act out, int first, int n) = 0;
  // out rows [first, first + n) (+)= in rows · Wᵀ (+ bias for Qkv).
  virtual void matmul(Act in, MatrixWeight which, int layer, Act out, int first, int n,
                      bool accumulate) = 0;
  // out rows [0, n) += RMSNorm of in rows [0, n) with the weight `which` of `layer` (the
  // sandwich norms of Gemma 3: PostAttention, PostFfn).
  virtual void rms_norm_add(Act in, NormWeight which, int layer, Act out, int n) = 0;
  // Per-head RMSNorm of the Q and K parts of Act::Qkv rows [0, n) with the layer's q/k norms.
  virtual void qk_norm(int layer, int n) = 0;
  // RoPE on the Q and K parts of Act::Qkv at the step's positions, with `layer`'s frequencies.
  virtual void rope(const StepRows& rows, int layer) = 0;
  // Appends the step's K/V (from Act::Qkv) to the layer's cache, then writes attention of the
  // step's queries over what the cache holds (causal) to Act::Att.
  virtual void attention(int layer, const StepRows& rows) = 0;
  // Act::GateUp rows [0, n): first n_ff values = act(gate)·up, act = ModelConfig::ffn_activation
  // (SwiGLU or GeGLU).
  virtual void glu(int n) = 0;
  // Copies Act::Logits rows [first, first + n) to host memory.
  virtual void read_logits(int first, int n, float* host) = 0;

  // Runs one batched decode step (rows.batched()): `step` issues its operations on this backend
  // (the forward pass, reading back every row's logits into host `logits`). The CPU backend just
  // calls it; the GPU backend records it once per shape as a CUDA graph and replays it, staging
  // `tokens` and the positions itself.
  virtual void decode_step(const TokenId* tokens, const StepRows& rows, float* logits,
                           const std::function<void()>& step) {
    (void)tokens;
    (void)rows;
    (void)logits;
    step();
  }

  // Benchmarks: appends `tokens` random unit-Gaussian K/V (from `seed`) to every layer's cache of
  // `sequence`, which holds `held` tokens, without running the model.
  virtual void fill_synthetic(int sequence, std::size_t held, std::size_t tokens,
                              std::uint64_t seed) = 0;

  // Forgets every sequence's tokens, or one sequence's (keeps allocations).
  virtual void reset() = 0;
  virtual void reset(int sequence) = 0;
  // Bytes the caches store for the tokens they hold (tq::kv_cache_size's accounting).
  virtual std::size_t cache_bytes() const = 0;
  // Bytes of weights this backend holds in its own memory (the GPU's copy; 0 on the CPU, where
  // the Model's weights are used as they are).
  virtual std::size_t weight_bytes() const { return 0; }
};

}  // namespace tq::detail
