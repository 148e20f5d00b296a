// Tensor-core split kernel of the decode / multi-query attention (one CTA = one split of the
// sequence of one (sequence, KV head, chunk of 8 rows); 16 warps (8 at d = 256) take 16-token
// tiles in turn, each through its own 4-stage cp.async ring). The same launch prepares the
// queries (Π q per CTA) and, without an exact window, merges the splits in the last CTA to
// finish (atomic arrival counter) and rotates back once.
//
// Why this shape (DESIGN.md §4: the fp32 table kernel was instruction-bound at 409 µs):
//  * Scores S = K·Qᵀ run on mma.m16n8k16 with tokens on M and the GQA rows on N. With 4-bit codes
//    one byte holds two adjacent coordinates, and a byte → half2 table turns it into exactly one
//    mma A register: one shared load per two coordinates, no per-code arithmetic. The rotated
//    coordinates may be summed in any order, so the k index of the mma is permuted such that each
//    thread's A operands come from one contiguous 16-byte load of its token row; the prepared
//    query is permuted the same way when its B fragment is built.
//  * Values O += P·V run as Oᵀ = Vᵀ·Pᵀ (dims on M, rows on N): the byte of two coordinates of one
//    token gives rows g and g+8 of the A tile, two tokens are paired with one byte_perm each.
//    P leaves the score accumulators through a 256-byte per-warp tile and ldmatrix.trans.
//  * The table is replicated per lane ([256][32] words, lane-indexed) so lookups never conflict.
//  * Key norms scale scores after the mma, value norms scale P before it; everything stays in
//    the rotated domain; the fused merge (or the merge kernel, with a window) rotates back once.
// The same kernel with kTq = false reads fp16 K/V (the baseline): the half2 words then come
// straight from the loads and the permutations are identical.
#include "attention_kernels.cuh"

#include <algorithm>
#include <cstdint>

namespace tq::cuda::detail {
namespace {

// One CTA per SM: 16 warps (8 for d = 256, whose accumulators need ~200 registers) share one
// byte → half2 table and one query preparation, and the split count per (sequence, KV head)
// drops to ~SMs / groups (16 at the Llama shape), which keeps the fused merge short.
template <int D>
constexpr int warps_of() {
  return D == 256 ? 8 : 16;
}

// In-place unnormalised Walsh–Hadamard transform of kRowsPerChunk rows of D floats in shared
// memory by all threads of the CTA (callers synchronise before the first stage).
template <int D, int T>
__device__ __forceinline__ void fwht_rows(float* y) {
#pragma unroll 1
  for (int h = 1; h < D; h <<= 1) {
    for (int i = threadIdx.x; i < kRowsPerChunk * D / 2; i += T) {
      const int c = i / (D / 2), pr = i % (D / 2);
      float* r = y + c * D + (pr / h) * 2 * h + (pr % h);
      const float a = r[0], b = r[h];
      r[0] = a + b;
      r[h] = a - b;
    }
    __syncthreads();
  }
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int N>
__device__ __forceinline__ void load_words(const void* ptr, uint32_t (&w)[N]) {
  if constexpr (N % 4 == 0) {
    const uint4* p = static_cast<const uint4*>(ptr);
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = __ldg(p + i);
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  } else if constexpr (N == 2) {
    const uint2 v = __ldg(static_cast<const uint2*>(ptr));
    w[0] = v.x;
    w[1] = v.y;
  } else {
    static_assert(N == 1, "unsupported load width");
    w[0] = __ldg(static_cast<const uint32_t*>(ptr));
  }
}

__device__ __forceinline__ void cp_async16(uint32_t saddr, const void* g) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(saddr), "l"(g));
}
__device__ __forceinline__ void cp_async4(uint32_t saddr, const void* g) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(saddr), "l"(g));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Words from shared memory (8- or 16-byte aligned runs).
template <int N>
__device__ __forceinline__ void lds_words(const unsigned char* ptr, uint32_t (&w)[N]) {
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(ptr)[i];
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  } else if constexpr (N == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(ptr);
    w[0] = v.x;
    w[1] = v.y;
  } else {
    static_assert(N == 1, "unsupported load width");
    w[0] = *reinterpret_cast<const uint32_t*>(ptr);
  }
}

// Per-warp cp.async ring of 4-bit code tiles: kStages tiles of 16 tokens, each stage holds the
// K rows, the V rows (D/2 bytes each) and 32 words of norms (the aligned 4-byte word holding
// each token's fp16 K norm, then V norm; the half is picked by the element's parity).
constexpr int kStages = 4;
template <int D>
constexpr int stage_bytes() {
  return 2 * 16 * (D / 2) + 32 * 4;
}

template <int D, bool kTq>
struct TileRegs {
  static constexpr int KW = kTq ? D / 32 : D / 8;   // words of one K row per thread
  static constexpr int VW = kTq ? D / 64 : D / 16;  // words of one V token per thread
  uint32_t ka[KW], kb[KW];
  uint32_t v[4][VW];
  float kna, knb, vna, vnb;
};

template <int D, bool kTq>
__global__ void __launch_bounds__(warps_of<D>() * 32, 1) tc_split_kernel(const SplitParams p) {
  constexpr int kWarps = warps_of<D>();
  constexpr int kThreads = kWarps * 32;
  constexpr int KSTEPS = D / 16;
  constexpr int MT = D / 16;
  using Regs = TileRegs<D, kTq>;
  // Region A: the lane-replicated table (tq), scratch of the dense-Π query preparation.
  // Region B: the per-warp cp.async rings (tq) during the loop; the per-warp states and the
  // merge's scratch after it.
  constexpr int kRegionA = kTq ? 256 * 32 : 0;
  constexpr int kRingWords = kTq ? kWarps * kStages * stage_bytes<D>() / 4 : 0;
  constexpr int kRedWords = kWarps * kRowsPerChunk * D;
  constexpr int kRegionB = kRingWords > kRedWords ? kRingWords : kRedWords;
  extern __shared__ uint4 smem_raw[];
  uint32_t* lut = reinterpret_cast<uint32_t*>(smem_raw);
  float* prep_scratch = reinterpret_cast<float*>(smem_raw);
  float* red_o = reinterpret_cast<float*>(smem_raw) + kRegionA;
  float* scratch = red_o;
  unsigned char* ring_all = reinterpret_cast<unsigned char*>(red_o);
  float* sq = red_o + kRegionB;  // [8][D] query rows, later z
  __half* sp_all = reinterpret_cast<__half*>(sq + kRowsPerChunk * D);
  float* red_ml = reinterpret_cast<float*>(sp_all + kWarps * 16 * 8);
  __shared__ int s_last;

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int b = blockIdx.z / p.row_chunks, chunk = blockIdx.z % p.row_chunks;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;

  const int len = p.lengths[b];
  const int start = split * p.tokens_per_split;
  const int split_end = min(start + p.tokens_per_split, len);
  const int ntiles = split_end > start ? (split_end - start + 15) / 16 : 0;
  const long long base = static_cast<long long>(b * p.kv_heads + kvh) * p.capacity;
  unsigned char* ring = ring_all + warp * (kStages * stage_bytes<D>());
  const uint32_t ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  // issue(tile, stage): one tile's codes and norms into the warp's ring (one commit group per
  // call, empty past the end, so that group k always belongs to the warp's k-th tile).
  auto issue = [&](int tile, int stage) {
    if constexpr (kTq) {
      if (tile < ntiles) {
        const int t0 = start + tile * 16, last = split_end - 1;
        const uint32_t sa = ring_addr + stage * stage_bytes<D>();
        constexpr int kChunks = D / 2;  // 16-byte chunks of 16 rows of D/2 bytes
        const unsigned char* kc = static_cast<const unsigned char*>(p.k_data);
        const unsigned char* vc = static_cast<const unsigned char*>(p.v_data);
#pragma unroll
        for (int c = lane; c < kChunks; c += 32) {
          const int row = c / (D / 32), col = c % (D / 32);
          const long long tok = base + min(t0 + row, last);
          cp_async16(sa + c * 16, kc + tok * (D / 2) + col * 16);
          cp_async16(sa + 16 * (D / 2) + c * 16, vc + tok * (D / 2) + col * 16);
        }
        const long long tok = base + min(t0 + (lane & 15), last);
        const __half* nrm = lane < 16 ? p.k_norms : p.v_norms;
        cp_async4(sa + 32 * (D / 2) + lane * 4, nrm + (tok & ~1LL));
      }
      cp_async_commit();
    }
  };
  if constexpr (kTq) {
    // Prefill the ring first: the first tiles' DRAM latency overlaps the setup below.
#pragma unroll
    for (int k = 0; k < kStages - 1; ++k) issue(warp + k * kWarps, k);
  }

  // Query preparation (formerly its own kernel): Π q · scale · log2 e for the chunk's 8 rows.
  {
    const int row0 = chunk * kRowsPerChunk;
    for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
      const int c = i / D, j = i % D, row = row0 + c;
      float v = 0.0f;
      if (row < p.rows) {
        const int qi = row / p.group, qh = kvh * p.group + row % p.group;
        v = p.q[((static_cast<long long>(b) * p.n_queries + qi) * p.q_heads + qh) * D + j] *
            p.scale_log2;
        if (p.rot_signs) v *= p.rot_signs[j] * rsqrtf(static_cast<float>(D));
      }
      sq[i] = v;
    }
    __syncthreads();
    if (p.rot_signs) {
      fwht_rows<D, kThreads>(sq);
    } else if (p.rot_pi_t) {
      for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
        const int c = i / D, j = i % D;
        float acc = 0.0f;
#pragma unroll 8
        for (int k = 0; k < D; ++k) acc += __ldg(p.rot_pi_t + k * D + j) * sq[c * D + k];
        prep_scratch[i] = acc;
      }
      __syncthreads();
      for (int i = tid; i < kRowsPerChunk * D; i += kThreads) sq[i] = prep_scratch[i];
      __syncthreads();
    }
  }
  if constexpr (kTq) {
    // The 256-entry byte → half2 table once, then replicated per lane ([256][32]).
    uint32_t* tab256 = reinterpret_cast<uint32_t*>(red_ml + kWarps * kRowsPerChunk * 2);
    for (int e = tid; e < 256; e += kThreads) {
      tab256[e] = pack_half2(__ldg(p.k_cent_lo + (e & 15)), __ldg(p.k_cent_lo + (e >> 4)));
    }
    __syncthreads();
#pragma unroll 4
    for (int i = tid; i < kRegionA; i += kThreads) lut[i] = tab256[i >> 5];
  }

  // Column limits: this thread's score columns are rows 2·tig and 2·tig+1 of the chunk.
  int col_end[2];
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    const int row = chunk * kRowsPerChunk + 2 * tig + c;
    int lim = 0;
    if (row < p.rows) lim = len - (p.n_queries - 1 - row / p.group);
    col_end[c] = min(split_end, lim);
  }
  // Query B fragments, permuted to match the A loads (pair index P = tig·D/8 + 2·kb + half).
  uint32_t qf[KSTEPS][2];
  {
    const float* q = sq + g * D;  // rows past p.rows are zero
#pragma unroll
    for (int kb = 0; kb < KSTEPS; ++kb) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int pair = tig * (D / 8) + 2 * kb + h;
        qf[kb][h] = pack_half2(q[2 * pair], q[2 * pair + 1]);
      }
    }
  }
  __syncthreads();

  const uint32_t* lut_lane = lut + lane;
  auto lookup = [&](uint32_t word, int byte) -> uint32_t {
    const uint32_t e = (word >> (8 * byte)) & 0xffu;
    return lut_lane[e * 32];
  };
  auto load_tile = [&](Regs& r, int tile) {
    const int t0 = start + tile * 16;
    const int last = split_end - 1;
    const int ta = min(t0 + g, last), tb = min(t0 + g + 8, last);
    if constexpr (kTq) {
      const unsigned char* kc = static_cast<const unsigned char*>(p.k_data);
      load_words(kc + (base + ta) * (D / 2) + tig * (D / 8), r.ka);
      load_words(kc + (base + tb) * (D / 2) + tig * (D / 8), r.kb);
      const unsigned char* vc = static_cast<const unsigned char*>(p.v_data);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int tv = min(t0 + 2 * tig + (i & 1) + (i >> 1) * 8, last);
        load_words(vc + (base + tv) * (D / 2) + g * (D / 16), r.v[i]);
      }
      r.kna = __half2float(p.k_norms[base + ta]);
      r.knb = __half2float(p.k_norms[base + tb]);
      r.vna = __half2float(p.v_norms[base + ta]);
      r.vnb = __half2float(p.v_norms[base + tb]);
    } else {
      const __half* kh = static_cast<const __half*>(p.k_data);
      load_words(kh + (base + ta) * D + tig * (D / 4), r.ka);
      load_words(kh + (base + tb) * D + tig * (D / 4), r.kb);
      const __half* vh = static_cast<const __half*>(p.v_data);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int tv = min(t0 + 2 * tig + (i & 1) + (i >> 1) * 8, last);
        load_words(vh + (base + tv) * D + g * (D / 8), r.v[i]);
      }
    }
  };

  float o[MT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;
  float m0 = kNegBig, m1 = kNegBig, l0 = 0.0f, l1 = 0.0f;
  __half* sp = sp_all + warp * 128;
  const uint32_t sp_addr = static_cast<uint32_t>(__cvta_generic_to_shared(sp + (lane & 15) * 8));

  // process(tile registers, tile index): scores, online softmax, P·V for one 16-token tile.
  auto process = [&](const Regs& cur, int tile) {
    const int t0 = start + tile * 16;
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int kb = 0; kb < KSTEPS; ++kb) {
      uint32_t a0, a1, a2, a3;
      if constexpr (kTq) {
        a0 = lookup(cur.ka[kb >> 1], (2 * kb) & 3);
        a1 = lookup(cur.kb[kb >> 1], (2 * kb) & 3);
        a2 = lookup(cur.ka[kb >> 1], (2 * kb + 1) & 3);
        a3 = lookup(cur.kb[kb >> 1], (2 * kb + 1) & 3);
      } else {
        a0 = cur.ka[2 * kb];
        a1 = cur.kb[2 * kb];
        a2 = cur.ka[2 * kb + 1];
        a3 = cur.kb[2 * kb + 1];
      }
      mma16816(s, a0, a1, a2, a3, qf[kb][0], qf[kb][1]);
    }
    if constexpr (kTq) {
      s[0] *= cur.kna;
      s[1] *= cur.kna;
      s[2] *= cur.knb;
      s[3] *= cur.knb;
    }
    const int ta = t0 + g, tb = t0 + g + 8;
    const float ninf = -__int_as_float(0x7f800000);
    s[0] = ta < col_end[0] ? s[0] : ninf;
    s[1] = ta < col_end[1] ? s[1] : ninf;
    s[2] = tb < col_end[0] ? s[2] : ninf;
    s[3] = tb < col_end[1] ? s[3] : ninf;
    float mx0 = fmaxf(s[0], s[2]), mx1 = fmaxf(s[1], s[3]);
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float al0 = fast_exp2(m0 - mn0), al1 = fast_exp2(m1 - mn1);
    m0 = mn0;
    m1 = mn1;
    float p0 = fast_exp2(s[0] - mn0), p1 = fast_exp2(s[1] - mn1);
    float p2 = fast_exp2(s[2] - mn0), p3 = fast_exp2(s[3] - mn1);
    l0 = l0 * al0 + p0 + p2;
    l1 = l1 * al1 + p1 + p3;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      o[mt][0] *= al0;
      o[mt][1] *= al1;
      o[mt][2] *= al0;
      o[mt][3] *= al1;
    }
    if constexpr (kTq) {
      p0 *= cur.vna;
      p1 *= cur.vna;
      p2 *= cur.vnb;
      p3 *= cur.vnb;
    }
    __syncwarp();
    reinterpret_cast<uint32_t*>(sp)[g * 4 + tig] = pack_half2(p0, p1);
    reinterpret_cast<uint32_t*>(sp)[(g + 8) * 4 + tig] = pack_half2(p2, p3);
    __syncwarp();
    uint32_t pb0, pb1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(pb0), "=r"(pb1)
                 : "r"(sp_addr));
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      uint32_t x[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (kTq) {
          x[i] = lookup(cur.v[i][mt >> 2], mt & 3);
        } else {
          x[i] = cur.v[i][mt];
        }
      }
      mma16816(o[mt], __byte_perm(x[0], x[1], 0x5410), __byte_perm(x[0], x[1], 0x7632),
               __byte_perm(x[2], x[3], 0x5410), __byte_perm(x[2], x[3], 0x7632), pb0, pb1);
    }
  };
  int tile = warp;
  if constexpr (kTq) {
    // kStages − 1 tiles per warp in flight through cp.async (no registers held for them);
    // the stage read now is refilled at the next iteration, after the closing __syncwarp.
    int it = 0;
    for (; tile < ntiles; tile += kWarps, ++it) {
      issue(tile + (kStages - 1) * kWarps, (it + kStages - 1) % kStages);
      cp_async_wait<kStages - 1>();
      __syncwarp();
      const unsigned char* st = ring + (it % kStages) * stage_bytes<D>();
      const int t0 = start + tile * 16, last = split_end - 1;
      Regs cur;
      lds_words(st + g * (D / 2) + tig * (D / 8), cur.ka);
      lds_words(st + (g + 8) * (D / 2) + tig * (D / 8), cur.kb);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = 2 * tig + (i & 1) + (i >> 1) * 8;
        lds_words(st + 16 * (D / 2) + r * (D / 2) + g * (D / 16), cur.v[i]);
      }
      const uint32_t* nw = reinterpret_cast<const uint32_t*>(st + 32 * (D / 2));
      auto norm_at = [&](int word, int r) {
        const int odd = static_cast<int>((base + min(t0 + r, last)) & 1);
        return __half2float(__ushort_as_half(static_cast<unsigned short>(nw[word] >> (16 * odd))));
      };
      cur.kna = norm_at(g, g);
      cur.knb = norm_at(g + 8, g + 8);
      cur.vna = norm_at(16 + g, g);
      cur.vnb = norm_at(24 + g, g + 8);
      process(cur, tile);
      __syncwarp();
    }
    cp_async_wait<0>();
  } else {
    Regs cur;
    for (; tile < ntiles; tile += kWarps) {
      load_tile(cur, tile);
      process(cur, tile);
    }
  }
#pragma unroll
  for (int off = 4; off < 32; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  __syncthreads();  // the rings are drained; their space holds the per-warp states
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int dim = 2 * (g * MT + mt);
    float* w0 = red_o + (warp * kRowsPerChunk + 2 * tig) * D;
    float* w1 = w0 + D;
    w0[dim] = o[mt][0];
    w1[dim] = o[mt][1];
    w0[dim + 1] = o[mt][2];
    w1[dim + 1] = o[mt][3];
  }
  if (g == 0) {
    red_ml[(warp * kRowsPerChunk + 2 * tig) * 2] = m0;
    red_ml[(warp * kRowsPerChunk + 2 * tig) * 2 + 1] = l0;
    red_ml[(warp * kRowsPerChunk + 2 * tig + 1) * 2] = m1;
    red_ml[(warp * kRowsPerChunk + 2 * tig + 1) * 2 + 1] = l1;
  }
  __syncthreads();
  for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
    const int col = i / D, dim = i % D;
    const int row = chunk * kRowsPerChunk + col;
    if (row >= p.rows) continue;
    float mmax = kNegBig;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mmax = fmaxf(mmax, red_ml[(w * kRowsPerChunk + col) * 2]);
    float acc = 0.0f, lsum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = fast_exp2(red_ml[(w * kRowsPerChunk + col) * 2] - mmax);
      acc += f * red_o[(w * kRowsPerChunk + col) * D + dim];
      lsum += f * red_ml[(w * kRowsPerChunk + col) * 2 + 1];
    }
    const long long slot =
        (static_cast<long long>(b * p.kv_heads + kvh) * p.rows + row) * p.splits + split;
    p.part_o[slot * D + dim] = acc;
    if (dim == 0) {
      p.part_ml[slot * 2] = mmax;
      p.part_ml[slot * 2 + 1] = lsum;
    }
  }
  if (p.counters == nullptr) return;  // the host runs the merge kernel (exact window)

  // Fused merge (formerly its own kernel): the last CTA of this (sequence, KV head, chunk) to
  // finish combines all splits, rotates back once and writes the output. Classic threadfence
  // pattern: every thread publishes its partials before thread 0 counts the CTA in.
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    int* ctr = p.counters + (b * p.kv_heads + kvh) * p.row_chunks + chunk;
    const int prev = atomicAdd(ctr, 1);
    s_last = prev == p.splits - 1;
    if (s_last) *ctr = 0;  // every CTA of the group has arrived: ready for the next call
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  const int S = p.splits, row0 = chunk * kRowsPerChunk;
  float* wts = scratch;  // [8][S] split weights (region B is free again)
  auto slot_of = [&](int row) {
    return (static_cast<long long>(b * p.kv_heads + kvh) * p.rows + row) * S;
  };
  if (warp < kRowsPerChunk) {
    const int row = row0 + warp;
    if (row < p.rows) {
      const float* ml = p.part_ml + slot_of(row) * 2;
      float mx = kNegBig;
      for (int k = lane; k < S; k += 32) mx = fmaxf(mx, __ldcg(ml + 2 * k));
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      float l = 0.0f;
      for (int k = lane; k < S; k += 32) {
        const float f = fast_exp2(__ldcg(ml + 2 * k) - mx);
        wts[warp * S + k] = f;
        l += f * __ldcg(ml + 2 * k + 1);
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
      if (lane == 0) red_ml[warp] = l;
    }
  }
  __syncthreads();
  for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
    const int c = i / D, dim = i % D, row = row0 + c;
    float acc = 0.0f;
    if (row < p.rows) {
      const float* po = p.part_o + slot_of(row) * D + dim;
      const float* w = wts + c * S;
#pragma unroll 8
      for (int k = 0; k < S; ++k) acc += w[k] * __ldcg(po + static_cast<long long>(k) * D);
    }
    sq[i] = acc;
  }
  __syncthreads();
  if (p.out_signs) {
    fwht_rows<D, kThreads>(sq);
  } else if (p.out_pi) {
    for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
      const int c = i / D, j = i % D;
      float acc = 0.0f;  // (Πᵀ z)_j
#pragma unroll 8
      for (int k = 0; k < D; ++k) acc += __ldg(p.out_pi + k * D + j) * sq[c * D + k];
      scratch[kRowsPerChunk * S + i] = acc;
    }
    __syncthreads();
    for (int i = tid; i < kRowsPerChunk * D; i += kThreads) sq[i] = scratch[kRowsPerChunk * S + i];
    __syncthreads();
  }
  for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
    const int c = i / D, j = i % D, row = row0 + c;
    if (row >= p.rows) continue;
    float v = sq[i];
    if (p.out_signs) v *= p.out_signs[j] * rsqrtf(static_cast<float>(D));
    const float l = red_ml[c];
    const int qi = row / p.group, qh = kvh * p.group + row % p.group;
    p.out[((static_cast<long long>(b) * p.n_queries + qi) * p.q_heads + qh) * D + j] =
        l > 0.0f ? v / l : 0.0f;
  }
}

template <int D, bool kTq>
constexpr int smem_bytes() {
  constexpr int W = warps_of<D>();
  constexpr int lut = kTq ? 256 * 32 : 0;
  constexpr int ring = kTq ? W * kStages * stage_bytes<D>() / 4 : 0;
  constexpr int red = W * kRowsPerChunk * D;
  return lut * 4 + (ring > red ? ring : red) * 4 + kRowsPerChunk * D * 4 + W * 16 * 8 * 2 +
         W * kRowsPerChunk * 2 * 4 + (kTq ? 1024 : 0);
}

}  // namespace

template <int D, bool kTq>
void launch_tensor_core_split(const SplitParams& p, int batch, cudaStream_t stream) {
  constexpr int smem = smem_bytes<D, kTq>();
  static bool configured = false;  // the attribute is per function, set once
  if (!configured) {
    TQ_CUDA_CHECK(cudaFuncSetAttribute(tc_split_kernel<D, kTq>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
  const dim3 grid(p.splits, p.kv_heads, batch * p.row_chunks);
  tc_split_kernel<D, kTq><<<grid, warps_of<D>() * 32, smem, stream>>>(p);
  TQ_CUDA_CHECK(cudaGetLastError());
}

int tensor_core_ctas_per_sm(int dim, bool tq) {
  static int cache[2][3] = {{0, 0, 0}, {0, 0, 0}};
  const int di = dim == 64 ? 0 : (dim == 128 ? 1 : 2);
  int& n = cache[tq ? 1 : 0][di];
  if (n == 0) {
    const int threads = (dim == 256 ? 8 : 16) * 32;
    auto query = [&](auto kernel, int smem) {
      TQ_CUDA_CHECK(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      TQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem));
    };
    if (tq) {
      if (dim == 64)
        query(tc_split_kernel<64, true>, smem_bytes<64, true>());
      else if (dim == 128)
        query(tc_split_kernel<128, true>, smem_bytes<128, true>());
      else
        query(tc_split_kernel<256, true>, smem_bytes<256, true>());
    } else {
      if (dim == 64)
        query(tc_split_kernel<64, false>, smem_bytes<64, false>());
      else if (dim == 128)
        query(tc_split_kernel<128, false>, smem_bytes<128, false>());
      else
        query(tc_split_kernel<256, false>, smem_bytes<256, false>());
    }
    n = std::max(n, 1);
  }
  return n;
}

template void launch_tensor_core_split<64, true>(const SplitParams&, int, cudaStream_t);
template void launch_tensor_core_split<128, true>(const SplitParams&, int, cudaStream_t);
template void launch_tensor_core_split<256, true>(const SplitParams&, int, cudaStream_t);
template void launch_tensor_core_split<64, false>(const SplitParams&, int, cudaStream_t);
template void launch_tensor_core_split<128, false>(const SplitParams&, int, cudaStream_t);
template void launch_tensor_core_split<256, false>(const SplitParams&, int, cudaStream_t);

}  // namespace tq::cuda::detail
