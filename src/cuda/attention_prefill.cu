// FlashAttention-2-style prefill attention over a plain fp16 cache on tensor cores: one CTA
// takes 64 rows (query, head of the GQA group) of one KV head, so the whole group shares each
// K/V tile; 4 warps of 16 rows; K/V tiles double-buffered by cp.async; S = Q·Kᵀ and O += P·V
// by mma.sync m16n8k16 (fp16 in, fp32 accumulate), V fragments by a transposing ldmatrix; the
// online softmax stays in registers (base 2, the scale and log2 e folded into the fp16 query).
// Causal as AttentionArgs defines multi-query: query i of sequence b sees the first
// lengths[b] − (n − 1 − i) cached tokens.
#include "internal.cuh"
#include "ptx.cuh"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tq::cuda {
namespace {

constexpr int kRows = 64;  // rows per CTA (4 warps × 16)
constexpr int kThreads = 128;

template <int D>
constexpr int key_tile() {
  return D == 256 ? 32 : 64;
}
template <int D>
constexpr int row_stride() {  // halves per shared row: +8 keeps ldmatrix / fragment loads
  return D + 8;               // conflict-free and rows 16-byte aligned
}
template <int D>
constexpr std::size_t prefill_smem_bytes() {
  return (static_cast<std::size_t>(kRows) + 4 * key_tile<D>()) * row_stride<D>() * 2;
}

struct PrefillParams {
  const float* q;
  float* out;
  const __half* k;
  const __half* v;
  const int* lengths;
  int kv_heads, q_heads, group, n_queries, capacity;
  float scale_log2;
};

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ uint32_t lds32(const __half* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Four 8×8 fp16 matrices from shared memory, plain and transposed (lane l gives row l % 8 of
// matrix l / 8). Local to this kernel; ptx.cuh has the x2 transposed form only.
__device__ __forceinline__ void ldmatrix_x4(uint32_t saddr, uint32_t& r0, uint32_t& r1,
                                            uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(saddr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t saddr, uint32_t& r0, uint32_t& r1,
                                                  uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(saddr));
}

// X4: K and V fragments by ldmatrix.x4 (two k-steps / n-tiles per instruction, version 2);
// otherwise K by 32-bit shared loads and V by ldmatrix.x2.trans (version 1).
template <int D, bool X4>
__global__ void __launch_bounds__(kThreads) prefill_kernel(PrefillParams p) {
  constexpr int BN = key_tile<D>();
  constexpr int S = row_stride<D>();
  constexpr int KT = D / 16;  // k-steps of Q·Kᵀ
  constexpr int DN = D / 8;   // n-tiles of O
  constexpr int NT = BN / 8;  // n-tiles of S
  constexpr bool kQInRegs = D <= 128;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* sQ = reinterpret_cast<__half*>(smem_raw);
  __half* sKV = sQ + kRows * S;  // [buf][K|V][BN][S]

  const int b = blockIdx.z, h = blockIdx.y;
  const int tile = gridDim.x - 1 - blockIdx.x;  // the later (longer) rows start first
  const int r0 = tile * kRows;
  const int total_rows = p.n_queries * p.group;
  const int len = p.lengths[b];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;

  // Prologue: the CTA's queries, scaled, to fp16 in shared memory (rows past the chunk: 0).
  for (int e = tid; e < kRows * (D / 4); e += kThreads) {
    const int r = e / (D / 4), c = (e % (D / 4)) * 4;
    const int row = r0 + r;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (row < total_rows) {
      const int i = row / p.group, qh = h * p.group + row % p.group;
      const long long off = ((static_cast<long long>(b) * p.n_queries + i) * p.q_heads + qh) * D;
      x = *reinterpret_cast<const float4*>(p.q + off + c);
    }
    *reinterpret_cast<uint32_t*>(&sQ[r * S + c]) =
        pack_half2(x.x * p.scale_log2, x.y * p.scale_log2);
    *reinterpret_cast<uint32_t*>(&sQ[r * S + c + 2]) =
        pack_half2(x.z * p.scale_log2, x.w * p.scale_log2);
  }

  // Visible keys of this thread's two rows (g and g + 8 of the warp's 16).
  int lim[2];
  for (int hr = 0; hr < 2; ++hr) {
    const int row = r0 + warp * 16 + g + hr * 8;
    const int i = row < total_rows ? row / p.group : p.n_queries - 1;
    lim[hr] = len - (p.n_queries - 1 - i);
  }
  // Keys the CTA needs: up to the last row's limit; masking starts at the first row's.
  const int last_row = min(r0 + kRows, total_rows) - 1;
  const int kmax = max(0, min(len, len - (p.n_queries - 1 - last_row / p.group)));
  const int kmask = len - (p.n_queries - 1 - r0 / p.group);
  const int n_tiles = (kmax + BN - 1) / BN;

  const long long kv_base = (static_cast<long long>(b) * p.kv_heads + h) * p.capacity * D;
  const __half* gk = p.k + kv_base;
  const __half* gv = p.v + kv_base;
  const uint32_t s_kv = static_cast<uint32_t>(__cvta_generic_to_shared(sKV));

  auto load_tile = [&](int t, int buf) {
    constexpr int chunks = BN * D / 8;  // 16-byte pieces per side
    for (int e = tid; e < chunks; e += kThreads) {
      const int r = e / (D / 8), c = (e % (D / 8)) * 8;
      const int tok = min(t * BN + r, kmax - 1);  // past the end: a real token, masked later
      const uint32_t dk = s_kv + ((buf * 2 + 0) * BN * S + r * S + c) * 2;
      const uint32_t dv = s_kv + ((buf * 2 + 1) * BN * S + r * S + c) * 2;
      ptx::cp_async16(dk, gk + static_cast<long long>(tok) * D + c);
      ptx::cp_async16(dv, gv + static_cast<long long>(tok) * D + c);
    }
  };

  if (n_tiles > 0) load_tile(0, 0);
  ptx::cp_async_commit();
  __syncthreads();  // sQ written

  uint32_t qf[kQInRegs ? KT : 1][4];
  const __half* qrow = sQ + (warp * 16 + g) * S + tig * 2;
  if constexpr (kQInRegs) {
#pragma unroll
    for (int kk = 0; kk < KT; ++kk) {
      qf[kk][0] = lds32(qrow + kk * 16);
      qf[kk][1] = lds32(qrow + 8 * S + kk * 16);
      qf[kk][2] = lds32(qrow + kk * 16 + 8);
      qf[kk][3] = lds32(qrow + 8 * S + kk * 16 + 8);
    }
  }

  float o[DN][4];
#pragma unroll
  for (int n = 0; n < DN; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1;
    if (t + 1 < n_tiles) load_tile(t + 1, buf ^ 1);
    ptx::cp_async_commit();
    ptx::cp_async_wait<1>();
    __syncthreads();
    const __half* sK = sKV + (buf * 2 + 0) * BN * S;
    const __half* sV = sKV + (buf * 2 + 1) * BN * S;

    float s[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      if constexpr (X4) {
        const uint32_t krow = static_cast<uint32_t>(
            __cvta_generic_to_shared(sK + (j * 8 + (lane & 7)) * S + (lane >> 3) * 8));
#pragma unroll
        for (int kk = 0; kk < KT; kk += 2) {  // one ldmatrix.x4: K fragments of two k-steps
          uint32_t b[4];
          ldmatrix_x4(krow + kk * 32, b[0], b[1], b[2], b[3]);
#pragma unroll
          for (int u = 0; u < 2; ++u) {
            if constexpr (kQInRegs) {
              ptx::mma_m16n8k16(s[j], qf[kk + u][0], qf[kk + u][1], qf[kk + u][2], qf[kk + u][3],
                                b[2 * u], b[2 * u + 1]);
            } else {
              const __half* qk = qrow + (kk + u) * 16;
              ptx::mma_m16n8k16(s[j], lds32(qk), lds32(qk + 8 * S), lds32(qk + 8),
                                lds32(qk + 8 * S + 8), b[2 * u], b[2 * u + 1]);
            }
          }
        }
      } else {
        const __half* krow = sK + (j * 8 + g) * S + tig * 2;
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
          const uint32_t b0 = lds32(krow + kk * 16), b1 = lds32(krow + kk * 16 + 8);
          if constexpr (kQInRegs) {
            ptx::mma_m16n8k16(s[j], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
          } else {
            ptx::mma_m16n8k16(s[j], lds32(qrow + kk * 16), lds32(qrow + 8 * S + kk * 16),
                              lds32(qrow + kk * 16 + 8), lds32(qrow + 8 * S + kk * 16 + 8), b0, b1);
          }
        }
      }
    }
    if ((t + 1) * BN > kmask) {  // some key of this tile is past some row's limit
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int key = t * BN + j * 8 + tig * 2;
        if (key >= lim[0]) s[j][0] = -INFINITY;
        if (key + 1 >= lim[0]) s[j][1] = -INFINITY;
        if (key >= lim[1]) s[j][2] = -INFINITY;
        if (key + 1 >= lim[1]) s[j][3] = -INFINITY;
      }
    }
    // Online softmax of rows g (hr 0) and g + 8 (hr 1).
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float mx = m[hr];
#pragma unroll
      for (int j = 0; j < NT; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * hr], s[j][2 * hr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float ref = mx == -INFINITY ? 0.f : mx;  // nothing visible yet: weights stay 0
      const float alpha = ptx::ex2_approx_ftz(m[hr] - ref);
      m[hr] = mx;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        s[j][2 * hr] = ptx::ex2_approx_ftz(s[j][2 * hr] - ref);
        s[j][2 * hr + 1] = ptx::ex2_approx_ftz(s[j][2 * hr + 1] - ref);
        sum += s[j][2 * hr] + s[j][2 * hr + 1];
      }
      l[hr] = l[hr] * alpha + sum;
#pragma unroll
      for (int n = 0; n < DN; ++n) {
        o[n][2 * hr] *= alpha;
        o[n][2 * hr + 1] *= alpha;
      }
    }
    // O += P·V: P from the S accumulators (two n-tiles = one k-step of 16 keys).
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const uint32_t a0 = pack_half2(s[2 * kk][0], s[2 * kk][1]);
      const uint32_t a1 = pack_half2(s[2 * kk][2], s[2 * kk][3]);
      const uint32_t a2 = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      const uint32_t a3 = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      if constexpr (X4) {
        const uint32_t vrow = static_cast<uint32_t>(__cvta_generic_to_shared(
            sV + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * S + (lane >> 4) * 8));
#pragma unroll
        for (int n = 0; n < DN; n += 2) {  // one ldmatrix.x4.trans: V fragments of two n-tiles
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4_trans(vrow + n * 16, b0, b1, b2, b3);
          ptx::mma_m16n8k16(o[n], a0, a1, a2, a3, b0, b1);
          ptx::mma_m16n8k16(o[n + 1], a0, a1, a2, a3, b2, b3);
        }
      } else {
        const uint32_t vrow =
            static_cast<uint32_t>(__cvta_generic_to_shared(sV + (kk * 16 + (lane & 15)) * S));
#pragma unroll
        for (int n = 0; n < DN; ++n) {
          uint32_t b0, b1;
          ptx::ldmatrix_x2_trans(vrow + n * 16, b0, b1);
          ptx::mma_m16n8k16(o[n], a0, a1, a2, a3, b0, b1);
        }
      }
    }
    __syncthreads();  // the buffer is refilled by the next iteration's copies
  }
  ptx::cp_async_wait<0>();

  // Epilogue: full row sums over the quad, O / l to fp32 out (rows with nothing visible: 0).
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float sum = l[hr];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = r0 + warp * 16 + g + hr * 8;
    if (row >= total_rows) continue;
    const int i = row / p.group, qh = h * p.group + row % p.group;
    float* dst =
        p.out + ((static_cast<long long>(b) * p.n_queries + i) * p.q_heads + qh) * D + tig * 2;
#pragma unroll
    for (int n = 0; n < DN; ++n) {
      *reinterpret_cast<float2*>(dst + n * 8) =
          make_float2(o[n][2 * hr] * inv, o[n][2 * hr + 1] * inv);
    }
  }
}

template <int D, bool X4>
void launch(const PrefillParams& p, int batch, cudaStream_t stream) {
  const std::size_t smem = prefill_smem_bytes<D>();
  static bool attr_set = false;  // once per process and instantiation
  if (!attr_set) {
    TQ_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<D, X4>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
    attr_set = true;
  }
  const int row_tiles = (p.n_queries * p.group + kRows - 1) / kRows;
  const dim3 grid(row_tiles, p.kv_heads, batch);
  prefill_kernel<D, X4><<<grid, kThreads, smem, stream>>>(p);
  TQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

int prefill_ctas(int batch, int kv_heads, int q_heads, int n_queries) {
  const int group = q_heads / kv_heads;
  return batch * kv_heads * ((n_queries * group + kRows - 1) / kRows);
}

void attention_prefill_fp16(const GpuFp16Cache& cache, const AttentionArgs& a, void* stream,
                            int version) {
  if (version < 0 || version > 2) {
    throw std::invalid_argument("attention_prefill_fp16: version " + std::to_string(version) +
                                " unknown; expected 0 (default), 1 or 2");
  }
  const bool x4 = version != 1;
  const int D = cache.head_dim;
  if (!a.q || !a.out || !a.lengths || !cache.keys || !cache.values) {
    throw std::invalid_argument(
        "attention_prefill_fp16: q, out, lengths, keys and values must be device pointers, got "
        "null");
  }
  if (a.batch <= 0 || a.q_heads <= 0 || a.n_queries <= 0 || cache.kv_heads <= 0 ||
      a.batch > cache.batch) {
    throw std::invalid_argument("attention_prefill_fp16: batch " + std::to_string(a.batch) +
                                " (cache " + std::to_string(cache.batch) + "), q_heads " +
                                std::to_string(a.q_heads) + ", n_queries " +
                                std::to_string(a.n_queries) + " must be positive and fit");
  }
  if (a.q_heads % cache.kv_heads != 0) {
    throw std::invalid_argument("attention_prefill_fp16: q_heads " + std::to_string(a.q_heads) +
                                " must be a multiple of kv_heads " +
                                std::to_string(cache.kv_heads));
  }
  if (a.window_lengths) {
    throw std::invalid_argument("attention_prefill_fp16: the fp16 cache has no separate window");
  }
  if (a.max_length > cache.capacity) {
    throw std::invalid_argument("attention_prefill_fp16: max_length " +
                                std::to_string(a.max_length) + " exceeds the cache capacity " +
                                std::to_string(cache.capacity));
  }
  PrefillParams p{};
  p.q = a.q;
  p.out = a.out;
  p.k = reinterpret_cast<const __half*>(cache.keys);
  p.v = reinterpret_cast<const __half*>(cache.values);
  p.lengths = a.lengths;
  p.kv_heads = cache.kv_heads;
  p.q_heads = a.q_heads;
  p.group = a.q_heads / cache.kv_heads;
  p.n_queries = a.n_queries;
  p.capacity = cache.capacity;
  const float scale = a.scale > 0.f ? a.scale : 1.0f / std::sqrt(static_cast<float>(D));
  p.scale_log2 = scale * 1.4426950408889634f;
  cudaStream_t s = as_stream(stream);
  switch (D) {
    case 64:
      x4 ? launch<64, true>(p, a.batch, s) : launch<64, false>(p, a.batch, s);
      break;
    case 128:
      x4 ? launch<128, true>(p, a.batch, s) : launch<128, false>(p, a.batch, s);
      break;
    case 256:
      x4 ? launch<256, true>(p, a.batch, s) : launch<256, false>(p, a.batch, s);
      break;
    default:
      throw std::invalid_argument("attention_prefill_fp16: head dim " + std::to_string(D) +
                                  " unsupported; expected 64, 128 or 256");
  }
}

bool prefill_flash_routes_enabled() {
  const char* v = std::getenv("TQ_CUDA_PREFILL");
  return v == nullptr || std::strcmp(v, "split") != 0;
}

}  // namespace tq::cuda
