// Quantize-append kernel: one CTA of d threads per (token, KV head) rotates, normalises, buckets,
// packs and (prod) sketches the residual, writing the cache record of docs/LAYOUT.md.
// Bit-exactness with tq::Codec::encode: every rounding step of the CPU code is repeated in the
// same order, with explicitly rounded intrinsics wherever a product could be contracted into an
// FMA: the Hadamard butterflies (fwht.cuh: a+b, a−b, stage by stage, sums only), the Haar
// product in double (products of floats are exact in double, sums in the CPU's order), the
// squared norms summed left to right in double, and the QJL dot products summed left to right in
// float. Each packed 32-bit word of codes or signs is
// assembled and stored by one thread, so there are no races on shared words.
#include "fwht.cuh"
#include "internal.cuh"

#include <cuda_bf16.h>

namespace tq::cuda {
namespace {

constexpr int kMaxDim = 256;
constexpr int kMaxLevels = 256;  // 8-bit codes

struct QuantizeParams {
  int dim, count, kv_heads, capacity;
  const int* start;
  int step_window;  // >= 0: start holds the step's token positions (see quantize_append_pair)
  int ring_window;  // > 0: x is a ring [batch][kv_heads][ring_window][dim], token p at p mod W
  bool hadamard, prod, norm_correction;
  float hadamard_scale;
  const float* pi;     // Π row-major (haar)
  const float* signs;  // D (hadamard)
  const float* qjl;    // S row-major (prod)
  const float* cent_hi;
  const float* cent_lo;
  const float* thr_hi;
  const float* thr_lo;
  KernelCodeLayout layout;
  GpuCacheSide side;
};

__device__ inline float load_as_float(const float* p) {
  return *p;
}
__device__ inline float load_as_float(const __half* p) {
  return __half2float(*p);
}
__device__ inline float load_as_float(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

// Word `w` of a packed segment of `n` codes of `bits` bits (LSB-first stream).
__device__ inline unsigned pack_word(const unsigned char* idx, int n, int bits, int w) {
  unsigned word = 0;
  const int first_bit = w * 32;
  int j = first_bit / bits;
  for (; j < n; ++j) {
    const int bit = j * bits - first_bit;
    if (bit >= 32) break;
    const unsigned code = idx[j];
    word |= bit >= 0 ? code << bit : code >> (-bit);
  }
  return word;
}

// One (token t, KV head h, sequence b) of one side: the CTA's whole job.
template <typename T>
__device__ __forceinline__ void quantize_token(const T* __restrict__ x, const QuantizeParams& p,
                                               int t, int h, int b) {
  __shared__ float y[kMaxDim];
  __shared__ float recon[kMaxDim];
  __shared__ float residual[kMaxDim];
  __shared__ unsigned char idx[kMaxDim];
  __shared__ float s_norm, s_inv, s_stored, s_decoded;
  const int d = p.dim;
  const int j = threadIdx.x;
  int start = p.start[b];
  if (p.step_window >= 0) {  // the slot this decode step encodes (-1: none)
    const int W = p.step_window;
    start = start < 0 ? -1 : W == 0 ? start : (start >= W ? start - W : -1);
  }
  const int pos = start + t;
  if (pos < 0) return;  // whole CTA leaves together
  if (pos >= p.capacity) {  // dropped: tell the host through the side's overflow word
    if (j == 0 && p.side.overflow) atomicMax(p.side.overflow, pos + 1);
    return;
  }
  // The codebook's thresholds and centroids into shared memory first (their loads overlap the
  // row's; the barriers below publish them), so that the binary search waits on shared memory.
  __shared__ float thr[2][kMaxLevels], cent[2][kMaxLevels];
  if (p.layout.code_bytes > 0) {
    for (int e = j; e < 2 * kMaxLevels; e += d) {
      const int side = e / kMaxLevels, i = e % kMaxLevels;
      const bool present = side ? p.layout.hi_count > 0 : p.layout.hi_count < d;
      const int levels = 1 << (side ? p.layout.hi_bits : p.layout.lo_bits);
      if (present && i < levels) {
        cent[side][i] = side ? p.cent_hi[i] : p.cent_lo[i];
        if (i + 1 < levels) thr[side][i] = side ? p.thr_hi[i] : p.thr_lo[i];
      }
    }
  }
  const T* src = p.ring_window > 0
                     ? x + ((static_cast<long long>(b) * p.kv_heads + h) * p.ring_window +
                            pos % p.ring_window) *
                               d
                     : x + ((static_cast<long long>(b) * p.count + t) * p.kv_heads + h) * d;
  const float xj = load_as_float(src + j);

  // y = Π x
  if (p.hadamard) {
    y[j] = __fmul_rn(xj, p.signs[j]);
    __syncthreads();
    detail::fwht_row(y, d);
    y[j] = __fmul_rn(y[j], p.hadamard_scale);
  } else {
    residual[j] = xj;  // staging for the matrix product
    __syncthreads();
    double acc = 0.0;
    const float* row = p.pi + static_cast<long long>(j) * d;
    for (int r = 0; r < d; ++r) acc = __dadd_rn(acc, __dmul_rn(row[r], residual[r]));
    y[j] = static_cast<float>(acc);
  }
  __syncthreads();
  if (j == 0) {
    double sq = 0.0;
    for (int i = 0; i < d; ++i) sq = __dadd_rn(sq, __dmul_rn(y[i], y[i]));
    const float norm = static_cast<float>(__dsqrt_rn(sq));
    s_norm = norm;
    s_inv = norm > 0.0f ? __fdiv_rn(1.0f, norm) : 0.0f;
  }
  __syncthreads();
  const float yj = __fmul_rn(y[j], s_inv);
  y[j] = yj;

  const bool hi = j < p.layout.hi_count;
  float rj = 0.0f;
  if (p.layout.code_bytes > 0) {
    const int bits = hi ? p.layout.hi_bits : p.layout.lo_bits;
    const float* th = thr[hi ? 1 : 0];
    const int levels = (1 << bits) - 1;
    int lo = 0, up = levels;  // number of thresholds < y (binary search as on the CPU)
    while (lo < up) {
      const int mid = (lo + up) >> 1;
      if (th[mid] < yj)
        lo = mid + 1;
      else
        up = mid;
    }
    idx[j] = static_cast<unsigned char>(lo);
    rj = cent[hi ? 1 : 0][lo];
  }
  recon[j] = rj;
  __syncthreads();
  if (j == 0) {
    float stored = s_norm;
    if (p.layout.code_bytes > 0 && p.norm_correction) {
      double c = 0.0;
      for (int i = 0; i < d; ++i) c = __dadd_rn(c, __dmul_rn(recon[i], recon[i]));
      if (c > 0.0)
        stored = static_cast<float>(__ddiv_rn(static_cast<double>(s_norm), __dsqrt_rn(c)));
    }
    const __half nh = __float2half_rn(stored);
    s_stored = stored;
    s_decoded = __half2float(nh);
    const long long slot = (static_cast<long long>(b) * p.kv_heads + h) * p.capacity + pos;
    p.side.norms[slot] = __half_as_ushort(nh);
  }
  const long long slot = (static_cast<long long>(b) * p.kv_heads + h) * p.capacity + pos;
  // Pack: one thread per output word.
  if (p.layout.code_bytes > 0) {
    unsigned* out = reinterpret_cast<unsigned*>(p.side.codes + slot * p.layout.code_bytes);
    const int hi_words = p.layout.hi_bytes / 4;
    const int words = p.layout.code_bytes / 4;
    for (int w = j; w < words; w += blockDim.x) {
      out[w] = w < hi_words ? pack_word(idx, p.layout.hi_count, p.layout.hi_bits, w)
                            : pack_word(idx + p.layout.hi_count, d - p.layout.hi_count,
                                        p.layout.lo_bits, w - hi_words);
    }
  }
  if (!p.prod) return;
  __syncthreads();
  residual[j] = __fsub_rn(__fmul_rn(s_norm, yj), __fmul_rn(s_decoded, recon[j]));
  __syncthreads();
  if (j == 0) {
    double g = 0.0;
    for (int i = 0; i < d; ++i) g = __dadd_rn(g, __dmul_rn(residual[i], residual[i]));
    p.side.residual_norms[slot] =
        __half_as_ushort(__float2half_rn(static_cast<float>(__dsqrt_rn(g))));
  }
  float acc = 0.0f;
  const float* row = p.qjl + static_cast<long long>(j) * d;
  for (int i = 0; i < d; ++i) acc = __fadd_rn(acc, __fmul_rn(row[i], residual[i]));
  // Signs: bit j of the token's sign stream; gather 32 of them per word with a ballot.
  const unsigned ballot = __ballot_sync(0xffffffffu, acc >= 0.0f);
  if ((j & 31) == 0) {
    unsigned* out = reinterpret_cast<unsigned*>(p.side.signs + slot * p.layout.sign_bytes);
    out[j >> 5] = ballot;
  }
}

// blockIdx.z = side · batch + b: with two sides (keys and values of one decode step) one launch
// encodes both, since at decode a launch costs more than its work. Each side is its own inlined
// copy, so that its parameters stay in the parameter space.
template <typename T>
__global__ void quantize_kernel(const T* __restrict__ x0, const T* __restrict__ x1,
                                const QuantizeParams p0, const QuantizeParams p1, int batch) {
  const int z = blockIdx.z;
  if (z < batch) {
    quantize_token(x0, p0, blockIdx.x, blockIdx.y, z);
  } else {
    quantize_token(x1, p1, blockIdx.x, blockIdx.y, z - batch);
  }
}

QuantizeParams make_params(const DeviceCodec& codec, const void* x, int batch, int count,
                           int kv_heads, const GpuCacheSide& side, int capacity,
                           const int* start_positions) {
  const auto& d = codec.impl();
  const CodeLayout& L = codec.layout();
  if (d.dim > kMaxDim || d.dim % 32 != 0) {
    throw std::invalid_argument("quantize_append: head dim " + std::to_string(d.dim) +
                                " unsupported; expected a multiple of 32 up to 256");
  }
  if (batch <= 0 || count < 0 || kv_heads <= 0) {
    throw std::invalid_argument("quantize_append: batch " + std::to_string(batch) + ", count " +
                                std::to_string(count) + ", kv_heads " + std::to_string(kv_heads) +
                                " invalid");
  }
  if (count > 0 && (!x || !start_positions || !side.norms || (L.code_bytes && !side.codes) ||
                    (d.prod && (!side.signs || !side.residual_norms)))) {
    throw std::invalid_argument("quantize_append: a required device pointer is null");
  }
  if (count > 65535 * 1024) throw std::invalid_argument("quantize_append: count too large");
  QuantizeParams p{};
  p.dim = d.dim;
  p.count = count;
  p.kv_heads = kv_heads;
  p.capacity = capacity;
  p.start = start_positions;
  p.step_window = -1;
  p.ring_window = 0;
  p.hadamard = d.hadamard;
  p.prod = d.prod;
  p.norm_correction = codec.spec().norm_correction;
  p.hadamard_scale = 1.0f / std::sqrt(static_cast<float>(d.dim));
  p.pi = d.pi;
  p.signs = d.signs;
  p.qjl = d.qjl;
  p.cent_hi = d.cent_hi;
  p.cent_lo = d.cent_lo;
  p.thr_hi = d.thr_hi;
  p.thr_lo = d.thr_lo;
  p.layout = kernel_layout(L);
  p.side = side;
  return p;
}

// Launches quantize_kernel over `sides` (1 or 2) sides of the same shape.
void launch_quantize(const void* x0, const void* x1, const QuantizeParams& p0,
                     const QuantizeParams& p1, InputType type, int batch, int sides, void* stream) {
  if (p0.count == 0) return;
  if (static_cast<long long>(batch) * sides > 65535 || p0.kv_heads > 65535) {
    throw std::invalid_argument("quantize_append: grid too large");
  }
  const dim3 grid(p0.count, p0.kv_heads, batch * sides);
  cudaStream_t s = as_stream(stream);
  switch (type) {
    case InputType::F32:
      quantize_kernel<<<grid, p0.dim, 0, s>>>(static_cast<const float*>(x0),
                                              static_cast<const float*>(x1), p0, p1, batch);
      break;
    case InputType::F16:
      quantize_kernel<<<grid, p0.dim, 0, s>>>(static_cast<const __half*>(x0),
                                              static_cast<const __half*>(x1), p0, p1, batch);
      break;
    case InputType::BF16:
      quantize_kernel<<<grid, p0.dim, 0, s>>>(static_cast<const __nv_bfloat16*>(x0),
                                              static_cast<const __nv_bfloat16*>(x1), p0, p1, batch);
      break;
  }
  TQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void quantize_append_pair(const DeviceCodec& key_codec, const void* keys,
                          const GpuCacheSide& key_side, const DeviceCodec& value_codec,
                          const void* values, const GpuCacheSide& value_side, InputType type,
                          int batch, int count, int kv_heads, int capacity,
                          const int* start_positions, int step_window, void* stream) {
  if (step_window >= 0 && count != 1) {
    throw std::invalid_argument("quantize_append_pair: a step window needs count 1, got " +
                                std::to_string(count));
  }
  if (key_codec.impl().dim != value_codec.impl().dim) {
    throw std::invalid_argument("quantize_append_pair: key dim " +
                                std::to_string(key_codec.impl().dim) + " != value dim " +
                                std::to_string(value_codec.impl().dim));
  }
  QuantizeParams pk =
      make_params(key_codec, keys, batch, count, kv_heads, key_side, capacity, start_positions);
  QuantizeParams pv = make_params(value_codec, values, batch, count, kv_heads, value_side, capacity,
                                  start_positions);
  pk.step_window = pv.step_window = step_window;
  launch_quantize(keys, values, pk, pv, type, batch, 2, stream);
}

void quantize_ring_evicted_pair(const DeviceCodec& key_codec, const std::uint16_t* key_ring,
                                const GpuCacheSide& key_side, const DeviceCodec& value_codec,
                                const std::uint16_t* value_ring, const GpuCacheSide& value_side,
                                int batch, int kv_heads, int capacity, const int* positions,
                                int window, void* stream) {
  if (window <= 0) {
    throw std::invalid_argument("quantize_ring_evicted_pair: window " + std::to_string(window) +
                                " must be positive");
  }
  if (key_codec.impl().dim != value_codec.impl().dim) {
    throw std::invalid_argument("quantize_ring_evicted_pair: key dim " +
                                std::to_string(key_codec.impl().dim) + " != value dim " +
                                std::to_string(value_codec.impl().dim));
  }
  QuantizeParams pk =
      make_params(key_codec, key_ring, batch, 1, kv_heads, key_side, capacity, positions);
  QuantizeParams pv =
      make_params(value_codec, value_ring, batch, 1, kv_heads, value_side, capacity, positions);
  pk.step_window = pv.step_window = window;
  pk.ring_window = pv.ring_window = window;
  launch_quantize(key_ring, value_ring, pk, pv, InputType::F16, batch, 2, stream);
}

void check_capacity(int* overflow, int capacity, const std::string& who, void* stream) {
  if (!overflow) return;
  cudaStream_t s = as_stream(stream);
  int reached = 0;
  TQ_CUDA_CHECK(cudaMemcpyAsync(&reached, overflow, sizeof(int), cudaMemcpyDeviceToHost, s));
  TQ_CUDA_CHECK(cudaStreamSynchronize(s));
  if (reached == 0) return;
  TQ_CUDA_CHECK(cudaMemsetAsync(overflow, 0, sizeof(int), s));
  TQ_CUDA_CHECK(cudaStreamSynchronize(s));
  throw std::out_of_range(who + ": tokens up to position " + std::to_string(reached - 1) +
                          " were dropped; the cache holds " + std::to_string(capacity) +
                          " tokens per sequence (positions 0.." + std::to_string(capacity - 1) +
                          ")");
}

void quantize_append(const DeviceCodec& codec, const void* x, InputType type, int batch, int count,
                     int kv_heads, const GpuCacheSide& side, int capacity,
                     const int* start_positions, void* stream) {
  const QuantizeParams p =
      make_params(codec, x, batch, count, kv_heads, side, capacity, start_positions);
  launch_quantize(x, x, p, p, type, batch, 1, stream);
}

}  // namespace tq::cuda
