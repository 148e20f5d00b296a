// GpuBackend: the forward step's operations on GPU 0, in one stream. Embedding rows are
// dequantized on the host (exactly as the CPU runner does) and copied up; matrix products go
// through MatmulEngine (quantized-weight GEMV for few rows, cuBLAS otherwise); attention through
// the layer's GpuLayerKvCache. The stream is synchronised only when logits are read back.
#include "../qmatmul.hpp"
#include "cuda_check.cuh"
#include "forward_kernels.cuh"
#include "gpu_backend.hpp"
#include "gpu_matmul.cuh"
#include "gpu_weights.cuh"
#include "turboquant/cuda/layer_cache.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace tq::gpu {
namespace {

// An owning device array of T.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) : n_(n) {
    TQ_GPU_CHECK(cudaMalloc(&ptr_, std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (n_) TQ_GPU_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceArray() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), n_(o.n_) {
    o.ptr_ = nullptr;
    o.n_ = 0;
  }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    return *this;
  }
  T* get() const { return ptr_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }

 private:
  T* ptr_ = nullptr;
  std::size_t n_ = 0;
};

struct GpuLayerWeights {
  DeviceArray<float> attn_norm, ffn_norm, bqkv;
  DeviceMatrix wqkv, wo, gate_up, down;
};

class GpuBackend final : public fwd::ForwardBackend {
 public:
  GpuBackend(const Model& model, const KvScheme& scheme, int chunk, std::size_t capacity);
  ~GpuBackend() override;

  void embed(const TokenId* tokens, const fwd::StepRows& rows) override;
  void rms_norm(fwd::Act in, fwd::NormWeight which, int layer, fwd::Act out, int first,
                int n) override;
  void matmul(fwd::Act in, fwd::MatrixWeight which, int layer, fwd::Act out, int first, int n,
              bool accumulate) override;
  void rope(const fwd::StepRows& rows) override;
  void attention(int layer, const fwd::StepRows& rows) override;
  void swiglu(int n) override;
  void read_logits(int first, int n, float* host) override;
  void reset() override;
  std::size_t cache_bytes() const override;

 private:
  float* buffer(fwd::Act a) const;
  int width(fwd::Act a) const;

  const Model& model_;
  cudaStream_t stream_ = nullptr;
  std::vector<GpuLayerWeights> layers_;
  DeviceArray<float> output_norm_;
  DeviceMatrix token_embd_, output_;  // output_ empty when the embeddings are tied
  DeviceArray<double> inv_freq_;
  DeviceArray<float> x_, xn_, qkv_, q_, k_, v_, att_, gate_up_, logits_;
  float* embed_host_ = nullptr;  // pinned [chunk][n_embd]
  std::unique_ptr<MatmulEngine> engine_;
  std::vector<cuda::GpuLayerKvCache> caches_;
  std::unique_ptr<cuda::AttentionWorkspace> workspace_;
  std::unique_ptr<cuda::LayerCacheScratch> scratch_;
};

GpuBackend::GpuBackend(const Model& model, const KvScheme& scheme, int chunk, std::size_t capacity)
    : model_(model) {
  const ModelConfig& c = model.config();
  if (capacity > static_cast<std::size_t>(1) << 30) {
    throw std::invalid_argument("--device cuda: a context of " + std::to_string(capacity) +
                                " tokens is more than the GPU caches address (2^30)");
  }
  // Caches first: a scheme the GPU cannot store is refused before any weight is uploaded.
  caches_.reserve(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    caches_.emplace_back(scheme, layer_kv_shape(c, l), 1, static_cast<int>(capacity));
  }
  TQ_GPU_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  layers_.reserve(static_cast<std::size_t>(c.n_layers));
  std::size_t largest = static_cast<std::size_t>(c.n_vocab) * c.n_embd;  // elements
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = model.layer(l);
    GpuLayerWeights g{DeviceArray<float>(w.attn_norm),
                      DeviceArray<float>(w.ffn_norm),
                      DeviceArray<float>(w.bqkv),
                      DeviceMatrix(w.wqkv),
                      DeviceMatrix(w.wo),
                      DeviceMatrix(w.w_gate_up),
                      DeviceMatrix(w.w_down)};
    layers_.push_back(std::move(g));
    for (const WeightMatrix* m : {&w.wqkv, &w.wo, &w.w_gate_up, &w.w_down}) {
      largest = std::max(largest, static_cast<std::size_t>(m->rows) * m->cols);
    }
  }
  output_norm_ = DeviceArray<float>(model.output_norm());
  token_embd_ = DeviceMatrix(model.token_embd());
  if (&model.output_weight() != &model.token_embd()) output_ = DeviceMatrix(model.output_weight());
  inv_freq_ = DeviceArray<double>(model.rope_inv_freq());
  const std::size_t ch = static_cast<std::size_t>(chunk);
  x_ = DeviceArray<float>(ch * c.n_embd);
  xn_ = DeviceArray<float>(ch * c.n_embd);
  qkv_ = DeviceArray<float>(ch * (c.q_dim() + 2 * c.kv_dim()));
  q_ = DeviceArray<float>(ch * c.q_dim());
  k_ = DeviceArray<float>(ch * c.kv_dim());
  v_ = DeviceArray<float>(ch * c.kv_dim());
  att_ = DeviceArray<float>(ch * c.q_dim());
  gate_up_ = DeviceArray<float>(ch * 2 * static_cast<std::size_t>(c.n_ff));
  logits_ = DeviceArray<float>(ch * static_cast<std::size_t>(c.n_vocab));
  TQ_GPU_CHECK(cudaMallocHost(&embed_host_, ch * c.n_embd * sizeof(float)));
  engine_ = std::make_unique<MatmulEngine>(stream_);
  engine_->reserve(chunk, std::max({c.n_embd, c.n_ff, c.q_dim()}), largest);
  workspace_ = std::make_unique<cuda::AttentionWorkspace>();
  scratch_ = std::make_unique<cuda::LayerCacheScratch>();
}

GpuBackend::~GpuBackend() {
  if (embed_host_) cudaFreeHost(embed_host_);
  caches_.clear();
  engine_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

float* GpuBackend::buffer(fwd::Act a) const {
  switch (a) {
    case fwd::Act::X:
      return x_.get();
    case fwd::Act::Xn:
      return xn_.get();
    case fwd::Act::Qkv:
      return qkv_.get();
    case fwd::Act::Att:
      return att_.get();
    case fwd::Act::GateUp:
      return gate_up_.get();
    case fwd::Act::Logits:
      return logits_.get();
  }
  throw std::logic_error("GpuBackend: unknown activation buffer");
}

int GpuBackend::width(fwd::Act a) const {
  const ModelConfig& c = model_.config();
  switch (a) {
    case fwd::Act::X:
    case fwd::Act::Xn:
      return c.n_embd;
    case fwd::Act::Qkv:
      return c.q_dim() + 2 * c.kv_dim();
    case fwd::Act::Att:
      return c.q_dim();
    case fwd::Act::GateUp:
      return 2 * c.n_ff;
    case fwd::Act::Logits:
      return c.n_vocab;
  }
  throw std::logic_error("GpuBackend: unknown activation buffer");
}

void GpuBackend::embed(const TokenId* tokens, const fwd::StepRows& rows) {
  const std::size_t E = static_cast<std::size_t>(model_.config().n_embd);
  // The previous step ended with a synchronising logits read, so the pinned buffer is free.
  for (int i = 0; i < rows.count; ++i) {
    qmm::dequantize_rows(model_.token_embd(), tokens[i], 1, embed_host_ + i * E, SimdLevel::Auto);
  }
  TQ_GPU_CHECK(cudaMemcpyAsync(x_.get(), embed_host_, rows.count * E * sizeof(float),
                               cudaMemcpyHostToDevice, stream_));
}

void GpuBackend::rms_norm(fwd::Act in, fwd::NormWeight which, int layer, fwd::Act out, int first,
                          int n) {
  const ModelConfig& c = model_.config();
  const float* w = which == fwd::NormWeight::Output ? output_norm_.get()
                   : which == fwd::NormWeight::Ffn
                       ? layers_[static_cast<std::size_t>(layer)].ffn_norm.get()
                       : layers_[static_cast<std::size_t>(layer)].attn_norm.get();
  const std::size_t off = static_cast<std::size_t>(first) * c.n_embd;
  gpu::rms_norm(buffer(in) + off, w, buffer(out) + off, n, c.n_embd, c.rms_eps, stream_);
}

void GpuBackend::matmul(fwd::Act in, fwd::MatrixWeight which, int layer, fwd::Act out, int first,
                        int n, bool accumulate) {
  const DeviceMatrix* w = nullptr;
  const float* bias = nullptr;
  const auto& L = layers_[static_cast<std::size_t>(which == fwd::MatrixWeight::Logits ? 0 : layer)];
  switch (which) {
    case fwd::MatrixWeight::Qkv:
      w = &L.wqkv;
      if (L.bqkv.size()) bias = L.bqkv.get();
      break;
    case fwd::MatrixWeight::AttentionOut:
      w = &L.wo;
      break;
    case fwd::MatrixWeight::GateUp:
      w = &L.gate_up;
      break;
    case fwd::MatrixWeight::Down:
      w = &L.down;
      break;
    case fwd::MatrixWeight::Logits:
      w = output_.rows() ? &output_ : &token_embd_;
      break;
  }
  const int ldx = width(in), ldy = width(out);
  engine_->matmul(*w, buffer(in) + static_cast<std::size_t>(first) * ldx, n, ldx, bias,
                  buffer(out) + static_cast<std::size_t>(first) * ldy, ldy, accumulate);
}

void GpuBackend::rope(const fwd::StepRows& rows) {
  const ModelConfig& c = model_.config();
  rope_qk(qkv_.get(), rows.count, width(fwd::Act::Qkv), c.n_heads, c.n_kv_heads, c.head_dim,
          c.rope_dim, inv_freq_.get(), rows.first_position, c.rope, stream_);
}

void GpuBackend::attention(int layer, const fwd::StepRows& rows) {
  const ModelConfig& c = model_.config();
  split_qkv(qkv_.get(), rows.count, width(fwd::Act::Qkv), c.q_dim(), c.kv_dim(), q_.get(), k_.get(),
            v_.get(), stream_);
  cuda::GpuLayerKvCache& cache = caches_[static_cast<std::size_t>(layer)];
  cache.append(0, k_.get(), v_.get(), rows.count, *scratch_, stream_);
  cache.attend(0, q_.get(), rows.count, att_.get(), *workspace_, *scratch_, stream_);
}

void GpuBackend::swiglu(int n) {
  gpu::swiglu(gate_up_.get(), n, model_.config().n_ff, stream_);
}

void GpuBackend::read_logits(int first, int n, float* host) {
  const std::size_t V = static_cast<std::size_t>(model_.config().n_vocab);
  TQ_GPU_CHECK(cudaMemcpyAsync(host, logits_.get() + static_cast<std::size_t>(first) * V,
                               static_cast<std::size_t>(n) * V * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_));
  TQ_GPU_CHECK(cudaStreamSynchronize(stream_));
}

void GpuBackend::reset() {
  for (auto& cache : caches_) cache.clear();
}

std::size_t GpuBackend::cache_bytes() const {
  std::size_t bytes = 0;
  for (const auto& cache : caches_) bytes += cache.bytes();
  return bytes;
}

}  // namespace

std::unique_ptr<fwd::ForwardBackend> make_gpu_backend(const Model& model, const KvScheme& scheme,
                                                      const SessionOptions& options, int chunk,
                                                      std::size_t capacity) {
  (void)options;
  return std::make_unique<GpuBackend>(model, scheme, chunk, capacity);
}

}  // namespace tq::gpu
