// Dequantize kernel: decodes cache tokens of one side back to fp16 in the original domain
// (turboquant/cuda/dequantize.hpp). One CTA of kWarps warps per (sequence, KV head) and tile of
// tokens; each warp decodes kTokensPerWarp tokens, each lane owns d/32 contiguous coordinates, so
// a token's fp16 row leaves with one wide store per lane (the output write is most of the
// traffic) and the whole decode stays in registers. Per token, in Codec::decode's order:
//   rotated[j] = n · c[idx_j]                      (0 without an MSE part)
//   prod: rotated[j] += (±γ·√(π/2)/d) · S[i][j]     for i = 0 … d−1, each step rounded
//   out = Πᵀ rotated: hadamard, the FWHT (the CPU's butterflies in its order) then × D_j/√d;
//         haar, Σ_i Π[i][j] · rotated[i] in double, i ascending, rounded to float once
// Explicitly rounded intrinsics keep the compiler from contracting a product and a sum into an
// FMA, so the float result equals the CPU's (compiled without FMA) bit for bit before the final
// round to fp16; the only FMAs are exact rewrites (±1 · a + b, and float × float + double, whose
// product is exact in double). Several tokens per warp keep more loads in flight and let each
// row of Π or S that prod and haar load serve all of them.
#include "turboquant/cuda/dequantize.hpp"

#include "internal.cuh"
#include "turboquant/base/math.hpp"

#include <cmath>
#include <cstdint>
#include <string>

namespace tq::cuda {
namespace {

constexpr int kMaxDim = 256;
constexpr int kWarps = 8;          // warps per CTA
constexpr int kTokensPerWarp = 4;  // H200, mse d = 128: 1, 2, 4 tokens ran 1.05, 1.25, 1.39 TB/s

struct DequantizeParams {
  int capacity, first, count, out_capacity;
  float hadamard_scale, qjl_scale;
  bool out_aligned16;
  const float* pi;     // Π row-major (haar)
  const float* signs;  // D (hadamard)
  const float* qjl;    // S row-major (prod)
  const float* cent_hi;
  const float* cent_lo;
  KernelCodeLayout layout;
  GpuCacheSide side;
  std::uint16_t* out;
};

// Code j of a packed segment (LSB-first bit stream in 32-bit words, docs/LAYOUT.md), staged in
// shared memory: one funnel shift of words w and w + 1. Word w + 1 may lie past the segment (in
// the staging row's slack); its bits are then masked off.
__device__ __forceinline__ unsigned read_code(const unsigned* seg, int j, int bits) {
  const int bit = j * bits;
  const int w = bit >> 5;
  return __funnelshift_r(seg[w], seg[w + 1], bit & 31) & ((1u << bits) - 1u);
}

// E consecutive floats from global (p aligned to the widest access E allows: the matrices come
// from cudaMalloc and row offsets are multiples of E floats).
template <int E>
__device__ __forceinline__ void load_floats(const float* p, float (&r)[E]) {
  if constexpr (E % 4 == 0) {
#pragma unroll
    for (int e = 0; e < E; e += 4) {
      const float4 q = __ldg(reinterpret_cast<const float4*>(p + e));
      r[e] = q.x;
      r[e + 1] = q.y;
      r[e + 2] = q.z;
      r[e + 3] = q.w;
    }
  } else if constexpr (E % 2 == 0) {
#pragma unroll
    for (int e = 0; e < E; e += 2) {
      const float2 q = __ldg(reinterpret_cast<const float2*>(p + e));
      r[e] = q.x;
      r[e + 1] = q.y;
    }
  } else {
#pragma unroll
    for (int e = 0; e < E; ++e) r[e] = __ldg(p + e);
  }
}

// E consecutive floats to shared memory (vector stores where E allows: fewer bank conflicts).
template <int E>
__device__ __forceinline__ void store_shared(float* p, const float (&v)[E]) {
  if constexpr (E % 4 == 0) {
#pragma unroll
    for (int e = 0; e < E; e += 4)
      *reinterpret_cast<float4*>(p + e) = make_float4(v[e], v[e + 1], v[e + 2], v[e + 3]);
  } else {
#pragma unroll
    for (int e = 0; e < E; ++e) p[e] = v[e];
  }
}

// The fp16 bits (round to nearest even) of E consecutive output coordinates; wide stores when
// `aligned` (then the row start is 16-byte aligned: a row of d·2 bytes is a multiple of 64),
// 2-byte stores otherwise.
template <int E>
__device__ __forceinline__ void store_half_row(std::uint16_t* dst, const float (&v)[E],
                                               bool aligned) {
  if constexpr (E % 2 == 0) {
    if (aligned) {
      unsigned w[E / 2];
#pragma unroll
      for (int e = 0; e < E / 2; ++e) {
        const __half2 h = __floats2half2_rn(v[2 * e], v[2 * e + 1]);  // .x = low half
        w[e] = *reinterpret_cast<const unsigned*>(&h);
      }
      if constexpr (E % 8 == 0) {
#pragma unroll
        for (int e = 0; e < E / 2; e += 4)
          reinterpret_cast<uint4*>(dst)[e / 4] = make_uint4(w[e], w[e + 1], w[e + 2], w[e + 3]);
      } else if constexpr (E % 4 == 0) {
#pragma unroll
        for (int e = 0; e < E / 2; e += 2)
          reinterpret_cast<uint2*>(dst)[e / 2] = make_uint2(w[e], w[e + 1]);
      } else {
#pragma unroll
        for (int e = 0; e < E / 2; ++e) reinterpret_cast<unsigned*>(dst)[e] = w[e];
      }
      return;
    }
  }
#pragma unroll
  for (int e = 0; e < E; ++e) dst[e] = __half_as_ushort(__float2half_rn(v[e]));
}

// Unnormalised FWHT of one row of D = 32·E floats held by a warp, lane l holding coordinates
// [l·E, l·E + E). The butterflies are fast_walsh_hadamard's in its order (stride 1, 2, 4, …;
// a + b into the lower, a − b into the upper coordinate), so the result is bit-exact with the
// CPU and with fwht.cuh: strides below E pair a lane's own registers, the larger ones pair lane
// l with lane l ^ (stride / E). Across lanes the upper lane computes fma(−1, b, a) = a − b and
// the lower fma(1, a, b) = a + b: multiplying by ±1 is exact, so each rounds once as the plain
// sum does, in one instruction.
template <int E>
__device__ __forceinline__ void fwht_warp(float (&x)[E], int lane) {
#pragma unroll
  for (int h = 1; h < E; h <<= 1) {
#pragma unroll
    for (int i = 0; i < E; ++i) {
      if ((i & h) == 0) {
        const float u = x[i], v = x[i + h];
        x[i] = __fadd_rn(u, v);
        x[i + h] = __fsub_rn(u, v);
      }
    }
  }
#pragma unroll
  for (int m = 1; m < 32; m <<= 1) {
    const float sign = (lane & m) ? -1.0f : 1.0f;
#pragma unroll
    for (int i = 0; i < E; ++i) {
      const float other = __shfl_xor_sync(0xffffffffu, x[i], m);
      x[i] = __fmaf_rn(sign, x[i], other);
    }
  }
}

// One CTA row of kWarps warps per (sequence, KV head) = blockIdx.y; warp w decodes K
// consecutive tokens. E = d/32 coordinates per lane. Tokens past `count` are decoded from the
// first token of the row (so every lane runs the same shuffles) and not stored.
template <int E, bool kHadamard, bool kProd, int K>
__global__ void __launch_bounds__(kWarps * 32) dequantize_kernel(DequantizeParams p) {
  constexpr int D = E * 32;
  // Code words of a token: at most 8 bits per coordinate plus each segment's padding, plus one
  // word of slack for read_code's second word.
  constexpr int kMaxWords = 8 * E + 3;
  constexpr int kWordLoads = (kMaxWords + 31) / 32;
  __shared__ float s_cent_hi[256], s_cent_lo[256];
  __shared__ unsigned codes[K][kWarps][kMaxWords];
  __shared__ __align__(16) float rows[kHadamard ? 1 : K][kWarps][D];  // haar: Πᵀ's input
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const KernelCodeLayout& L = p.layout;
  const bool has_codes = L.code_bytes > 0;
  const int n_hi = has_codes && L.hi_count > 0 ? 1 << L.hi_bits : 0;
  const int n_lo = has_codes ? 1 << L.lo_bits : 0;
  for (int i = threadIdx.x; i < n_hi; i += blockDim.x) s_cent_hi[i] = p.cent_hi[i];
  for (int i = threadIdx.x; i < n_lo; i += blockDim.x) s_cent_lo[i] = p.cent_lo[i];
  __syncthreads();

  const int j0 = lane * E;  // first coordinate of this lane
  const long long bh = blockIdx.y;
  const int t0 = (blockIdx.x * kWarps + warp) * K;
  long long slot[K];
  bool valid[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    valid[k] = t0 + k < p.count;
    slot[k] = bh * p.capacity + p.first + (valid[k] ? t0 + k : 0);
  }

  // MSE part: n · c[idx]. The warp first loads the code records of its K tokens (coalesced
  // words, all loads in flight together), stages them in shared memory, then each lane reads
  // its coordinates' codes from there.
  const int code_words = L.code_bytes / 4;
  unsigned words[K][kWordLoads];
  float norm[K];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    norm[k] = __half2float(__ushort_as_half(p.side.norms[slot[k]]));
    const unsigned* rec = reinterpret_cast<const unsigned*>(p.side.codes) + slot[k] * code_words;
#pragma unroll
    for (int i = 0; i < kWordLoads; ++i) {
      const int w = i * 32 + lane;
      words[k][i] = w < code_words ? __ldg(rec + w) : 0u;
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k)
#pragma unroll
    for (int i = 0; i < kWordLoads; ++i) {
      const int w = i * 32 + lane;
      if (w < kMaxWords) codes[k][warp][w] = words[k][i];
    }
  __syncwarp();
  float v[K][E];
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const unsigned* hi = codes[k][warp];
    const unsigned* lo = hi + L.hi_bytes / 4;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int j = j0 + e;
      float r = 0.0f;
      if (has_codes) {
        const float c = j < L.hi_count ? s_cent_hi[read_code(hi, j, L.hi_bits)]
                                       : s_cent_lo[read_code(lo, j - L.hi_count, L.lo_bits)];
        r = __fmul_rn(norm[k], c);
      }
      v[k][e] = r;
    }
  }

  // prod: rotated += Sᵀ (±γ') with γ' = γ·√(π/2)/d, row i of S added for i ascending.
  if constexpr (kProd) {
    float gamma[K];
    unsigned sign_word[K];  // lane l < E holds sign word l of token k
#pragma unroll
    for (int k = 0; k < K; ++k) {
      gamma[k] =
          __fmul_rn(__half2float(__ushort_as_half(p.side.residual_norms[slot[k]])), p.qjl_scale);
      const unsigned* s = reinterpret_cast<const unsigned*>(p.side.signs + slot[k] * L.sign_bytes);
      sign_word[k] = lane < E ? __ldg(s + lane) : 0u;
    }
    for (int i0 = 0; i0 < D; i0 += 32) {
      unsigned word[K];
#pragma unroll
      for (int k = 0; k < K; ++k) word[k] = __shfl_sync(0xffffffffu, sign_word[k], i0 >> 5);
#pragma unroll 4
      for (int ii = 0; ii < 32; ++ii) {
        float srow[E];
        load_floats<E>(p.qjl + static_cast<long long>(i0 + ii) * D + j0, srow);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const float s = (word[k] >> ii) & 1u ? gamma[k] : -gamma[k];
#pragma unroll
          for (int e = 0; e < E; ++e) v[k][e] = __fadd_rn(v[k][e], __fmul_rn(s, srow[e]));
        }
      }
    }
  }

  if constexpr (kHadamard) {
    // Πᵀ = D·H/√d: the transform first, then × (1/√d · D_j) as apply_inverse does.
    float scale[E];
#pragma unroll
    for (int e = 0; e < E; ++e) scale[e] = __fmul_rn(p.hadamard_scale, __ldg(p.signs + j0 + e));
#pragma unroll
    for (int k = 0; k < K; ++k) {
      fwht_warp<E>(v[k], lane);
#pragma unroll
      for (int e = 0; e < E; ++e) v[k][e] = __fmul_rn(v[k][e], scale[e]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < K; ++k) store_shared<E>(&rows[k][warp][j0], v[k]);
    __syncwarp();
    // Πᵀ y: out[j] = Σ_i Π[i][j] · y[i] in double, i ascending as on the CPU. A float times a
    // float is exact in double, so one fused multiply-add rounds exactly as the CPU's multiply
    // (exact) then add (rounded) does.
    double acc[K][E];
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int e = 0; e < E; ++e) acc[k][e] = 0.0;
#pragma unroll 2
    for (int i = 0; i < D; ++i) {
      float prow[E];
      load_floats<E>(p.pi + static_cast<long long>(i) * D + j0, prow);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const double y = rows[k][warp][i];
#pragma unroll
        for (int e = 0; e < E; ++e)
          acc[k][e] = __fma_rn(static_cast<double>(prow[e]), y, acc[k][e]);
      }
    }
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int e = 0; e < E; ++e) v[k][e] = static_cast<float>(acc[k][e]);
  }

  std::uint16_t* out_row = p.out + (bh * p.out_capacity + t0) * D + j0;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (valid[k]) store_half_row<E>(out_row + static_cast<long long>(k) * D, v[k], p.out_aligned16);
  }
}

template <int E, bool kHadamard, bool kProd, int K>
void launch(const DequantizeParams& p, int rows, cudaStream_t stream) {
  constexpr int kPerCta = kWarps * K;
  const dim3 grid((p.count + kPerCta - 1) / kPerCta, rows);
  dequantize_kernel<E, kHadamard, kProd, K><<<grid, kWarps * 32, 0, stream>>>(p);
  TQ_CUDA_CHECK(cudaGetLastError());
}

template <int E>
void launch_for_dim(const DequantizeParams& p, int rows, bool hadamard, bool prod,
                    cudaStream_t stream) {
  constexpr int K = kTokensPerWarp;
  if (hadamard) {
    if constexpr ((E & (E - 1)) == 0) {
      if (prod)
        launch<E, true, true, K>(p, rows, stream);
      else
        launch<E, true, false, K>(p, rows, stream);
      return;
    }
    // Unreachable: tq::Rotation refuses a hadamard rotation of a non-power-of-two dimension.
    throw std::invalid_argument("dequantize_to_half: hadamard rotation needs a power-of-two d");
  }
  if (prod)
    launch<E, false, true, K>(p, rows, stream);
  else
    launch<E, false, false, K>(p, rows, stream);
}

bool aligned(const void* p, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

}  // namespace

void dequantize_to_half(const DeviceCodec& codec, const GpuCacheSide& side, int batch, int kv_heads,
                        int capacity, int first, int count, std::uint16_t* out, int out_capacity,
                        void* stream) {
  const auto& dc = codec.impl();
  const CodeLayout& L = codec.layout();
  const int d = dc.dim;
  if (d > kMaxDim || d % 32 != 0) {
    throw std::invalid_argument("dequantize_to_half: head dim " + std::to_string(d) +
                                " unsupported; expected a multiple of 32 up to 256");
  }
  if (batch <= 0 || kv_heads <= 0) {
    throw std::invalid_argument("dequantize_to_half: batch " + std::to_string(batch) +
                                " and kv_heads " + std::to_string(kv_heads) + " must be positive");
  }
  if (capacity < 0 || first < 0 || count < 0 || out_capacity < 0) {
    throw std::invalid_argument("dequantize_to_half: capacity " + std::to_string(capacity) +
                                ", first " + std::to_string(first) + ", count " +
                                std::to_string(count) + ", out_capacity " +
                                std::to_string(out_capacity) + " must not be negative");
  }
  if (static_cast<long long>(first) + count > capacity) {
    throw std::invalid_argument("dequantize_to_half: tokens [" + std::to_string(first) + ", " +
                                std::to_string(static_cast<long long>(first) + count) +
                                ") exceed the cache capacity " + std::to_string(capacity));
  }
  if (count > out_capacity) {
    throw std::invalid_argument("dequantize_to_half: count " + std::to_string(count) +
                                " exceeds out_capacity " + std::to_string(out_capacity));
  }
  if (count == 0) return;
  if (!out || !side.norms || (L.code_bytes && !side.codes) ||
      (dc.prod && (!side.signs || !side.residual_norms))) {
    throw std::invalid_argument(
        "dequantize_to_half: a required device pointer is null (out, norms, codes, or for prod "
        "signs and residual_norms)");
  }
  if (!aligned(out, 2) || !aligned(side.norms, 2) || (L.code_bytes && !aligned(side.codes, 4)) ||
      (dc.prod && (!aligned(side.signs, 4) || !aligned(side.residual_norms, 2)))) {
    throw std::invalid_argument(
        "dequantize_to_half: misaligned device pointer; codes and signs are read as 32-bit "
        "words (4-byte aligned), norms and out as fp16 (2-byte aligned)");
  }
  const long long rows = static_cast<long long>(batch) * kv_heads;
  if (rows > 65535) {
    throw std::invalid_argument("dequantize_to_half: batch · kv_heads = " + std::to_string(rows) +
                                " exceeds 65535 (one grid row per sequence and KV head)");
  }
  DequantizeParams p{};
  p.capacity = capacity;
  p.first = first;
  p.count = count;
  p.out_capacity = out_capacity;
  // The same float expressions as Rotation::apply_inverse and Codec::decode.
  p.hadamard_scale = 1.0f / std::sqrt(static_cast<float>(d));
  p.qjl_scale = static_cast<float>(kSqrtHalfPi / d);
  p.out_aligned16 = aligned(out, 16);
  p.pi = dc.pi;
  p.signs = dc.signs;
  p.qjl = dc.qjl;
  p.cent_hi = dc.cent_hi;
  p.cent_lo = dc.cent_lo;
  p.layout = kernel_layout(L);
  p.side = side;
  p.out = out;
  cudaStream_t s = as_stream(stream);
  switch (d / 32) {
    case 1:
      launch_for_dim<1>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    case 2:
      launch_for_dim<2>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    case 3:
      launch_for_dim<3>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    case 4:
      launch_for_dim<4>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    case 5:
      launch_for_dim<5>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    case 6:
      launch_for_dim<6>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    case 7:
      launch_for_dim<7>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
    default:
      launch_for_dim<8>(p, static_cast<int>(rows), dc.hadamard, dc.prod, s);
      break;
  }
}

}  // namespace tq::cuda
