// The device seam of the runner: the operations one forward pass is made of, over activation
// buffers the backend owns, so that the pass itself (src/model/forward_pass.cpp) is written once
// for the CPU backend (cpu_backend.cpp: BLAS, the LayerKvCache) and the CUDA backend
// (cuda/gpu_backend.cu: weights and caches on the GPU). Private to tq_model.
#pragma once

#include "turboquant/base/token.hpp"
#include "turboquant/cache/kv_scheme.hpp"

#include <cstddef>

namespace tq::detail {

// Activation buffers, [rows][width] floats each, rows up to the session's prefill chunk.
enum class Act {
  X,       // residual stream [n_embd]
  Xn,      // normalised residual [n_embd]
  Qkv,     // fused projection [q_dim + 2·kv_dim]
  Att,     // attention output [q_dim]
  GateUp,  // gate and up projections [2·n_ff]; swiglu leaves silu(gate)·up in the first n_ff
  Logits,  // [n_vocab]
};

// Per-layer (or final) weights a step reads.
enum class NormWeight { Attention, Ffn, Output };
enum class MatrixWeight { Qkv, AttentionOut, GateUp, Down, Logits };

// The rows of one forward step: `count` consecutive tokens of one sequence starting at absolute
// position `first_position`. The step's activations use buffer rows [0, count).
struct StepRows {
  int count = 0;
  std::size_t first_position = 0;
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
  // RoPE on the Q and K parts of Act::Qkv at the step's positions.
  virtual void rope(const StepRows& rows) = 0;
  // Appends the step's K/V (from Act::Qkv) to the layer's cache, then writes attention of the
  // step's queries over what the cache holds (causal) to Act::Att.
  virtual void attention(int layer, const StepRows& rows) = 0;
  // Act::GateUp rows [0, n): first n_ff values = silu(gate)·up.
  virtual void swiglu(int n) = 0;
  // Copies Act::Logits rows [first, first + n) to host memory.
  virtual void read_logits(int first, int n, float* host) = 0;

  // Forgets every sequence's tokens (keeps allocations).
  virtual void reset() = 0;
  // Bytes the caches store for the tokens they hold (tq::kv_cache_size's accounting).
  virtual std::size_t cache_bytes() const = 0;
};

}  // namespace tq::detail
