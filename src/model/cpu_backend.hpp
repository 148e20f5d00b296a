// The CPU backend of the forward pass: weights as the Model holds them (qmm kernels and BLAS),
// one LayerKvCache per layer and sequence (a SlidingWindowCache for sliding-window layers),
// activations in host vectors. Private to tq_model.
#pragma once

#include "forward_backend.hpp"
#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cache/sliding_window_cache.hpp"
#include "turboquant/model/model.hpp"

#include <memory>
#include <vector>

namespace tq::detail {

class CpuBackend final : public ForwardBackend {
 public:
  // chunk: most rows of one step (at least options.batch); the caches reserve `reserve` tokens
  // per sequence up front.
  CpuBackend(const Model& model, const KvScheme& scheme, const SessionOptions& options, int chunk,
             std::size_t reserve);

  void embed(const TokenId* tokens, const StepRows& rows) override;
  void rms_norm(Act in, NormWeight which, int layer, Act out, int first, int n) override;
  void matmul(Act in, MatrixWeight which, int layer, Act out, int first, int n,
              bool accumulate) override;
  void rms_norm_add(Act in, NormWeight which, int layer, Act out, int n) override;
  void qk_norm(int layer, int n) override;
  void rope(const StepRows& rows, int layer) override;
  void attention(int layer, const StepRows& rows) override;
  void glu(int n) override;
  void read_logits(int first, int n, float* host) override;
  void fill_synthetic(int sequence, std::size_t held, std::size_t tokens,
                      std::uint64_t seed) override;
  void reset() override;
  void reset(int sequence) override;

  const LayerKvCache& cache(int sequence, int layer) const {
    return caches_[static_cast<std::size_t>(sequence)][static_cast<std::size_t>(layer)];
  }
  std::size_t cache_bytes() const override;

 private:
  std::vector<float>& buffer(Act a);
  const std::vector<float>& norm_weight(NormWeight which, int layer) const;
  int width(Act a) const;

  const Model& model_;
  SimdLevel simd_;
  std::size_t chunk_;  // most rows of one step
  int threads_;
  // [sequence][layer]; a sliding-window layer's entry is an unused placeholder (empty scheme
  // semantics do not apply to it) and its tokens live in sliding_[sequence][layer].
  std::vector<std::vector<LayerKvCache>> caches_;
  std::vector<std::vector<std::unique_ptr<SlidingWindowCache>>> sliding_;  // null: global layer
  AttentionOptions attention_options_;
  std::vector<float> x_, xn_, qkv_, q_, k_, v_, att_, gate_up_, logits_, normed_;
  std::vector<float> rope_cos_, rope_sin_;  // [chunk][rope_dim/2] of the current step
};

}  // namespace tq::detail
