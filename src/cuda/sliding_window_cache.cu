// GpuSlidingWindowCache (turboquant/cuda/sliding_window_cache.hpp). A window is a few hundred
// tokens, so the attention is one block of 16 warps per (query row, query head) holding the row's
// scores in shared memory: the warps split the window's keys (a key's dot product spread over a
// warp's lanes, 16-byte loads of fp16), a block-wide max and sum, then the warps split the
// tokens again for the value sums and meet in shared memory. Decode has only batch × query-head
// blocks, so what bounds it is how many loads each warp keeps in flight (see the kernel).
#include "cuda/internal.cuh"
#include "turboquant/cuda/sliding_window_cache.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace tq::cuda {
namespace {

constexpr int kThreads = 512;        // attention block
constexpr int kAppendThreads = 128;  // ring append block (one row of head_dim values)
constexpr int kWarps = kThreads / 32;
constexpr std::size_t kMaxShared = 48 * 1024;

// Row r of k/v: sequence `seq` (or r when seq < 0) at position pos0 + r (or positions[r]).
__global__ void ring_append_kernel(const float* __restrict__ k, const float* __restrict__ v,
                                   std::uint16_t* __restrict__ keys,
                                   std::uint16_t* __restrict__ values, int kv_heads, int head_dim,
                                   int ring, int seq, long long pos0,
                                   const int* __restrict__ positions) {
  const int r = blockIdx.x, h = blockIdx.y;
  const long long pos = positions ? positions[r] : pos0 + r;
  if (pos < 0) return;
  const long long s = seq >= 0 ? seq : r;
  const long long src = (static_cast<long long>(r) * kv_heads + h) * head_dim;
  const long long dst = ((s * kv_heads + h) * ring + pos % ring) * head_dim;
  for (int j = threadIdx.x; j < head_dim; j += blockDim.x) {
    keys[dst + j] = __half_as_ushort(__float2half_rn(k[src + j]));
    values[dst + j] = __half_as_ushort(__float2half_rn(v[src + j]));
  }
}

__device__ float block_reduce(float x, bool take_max, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, x, off);
    x = take_max ? fmaxf(x, o) : x + o;
  }
  __syncthreads();  // scratch may still be read from a previous reduction
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = x;
  __syncthreads();
  float total = scratch[0];
  for (int w = 1; w < kWarps; ++w) total = take_max ? fmaxf(total, scratch[w]) : total + scratch[w];
  return total;
}

// 8 fp16 values (one 16-byte load) as floats.
__device__ __forceinline__ void widen8(const uint4& v, float (&f)[8]) {
  const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
    f[2 * i] = p.x, f[2 * i + 1] = p.y;
  }
}

// Tokens t0 + u · kWarps (u < kKeys) of one head's ring rows (chunks 16-byte pieces each, ring
// slot (first + t) mod ring): the lane's pieces lane + 32c, zeros past count or the row's end.
template <int kKeys, int kChunks>
__device__ __forceinline__ void load_window_rows(const uint4* __restrict__ base, int t0, int count,
                                                 long long first, int ring, int chunks, int lane,
                                                 uint4 (&out)[kKeys][kChunks]) {
#pragma unroll
  for (int u = 0; u < kKeys; ++u) {
    const int t = t0 + u * kWarps;
    const long long row = ((first + t) % ring) * chunks;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int idx = lane + 32 * c;
      out[u][c] = t < count && idx < chunks ? __ldg(base + row + idx) : make_uint4(0, 0, 0, 0);
    }
  }
}

// Block (r, qh): query row r of sequence `seq` (or r) at position pos0 + r (or positions[r]).
// A lane holds 8-value chunks lane, lane + 32, … of a row (kChunks of them: head_dim ≤ 256 ·
// kChunks). Scores: each warp takes every kWarps-th key, kKeys keys' loads in flight at once, a
// lane dotting its chunks and the warp summing. Values: each warp sums every kWarps-th token's
// value row over its chunks (again kKeys rows in flight), and the warps' partial rows meet in
// shared memory. A window of W tokens costs ~W / (kWarps · kKeys) dependent load rounds per
// pass instead of W.
template <int kChunks>
__global__ void __launch_bounds__(kThreads)
    window_attend_kernel(const float* __restrict__ q, const std::uint16_t* __restrict__ keys,
                         const std::uint16_t* __restrict__ values, float* __restrict__ out,
                         int q_heads, int kv_heads, int head_dim, int window, int ring, int seq,
                         long long pos0, const int* __restrict__ positions, float scale) {
  constexpr int kKeys = kChunks == 1 ? 8 : 4;  // 16-byte loads in flight per lane: 8
  extern __shared__ float shared[];
  float* scores = shared;            // [window]
  float* partial = shared + window;  // [kWarps][head_dim]
  __shared__ float red[kWarps];
  const int r = blockIdx.x, qh = blockIdx.y;
  const long long pos = positions ? positions[r] : pos0 + r;
  float* o = out + (static_cast<long long>(r) * q_heads + qh) * head_dim;
  if (pos < 0) {
    for (int j = threadIdx.x; j < head_dim; j += blockDim.x) o[j] = 0.0f;
    return;
  }
  const long long s = seq >= 0 ? seq : r;
  const int h = qh / (q_heads / kv_heads);
  const long long first = pos + 1 > window ? pos + 1 - window : 0;
  const int count = static_cast<int>(pos - first + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int chunks = head_dim / 8;
  const float* qr = q + (static_cast<long long>(r) * q_heads + qh) * head_dim;
  float qv[kChunks][8];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int idx = lane + 32 * c;
#pragma unroll
    for (int i = 0; i < 8; ++i) qv[c][i] = idx < chunks ? qr[8 * idx + i] : 0.0f;
  }
  const uint4* kbase = reinterpret_cast<const uint4*>(keys + (s * kv_heads + h) * ring * head_dim);
  const uint4* vbase =
      reinterpret_cast<const uint4*>(values + (s * kv_heads + h) * ring * head_dim);

  for (int t0 = warp; t0 < count; t0 += kKeys * kWarps) {  // warp-uniform bounds
    uint4 kv[kKeys][kChunks];
    load_window_rows<kKeys, kChunks>(kbase, t0, count, first, ring, chunks, lane, kv);
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      float dot = 0.0f;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        float kf[8];
        widen8(kv[u][c], kf);
#pragma unroll
        for (int i = 0; i < 8; ++i) dot = fmaf(qv[c][i], kf[i], dot);
      }
      for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
      const int t = t0 + u * kWarps;
      if (lane == 0 && t < count) scores[t] = dot * scale;
    }
  }
  __syncthreads();
  float m = -INFINITY;
  for (int t = threadIdx.x; t < count; t += blockDim.x) m = fmaxf(m, scores[t]);
  m = block_reduce(m, true, red);
  float sum = 0.0f;
  for (int t = threadIdx.x; t < count; t += blockDim.x) {
    const float e = expf(scores[t] - m);
    scores[t] = e;
    sum += e;
  }
  sum = block_reduce(sum, false, red);  // its barrier also publishes the exponentials

  float acc[kChunks][8] = {};
  for (int t0 = warp; t0 < count; t0 += kKeys * kWarps) {
    uint4 vv[kKeys][kChunks];
    load_window_rows<kKeys, kChunks>(vbase, t0, count, first, ring, chunks, lane, vv);
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int t = t0 + u * kWarps;
      const float p = t < count ? scores[t] : 0.0f;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        float vf[8];
        widen8(vv[u][c], vf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[c][i] = fmaf(p, vf[i], acc[c][i]);
      }
    }
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int idx = lane + 32 * c;
    if (idx < chunks) {
#pragma unroll
      for (int i = 0; i < 8; ++i) partial[warp * head_dim + 8 * idx + i] = acc[c][i];
    }
  }
  __syncthreads();
  const float inv = 1.0f / sum;
  for (int j = threadIdx.x; j < head_dim; j += blockDim.x) {
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) total += partial[w * head_dim + j];
    o[j] = total * inv;
  }
}

// Shared bytes of one attention block: the window's scores and the warps' partial value rows.
std::size_t attend_shared_bytes(int window, int head_dim) {
  return (static_cast<std::size_t>(window) + static_cast<std::size_t>(kWarps) * head_dim) *
         sizeof(float);
}

// Launches window_attend_kernel over `rows` query rows with the chunk count head_dim needs.
void launch_attend(int rows, const LayerKvShape& shape, int window, int ring, int seq,
                   long long pos0, const int* positions, const float* q, const std::uint16_t* keys,
                   const std::uint16_t* values, float* out, cudaStream_t stream) {
  const dim3 grid(rows, shape.n_q_heads);
  const std::size_t shared = attend_shared_bytes(window, shape.head_dim);
  const float scale = 1.0f / sqrtf(static_cast<float>(shape.head_dim));
  if (shape.head_dim <= 256) {
    window_attend_kernel<1><<<grid, kThreads, shared, stream>>>(
        q, keys, values, out, shape.n_q_heads, shape.n_kv_heads, shape.head_dim, window, ring, seq,
        pos0, positions, scale);
  } else {
    window_attend_kernel<2><<<grid, kThreads, shared, stream>>>(
        q, keys, values, out, shape.n_q_heads, shape.n_kv_heads, shape.head_dim, window, ring, seq,
        pos0, positions, scale);
  }
  TQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

GpuSlidingWindowCache::GpuSlidingWindowCache(const LayerKvShape& shape, int window, int max_append,
                                             int batch)
    : shape_(shape), window_(window), batch_(batch) {
  if (window <= 0 || max_append <= 0 || batch <= 0) {
    throw std::invalid_argument("GPU sliding-window cache: window " + std::to_string(window) +
                                ", max_append " + std::to_string(max_append) + " and batch " +
                                std::to_string(batch) + " must be positive");
  }
  if (shape.n_kv_heads <= 0 || shape.n_q_heads <= 0 || shape.n_q_heads % shape.n_kv_heads != 0 ||
      shape.head_dim <= 0 || shape.head_dim > 512 || shape.head_dim % 8 != 0) {
    throw std::invalid_argument("GPU sliding-window cache: bad shape (" +
                                std::to_string(shape.n_q_heads) + " query heads, " +
                                std::to_string(shape.n_kv_heads) + " KV heads, head dim " +
                                std::to_string(shape.head_dim) +
                                "; expected query heads a multiple of KV heads and a head dim "
                                "that is a multiple of 8 in 8..512)");
  }
  const std::size_t shared = attend_shared_bytes(window, shape.head_dim);
  if (shared > kMaxShared) {
    throw std::invalid_argument("GPU sliding-window cache: a window of " + std::to_string(window) +
                                " tokens needs " + std::to_string(shared) +
                                " bytes of shared memory per query; at most " +
                                std::to_string(kMaxShared) + " are used");
  }
  if (static_cast<long long>(window) + max_append > (1LL << 30)) {
    throw std::invalid_argument("GPU sliding-window cache: window + max_append = " +
                                std::to_string(static_cast<long long>(window) + max_append) +
                                " is more than 2^30 slots");
  }
  ring_ = window + max_append;
  held_.assign(static_cast<std::size_t>(batch), 0);
  const std::size_t n = static_cast<std::size_t>(batch) * shape.n_kv_heads * ring_ * shape.head_dim;
  try {
    TQ_CUDA_CHECK(cudaMalloc(&keys_, n * sizeof(std::uint16_t)));
    TQ_CUDA_CHECK(cudaMalloc(&values_, n * sizeof(std::uint16_t)));
    TQ_CUDA_CHECK(cudaMemset(keys_, 0, n * sizeof(std::uint16_t)));
    TQ_CUDA_CHECK(cudaMemset(values_, 0, n * sizeof(std::uint16_t)));
  } catch (...) {
    if (keys_) cudaFree(keys_);
    if (values_) cudaFree(values_);
    throw;
  }
}

GpuSlidingWindowCache::~GpuSlidingWindowCache() {
  if (keys_) cudaFree(keys_);
  if (values_) cudaFree(values_);
}

GpuSlidingWindowCache::GpuSlidingWindowCache(GpuSlidingWindowCache&& other) noexcept
    : shape_(other.shape_),
      window_(other.window_),
      ring_(other.ring_),
      batch_(other.batch_),
      keys_(other.keys_),
      values_(other.values_),
      held_(std::move(other.held_)) {
  other.keys_ = other.values_ = nullptr;
}

GpuSlidingWindowCache& GpuSlidingWindowCache::operator=(GpuSlidingWindowCache&& other) noexcept {
  std::swap(shape_, other.shape_);
  std::swap(window_, other.window_);
  std::swap(ring_, other.ring_);
  std::swap(batch_, other.batch_);
  std::swap(keys_, other.keys_);
  std::swap(values_, other.values_);
  std::swap(held_, other.held_);
  return *this;
}

void GpuSlidingWindowCache::check_seq(int seq, const char* what) const {
  if (seq < 0 || seq >= batch_) {
    throw std::invalid_argument(std::string("GPU sliding-window cache: ") + what + " sequence " +
                                std::to_string(seq) + " is not in [0, " + std::to_string(batch_) +
                                ")");
  }
}

std::size_t GpuSlidingWindowCache::size(int seq) const {
  check_seq(seq, "size of");
  return held_[static_cast<std::size_t>(seq)];
}

void GpuSlidingWindowCache::append(int seq, const float* k, const float* v, int n, void* stream) {
  check_seq(seq, "append to");
  if (n < 0 || n > ring_ - window_) {
    throw std::invalid_argument("GPU sliding-window cache: append of " + std::to_string(n) +
                                " tokens; expected 0.." + std::to_string(ring_ - window_) +
                                " (max_append)");
  }
  if (n == 0) return;
  const std::size_t pos0 = held_[static_cast<std::size_t>(seq)];
  ring_append_kernel<<<dim3(n, shape_.n_kv_heads), kAppendThreads, 0, as_stream(stream)>>>(
      k, v, keys_, values_, shape_.n_kv_heads, shape_.head_dim, ring_, seq,
      static_cast<long long>(pos0), nullptr);
  TQ_CUDA_CHECK(cudaGetLastError());
  held_[static_cast<std::size_t>(seq)] += static_cast<std::size_t>(n);
}

void GpuSlidingWindowCache::attend(int seq, const float* q, int n, float* out, void* stream) const {
  check_seq(seq, "attend over");
  const std::size_t held = held_[static_cast<std::size_t>(seq)];
  if (n < 0 || static_cast<std::size_t>(n) > held || n > ring_ - window_) {
    throw std::invalid_argument("GPU sliding-window cache: " + std::to_string(n) +
                                " queries; expected at most the " + std::to_string(held) +
                                " tokens held and the " + std::to_string(ring_ - window_) +
                                " of one append");
  }
  if (n == 0) return;
  launch_attend(n, shape_, window_, ring_, seq,
                static_cast<long long>(held - static_cast<std::size_t>(n)), nullptr, q, keys_,
                values_, out, as_stream(stream));
}

void GpuSlidingWindowCache::append_step(const float* k, const float* v, const int* positions,
                                        void* stream) {
  ring_append_kernel<<<dim3(batch_, shape_.n_kv_heads), kAppendThreads, 0, as_stream(stream)>>>(
      k, v, keys_, values_, shape_.n_kv_heads, shape_.head_dim, ring_, -1, 0, positions);
  TQ_CUDA_CHECK(cudaGetLastError());
}

void GpuSlidingWindowCache::attend_step(const float* q, const int* positions, float* out,
                                        void* stream) const {
  launch_attend(batch_, shape_, window_, ring_, -1, 0, positions, q, keys_, values_, out,
                as_stream(stream));
}

void GpuSlidingWindowCache::advance(const std::vector<bool>& active) {
  if (active.size() != held_.size()) {
    throw std::invalid_argument("GPU sliding-window cache: advance with " +
                                std::to_string(active.size()) + " flags for a batch of " +
                                std::to_string(batch_));
  }
  for (std::size_t b = 0; b < held_.size(); ++b) held_[b] += active[b] ? 1 : 0;
}

void GpuSlidingWindowCache::clear() {
  std::fill(held_.begin(), held_.end(), 0);
}

void GpuSlidingWindowCache::clear(int seq) {
  check_seq(seq, "clear");
  held_[static_cast<std::size_t>(seq)] = 0;
}

std::size_t GpuSlidingWindowCache::bytes() const {
  std::size_t total = 0;
  for (const std::size_t held : held_) {
    total += 2 * std::min<std::size_t>(held, static_cast<std::size_t>(window_)) *
             static_cast<std::size_t>(shape_.n_kv_heads) * shape_.head_dim * sizeof(std::uint16_t);
  }
  return total;
}

std::size_t GpuSlidingWindowCache::capacity_bytes() const {
  return 2 * static_cast<std::size_t>(batch_) * shape_.n_kv_heads * ring_ * shape_.head_dim *
         sizeof(std::uint16_t);
}

}  // namespace tq::cuda
