// GpuLayerKvCache (include/turboquant/cuda/layer_cache.hpp): storage per layer format, append
// with the window ring's evictions (the CPU's LayerKvCache::append, step for step), attention
// routed to the decode, multi-query or decoded-fp16 path, and the byte accounting.
#include "internal.cuh"
#include "turboquant/cuda/dequantize.hpp"
#include "turboquant/cuda/layer_cache.hpp"

#include <algorithm>
#include <array>

namespace tq::cuda {
namespace {

// Lengths handed to the attention kernels: one block writes them in stream order, so the host
// values of this call are what the kernels read (no host buffer has to outlive the call).
__global__ void set_ints_kernel(int* dst, int a, int b) {
  dst[0] = a;
  dst[1] = b;
}

// staging[i][h][:] = token t = first + i as fp16: from ring slot t mod W when t < held (the
// token is in the window), else input row t − held of x ([rows][kv_heads][d] fp32) rounded.
__global__ void stage_kernel(const float* __restrict__ x, const __half* __restrict__ ring, int W,
                             int kv_heads, int d, long long first, long long held,
                             __half* __restrict__ staging) {
  const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  const long long t = first + i;
  __half v;
  if (t < held) {
    v = ring[(static_cast<long long>(h) * W + t % W) * d + j];
  } else {
    v = __float2half_rn(x[((t - held) * kv_heads + h) * d + j]);
  }
  staging[(static_cast<long long>(i) * kv_heads + h) * d + j] = v;
}

// Ring slots of tokens t = first + i (input rows t − held of x) = their fp16 values.
__global__ void ring_write_kernel(const float* __restrict__ x, __half* __restrict__ ring, int W,
                                  int kv_heads, int d, long long first, long long held) {
  const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  const long long t = first + i;
  ring[(static_cast<long long>(h) * W + t % W) * d + j] =
      __float2half_rn(x[((t - held) * kv_heads + h) * d + j]);
}

// fp16 layers: input row i of x goes to token held + i of each head ([kv_heads][capacity][d]).
__global__ void fp16_append_kernel(const float* __restrict__ x, __half* __restrict__ dst,
                                   int capacity, int kv_heads, int d, long long held) {
  const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  dst[((static_cast<long long>(h) * capacity + held + i) * d) + j] =
      __float2half_rn(x[(static_cast<long long>(i) * kv_heads + h) * d + j]);
}

// Window tokens t = first + i (ring slot t mod W) into token t of out ([kv_heads][out_cap][d]).
__global__ void ring_to_linear_kernel(const __half* __restrict__ ring, int W, int kv_heads, int d,
                                      long long first, __half* __restrict__ out, int out_cap) {
  const int i = blockIdx.x, h = blockIdx.y, j = threadIdx.x;
  const long long t = first + i;
  out[(static_cast<long long>(h) * out_cap + t) * d + j] =
      ring[(static_cast<long long>(h) * W + t % W) * d + j];
}

// Decode step: the lengths the kernels read, from the positions before the step. TurboQuant
// layers: compressed[b], then window[b] at lengths + batch; fp16 layers: lengths[b] = pos + 1.
__global__ void step_lengths_kernel(const int* __restrict__ positions, int batch, int W, bool fp16,
                                    int* __restrict__ lengths) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const int pos = positions[b];
  const int total = pos < 0 ? 0 : pos + 1;
  if (fp16) {
    lengths[b] = total;
    return;
  }
  lengths[b] = total > W ? total - W : 0;
  lengths[batch + b] = total < W ? total : W;
}

// The two sides (keys: blockIdx.z = 0, values: 1) of a decode step's cache writes go in one launch
// each: at decode every launch costs a few µs of a short step, more than its work.
struct StepSides {
  const float* x[2];
  __half* dst[2];  // the ring (W > 0) or the fp16 layer's rows
};

// Decode step, W > 0: the new token of sequence b into ring slot pos mod W (the token it
// replaces was encoded from there by encode_evicted_step first).
__global__ void ring_write_step_kernel(const int* __restrict__ positions, const StepSides sides,
                                       int W, int kv_heads, int d, int capacity,
                                       int* overflow) {
  const int b = blockIdx.x, h = blockIdx.y, side = blockIdx.z, j = threadIdx.x;
  const int pos = positions[b];
  if (pos < 0) return;  // inactive sequence
  if (pos >= capacity) {  // past the cache: dropped, reported
    if (j == 0) atomicMax(overflow, pos + 1);
    return;
  }
  const long long head = static_cast<long long>(b) * kv_heads + h;
  sides.dst[side][(head * W + pos % W) * d + j] = __float2half_rn(sides.x[side][head * d + j]);
}

// Decode step, fp16 layers: the new token of sequence b at its position.
__global__ void fp16_append_step_kernel(const int* __restrict__ positions, const StepSides sides,
                                        int capacity, int kv_heads, int d, int* overflow) {
  const int b = blockIdx.x, h = blockIdx.y, side = blockIdx.z, j = threadIdx.x;
  const int pos = positions[b];
  if (pos < 0) return;
  if (pos >= capacity) {  // would land in the next sequence's rows: dropped, reported
    if (j == 0) atomicMax(overflow, pos + 1);
    return;
  }
  const long long row = (static_cast<long long>(b) * kv_heads + h) * capacity + pos;
  sides.dst[side][row * d + j] =
      __float2half_rn(sides.x[side][(static_cast<long long>(b) * kv_heads + h) * d + j]);
}

void check_grid(long long count, const char* what) {
  if (count > 2147483647LL) {
    throw std::invalid_argument(std::string("GPU layer cache: ") + what + " of " +
                                std::to_string(count) + " tokens is too large for one launch");
  }
}

// The side of one sequence: its arrays start seq × kv_heads × capacity tokens in.
GpuCacheSide side_of(const GpuCacheSide& s, const CodeLayout& L, long long slot0) {
  GpuCacheSide v = s;
  if (v.codes) v.codes += slot0 * static_cast<long long>(L.code_bytes);
  if (v.signs) v.signs += slot0 * static_cast<long long>(L.sign_bytes);
  if (v.norms) v.norms += slot0;
  if (v.residual_norms) v.residual_norms += slot0;
  return v;
}

template <typename T>
void download_into(std::vector<T>& dst, const T* src, std::size_t n) {
  dst.resize(n);
  if (n) TQ_CUDA_CHECK(cudaMemcpy(dst.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost));
}

}  // namespace

LayerCacheScratch::LayerCacheScratch() = default;
LayerCacheScratch::~LayerCacheScratch() {
  if (staging_) cudaFree(staging_);
  if (decoded_) cudaFree(decoded_);
  if (ints_) cudaFree(ints_);
}

std::uint16_t* LayerCacheScratch::staging(std::size_t halves) {
  detail::grow(staging_, staging_n_, std::max<std::size_t>(halves, 1), sizeof(std::uint16_t),
               false);
  return staging_;
}
std::uint16_t* LayerCacheScratch::decoded(std::size_t halves) {
  detail::grow(decoded_, decoded_n_, std::max<std::size_t>(halves, 1), sizeof(std::uint16_t),
               false);
  return decoded_;
}
int* LayerCacheScratch::ints(int n) {
  detail::grow(ints_, ints_n_, static_cast<std::size_t>(std::max(n, 1)), sizeof(int), false);
  return ints_;
}

struct GpuLayerKvCache::Impl {
  std::unique_ptr<DeviceCodec> key_codec, value_codec;  // TurboQuant layers
  std::unique_ptr<GpuKvCacheStorage> storage;           // TurboQuant layers
  std::uint16_t* fp16_keys = nullptr;                   // fp16 layers [batch][kvh][cap][d]
  std::uint16_t* fp16_values = nullptr;
  int* fp16_overflow = nullptr;    // fp16 layers: GpuCacheSide::overflow's word
  std::vector<std::size_t> sizes;  // tokens held per sequence
  // The key side, then the value side, of a TurboQuant layer: codec, arrays and window ring.
  struct SideArrays {
    const DeviceCodec* codec;
    const GpuCacheSide* side;
    std::uint16_t* ring;
  };
  std::array<SideArrays, 2> sides() const {
    const GpuKvCache& c = storage->cache();
    return {
        {{key_codec.get(), &c.key, c.key_window}, {value_codec.get(), &c.value, c.value_window}}};
  }
  ~Impl() {
    if (fp16_keys) cudaFree(fp16_keys);
    if (fp16_values) cudaFree(fp16_values);
    if (fp16_overflow) cudaFree(fp16_overflow);
  }
  int* overflow() const { return storage ? storage->cache().key.overflow : fp16_overflow; }
};

GpuLayerKvCache::GpuLayerKvCache(const KvScheme& scheme, const LayerKvShape& shape, int batch,
                                 int capacity)
    : impl_(std::make_unique<Impl>()), shape_(shape), batch_(batch), capacity_(capacity) {
  // The CPU cache validates the shape and scheme with the same messages; a zero-token CPU cache
  // allocates nothing.
  const LayerKvCache cpu(scheme, shape);
  const int d = shape.head_dim;
  if (d != 64 && d != 128 && d != 256) {
    throw std::invalid_argument("GPU layer cache: head dim " + std::to_string(d) +
                                " is not one the GPU kernels cover (64, 128, 256)");
  }
  if (batch <= 0 || capacity <= 0) {
    throw std::invalid_argument("GPU layer cache: batch " + std::to_string(batch) +
                                " and capacity " + std::to_string(capacity) + " must be positive");
  }
  // Centering (issue #16) lives in the CPU cache only so far: refuse it rather than ignore it.
  if (scheme.center_keys || scheme.center_values) {
    throw std::invalid_argument("GPU layer cache: scheme '" + scheme.name +
                                "': center= is not yet supported on cuda; drop the center= "
                                "option or run on the CPU");
  }
  const KvFormat kf = cpu.side_spec(KvSide::Key).format;
  const KvFormat vf = cpu.side_spec(KvSide::Value).format;
  fp16_ = kf == KvFormat::Fp16 && vf == KvFormat::Fp16;
  if (!fp16_ && (kf != KvFormat::TurboQuant || vf != KvFormat::TurboQuant)) {
    throw std::invalid_argument("GPU layer cache: scheme '" + scheme.name +
                                "' stores block int8/int4 on layer " + std::to_string(shape.layer) +
                                "; the GPU stores fp16 and TurboQuant (tq*, kAvB) caches only");
  }
  window_ = cpu.window();
  impl_->sizes.assign(static_cast<std::size_t>(batch), 0);
  const std::size_t slots = static_cast<std::size_t>(batch) * shape.n_kv_heads * capacity;
  if (fp16_) {
    const std::size_t bytes = slots * d * sizeof(std::uint16_t);
    TQ_CUDA_CHECK(cudaMalloc(&impl_->fp16_keys, bytes));
    TQ_CUDA_CHECK(cudaMalloc(&impl_->fp16_values, bytes));
    TQ_CUDA_CHECK(cudaMalloc(&impl_->fp16_overflow, sizeof(int)));
    TQ_CUDA_CHECK(cudaMemset(impl_->fp16_overflow, 0, sizeof(int)));
    return;
  }
  impl_->key_codec =
      std::make_unique<DeviceCodec>(kv_codec_spec(scheme, KvSide::Key, shape.layer, d));
  impl_->value_codec =
      std::make_unique<DeviceCodec>(kv_codec_spec(scheme, KvSide::Value, shape.layer, d));
  impl_->storage =
      std::make_unique<GpuKvCacheStorage>(impl_->key_codec->layout(), impl_->value_codec->layout(),
                                          batch, shape.n_kv_heads, capacity, window_);
}

GpuLayerKvCache::~GpuLayerKvCache() = default;
GpuLayerKvCache::GpuLayerKvCache(GpuLayerKvCache&&) noexcept = default;
GpuLayerKvCache& GpuLayerKvCache::operator=(GpuLayerKvCache&&) noexcept = default;

std::size_t GpuLayerKvCache::size(int seq) const {
  return impl_->sizes.at(static_cast<std::size_t>(seq));
}

std::size_t GpuLayerKvCache::compressed_size(int seq) const {
  const std::size_t n = size(seq), W = static_cast<std::size_t>(window_);
  return n > W ? n - W : 0;
}

void GpuLayerKvCache::clear() {
  std::fill(impl_->sizes.begin(), impl_->sizes.end(), 0);
}

void GpuLayerKvCache::clear(int seq) {
  impl_->sizes.at(static_cast<std::size_t>(seq)) = 0;
}

void GpuLayerKvCache::advance(const std::vector<bool>& active) {
  if (active.size() != impl_->sizes.size()) {
    throw std::invalid_argument("GPU layer cache advance: " + std::to_string(active.size()) +
                                " flags for a batch of " + std::to_string(impl_->sizes.size()));
  }
  for (std::size_t b = 0; b < active.size(); ++b) {
    if (active[b]) ++impl_->sizes[b];
  }
}

bool GpuLayerKvCache::step_encodes_evicted() const {
  return !fp16_ && window_ > 0;
}

void GpuLayerKvCache::encode_evicted_step(const int* positions, void* stream_ptr) {
  if (!positions)
    throw std::invalid_argument("GPU layer cache encode_evicted_step: null positions");
  if (!step_encodes_evicted()) return;
  const auto all = impl_->sides();
  quantize_ring_evicted_pair(*all[0].codec, all[0].ring, *all[0].side, *all[1].codec, all[1].ring,
                             *all[1].side, batch_, shape_.n_kv_heads, capacity_, positions, window_,
                             as_stream(stream_ptr));
}

void GpuLayerKvCache::write_step(const float* k, const float* v, const int* positions,
                                 void* stream_ptr) {
  if (!k || !v || !positions) {
    throw std::invalid_argument("GPU layer cache write_step: null key, value or positions");
  }
  cudaStream_t stream = as_stream(stream_ptr);
  const int d = shape_.head_dim, H = shape_.n_kv_heads, B = batch_;
  const dim3 grid(B, H, 2);
  if (fp16_) {
    const StepSides sides{{k, v},
                          {reinterpret_cast<__half*>(impl_->fp16_keys),
                           reinterpret_cast<__half*>(impl_->fp16_values)}};
    fp16_append_step_kernel<<<grid, d, 0, stream>>>(positions, sides, capacity_, H, d,
                                                    impl_->fp16_overflow);
    TQ_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const int W = window_;
  const auto all = impl_->sides();
  if (W == 0) {
    quantize_append_pair(*all[0].codec, k, *all[0].side, *all[1].codec, v, *all[1].side,
                         InputType::F32, B, 1, H, capacity_, positions, W, stream);
    return;
  }
  const StepSides sides{
      {k, v}, {reinterpret_cast<__half*>(all[0].ring), reinterpret_cast<__half*>(all[1].ring)}};
  ring_write_step_kernel<<<grid, d, 0, stream>>>(positions, sides, W, H, d, capacity_,
                                                   impl_->overflow());
  TQ_CUDA_CHECK(cudaGetLastError());
}

void GpuLayerKvCache::check_capacity(void* stream) const {
  cuda::check_capacity(impl_->overflow(), capacity_,
                       "GPU layer cache of layer " + std::to_string(shape_.layer), stream);
}

void GpuLayerKvCache::append_step(const float* k, const float* v, const int* positions,
                                  void* stream_ptr) {
  if (!k || !v || !positions) {
    throw std::invalid_argument("GPU layer cache append_step: null key, value or positions");
  }
  encode_evicted_step(positions, stream_ptr);
  write_step(k, v, positions, stream_ptr);
}

void GpuLayerKvCache::attend_step(const float* q, const int* positions, int max_tokens, float* out,
                                  AttentionWorkspace& workspace, LayerCacheScratch& scratch,
                                  void* stream_ptr) {
  if (!q || !out || !positions) {
    throw std::invalid_argument("GPU layer cache attend_step: null query, output or positions");
  }
  if (max_tokens < 0 || max_tokens > capacity_) {
    throw std::invalid_argument("GPU layer cache attend_step: max_tokens " +
                                std::to_string(max_tokens) + " outside [0, " +
                                std::to_string(capacity_) + "]");
  }
  cudaStream_t stream = as_stream(stream_ptr);
  const int B = batch_;
  int* lengths = scratch.ints(3 * B);
  step_lengths_kernel<<<(B + 127) / 128, 128, 0, stream>>>(positions, B, window_, fp16_, lengths);
  TQ_CUDA_CHECK(cudaGetLastError());
  AttentionArgs a;
  a.q = q;
  a.out = out;
  a.batch = B;
  a.q_heads = shape_.n_q_heads;
  a.n_queries = 1;
  a.lengths = lengths;
  if (fp16_) {
    a.max_length = max_tokens;
    GpuFp16Cache c{B,         shape_.n_kv_heads, shape_.head_dim,
                   capacity_, impl_->fp16_keys,  impl_->fp16_values};
    attention_fp16(c, a, workspace, stream);
    return;
  }
  a.max_length = std::max(0, max_tokens - window_);
  if (window_ > 0) {
    a.window_lengths = lengths + B;
    a.max_window = window_;
  }
  attention(*impl_->key_codec, *impl_->value_codec, impl_->storage->cache(), a, workspace, stream);
}

void GpuLayerKvCache::append(int seq, const float* k, const float* v, int n,
                             LayerCacheScratch& scratch, void* stream_ptr) {
  if (seq < 0 || seq >= batch_) {
    throw std::invalid_argument("GPU layer cache append: sequence " + std::to_string(seq) +
                                " out of range [0, " + std::to_string(batch_) + ")");
  }
  if (n <= 0) return;
  if (!k || !v) throw std::invalid_argument("GPU layer cache append: null key or value pointer");
  const std::size_t held = impl_->sizes[static_cast<std::size_t>(seq)];
  const std::size_t total = held + static_cast<std::size_t>(n);
  if (total > static_cast<std::size_t>(capacity_)) {
    throw std::invalid_argument("GPU layer cache append: " + std::to_string(n) +
                                " tokens at position " + std::to_string(held) +
                                " exceed the capacity of " + std::to_string(capacity_) + " tokens");
  }
  check_grid(n, "an append");
  cudaStream_t stream = as_stream(stream_ptr);
  const int d = shape_.head_dim, H = shape_.n_kv_heads;
  const long long slot0 = static_cast<long long>(seq) * H * capacity_;
  if (fp16_) {
    for (auto [x, dst] : {std::pair{k, impl_->fp16_keys}, std::pair{v, impl_->fp16_values}}) {
      fp16_append_kernel<<<dim3(n, H), d, 0, stream>>>(
          x, reinterpret_cast<__half*>(dst) + slot0 * d, capacity_, H, d,
          static_cast<long long>(held));
      TQ_CUDA_CHECK(cudaGetLastError());
    }
    impl_->sizes[static_cast<std::size_t>(seq)] = total;
    return;
  }
  const std::size_t W = static_cast<std::size_t>(window_);
  const std::size_t old_c = held > W ? held - W : 0;
  const std::size_t new_c = total > W ? total - W : 0;
  const int n_encode = static_cast<int>(new_c - old_c);
  int* start = scratch.ints(2);
  set_ints_kernel<<<1, 1, 0, stream>>>(start, static_cast<int>(old_c), 0);
  TQ_CUDA_CHECK(cudaGetLastError());
  for (int which = 0; which < 2; ++which) {
    const Impl::SideArrays s = impl_->sides()[which];
    const float* x = which == 0 ? k : v;
    const GpuCacheSide view = side_of(*s.side, s.codec->layout(), slot0);
    __half* ring =
        W ? reinterpret_cast<__half*>(s.ring) + static_cast<long long>(seq) * H * W * d : nullptr;
    if (n_encode > 0) {
      if (W == 0) {
        // Without a window a token is encoded from the float it was appended as.
        quantize_append(*s.codec, x, InputType::F32, 1, n_encode, H, view, capacity_, start,
                        stream);
      } else {
        // Leaving tokens are encoded from their fp16 values (ring or rounded input), before the
        // ring slots they free are overwritten.
        auto* staging =
            reinterpret_cast<__half*>(scratch.staging(static_cast<std::size_t>(n_encode) * H * d));
        stage_kernel<<<dim3(n_encode, H), d, 0, stream>>>(x, ring, static_cast<int>(W), H, d,
                                                          static_cast<long long>(old_c),
                                                          static_cast<long long>(held), staging);
        TQ_CUDA_CHECK(cudaGetLastError());
        quantize_append(*s.codec, staging, InputType::F16, 1, n_encode, H, view, capacity_, start,
                        stream);
      }
    }
    if (W > 0) {
      const std::size_t first = std::max(new_c, held);
      const int count = static_cast<int>(total - first);
      if (count > 0) {
        ring_write_kernel<<<dim3(count, H), d, 0, stream>>>(x, ring, static_cast<int>(W), H, d,
                                                            static_cast<long long>(first),
                                                            static_cast<long long>(held));
        TQ_CUDA_CHECK(cudaGetLastError());
      }
    }
  }
  impl_->sizes[static_cast<std::size_t>(seq)] = total;
}

void GpuLayerKvCache::attend(int seq, const float* q, int n, float* out,
                             AttentionWorkspace& workspace, LayerCacheScratch& scratch,
                             void* stream_ptr) {
  if (seq < 0 || seq >= batch_) {
    throw std::invalid_argument("GPU layer cache attend: sequence " + std::to_string(seq) +
                                " out of range [0, " + std::to_string(batch_) + ")");
  }
  const std::size_t total = size(seq);
  if (n <= 0 || static_cast<std::size_t>(n) > total) {
    throw std::invalid_argument("GPU layer cache attend: " + std::to_string(n) +
                                " queries but the sequence holds " + std::to_string(total) +
                                " tokens (append the chunk first)");
  }
  cudaStream_t stream = as_stream(stream_ptr);
  const int d = shape_.head_dim, H = shape_.n_kv_heads;
  const long long slot0 = static_cast<long long>(seq) * H * capacity_;
  AttentionArgs a;
  a.q = q;
  a.out = out;
  a.batch = 1;
  a.q_heads = shape_.n_q_heads;
  a.n_queries = n;
  int* lengths = scratch.ints(2);
  if (fp16_) {
    set_ints_kernel<<<1, 1, 0, stream>>>(lengths, static_cast<int>(total), 0);
    TQ_CUDA_CHECK(cudaGetLastError());
    GpuFp16Cache c{
        1, H, d, capacity_, impl_->fp16_keys + slot0 * d, impl_->fp16_values + slot0 * d};
    a.lengths = lengths;
    a.max_length = static_cast<int>(total);
    attention_fp16(c, a, workspace, stream);
    return;
  }
  const std::size_t W = static_cast<std::size_t>(window_);
  const int compressed = static_cast<int>(compressed_size(seq));
  const int in_window = static_cast<int>(total) - compressed;
  const GpuKvCache& all = impl_->storage->cache();
  static const int sms = device_sm_count();
  const bool flash = n >= kPrefillMinQueries && prefill_flash_routes_enabled() &&
                     prefill_ctas(1, H, shape_.n_q_heads, n) >= sms;
  if (n == 1 || (in_window == 0 && !flash)) {
    // Decode (window folded into the fused kernel) or a short chunk with an empty window: the
    // kernels read the codes directly (a long chunk: decode-to-scratch + flash below).
    GpuKvCache view = all;
    view.batch = 1;
    view.key = side_of(all.key, impl_->key_codec->layout(), slot0);
    view.value = side_of(all.value, impl_->value_codec->layout(), slot0);
    if (W) {
      view.key_window += static_cast<long long>(seq) * H * W * d;
      view.value_window += static_cast<long long>(seq) * H * W * d;
    }
    set_ints_kernel<<<1, 1, 0, stream>>>(lengths, compressed, in_window);
    TQ_CUDA_CHECK(cudaGetLastError());
    a.lengths = lengths;
    a.max_length = compressed;
    if (in_window > 0) {
      a.window_lengths = lengths + 1;
      a.max_window = in_window;
    }
    attention(*impl_->key_codec, *impl_->value_codec, view, a, workspace, stream);
    return;
  }
  // A chunk with window tokens, or a long one: decode the compressed segment to fp16 beside the
  // window tokens in token order, then the fp16 kernel (query i sees tokens [0, total − n + i]).
  check_grid(total, "a decoded prefill copy");
  const std::size_t per_side = static_cast<std::size_t>(H) * total * d;
  std::uint16_t* decoded = scratch.decoded(2 * per_side);
  for (int which = 0; which < 2; ++which) {
    const Impl::SideArrays s = impl_->sides()[which];
    std::uint16_t* out = decoded + (which == 0 ? 0 : per_side);
    if (compressed > 0) {
      dequantize_to_half(*s.codec, side_of(*s.side, s.codec->layout(), slot0), 1, H, capacity_, 0,
                         compressed, out, static_cast<int>(total), stream);
    }
    if (in_window == 0) continue;
    ring_to_linear_kernel<<<dim3(in_window, H), d, 0, stream>>>(
        reinterpret_cast<const __half*>(s.ring) + static_cast<long long>(seq) * H * W * d,
        static_cast<int>(W), H, d, compressed, reinterpret_cast<__half*>(out),
        static_cast<int>(total));
    TQ_CUDA_CHECK(cudaGetLastError());
  }
  set_ints_kernel<<<1, 1, 0, stream>>>(lengths, static_cast<int>(total), 0);
  TQ_CUDA_CHECK(cudaGetLastError());
  GpuFp16Cache c{1, H, d, static_cast<int>(total), decoded, decoded + per_side};
  a.lengths = lengths;
  a.max_length = static_cast<int>(total);
  attention_fp16(c, a, workspace, stream);
}

std::size_t GpuLayerKvCache::bytes() const {
  const std::size_t H = static_cast<std::size_t>(shape_.n_kv_heads);
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  const std::size_t token_bytes = fp16_ ? 2 * 2 * d
                                        : impl_->key_codec->layout().bytes_per_token() +
                                              impl_->value_codec->layout().bytes_per_token();
  std::size_t total = 0;
  for (int s = 0; s < batch_; ++s) {
    const std::size_t c = fp16_ ? size(s) : compressed_size(s);
    total += H * (c * token_bytes + (size(s) - c) * 2 * 2 * d);
  }
  return total;
}

std::size_t GpuLayerKvCache::capacity_bytes() const {
  const std::size_t slots = static_cast<std::size_t>(batch_) * shape_.n_kv_heads * capacity_;
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  if (fp16_) return slots * d * 2 * 2;
  return impl_->storage->compressed_bytes() +
         static_cast<std::size_t>(batch_) * shape_.n_kv_heads * window_ * d * 2 * 2;
}

HostEncodedTokens GpuLayerKvCache::download(KvSide which, int seq, int kv_head) const {
  if (seq < 0 || seq >= batch_ || kv_head < 0 || kv_head >= shape_.n_kv_heads) {
    throw std::invalid_argument("GPU layer cache download: sequence " + std::to_string(seq) +
                                " / head " + std::to_string(kv_head) + " out of range");
  }
  const long long slot0 = (static_cast<long long>(seq) * shape_.n_kv_heads + kv_head) * capacity_;
  const std::size_t n = fp16_ ? size(seq) : compressed_size(seq);
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  HostEncodedTokens out;
  if (fp16_) {
    const std::uint16_t* src = which == KvSide::Key ? impl_->fp16_keys : impl_->fp16_values;
    download_into(out.norms, src + slot0 * static_cast<long long>(d), n * d);
    return out;
  }
  const DeviceCodec& codec = which == KvSide::Key ? *impl_->key_codec : *impl_->value_codec;
  const GpuCacheSide side =
      side_of(which == KvSide::Key ? impl_->storage->cache().key : impl_->storage->cache().value,
              codec.layout(), slot0);
  const CodeLayout& L = codec.layout();
  download_into(out.codes, side.codes, n * L.code_bytes);
  if (side.signs) download_into(out.signs, side.signs, n * L.sign_bytes);
  download_into(out.norms, side.norms, n);
  if (side.residual_norms) download_into(out.residual, side.residual_norms, n);
  return out;
}

std::vector<std::uint16_t> GpuLayerKvCache::download_window(KvSide which, int seq,
                                                            int kv_head) const {
  std::vector<std::uint16_t> out;
  if (fp16_ || window_ == 0) return out;
  const std::size_t W = static_cast<std::size_t>(window_);
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  std::vector<std::uint16_t> ring;
  const std::uint16_t* base = which == KvSide::Key ? impl_->storage->cache().key_window
                                                   : impl_->storage->cache().value_window;
  download_into(ring, base + (static_cast<long long>(seq) * shape_.n_kv_heads + kv_head) * W * d,
                W * d);
  const std::size_t first = compressed_size(seq), total = size(seq);
  out.reserve((total - first) * d);
  for (std::size_t t = first; t < total; ++t) {
    out.insert(out.end(), ring.begin() + static_cast<long long>((t % W) * d),
               ring.begin() + static_cast<long long>((t % W + 1) * d));
  }
  return out;
}

}  // namespace tq::cuda
