// The forward pass of one sequence (tq::Session): embeddings, then per layer RMSNorm → fused
// Q/K/V projection (+bias) → RoPE → append K/V to the layer's compressed cache → attention over
// what the cache holds → output projection added to the residual → RMSNorm → SwiGLU MLP added to
// the residual; final RMSNorm and logits. Prefill runs in chunks (matrix-matrix products), decode
// is a chunk of one (matrix-vector products). Every buffer is sized once in the constructor.
#include "turboquant/model/model.hpp"

#include "ops.hpp"
#include "qmatmul.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tq {

struct Session::Impl {
  const Model* model = nullptr;
  KvScheme scheme;
  SessionOptions options;
  int threads = 1;
  int chunk = 256;
  std::size_t max_context = 0;
  std::size_t pos = 0;
  std::vector<LayerKvCache> caches;
  AttentionOptions attn;

  // Scratch, [chunk][...] each.
  std::vector<float> x, xn, qkv, q, k, v, att, gu;
  std::vector<float> rope_cos, rope_sin;  // [chunk][rope_dim/2]
  std::vector<float> logits;              // [n_vocab], the last token's

  void forward_chunk(const TokenId* tokens, int n, float* all_logits);
};

namespace {

KvScheme checked_scheme(std::string_view text) {
  return parse_kv_scheme(text);
}

}  // namespace

Session::Session(const Model& model, std::string_view kv_scheme, const SessionOptions& options)
    : Session(model, checked_scheme(kv_scheme), options) {}

Session::Session(const Model& model, const KvScheme& scheme, const SessionOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  const ModelConfig& c = model.config();
  s.model = &model;
  s.scheme = scheme;
  s.options = options;
  if (options.prefill_chunk <= 0) {
    throw std::invalid_argument("prefill_chunk must be positive, got " +
                                std::to_string(options.prefill_chunk));
  }
#ifdef _OPENMP
  s.threads = options.threads > 0 ? options.threads : omp_get_max_threads();
#else
  s.threads = 1;
#endif
  s.max_context =
      options.max_context ? options.max_context : static_cast<std::size_t>(c.context_length);
  s.chunk = static_cast<int>(std::min<std::size_t>(options.prefill_chunk, s.max_context));
  s.attn.simd = options.simd;
  s.attn.threads = s.threads;

  s.caches.reserve(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    s.caches.emplace_back(scheme, layer_kv_shape(c, l));
    if (options.reserve) s.caches.back().reserve(std::min(options.reserve, s.max_context));
  }

  const std::size_t ch = static_cast<std::size_t>(s.chunk);
  const std::size_t E = static_cast<std::size_t>(c.n_embd);
  const std::size_t Q = static_cast<std::size_t>(c.q_dim());
  const std::size_t KV = static_cast<std::size_t>(c.kv_dim());
  s.x.resize(ch * E);
  s.xn.resize(ch * E);
  s.qkv.resize(ch * (Q + 2 * KV));
  s.q.resize(ch * Q);
  s.k.resize(ch * KV);
  s.v.resize(ch * KV);
  s.att.resize(ch * Q);
  s.gu.resize(ch * 2 * static_cast<std::size_t>(c.n_ff));
  s.rope_cos.resize(ch * static_cast<std::size_t>(c.rope_dim / 2));
  s.rope_sin.resize(s.rope_cos.size());
  s.logits.resize(static_cast<std::size_t>(c.n_vocab));
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

std::size_t Session::position() const {
  return impl_->pos;
}
std::size_t Session::max_context() const {
  return impl_->max_context;
}
const Model& Session::model() const {
  return *impl_->model;
}
const KvScheme& Session::scheme() const {
  return impl_->scheme;
}

const LayerKvCache& Session::cache(int layer) const {
  if (layer < 0 || layer >= static_cast<int>(impl_->caches.size())) {
    throw std::out_of_range("layer " + std::to_string(layer) + " out of range [0, " +
                            std::to_string(impl_->caches.size()) + ")");
  }
  return impl_->caches[static_cast<std::size_t>(layer)];
}

void Session::reset() {
  for (auto& cache : impl_->caches) cache.clear();
  impl_->pos = 0;
}

KvSizeBreakdown Session::kv_bytes() const {
  const ModelConfig& c = impl_->model->config();
  KvSizeBreakdown out;
  for (const auto& cache : impl_->caches) out.bytes += cache.bytes();
  const std::size_t values =
      impl_->pos * static_cast<std::size_t>(c.n_layers) * static_cast<std::size_t>(c.kv_dim()) * 2;
  out.fp16_bytes = values * 2;
  out.bits_per_value = values ? 8.0 * static_cast<double>(out.bytes) / values : 0.0;
  return out;
}

std::span<const float> Session::eval(std::span<const TokenId> tokens) {
  return eval(tokens, nullptr);
}

std::span<const float> Session::eval(std::span<const TokenId> tokens, float* all_logits) {
  Impl& s = *impl_;
  const ModelConfig& c = s.model->config();
  if (tokens.empty()) throw std::invalid_argument("Session::eval: no tokens given");
  for (const TokenId t : tokens) {
    if (t < 0 || t >= c.n_vocab) {
      throw std::invalid_argument("Session::eval: token id " + std::to_string(t) +
                                  " outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    }
  }
  if (s.pos + tokens.size() > s.max_context) {
    throw std::invalid_argument("Session::eval: " + std::to_string(tokens.size()) +
                                " tokens at position " + std::to_string(s.pos) +
                                " exceed the context of " + std::to_string(s.max_context) +
                                " tokens");
  }
  const std::size_t V = static_cast<std::size_t>(c.n_vocab);
  for (std::size_t done = 0; done < tokens.size();) {
    const int n = static_cast<int>(std::min<std::size_t>(s.chunk, tokens.size() - done));
    s.forward_chunk(tokens.data() + done, n, all_logits ? all_logits + done * V : nullptr);
    done += static_cast<std::size_t>(n);
  }
  return {s.logits.data(), s.logits.size()};
}

void Session::Impl::forward_chunk(const TokenId* tokens, int n, float* all_logits) {
  const Model& m = *model;
  const ModelConfig& c = m.config();
  const int E = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, hd = c.head_dim;
  const int QKV = Q + 2 * KV;
  const int half = c.rope_dim / 2;
  const std::size_t uE = static_cast<std::size_t>(E);

  for (int i = 0; i < n; ++i) {
    qmm::dequantize_rows(m.token_embd(), tokens[i], 1, &x[static_cast<std::size_t>(i) * uE],
                         options.simd);
  }
  // One table of angles for the chunk, shared by every layer and head.
  ops::rope_angles(pos, n, m.rope_inv_freq().data(), half, rope_cos.data(), rope_sin.data());

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = m.layer(l);
    ops::rms_norm(x.data(), w.attn_norm.data(), xn.data(), n, E, c.rms_eps);
    qmm::matmul(xn.data(), n, E, w.wqkv, w.bqkv.empty() ? nullptr : w.bqkv.data(), qkv.data(), QKV,
                threads, false, options.simd);
    for (int i = 0; i < n; ++i) {
      const float* row = &qkv[static_cast<std::size_t>(i) * QKV];
      float* qi = &q[static_cast<std::size_t>(i) * Q];
      float* ki = &k[static_cast<std::size_t>(i) * KV];
      float* vi = &v[static_cast<std::size_t>(i) * KV];
      std::memcpy(qi, row, sizeof(float) * Q);
      std::memcpy(ki, row + Q, sizeof(float) * KV);
      std::memcpy(vi, row + Q + KV, sizeof(float) * KV);
      const float* cr = &rope_cos[static_cast<std::size_t>(i) * half];
      const float* sr = &rope_sin[static_cast<std::size_t>(i) * half];
      ops::rope(qi, c.n_heads, hd, c.rope_dim, cr, sr, c.rope);
      ops::rope(ki, c.n_kv_heads, hd, c.rope_dim, cr, sr, c.rope);
    }
    // Write the chunk into the cache first, then attend over what the cache holds.
    LayerKvCache& cache = caches[static_cast<std::size_t>(l)];
    cache.append(k.data(), v.data(), static_cast<std::size_t>(n));
    cache.attend(q.data(), n, pos, att.data(), attn);
    qmm::matmul(att.data(), n, Q, w.wo, nullptr, x.data(), E, threads, true, options.simd);

    ops::rms_norm(x.data(), w.ffn_norm.data(), xn.data(), n, E, c.rms_eps);
    qmm::matmul(xn.data(), n, E, w.w_gate_up, nullptr, gu.data(), 2 * F, threads, false,
                options.simd);
    for (int i = 0; i < n; ++i) {
      float* row = &gu[static_cast<std::size_t>(i) * 2 * F];
      ops::swiglu(row, row + F, row, F);
    }
    qmm::matmul(gu.data(), n, 2 * F, w.w_down, nullptr, x.data(), E, threads, true, options.simd);
  }

  const std::size_t V = static_cast<std::size_t>(c.n_vocab);
  if (all_logits) {
    ops::rms_norm(x.data(), m.output_norm().data(), xn.data(), n, E, c.rms_eps);
    qmm::matmul(xn.data(), n, E, m.output_weight(), nullptr, all_logits, c.n_vocab, threads, false,
                options.simd);
    std::memcpy(logits.data(), all_logits + static_cast<std::size_t>(n - 1) * V, V * sizeof(float));
  } else {
    const float* last = &x[static_cast<std::size_t>(n - 1) * uE];
    ops::rms_norm(last, m.output_norm().data(), xn.data(), 1, E, c.rms_eps);
    qmm::matmul(xn.data(), 1, E, m.output_weight(), nullptr, logits.data(), c.n_vocab, threads,
                false, options.simd);
  }
  pos += static_cast<std::size_t>(n);
}

}  // namespace tq
