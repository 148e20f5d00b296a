// GpuBackend: the forward step's operations on GPU 0, in one stream. Embedding rows are
// dequantized on the host (exactly as the CPU runner does) into pinned memory and copied up;
// matrix products go through MatmulEngine (quantized-weight GEMV for few rows, cuBLAS otherwise);
// attention through the layer's GpuLayerKvCache. The stream is synchronised only when logits are
// read back. A batched decode step is recorded as a CUDA graph per length bucket (the split plan
// of the attention kernels) and replayed: the host then only stages the step's embeddings and
// positions and reads the logits. TQ_CUDA_GRAPHS=0 runs every step eagerly (for comparisons).
#include "../qmatmul.hpp"
#include "cuda/internal.cuh"
#include "forward_kernels.cuh"
#include "gpu_backend.hpp"
#include "gpu_matmul.cuh"
#include "gpu_weights.cuh"
#include "turboquant/cuda/layer_cache.hpp"
#include "turboquant/cuda/sliding_window_cache.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
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
    TQ_CUDA_CHECK(cudaMalloc(&ptr_, std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (n_) TQ_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
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
  // Gemma 3 only (empty otherwise): QK-norm and the norms on each sub-block's output.
  DeviceArray<float> q_norm, k_norm, post_attn_norm, post_ffn_norm;
  std::size_t bytes() const {
    return attn_norm.bytes() + ffn_norm.bytes() + bqkv.bytes() + wqkv.bytes() + wo.bytes() +
           gate_up.bytes() + down.bytes() + q_norm.bytes() + k_norm.bytes() +
           post_attn_norm.bytes() + post_ffn_norm.bytes();
  }
};

bool graphs_enabled() {
  const char* v = std::getenv("TQ_CUDA_GRAPHS");
  return !(v && std::strcmp(v, "0") == 0);
}

class GpuBackend final : public fwd::ForwardBackend {
 public:
  GpuBackend(const Model& model, const KvScheme& scheme, int batch, int chunk,
             std::size_t capacity);
  ~GpuBackend() override;

  void embed(const TokenId* tokens, const fwd::StepRows& rows) override;
  void rms_norm(fwd::Act in, fwd::NormWeight which, int layer, fwd::Act out, int first,
                int n) override;
  void matmul(fwd::Act in, fwd::MatrixWeight which, int layer, fwd::Act out, int first, int n,
              bool accumulate) override;
  void rope(const fwd::StepRows& rows, int layer) override;
  void rms_norm_add(fwd::Act in, fwd::NormWeight which, int layer, fwd::Act out, int n) override;
  void qk_norm(int layer, int n) override;
  void attention(int layer, const fwd::StepRows& rows) override;
  void glu(int n) override;
  void read_logits(int first, int n, float* host) override;
  void decode_step(const TokenId* tokens, const fwd::StepRows& rows, float* logits,
                   const std::function<void()>& step) override;
  void fill_synthetic(int sequence, std::size_t held, std::size_t tokens,
                      std::uint64_t seed) override;
  void reset() override;
  void reset(int sequence) override;
  std::size_t cache_bytes() const override;
  std::size_t weight_bytes() const override { return weight_bytes_; }

 private:
  // Host side of embed(): the rows' embeddings (and, batched, the positions) into pinned memory.
  void stage_inputs(const TokenId* tokens, const fwd::StepRows& rows);
  // Decode step: starts the layer's encoding of the tokens leaving its window on the side
  // stream, so that it overlaps the layer's norm (attention() waits for it before the window
  // write).
  void begin_evicted_encode(int layer);
  void drop_graph();
  void advance_caches(const fwd::StepRows& rows);

  const float* norm_weight(fwd::NormWeight which, int layer) const;
  float* buffer(fwd::Act a) const;
  int width(fwd::Act a) const;

  const Model& model_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t side_stream_ = nullptr;  // the decode step's window-eviction encodes
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  bool in_decode_step_ = false;
  int encoding_layer_ = -1;  // the layer whose eviction encode is on the side stream
  std::vector<GpuLayerWeights> layers_;
  DeviceArray<float> output_norm_;
  DeviceMatrix token_embd_, output_;  // output_ empty when the embeddings are tied
  DeviceArray<double> inv_freq_, inv_freq_sliding_;
  DeviceArray<float> x_, xn_, qkv_, q_, k_, v_, att_, gate_up_, logits_;
  DeviceArray<int> positions_;     // [batch], the batched step's
  float* embed_host_ = nullptr;    // pinned [chunk][n_embd]
  int* positions_host_ = nullptr;  // pinned [batch]
  float* logits_host_ = nullptr;   // pinned [batch][n_vocab], the recorded step's
  std::unique_ptr<MatmulEngine> engine_;
  // Per layer: the KV-scheme cache of a global layer, or the exact ring of a sliding-window
  // layer (Gemma 3's local layers); the other pointer is null.
  std::vector<std::unique_ptr<cuda::GpuLayerKvCache>> caches_;
  std::vector<std::unique_ptr<cuda::GpuSlidingWindowCache>> sliding_;
  // Prefill and the recorded decode step use separate scratch, so that a prefill that grows its
  // buffers never frees memory a recorded graph points at.
  std::unique_ptr<cuda::AttentionWorkspace> workspace_, step_workspace_;
  std::unique_ptr<cuda::LayerCacheScratch> scratch_, step_scratch_;
  std::size_t weight_bytes_ = 0;
  int batch_ = 1;
  int capacity_ = 0;
  int step_bound_ = 0;  // most tokens per sequence the current decode step plans for
  bool capturing_ = false;
  bool use_graphs_ = true;
  int warm_bound_ = -1;  // bound of the last eager step (its workspace sizes are in place)
  int graph_bound_ = -1;
  cudaGraphExec_t graph_exec_ = nullptr;
  std::vector<bool> active_;  // advance_caches' flags, kept to spare a decode step an allocation
};

GpuBackend::GpuBackend(const Model& model, const KvScheme& scheme, int batch, int chunk,
                       std::size_t capacity)
    : model_(model), batch_(batch), capacity_(static_cast<int>(capacity)) {
  const ModelConfig& c = model.config();
  if (capacity > static_cast<std::size_t>(1) << 30) {
    throw std::invalid_argument("--device cuda: a context of " + std::to_string(capacity) +
                                " tokens is more than the GPU caches address (2^30)");
  }
  // Caches first: a scheme the GPU cannot store is refused before any weight is uploaded.
  caches_.resize(static_cast<std::size_t>(c.n_layers));
  sliding_.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::size_t i = static_cast<std::size_t>(l);
    if (c.is_sliding_layer(l)) {
      sliding_[i] = std::make_unique<cuda::GpuSlidingWindowCache>(layer_kv_shape(c, l),
                                                                  c.sliding_window, chunk, batch);
    } else {
      caches_[i] = std::make_unique<cuda::GpuLayerKvCache>(scheme, layer_kv_shape(c, l), batch,
                                                           static_cast<int>(capacity));
    }
  }
  TQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TQ_CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
  TQ_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
  TQ_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
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
                      DeviceMatrix(w.w_down),
                      DeviceArray<float>(w.q_norm),
                      DeviceArray<float>(w.k_norm),
                      DeviceArray<float>(w.post_attn_norm),
                      DeviceArray<float>(w.post_ffn_norm)};
    layers_.push_back(std::move(g));
    for (const WeightMatrix* m : {&w.wqkv, &w.wo, &w.w_gate_up, &w.w_down}) {
      largest = std::max(largest, static_cast<std::size_t>(m->rows) * m->cols);
    }
  }
  output_norm_ = DeviceArray<float>(model.output_norm());
  token_embd_ = DeviceMatrix(model.token_embd());
  if (&model.output_weight() != &model.token_embd()) output_ = DeviceMatrix(model.output_weight());
  inv_freq_ = DeviceArray<double>(model.rope_inv_freq());
  if (c.sliding_window > 0) {
    for (int l = 0; l < c.n_layers; ++l) {
      if (c.is_sliding_layer(l)) {
        inv_freq_sliding_ = DeviceArray<double>(model.rope_inv_freq(l));
        break;
      }
    }
  }
  weight_bytes_ = output_norm_.bytes() + token_embd_.bytes() + output_.bytes();
  for (const GpuLayerWeights& g : layers_) weight_bytes_ += g.bytes();
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
  positions_ = DeviceArray<int>(static_cast<std::size_t>(batch));
  TQ_CUDA_CHECK(cudaMallocHost(&embed_host_, ch * c.n_embd * sizeof(float)));
  TQ_CUDA_CHECK(cudaMallocHost(&positions_host_, static_cast<std::size_t>(batch) * sizeof(int)));
  TQ_CUDA_CHECK(
      cudaMallocHost(&logits_host_, static_cast<std::size_t>(batch) * c.n_vocab * sizeof(float)));
  use_graphs_ = graphs_enabled();
  engine_ = std::make_unique<MatmulEngine>(stream_);
  engine_->reserve(chunk, std::max({c.n_embd, c.n_ff, c.q_dim()}), largest);
  workspace_ = std::make_unique<cuda::AttentionWorkspace>();
  step_workspace_ = std::make_unique<cuda::AttentionWorkspace>();
  scratch_ = std::make_unique<cuda::LayerCacheScratch>();
  step_scratch_ = std::make_unique<cuda::LayerCacheScratch>();
}

GpuBackend::~GpuBackend() {
  if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
  if (embed_host_) cudaFreeHost(embed_host_);
  if (positions_host_) cudaFreeHost(positions_host_);
  if (logits_host_) cudaFreeHost(logits_host_);
  caches_.clear();
  engine_.reset();
  if (fork_) cudaEventDestroy(fork_);
  if (join_) cudaEventDestroy(join_);
  if (side_stream_) cudaStreamDestroy(side_stream_);
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
  return fwd::activation_width(model_.config(), a);
}

void GpuBackend::stage_inputs(const TokenId* tokens, const fwd::StepRows& rows) {
  const std::size_t E = static_cast<std::size_t>(model_.config().n_embd);
  for (int i = 0; i < rows.count; ++i) {
    qmm::dequantize_rows(model_.token_embd(), tokens[i], 1, embed_host_ + i * E, SimdLevel::Auto);
  }
  const float scale = model_.config().embedding_scale;  // Gemma: √n_embd, as the CPU applies it
  if (scale != 1.0f) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(rows.count) * E; ++i)
      embed_host_[i] *= scale;
  }
  if (rows.batched()) std::memcpy(positions_host_, rows.positions, rows.count * sizeof(int));
}

void GpuBackend::embed(const TokenId* tokens, const fwd::StepRows& rows) {
  // The previous step ended with a synchronising logits read, so the pinned buffers are free.
  stage_inputs(tokens, rows);
  const std::size_t E = static_cast<std::size_t>(model_.config().n_embd);
  TQ_CUDA_CHECK(cudaMemcpyAsync(x_.get(), embed_host_, rows.count * E * sizeof(float),
                                cudaMemcpyHostToDevice, stream_));
  if (rows.batched()) {
    TQ_CUDA_CHECK(cudaMemcpyAsync(positions_.get(), positions_host_, rows.count * sizeof(int),
                                  cudaMemcpyHostToDevice, stream_));
  }
}

const float* GpuBackend::norm_weight(fwd::NormWeight which, int layer) const {
  if (which == fwd::NormWeight::Output) return output_norm_.get();
  const GpuLayerWeights& L = layers_[static_cast<std::size_t>(layer)];
  switch (which) {
    case fwd::NormWeight::Attention:
      return L.attn_norm.get();
    case fwd::NormWeight::Ffn:
      return L.ffn_norm.get();
    case fwd::NormWeight::PostAttention:
      return L.post_attn_norm.get();
    case fwd::NormWeight::PostFfn:
      return L.post_ffn_norm.get();
    case fwd::NormWeight::Output:
      break;
  }
  throw std::logic_error("GpuBackend: unknown norm weight");
}

void GpuBackend::rms_norm(fwd::Act in, fwd::NormWeight which, int layer, fwd::Act out, int first,
                          int n) {
  if (which == fwd::NormWeight::Attention && in_decode_step_) begin_evicted_encode(layer);
  const ModelConfig& c = model_.config();
  const std::size_t off = static_cast<std::size_t>(first) * c.n_embd;
  gpu::rms_norm(buffer(in) + off, norm_weight(which, layer), buffer(out) + off, n, c.n_embd,
                c.rms_eps, stream_);
}

void GpuBackend::rms_norm_add(fwd::Act in, fwd::NormWeight which, int layer, fwd::Act out, int n) {
  const ModelConfig& c = model_.config();
  gpu::rms_norm_add(buffer(in), norm_weight(which, layer), buffer(out), n, c.n_embd, c.rms_eps,
                    stream_);
}

void GpuBackend::qk_norm(int layer, int n) {
  const ModelConfig& c = model_.config();
  const GpuLayerWeights& L = layers_[static_cast<std::size_t>(layer)];
  const int ld = width(fwd::Act::Qkv);
  head_rms_norm(qkv_.get(), n, ld, c.n_heads, c.head_dim, L.q_norm.get(), c.rms_eps, stream_);
  head_rms_norm(qkv_.get() + c.q_dim(), n, ld, c.n_kv_heads, c.head_dim, L.k_norm.get(), c.rms_eps,
                stream_);
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

void GpuBackend::rope(const fwd::StepRows& rows, int layer) {
  const ModelConfig& c = model_.config();
  const double* inv_freq = c.is_sliding_layer(layer) ? inv_freq_sliding_.get() : inv_freq_.get();
  if (rows.batched()) {
    rope_qk_at(qkv_.get(), rows.count, width(fwd::Act::Qkv), c.n_heads, c.n_kv_heads, c.head_dim,
               c.rope_dim, inv_freq, positions_.get(), c.rope, stream_);
    return;
  }
  rope_qk(qkv_.get(), rows.count, width(fwd::Act::Qkv), c.n_heads, c.n_kv_heads, c.head_dim,
          c.rope_dim, inv_freq, rows.first_position, c.rope, stream_);
}

void GpuBackend::attention(int layer, const fwd::StepRows& rows) {
  const ModelConfig& c = model_.config();
  split_qkv(qkv_.get(), rows.count, width(fwd::Act::Qkv), c.q_dim(), c.kv_dim(), q_.get(), k_.get(),
            v_.get(), stream_);
  if (cuda::GpuSlidingWindowCache* ring = sliding_[static_cast<std::size_t>(layer)].get()) {
    if (rows.batched()) {
      ring->append_step(k_.get(), v_.get(), positions_.get(), stream_);
      ring->attend_step(q_.get(), positions_.get(), att_.get(), stream_);
    } else {
      ring->append(rows.sequence, k_.get(), v_.get(), rows.count, stream_);
      ring->attend(rows.sequence, q_.get(), rows.count, att_.get(), stream_);
    }
    return;
  }
  cuda::GpuLayerKvCache& cache = *caches_[static_cast<std::size_t>(layer)];
  if (rows.batched()) {
    if (encoding_layer_ == layer) {  // the eviction encode ran on the side stream
      TQ_CUDA_CHECK(cudaStreamWaitEvent(stream_, join_, 0));
      encoding_layer_ = -1;
      cache.write_step(k_.get(), v_.get(), positions_.get(), stream_);
    } else {
      cache.append_step(k_.get(), v_.get(), positions_.get(), stream_);
    }
    cache.attend_step(q_.get(), positions_.get(), step_bound_, att_.get(), *step_workspace_,
                      *step_scratch_, stream_);
    return;
  }
  cache.append(rows.sequence, k_.get(), v_.get(), rows.count, *scratch_, stream_);
  cache.attend(rows.sequence, q_.get(), rows.count, att_.get(), *workspace_, *scratch_, stream_);
}

void GpuBackend::begin_evicted_encode(int layer) {
  cuda::GpuLayerKvCache* cache = caches_[static_cast<std::size_t>(layer)].get();
  if (!cache || !cache->step_encodes_evicted()) return;
  if (encoding_layer_ >= 0) {
    throw std::logic_error("GpuBackend: layer " + std::to_string(encoding_layer_) +
                           "'s eviction encode was never joined");
  }
  TQ_CUDA_CHECK(cudaEventRecord(fork_, stream_));
  TQ_CUDA_CHECK(cudaStreamWaitEvent(side_stream_, fork_, 0));
  cache->encode_evicted_step(positions_.get(), side_stream_);
  TQ_CUDA_CHECK(cudaEventRecord(join_, side_stream_));
  encoding_layer_ = layer;
}

void GpuBackend::glu(int n) {
  if (model_.config().ffn_activation == FfnActivation::kGeluTanh) {
    gpu::geglu_tanh(gate_up_.get(), n, model_.config().n_ff, stream_);
  } else {
    gpu::swiglu(gate_up_.get(), n, model_.config().n_ff, stream_);
  }
}

void GpuBackend::read_logits(int first, int n, float* host) {
  const std::size_t V = static_cast<std::size_t>(model_.config().n_vocab);
  const std::size_t bytes = static_cast<std::size_t>(n) * V * sizeof(float);
  const float* src = logits_.get() + static_cast<std::size_t>(first) * V;
  if (capturing_) {  // into pinned memory: decode_step copies them out after each replay
    TQ_CUDA_CHECK(cudaMemcpyAsync(logits_host_, src, bytes, cudaMemcpyDeviceToHost, stream_));
    return;
  }
  TQ_CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream_));
  TQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void GpuBackend::drop_graph() {
  if (graph_exec_) TQ_CUDA_CHECK(cudaGraphExecDestroy(graph_exec_));
  graph_exec_ = nullptr;
  graph_bound_ = -1;
}

void GpuBackend::advance_caches(const fwd::StepRows& rows) {
  active_.assign(static_cast<std::size_t>(batch_), false);
  for (int b = 0; b < rows.count; ++b)
    active_[static_cast<std::size_t>(b)] = rows.positions[b] >= 0;
  for (auto& cache : caches_) {
    if (cache) cache->advance(active_);
  }
  for (auto& ring : sliding_) {
    if (ring) ring->advance(active_);
  }
}

void GpuBackend::decode_step(const TokenId* tokens, const fwd::StepRows& rows, float* logits,
                             const std::function<void()>& step) {
  if (rows.count != batch_) {
    throw std::logic_error("GpuBackend::decode_step: " + std::to_string(rows.count) +
                           " rows for a batch of " + std::to_string(batch_));
  }
  // The split plan is sized for a power-of-two bound on the tokens any sequence holds after the
  // step: one recorded graph serves every step up to it.
  int longest = 1;
  for (int b = 0; b < rows.count; ++b) longest = std::max(longest, rows.positions[b] + 1);
  int bound = 256;
  while (bound < longest) bound *= 2;
  bound = std::min(bound, capacity_);
  step_bound_ = bound;
  const std::size_t V = static_cast<std::size_t>(model_.config().n_vocab);
  const std::size_t bytes = static_cast<std::size_t>(rows.count) * V * sizeof(float);
  if (use_graphs_ && graph_exec_ && graph_bound_ == bound) {
    stage_inputs(tokens, rows);
    TQ_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
    TQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::memcpy(logits, logits_host_, bytes);
    advance_caches(rows);
    return;
  }
  // The forward pass below is this step's: layers may fork their eviction encodes.
  struct StepScope {
    GpuBackend& b;
    explicit StepScope(GpuBackend& backend) : b(backend) { b.in_decode_step_ = true; }
    ~StepScope() {
      b.in_decode_step_ = false;
      b.encoding_layer_ = -1;
    }
  } scope(*this);
  if (!use_graphs_ || warm_bound_ != bound) {
    // First step at this bound: run it eagerly, which sizes the step's workspace for this plan
    // (a recorded graph must not allocate); the next step records the graph.
    drop_graph();
    step();
    warm_bound_ = bound;
    advance_caches(rows);
    return;
  }
  cudaGraph_t graph = nullptr;
  TQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
  try {
    step();
  } catch (...) {
    capturing_ = false;
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  capturing_ = false;
  TQ_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  const cudaError_t made = cudaGraphInstantiate(&graph_exec_, graph, 0);
  cudaGraphDestroy(graph);
  TQ_CUDA_CHECK(made);
  graph_bound_ = bound;
  TQ_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
  TQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::memcpy(logits, logits_host_, bytes);
  advance_caches(rows);
}

void GpuBackend::fill_synthetic(int sequence, std::size_t held, std::size_t tokens,
                                std::uint64_t seed) {
  const ModelConfig& c = model_.config();
  const std::size_t KV = static_cast<std::size_t>(c.kv_dim());
  const std::size_t rows = k_.size() / KV;  // the chunk the K/V buffers hold
  for (int l = 0; l < c.n_layers; ++l) {
    const std::uint64_t layer_seed = seed * 1000003u + static_cast<std::uint64_t>(l);
    for (std::size_t done = 0; done < tokens;) {
      const std::size_t n = std::min(rows, tokens - done);
      const std::uint64_t first = (held + done) * KV;
      random_gaussian(k_.get(), n * KV, layer_seed * 2, first, stream_);
      random_gaussian(v_.get(), n * KV, layer_seed * 2 + 1, first, stream_);
      if (auto& ring = sliding_[static_cast<std::size_t>(l)]) {
        ring->append(sequence, k_.get(), v_.get(), static_cast<int>(n), stream_);
      } else {
        caches_[static_cast<std::size_t>(l)]->append(sequence, k_.get(), v_.get(),
                                                     static_cast<int>(n), *scratch_, stream_);
      }
      done += n;
    }
  }
  TQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void GpuBackend::reset() {
  for (auto& cache : caches_) {
    if (cache) cache->clear();
  }
  for (auto& ring : sliding_) {
    if (ring) ring->clear();
  }
}

void GpuBackend::reset(int sequence) {
  for (auto& cache : caches_) {
    if (cache) cache->clear(sequence);
  }
  for (auto& ring : sliding_) {
    if (ring) ring->clear(sequence);
  }
}

std::size_t GpuBackend::cache_bytes() const {
  std::size_t bytes = 0;
  for (const auto& cache : caches_) bytes += cache ? cache->bytes() : 0;
  for (const auto& ring : sliding_) bytes += ring ? ring->bytes() : 0;
  return bytes;
}

}  // namespace

std::unique_ptr<fwd::ForwardBackend> make_gpu_backend(const Model& model, const KvScheme& scheme,
                                                      const SessionOptions& options, int chunk,
                                                      std::size_t capacity) {
  return std::make_unique<GpuBackend>(model, scheme, options.batch, chunk, capacity);
}

}  // namespace tq::gpu
