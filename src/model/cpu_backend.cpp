// CpuBackend (cpu_backend.hpp): each operation of the forward step on the host, with the
// quantized-weight matmuls of qmatmul.hpp, the kernels of ops.hpp and the per-layer
// LayerKvCache. Every buffer is sized once in the constructor, so steps do not allocate.
#include "cpu_backend.hpp"

#include "ops.hpp"
#include "qmatmul.hpp"
#include "turboquant/base/random.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tq::detail {

CpuBackend::CpuBackend(const Model& model, const KvScheme& scheme, const SessionOptions& options,
                       int chunk, std::size_t reserve)
    : model_(model), simd_(options.simd), chunk_(static_cast<std::size_t>(chunk)) {
#ifdef _OPENMP
  threads_ = options.threads > 0 ? options.threads : omp_get_max_threads();
#else
  threads_ = 1;
#endif
  attention_options_.simd = options.simd;
  attention_options_.threads = threads_;
  const ModelConfig& c = model.config();
  caches_.resize(static_cast<std::size_t>(options.batch));
  sliding_.resize(caches_.size());
  for (std::size_t b = 0; b < caches_.size(); ++b) {
    auto& layers = caches_[b];
    layers.reserve(static_cast<std::size_t>(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l) {
      layers.emplace_back(scheme, layer_kv_shape(c, l));
      if (c.is_sliding_layer(l)) {
        sliding_[b].push_back(
            std::make_unique<SlidingWindowCache>(layer_kv_shape(c, l), c.sliding_window, chunk));
      } else {
        sliding_[b].push_back(nullptr);
        if (reserve) layers.back().reserve(reserve);
      }
    }
  }
  const std::size_t ch = static_cast<std::size_t>(chunk);
  x_.resize(ch * c.n_embd);
  xn_.resize(ch * c.n_embd);
  qkv_.resize(ch * (c.q_dim() + 2 * c.kv_dim()));
  q_.resize(ch * c.q_dim());
  k_.resize(ch * c.kv_dim());
  v_.resize(ch * c.kv_dim());
  att_.resize(ch * c.q_dim());
  gate_up_.resize(ch * 2 * static_cast<std::size_t>(c.n_ff));
  logits_.resize(ch * static_cast<std::size_t>(c.n_vocab));
  if (c.sandwich_norms) normed_.resize(ch * c.n_embd);
  rope_cos_.resize(ch * static_cast<std::size_t>(c.rope_dim / 2));
  rope_sin_.resize(rope_cos_.size());
}

std::vector<float>& CpuBackend::buffer(Act a) {
  switch (a) {
    case Act::X:
      return x_;
    case Act::Xn:
      return xn_;
    case Act::Qkv:
      return qkv_;
    case Act::Att:
      return att_;
    case Act::GateUp:
      return gate_up_;
    case Act::Logits:
      return logits_;
  }
  throw std::logic_error("CpuBackend: unknown activation buffer");
}

int CpuBackend::width(Act a) const {
  return activation_width(model_.config(), a);
}

void CpuBackend::embed(const TokenId* tokens, const StepRows& rows) {
  const std::size_t E = static_cast<std::size_t>(model_.config().n_embd);
  for (int i = 0; i < rows.count; ++i) {
    qmm::dequantize_rows(model_.token_embd(), tokens[i], 1, &x_[i * E], simd_);
  }
  const float scale = model_.config().embedding_scale;
  if (scale != 1.0f) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(rows.count) * E; ++i) x_[i] *= scale;
  }
}

const std::vector<float>& CpuBackend::norm_weight(NormWeight which, int layer) const {
  switch (which) {
    case NormWeight::Output:
      return model_.output_norm();
    case NormWeight::Ffn:
      return model_.layer(layer).ffn_norm;
    case NormWeight::Attention:
      return model_.layer(layer).attn_norm;
    case NormWeight::PostAttention:
      return model_.layer(layer).post_attn_norm;
    case NormWeight::PostFfn:
      return model_.layer(layer).post_ffn_norm;
  }
  throw std::logic_error("CpuBackend: unknown norm weight");
}

void CpuBackend::rms_norm(Act in, NormWeight which, int layer, Act out, int first, int n) {
  const ModelConfig& c = model_.config();
  const std::vector<float>& w = norm_weight(which, layer);
  const std::size_t off = static_cast<std::size_t>(first) * c.n_embd;
  ops::rms_norm(buffer(in).data() + off, w.data(), buffer(out).data() + off, n, c.n_embd,
                c.rms_eps);
}

void CpuBackend::rms_norm_add(Act in, NormWeight which, int layer, Act out, int n) {
  const ModelConfig& c = model_.config();
  ops::rms_norm(buffer(in).data(), norm_weight(which, layer).data(), normed_.data(), n, c.n_embd,
                c.rms_eps);
  float* y = buffer(out).data();
  for (std::size_t i = 0; i < static_cast<std::size_t>(n) * c.n_embd; ++i) y[i] += normed_[i];
}

void CpuBackend::qk_norm(int layer, int n) {
  const ModelConfig& c = model_.config();
  const LayerWeights& w = model_.layer(layer);
  const int QKV = width(Act::Qkv);
  for (int i = 0; i < n; ++i) {
    float* row = &qkv_[static_cast<std::size_t>(i) * QKV];
    ops::rms_norm(row, w.q_norm.data(), row, c.n_heads, c.head_dim, c.rms_eps);
    ops::rms_norm(row + c.q_dim(), w.k_norm.data(), row + c.q_dim(), c.n_kv_heads, c.head_dim,
                  c.rms_eps);
  }
}

void CpuBackend::matmul(Act in, MatrixWeight which, int layer, Act out, int first, int n,
                        bool accumulate) {
  const WeightMatrix* w = nullptr;
  const float* bias = nullptr;
  switch (which) {
    case MatrixWeight::Qkv:
      w = &model_.layer(layer).wqkv;
      if (!model_.layer(layer).bqkv.empty()) bias = model_.layer(layer).bqkv.data();
      break;
    case MatrixWeight::AttentionOut:
      w = &model_.layer(layer).wo;
      break;
    case MatrixWeight::GateUp:
      w = &model_.layer(layer).w_gate_up;
      break;
    case MatrixWeight::Down:
      w = &model_.layer(layer).w_down;
      break;
    case MatrixWeight::Logits:
      w = &model_.output_weight();
      break;
  }
  const int ldx = width(in), ldy = width(out);
  qmm::matmul(buffer(in).data() + static_cast<std::size_t>(first) * ldx, n, ldx, *w, bias,
              buffer(out).data() + static_cast<std::size_t>(first) * ldy, ldy, threads_, accumulate,
              simd_);
}

void CpuBackend::rope(const StepRows& rows, int layer) {
  const ModelConfig& c = model_.config();
  const int half = c.rope_dim / 2;
  const double* inv_freq = model_.rope_inv_freq(layer).data();
  // One table of angles for the step, shared by the Q and K heads.
  if (!rows.batched())
    ops::rope_angles(rows.first_position, rows.count, inv_freq, half, rope_cos_.data(),
                     rope_sin_.data());
  if (rows.batched()) {  // one position per row (an inactive row's angles do not matter)
    for (int i = 0; i < rows.count; ++i) {
      const std::size_t pos = static_cast<std::size_t>(std::max(rows.positions[i], 0));
      ops::rope_angles(pos, 1, inv_freq, half, &rope_cos_[i * half], &rope_sin_[i * half]);
    }
  }
  const int QKV = width(Act::Qkv);
  for (int i = 0; i < rows.count; ++i) {
    float* row = &qkv_[static_cast<std::size_t>(i) * QKV];
    const float* cr = &rope_cos_[static_cast<std::size_t>(i) * half];
    const float* sr = &rope_sin_[static_cast<std::size_t>(i) * half];
    ops::rope(row, c.n_heads, c.head_dim, c.rope_dim, cr, sr, c.rope);
    ops::rope(row + c.q_dim(), c.n_kv_heads, c.head_dim, c.rope_dim, cr, sr, c.rope);
  }
}

void CpuBackend::attention(int layer, const StepRows& rows) {
  const ModelConfig& c = model_.config();
  const int Q = c.q_dim(), KV = c.kv_dim(), QKV = width(Act::Qkv);
  for (int i = 0; i < rows.count; ++i) {
    const float* row = &qkv_[static_cast<std::size_t>(i) * QKV];
    std::memcpy(&q_[static_cast<std::size_t>(i) * Q], row, sizeof(float) * Q);
    std::memcpy(&k_[static_cast<std::size_t>(i) * KV], row + Q, sizeof(float) * KV);
    std::memcpy(&v_[static_cast<std::size_t>(i) * KV], row + Q + KV, sizeof(float) * KV);
  }
  if (!rows.batched()) {
    if (SlidingWindowCache* sliding =
            sliding_[static_cast<std::size_t>(rows.sequence)][layer].get()) {
      sliding->append(k_.data(), v_.data(), static_cast<std::size_t>(rows.count));
      sliding->attend(q_.data(), rows.count, rows.first_position, att_.data(), threads_);
      return;
    }
    LayerKvCache& cache = caches_[static_cast<std::size_t>(rows.sequence)][layer];
    cache.append(k_.data(), v_.data(), static_cast<std::size_t>(rows.count));
    cache.attend(q_.data(), rows.count, rows.first_position, att_.data(), attention_options_);
    return;
  }
  for (int b = 0; b < rows.count; ++b) {  // row b: sequence b's next token
    float* out = &att_[static_cast<std::size_t>(b) * Q];
    if (rows.positions[b] < 0) {
      std::fill(out, out + Q, 0.0f);
      continue;
    }
    if (SlidingWindowCache* sliding = sliding_[static_cast<std::size_t>(b)][layer].get()) {
      sliding->append(&k_[static_cast<std::size_t>(b) * KV], &v_[static_cast<std::size_t>(b) * KV],
                      1);
      sliding->attend(&q_[static_cast<std::size_t>(b) * Q], 1,
                      static_cast<std::size_t>(rows.positions[b]), out, 1);
      continue;
    }
    LayerKvCache& cache = caches_[static_cast<std::size_t>(b)][layer];
    cache.append(&k_[static_cast<std::size_t>(b) * KV], &v_[static_cast<std::size_t>(b) * KV], 1);
    cache.attend(&q_[static_cast<std::size_t>(b) * Q], 1,
                 static_cast<std::size_t>(rows.positions[b]), out, attention_options_);
  }
}

void CpuBackend::glu(int n) {
  const int F = model_.config().n_ff;
  const bool gelu = model_.config().ffn_activation == FfnActivation::kGeluTanh;
  for (int i = 0; i < n; ++i) {
    float* row = &gate_up_[static_cast<std::size_t>(i) * 2 * F];
    gelu ? ops::geglu_tanh(row, row + F, row, F) : ops::swiglu(row, row + F, row, F);
  }
}

void CpuBackend::read_logits(int first, int n, float* host) {
  const std::size_t V = static_cast<std::size_t>(model_.config().n_vocab);
  std::memcpy(host, &logits_[static_cast<std::size_t>(first) * V], sizeof(float) * V * n);
}

void CpuBackend::fill_synthetic(int sequence, std::size_t held, std::size_t tokens,
                                std::uint64_t seed) {
  (void)held;
  const ModelConfig& c = model_.config();
  const std::size_t KV = static_cast<std::size_t>(c.kv_dim());
  constexpr std::size_t kBlock = 256;
  std::vector<float> k(kBlock * KV), v(kBlock * KV);
  for (int l = 0; l < c.n_layers; ++l) {
    Xoshiro256 rng(seed + static_cast<std::uint64_t>(l));
    LayerKvCache& cache = caches_.at(static_cast<std::size_t>(sequence))[l];
    SlidingWindowCache* sliding = sliding_.at(static_cast<std::size_t>(sequence))[l].get();
    // A sliding-window cache takes at most a prefill chunk per append.
    const std::size_t block = sliding ? std::min(kBlock, chunk_) : kBlock;
    for (std::size_t done = 0; done < tokens;) {
      const std::size_t n = std::min(block, tokens - done);
      for (std::size_t i = 0; i < n * KV; ++i) {
        k[i] = static_cast<float>(rng.gaussian());
        v[i] = static_cast<float>(rng.gaussian());
      }
      sliding ? sliding->append(k.data(), v.data(), n) : cache.append(k.data(), v.data(), n);
      done += n;
    }
  }
}

void CpuBackend::reset() {
  for (auto& layers : caches_) {
    for (auto& cache : layers) cache.clear();
  }
  for (auto& layers : sliding_) {
    for (auto& cache : layers) {
      if (cache) cache->clear();
    }
  }
}

void CpuBackend::reset(int sequence) {
  for (auto& cache : caches_.at(static_cast<std::size_t>(sequence))) cache.clear();
  for (auto& cache : sliding_.at(static_cast<std::size_t>(sequence))) {
    if (cache) cache->clear();
  }
}

std::size_t CpuBackend::cache_bytes() const {
  std::size_t bytes = 0;
  for (const auto& layers : caches_) {
    for (const auto& cache : layers) bytes += cache.bytes();
  }
  for (const auto& layers : sliding_) {
    for (const auto& cache : layers) bytes += cache ? cache->bytes() : 0;
  }
  return bytes;
}

}  // namespace tq::detail
