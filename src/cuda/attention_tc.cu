// Tensor-core split kernel of the decode / multi-query attention (one CTA = one split of the
// sequence of one (sequence, KV head, chunk of 8 rows); 16 warps (8 at d = 256) take 16-token
// tiles in turn, each through its own 4-stage cp.async ring). The same launch prepares the
// queries (Π q per CTA), merges the splits in the last CTA to finish (atomic arrival counter),
// rotates back once. The exact fp16 window (up to kFusedWindowMax tokens, ⌈W / splits⌉ ≤ d)
// rides in the splits: each CTA folds a slice of it into its partial; longer windows go through
// the separate merge kernel.
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
// The same kernel with KC = VC = 0 reads fp16 K/V (the baseline): the half2 words then come
// straight from the loads and the permutations are identical.
//
// Bit widths 2, 3, 4 and the split widths 2.5 (3/2) and 3.5 (4/3) (template codes KC / VC =
// 10·hi_bits + lo_bits): every thread takes its codes as one normalised bit stream per segment
// (funnel shifts when the start is not word aligned, e.g. 48-bit runs of 3-bit codes) and
// turns each pair of codes (2b bits) into one half2 A register through a 2^(2b)-entry
// lane-replicated table (256 / 64 / 16 entries; one table per bit width in use, the Lloyd-Max
// codebook depends only on (d, bits)). With two segments the first half of the k-steps (keys)
// or of the m-tiles (values) covers the hi segment and the second half the lo segment, so every
// thread of a warp decodes the same widths at the same time (no divergence).
#include "attention_kernels.cuh"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace tq::cuda::detail {
namespace {

// One CTA per SM: 16 warps (8 for d = 256, whose accumulators need ~200 registers) share one
// byte → half2 table and one query preparation, and the split count per (sequence, KV head)
// drops to ~SMs / groups (16 at the Llama shape), which keeps the fused merge short.
template <int D>
constexpr int warps_of() {
  return D == 256 ? 8 : 16;
}

// In-place unnormalised Walsh–Hadamard transform of the kRowsPerChunk rows of D floats in
// shared memory: warp w < kRowsPerChunk transforms row w in registers (element i·32 + lane in
// x[i]; strides < 32 by xor shuffles, larger strides between registers), then one barrier
// (callers synchronise before; formerly log2 D block-wide barriers).
template <int D>
__device__ __forceinline__ void fwht_rows(float* y) {
  constexpr int E = D / 32;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (warp < kRowsPerChunk) {
    float* r = y + warp * D;
    float x[E];
#pragma unroll
    for (int i = 0; i < E; ++i) x[i] = r[i * 32 + lane];
#pragma unroll
    for (int h = 1; h < 32; h <<= 1) {
#pragma unroll
      for (int i = 0; i < E; ++i) {
        const float o = __shfl_xor_sync(0xffffffffu, x[i], h);
        x[i] = (lane & h) ? o - x[i] : x[i] + o;
      }
    }
#pragma unroll
    for (int h = 1; h < E; h <<= 1) {
#pragma unroll
      for (int i = 0; i < E; ++i) {
        if ((i & h) == 0) {
          const float u = x[i], v = x[i + h];
          x[i] = u + v;
          x[i + h] = u - v;
        }
      }
    }
#pragma unroll
    for (int i = 0; i < E; ++i) r[i * 32 + lane] = x[i];
  }
  __syncthreads();
}

// x ← A x for each of the kRowsPerChunk rows of D floats in shared memory (dense rotations,
// haar), through `tmp` (kRowsPerChunk · D floats). M is row-major D × D; A = Mᵀ when kTransposed
// (y_j = Σ_k M[k][j] x_k), else A = M. Callers synchronise before; ends with a barrier.
template <int D, int kThreads, bool kTransposed>
__device__ __forceinline__ void dense_rotate_rows(const float* __restrict__ M, float* x,
                                                  float* tmp) {
  for (int i = threadIdx.x; i < kRowsPerChunk * D; i += kThreads) {
    const int c = i / D, r = i % D;
    float acc = 0.0f;
#pragma unroll 8
    for (int k = 0; k < D; ++k)
      acc += __ldg(M + (kTransposed ? k * D + r : r * D + k)) * x[c * D + k];
    tmp[i] = acc;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kRowsPerChunk * D; i += kThreads) x[i] = tmp[i];
  __syncthreads();
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
__device__ __forceinline__ void cp_async8(uint32_t saddr, const void* g) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(saddr), "l"(g));
}
__device__ __forceinline__ void cp_async4(uint32_t saddr, const void* g) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(saddr), "l"(g));
}
template <int A>
__device__ __forceinline__ void cp_async_n(uint32_t saddr, const void* g) {
  if constexpr (A == 16) {
    cp_async16(saddr, g);
  } else if constexpr (A == 8) {
    cp_async8(saddr, g);
  } else {
    cp_async4(saddr, g);
  }
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

// Per-warp cp.async ring of code tiles: kStages tiles of 16 tokens, each stage holds the
// K rows, the V rows (packed code rows as in global memory) and 32 words of norms (the aligned
// 4-byte word holding each token's fp16 K norm, then V norm; the half is picked by the element's
// parity).
constexpr int kStages = 4;
template <int D, int KC, int VC>
constexpr int stage_bytes() {
  if constexpr (KC == 0) {
    return 0;
  } else {
    constexpr int kr = (KC / 10 == KC % 10) ? D * (KC / 10) / 8 : (D / 2) * (KC / 10 + KC % 10) / 8;
    constexpr int vr = (VC / 10 == VC % 10) ? D * (VC / 10) / 8 : (D / 2) * (VC / 10 + VC % 10) / 8;
    return (16 * (kr + vr) + 32 * 4 + 15) / 16 * 16;
  }
}

template <int D, bool kTq>
struct TileRegs {
  static constexpr int KW = kTq ? D / 32 : D / 8;   // words of one K row per thread
  static constexpr int VW = kTq ? D / 64 : D / 16;  // words of one V token per thread
  uint32_t ka[KW], kb[KW];
  uint32_t v[4][VW];
  float kna, knb, vna, vnb;
};

constexpr int pow2_align(int x) {
  return x % 16 == 0 ? 16 : (x % 8 == 0 ? 8 : (x % 4 == 0 ? 4 : (x % 2 == 0 ? 2 : 1)));
}
constexpr int min3(int a, int b, int c) {
  return a < b ? (a < c ? a : c) : (b < c ? b : c);
}

// One side's codes (C = 10·hi_bits + lo_bits; C = 0: fp16, handled elsewhere). One segment when
// hi = lo (the whole row), else the hi segment (d/2 coordinates) followed by the lo segment.
template <int D, int C>
struct Codes {
  static constexpr int HI = C / 10, LO = C % 10;
  static constexpr int NSEG = HI == LO ? 1 : 2;
  static constexpr int BYTES0 = NSEG == 1 ? D * HI / 8 : (D / 2) * HI / 8;
  static constexpr int ROW = NSEG == 1 ? BYTES0 : BYTES0 + (D / 2) * LO / 8;
  static constexpr int ALIGN = pow2_align(ROW) > 16 ? 16 : pow2_align(ROW);
  static constexpr int bits(int s) { return s == 0 ? HI : LO; }
  static constexpr int seg_byte(int s) { return s == 0 ? 0 : BYTES0; }
  // Stream bits per thread and segment: keys D/(4·NSEG) coordinates per row, values D/(8·NSEG)
  // per token.
  static constexpr int k_bits(int s) { return D / (4 * NSEG) * bits(s); }
  static constexpr int v_bits(int s) { return D / (8 * NSEG) * bits(s); }
  static constexpr int KW = (k_bits(0) + 31) / 32;
  static constexpr int VW = (v_bits(0) + 31) / 32;
};

// NB bits of a row's code stream from bit (BASE·8 + idx·NB) on, in w[] with stream bit 0 at bit 0
// of w[0]. Word-aligned runs are plain (vector) loads; others take one funnel shift per word
// (the extra word read past the run stays inside shared memory).
template <int NB, int BASE, int ROWALIGN>
__device__ __forceinline__ void load_stream(const unsigned char* row, int idx, uint32_t* w) {
  constexpr int NW = (NB + 31) / 32;
  if constexpr (NB % 32 == 0) {
    constexpr int A = min3(ROWALIGN, pow2_align(BASE), pow2_align(NB / 8));
    const unsigned char* ptr = row + BASE + idx * (NB / 8);
    if constexpr (A >= 16 && NW % 4 == 0) {
#pragma unroll
      for (int i = 0; i < NW / 4; ++i) {
        const uint4 v = reinterpret_cast<const uint4*>(ptr)[i];
        w[4 * i] = v.x;
        w[4 * i + 1] = v.y;
        w[4 * i + 2] = v.z;
        w[4 * i + 3] = v.w;
      }
    } else if constexpr (A >= 8 && NW % 2 == 0) {
#pragma unroll
      for (int i = 0; i < NW / 2; ++i) {
        const uint2 v = reinterpret_cast<const uint2*>(ptr)[i];
        w[2 * i] = v.x;
        w[2 * i + 1] = v.y;
      }
    } else {
#pragma unroll
      for (int i = 0; i < NW; ++i) w[i] = reinterpret_cast<const uint32_t*>(ptr)[i];
    }
  } else {
    const int bit = idx * NB;
    const uint32_t* ptr = reinterpret_cast<const uint32_t*>(row + BASE) + (bit >> 5);
    const int sh = bit & 31;
    uint32_t raw[NW + 1];
#pragma unroll
    for (int i = 0; i <= NW; ++i) raw[i] = ptr[i];
#pragma unroll
    for (int i = 0; i < NW; ++i) w[i] = __funnelshift_r(raw[i], raw[i + 1], sh);
  }
}

// One 16-token tile of codes in registers (per thread: per key segment the streams of rows g and
// g + 8; per value segment the streams of its 4 tokens) and the tile's norms.
template <int D, int KC, int VC>
struct TqTile {
  uint32_t ka[Codes<D, KC>::NSEG][Codes<D, KC>::KW], kb[Codes<D, KC>::NSEG][Codes<D, KC>::KW];
  uint32_t v[4][Codes<D, VC>::NSEG][Codes<D, VC>::VW];
  float kna, knb, vna, vnb;
};

// Byte offset (entry · 2^SH, SH = log2 of the entry stride in bytes) of the j-th pair of b-bit
// codes in a lane-replicated table: the field is shifted straight into place so that OR-ing the
// lane's 4·lane gives the address with no multiply / add (SHF + LOP3 per lookup).
template <int B, int SH>
__device__ __forceinline__ uint32_t pair_offset(const uint32_t* w, int j) {
  const int off = j * 2 * B, wi = off >> 5, sh = off & 31;
  constexpr uint32_t mask = ((1u << (2 * B)) - 1u) << SH;
  if (sh + 2 * B > 32) return __funnelshift_r(w[wi], w[wi + 1], sh - SH) & mask;
  if (sh >= SH) return (w[wi] >> (sh - SH)) & mask;
  return (w[wi] << (SH - sh)) & mask;
}

// The same for a pair of 4-bit codes (one byte of the stream) in the wide table (256-byte
// entries): one PRMT builds the whole address — byte 1 ← the code byte, byte 0 ← 4·lane (< 128),
// bytes 2–3 ← 0 — where the shift-and-mask form takes SHF + LOP3 (64 look-ups per tile and
// thread at 4 bits).
__device__ __forceinline__ uint32_t byte_pair_offset(const uint32_t* w, int j, uint32_t lane4) {
  return __byte_perm(w[j >> 2], lane4, 0x7604u | (static_cast<uint32_t>(j & 3) << 4));
}

// Table words (lane-replicated, [entries][stride]) per bit width: 4 → 256 entries, 3 → 64,
// 2 → 16. With 4-bit codes in use the tables are "wide": 64-word (256-byte) entries so that the
// 4-bit look-up is one PRMT (byte_pair_offset); the 3- and 2-bit tables then live in the unused
// upper halves of the 4-bit entries (3-bit entry e in row e, 2-bit entry e in row 64 + e). Without
// 4-bit codes they are packed with 32-word entries.
template <int KC, int VC>
struct Tables {
  static constexpr bool uses(int b) {
    return KC / 10 == b || KC % 10 == b || VC / 10 == b || VC % 10 == b;
  }
  static constexpr bool wide = uses(4);
  static constexpr int entries(int b) { return uses(b) ? 1 << (2 * b) : 0; }
  static constexpr int shift = wide ? 8 : 7;                  // log2 of the entry stride in bytes
  static constexpr int stride() { return (1 << shift) / 4; }  // words per entry
  static constexpr int offset(int b) {                        // word of entry 0, lane 0
    if constexpr (wide) return b == 4 ? 0 : (b == 3 ? 32 : 64 * 64 + 32);
    return b == 3 ? 0 : entries(3) * 32;
  }
  static constexpr int total = wide ? 256 * 64 : (entries(3) + entries(2)) * 32;
};

// Position of (row of the chunk, dim) inside a per-warp state row of the reduction: an XOR of
// the low 5 bits (it stays inside its 32-word block, so a warp reading 32 consecutive dims of one
// row is conflict-free) chosen so that the mma-fragment writes — lanes spread over rows 2·tig
// and dims 2·g·MTPS — hit 32 distinct banks for d = 64, 128, 256 and one or two value segments
// (checked exhaustively when it was chosen). dim ^ 1 swizzles like dim for even dims.
__device__ __forceinline__ int red_swizzle(int row, int dim) {
  return dim ^ (((row >> 1) & 3) ^ (((dim >> 5) & 7) << 2));
}

template <int D, int KC, int VC>
constexpr int region_a_words() {
  return Tables<KC, VC>::total > kRowsPerChunk * D ? Tables<KC, VC>::total : kRowsPerChunk * D;
}

template <int D, int KC, int VC>
__global__ void __launch_bounds__(warps_of<D>() * 32, 1) tc_split_kernel(const SplitParams p) {
  constexpr bool kTq = KC != 0;
  using KCodes = Codes<D, kTq ? KC : 44>;
  using VCodes = Codes<D, kTq ? VC : 44>;
  using Tab = Tables<KC, VC>;
  constexpr int kWarps = warps_of<D>();
  constexpr int kThreads = kWarps * 32;
  constexpr int KSTEPS = D / 16;
  constexpr int MT = D / 16;
  // k-steps per key segment and m-tiles per value segment (fp16: one "segment").
  constexpr int KNSEG = kTq ? KCodes::NSEG : 1;
  constexpr int VNSEG = kTq ? VCodes::NSEG : 1;
  constexpr int KSPS = KSTEPS / KNSEG;
  constexpr int MTPS = MT / VNSEG;
  constexpr int kStage = stage_bytes<D, KC, VC>();
  using Regs = TileRegs<D, false>;
  using Tile = TqTile<D, kTq ? KC : 44, kTq ? VC : 44>;
  // Region A: the lane-replicated tables (tq), scratch of the dense-Π query preparation.
  // Region B: the per-warp cp.async rings (tq) during the loop; the per-warp states and the
  // merge's scratch after it.
  // (at least 8·D words: the dense-Π preparation's scratch must not reach the prefilled ring)
  constexpr int kRegionA = kTq ? region_a_words<D, KC, VC>() : 0;
  constexpr int kRingWords = kTq ? kWarps * kStages * kStage / 4 : 0;
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
  // Query B fragments in lane order ([k-step][half][lane] half2 words), built once per CTA: every
  // warp then loads its fragments conflict-free (read straight from sq, the 32 lanes of a warp
  // hit one bank — a 32-way conflict that cost ~4 µs per call).
  uint32_t* qbuf = reinterpret_cast<uint32_t*>(red_ml + kWarps * kRowsPerChunk * 2);
  // This CTA's slice of the exact window as one more softmax state ([8][D] o, rotated forward
  // like the codes, then [8] m and [8] l), folded into the CTA's partial after the loop.
  float* win_o = reinterpret_cast<float*>(qbuf + 2 * KSTEPS * 32);
  float* win_ml = win_o + kRowsPerChunk * D;
  __shared__ int s_last;

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int b = blockIdx.z / p.row_chunks, chunk = blockIdx.z % p.row_chunks;
  const int lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tig = lane & 3;
  auto stamp = [&](int k) {
    if (p.timeline != nullptr && tid == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      p.timeline[lin * 8 + k] = t;
      if (k == 0) {
        unsigned sm;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        p.timeline[lin * 8 + 7] = sm;
      }
    }
  };
  stamp(0);

  const int len = p.lengths[b];
  // The window length is loaded now: at the fold it would be one more DRAM round trip.
  const int win_len = (kTq && p.window_lengths) ? p.window_lengths[b] : 0;
  const int start = split * p.tokens_per_split;
  const int split_end = min(start + p.tokens_per_split, len);
  const int ntiles = split_end > start ? (split_end - start + 15) / 16 : 0;
  const long long base = static_cast<long long>(b * p.kv_heads + kvh) * p.capacity;
  unsigned char* ring = ring_all + warp * (kStages * kStage);
  const bool k_blob = ((base * KCodes::ROW) & 15) == 0;
  const bool v_blob = ((base * VCodes::ROW) & 15) == 0;
  // Codebooks in registers from the start (lane i holds centroid i mod 2^b): their DRAM latency
  // overlaps the query loads instead of stalling the table build.
  float cent_reg[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  if constexpr (kTq) {
#pragma unroll
    for (int bb = 2; bb <= 4; ++bb)
      if (Tab::uses(bb)) cent_reg[bb] = __ldg(p.cent[bb] + (lane & ((1 << bb) - 1)));
  }
  const uint32_t ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  // issue(tile, stage): one tile's codes and norms into the warp's ring (one commit group per
  // call, empty past the end, so that group k always belongs to the warp's k-th tile).
  // Per-thread sources for tile 0 of this split (tile t is 16·t rows further): a full tile then
  // costs one address per stream instead of the clamped per-row arithmetic (which, with the
  // registers of the loop, the compiler rematerialised every tile: ~90 instructions per issue).
  constexpr int KR = KCodes::ROW, VR = VCodes::ROW;
  const unsigned char* k_src0 = static_cast<const unsigned char*>(p.k_data) + (base + start) * KR;
  const unsigned char* v_src0 = static_cast<const unsigned char*>(p.v_data) + (base + start) * VR;
  // Norms: lane l < 16 takes the aligned word holding token l's K norm, lanes 16–31 the V norm
  // (the parity of base + start + l does not change from tile to tile: tiles are 16 tokens).
  const __half* n_src0 =
      (lane < 16 ? p.k_norms : p.v_norms) + ((base + start + (lane & 15)) & ~1LL);
  auto issue = [&](int tile, int stage) {
    if constexpr (kTq) {
      if (tile < ntiles) {
        const int t0 = start + tile * 16, last = split_end - 1;
        const uint32_t sa = ring_addr + stage * kStage;
        constexpr int KA = KCodes::ALIGN, VA = VCodes::ALIGN;
        const unsigned char* kc = static_cast<const unsigned char*>(p.k_data);
        const unsigned char* vc = static_cast<const unsigned char*>(p.v_data);
        // A full tile is one contiguous run of 16 rows: 16-byte chunks when it is 16-byte
        // aligned (always, unless capacity · row bytes is not a multiple of 16); else row-wise
        // chunks of the rows' natural alignment (rows past the end repeat the last).
        const bool full = t0 + 15 <= last;
        if (full && k_blob) {
          const unsigned char* src = k_src0 + tile * (16 * KR);
#pragma unroll
          for (int c = lane; c < KR; c += 32) cp_async16(sa + c * 16, src + c * 16);
        } else {
#pragma unroll
          for (int c = lane; c < 16 * KR / KA; c += 32) {
            const int row = c / (KR / KA), col = c % (KR / KA);
            const long long tok = base + min(t0 + row, last);
            cp_async_n<KA>(sa + row * KR + col * KA, kc + tok * KR + col * KA);
          }
        }
        if (full && v_blob) {
          const unsigned char* src = v_src0 + tile * (16 * VR);
#pragma unroll
          for (int c = lane; c < VR; c += 32) cp_async16(sa + 16 * KR + c * 16, src + c * 16);
        } else {
#pragma unroll
          for (int c = lane; c < 16 * VR / VA; c += 32) {
            const int row = c / (VR / VA), col = c % (VR / VA);
            const long long tok = base + min(t0 + row, last);
            cp_async_n<VA>(sa + 16 * KR + row * VR + col * VA, vc + tok * VR + col * VA);
          }
        }
        if (full) {
          cp_async4(sa + 16 * (KR + VR) + lane * 4, n_src0 + tile * 16);
        } else {
          const long long tok = base + min(t0 + (lane & 15), last);
          const __half* nrm = lane < 16 ? p.k_norms : p.v_norms;
          cp_async4(sa + 16 * (KR + VR) + lane * 4, nrm + (tok & ~1LL));
        }
      }
      cp_async_commit();
    }
  };
  // The query rows' elements of this thread, loaded before the ring prefill below so that they
  // do not queue behind the tiles of every SM (at 128k the prologue took 8 µs that way).
  // Elements of the chunk's [8][D] rows per thread (i = tid + k·kThreads): the query
  // preparation, the window fold and the merge's output all split them this way.
  constexpr int kPerThread = (kRowsPerChunk * D + kThreads - 1) / kThreads;
  // The value signs of this thread's elements (1 without signs or past the end).
  auto load_value_signs = [&](float(&sgn)[kPerThread]) {
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = tid + k * kThreads;
      sgn[k] = p.out_signs && i < kRowsPerChunk * D ? __ldg(p.out_signs + i % D) : 1.0f;
    }
  };
  float qv[kPerThread];
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = tid + k * kThreads, c = i / D, j = i % D, row = chunk * kRowsPerChunk + c;
    float v = 0.0f;
    if (i < kRowsPerChunk * D && row < p.rows) {
      const int qi = row / p.group, qh = kvh * p.group + row % p.group;
      v = __ldg(p.q + ((static_cast<long long>(b) * p.n_queries + qi) * p.q_heads + qh) * D + j) *
          p.scale_log2;
      if (p.rot_signs) v *= __ldg(p.rot_signs + j) * rsqrtf(static_cast<float>(D));
    }
    qv[k] = v;
  }
  if constexpr (kTq) {
    // Prefill the ring first: the first tiles' DRAM latency overlaps the setup below.
#pragma unroll
    for (int k = 0; k < kStages - 1; ++k) issue(warp + k * kWarps, k);
  }

  // Query preparation (formerly its own kernel): Π q · scale · log2 e for the chunk's 8 rows.
  {
#pragma unroll
    for (int k = 0; k < kPerThread; ++k)
      if (tid + k * kThreads < kRowsPerChunk * D) sq[tid + k * kThreads] = qv[k];
    __syncthreads();
    if (p.rot_signs) {
      fwht_rows<D>(sq);
    } else if (p.rot_pi_t) {
      dense_rotate_rows<D, kThreads, true>(p.rot_pi_t, sq, prep_scratch);  // Π q from Πᵀ
    }
  }
  // The exact window (decode, fused case): this CTA takes tokens [split·per, (split+1)·per) of it,
  // per = ⌈W / S⌉ ≤ D (the host's condition), so the scores fit the win_o space: scores, the
  // row's max and sum, o = Σ p·v in the original domain, then Π o (FWHT after the signs for
  // Hadamard) so that it merges with the rotated-domain states. Riding in the splits, the window
  // costs every CTA a little in its prologue instead of a serial tail in the merging CTA.
  // (window_lengths[b] ≤ max_window ≤ window_capacity is the caller's contract; the clamp only
  // keeps a broken one inside the scratch space)
  int win_n = 0, t_begin = 0;
  if constexpr (kTq) {
    if (p.window_lengths) {
      const int W = min(win_len, min(p.window_capacity, kFusedWindowMax));
      const int per = min((W + p.splits - 1) / p.splits, D);
      t_begin = split * per;
      win_n = max(0, min(per, W - t_begin));
    }
  }
  if (kTq && win_n > 0) {
    const int n = win_n, nrows = min(kRowsPerChunk, p.rows - chunk * kRowsPerChunk);
    const long long wbase =
        (static_cast<long long>(b * p.kv_heads + kvh) * p.window_capacity + t_begin) * D;
    float* qo = prep_scratch;  // [8][D] original queries · scale · log2 e (region A, free now)
    float* sw = win_o;         // [8][n] scores, then weights (n ≤ D)
    // This thread's (row, dim) elements of o = Σ w·v: their V values of the first kVPre tokens
    // and the value signs are loaded now, in the same round trip as the keys below (loaded
    // after the weights they made a chain of three DRAM latencies).
    constexpr int kVPre = 8;
    __half vpre[kPerThread][kVPre];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = tid + k * kThreads, c = i / D, j = i % D;
      const bool mine = i < kRowsPerChunk * D && c < nrows;
#pragma unroll
      for (int t = 0; t < kVPre; ++t)
        vpre[k][t] =
            mine && t < n ? p.v_win[wbase + static_cast<long long>(t) * D + j] : __float2half(0.0f);
    }
    float sgn[kPerThread];
    load_value_signs(sgn);
    for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
      const int c = i / D, j = i % D, row = chunk * kRowsPerChunk + c;
      float v = 0.0f;
      if (c < nrows) {
        const int qh = kvh * p.group + row % p.group;
        v = __ldg(p.q + (static_cast<long long>(b) * p.q_heads + qh) * D + j) * p.scale_log2;
      }
      qo[i] = v;
    }
    __syncthreads();
    for (int it = tid; it < nrows * n; it += kThreads) {  // one (row, token) dot product each
      const int c = it / n, t = it % n;
      const uint4* kr =
          reinterpret_cast<const uint4*>(p.k_win + wbase + static_cast<long long>(t) * D);
      uint4 kv[D / 8];
#pragma unroll
      for (int k8 = 0; k8 < D / 8; ++k8) kv[k8] = __ldg(kr + k8);
      const float* qr = qo + c * D;
      float d = 0.0f;
#pragma unroll
      for (int k8 = 0; k8 < D / 8; ++k8) {
        const __half2* h = reinterpret_cast<const __half2*>(&kv[k8]);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __half22float2(h[e]);
          d += f.x * qr[8 * k8 + 2 * e] + f.y * qr[8 * k8 + 2 * e + 1];
        }
      }
      sw[c * n + t] = d;
    }
    __syncthreads();
    if (warp < kRowsPerChunk) {  // warp c: the slice's max and sum for row c, weights in place
      const int c = warp;
      float m = kNegBig, l = 0.0f;
      if (c < nrows) {
        for (int t = lane; t < n; t += 32) m = fmaxf(m, sw[c * n + t]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        for (int t = lane; t < n; t += 32) {
          const float w = fast_exp2(sw[c * n + t] - m);
          sw[c * n + t] = w;
          l += w;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
      }
      if (lane == 0) {
        win_ml[c] = m;
        win_ml[kRowsPerChunk + c] = l;
      }
    }
    __syncthreads();
    float acc[kPerThread];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {  // o = Σ w·v, one (row, dim) per thread and k
      const int i = tid + k * kThreads, c = i / D, j = i % D;
      float a = 0.0f;
      if (i < kRowsPerChunk * D && c < nrows) {
        const __half* vc = p.v_win + wbase + j;
        const float* wr = sw + c * n;
#pragma unroll
        for (int t = 0; t < kVPre; ++t)
          if (t < n) a += wr[t] * __half2float(vpre[k][t]);
#pragma unroll 8
        for (int t = kVPre; t < n; ++t)
          a += wr[t] * __half2float(vc[static_cast<long long>(t) * D]);
      }
      acc[k] = a;
    }
    __syncthreads();  // the weights are read; win_o takes o
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = tid + k * kThreads;
      if (i < kRowsPerChunk * D)
        win_o[i] = p.out_signs ? acc[k] * sgn[k] * rsqrtf(static_cast<float>(D)) : acc[k];
    }
    __syncthreads();
    if (p.out_signs) {
      fwht_rows<D>(win_o);  // Π o = H (s ⊙ o) / √D, the inverse of the merge's rotation
    } else if (p.out_pi) {
      dense_rotate_rows<D, kThreads, false>(p.out_pi, win_o, prep_scratch);  // Π o
    }
  }
  if constexpr (kTq) {
    // Pair → half2 tables, lane-replicated ([entries][stride], 32 words used per entry), written
    // directly with 16-byte stores (entry e = (second code << b) | first code; no staging copy,
    // no extra barrier).
    auto build = [&](auto bits_c) {
      constexpr int B = decltype(bits_c)::value;
      if constexpr (Tab::uses(B)) {
        // Whole warps take part (8 stores per entry, entry counts ≥ 16): shuffles are safe.
        for (int i = tid; i < Tab::entries(B) * 8; i += kThreads) {
          const int e = i >> 3;
          const uint32_t h = pack_half2(__shfl_sync(0xffffffffu, cent_reg[B], e & ((1 << B) - 1)),
                                        __shfl_sync(0xffffffffu, cent_reg[B], e >> B));
          *reinterpret_cast<uint4*>(lut + Tab::offset(B) + e * Tab::stride() + (i & 7) * 4) =
              make_uint4(h, h, h, h);
        }
      }
    };
    build(std::integral_constant<int, 4>{});
    build(std::integral_constant<int, 3>{});
    build(std::integral_constant<int, 2>{});
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
  // Query B fragments, permuted to match the A loads: k-step kb of key segment s = kb / KSPS
  // takes pair P = s·D/(2·KNSEG) + tig·D/(8·KNSEG) + 2·(kb mod KSPS) + half (one segment:
  // P = tig·D/8 + 2·kb + half). Entry e of qbuf is built by thread e: consecutive threads take
  // consecutive (kb, half) of one lane, so the sq reads spread over the banks.
  for (int e = tid; e < 2 * KSTEPS * 32; e += kThreads) {
    const int kbh = e % (2 * KSTEPS), ln = e / (2 * KSTEPS);
    const int kb = kbh >> 1, h = kbh & 1, gg = ln >> 2, tt = ln & 3;
    const int pair = (kb / KSPS) * (D / (2 * KNSEG)) + tt * (D / (8 * KNSEG)) + 2 * (kb % KSPS) + h;
    const float* q = sq + gg * D;  // rows past p.rows are zero
    qbuf[kbh * 32 + ln] = pack_half2(q[2 * pair], q[2 * pair + 1]);
  }
  __syncthreads();
  uint32_t qf[KSTEPS][2];
#pragma unroll
  for (int kb = 0; kb < KSTEPS; ++kb) {
    qf[kb][0] = qbuf[(2 * kb) * 32 + lane];
    qf[kb][1] = qbuf[(2 * kb + 1) * 32 + lane];
  }

  // Half2 of the j-th code pair of a normalised stream of b-bit codes (b constant after
  // unrolling).
  const unsigned char* lut_bytes = reinterpret_cast<const unsigned char*>(lut);
  const uint32_t lane4 = static_cast<uint32_t>(lane) * 4u;
  auto lookup = [&](const uint32_t* w, int b, int j) -> uint32_t {
    constexpr int SH = Tab::shift;
    uint32_t off;
    if (b == 4)
      off = byte_pair_offset(w, j, lane4);  // 4-bit ⇒ wide tables, 4-bit table at offset 0
    else if (b == 3)
      off = Tab::offset(3) * 4 + (pair_offset<3, SH>(w, j) | lane4);
    else
      off = Tab::offset(2) * 4 + (pair_offset<2, SH>(w, j) | lane4);
    return *reinterpret_cast<const uint32_t*>(lut_bytes + off);
  };
  auto load_tile = [&](Regs& r, int tile) {
    const int t0 = start + tile * 16;
    const int last = split_end - 1;
    const int ta = min(t0 + g, last), tb = min(t0 + g + 8, last);
    {  // fp16 baseline only (the code path stages tiles through the cp.async ring)
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
  stamp(1);

  // process(tile registers, tile index): scores, online softmax, P·V for one 16-token tile.
  auto process = [&](const auto& cur, int tile) {
    const int t0 = start + tile * 16;
    // Two accumulators (even / odd k-steps): halves the dependent mma chain of the scores.
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s_odd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int kb = 0; kb < KSTEPS; ++kb) {
      uint32_t a0, a1, a2, a3;
      if constexpr (kTq) {
        const int sg = kb / KSPS, kk = kb % KSPS, bits = KCodes::bits(sg);
        a0 = lookup(cur.ka[sg], bits, 2 * kk);
        a1 = lookup(cur.kb[sg], bits, 2 * kk);
        a2 = lookup(cur.ka[sg], bits, 2 * kk + 1);
        a3 = lookup(cur.kb[sg], bits, 2 * kk + 1);
      } else {
        a0 = cur.ka[2 * kb];
        a1 = cur.kb[2 * kb];
        a2 = cur.ka[2 * kb + 1];
        a3 = cur.kb[2 * kb + 1];
      }
      mma16816((kb & 1) ? s_odd : s, a0, a1, a2, a3, qf[kb][0], qf[kb][1]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) s[i] += s_odd[i];
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
    // Online softmax with the row maxima warp-uniform: the 8-lane max reduction (6 shuffles
    // through the MIO pipe) and the rescale of o run only when some score of the tile exceeds its
    // row's running maximum — after the first tiles, rarely. Otherwise p = 2^(s − m) with m kept
    // (exact: the rescale factor would be 1).
    float mx0 = fmaxf(s[0], s[2]), mx1 = fmaxf(s[1], s[3]);
    float al0 = 1.0f, al1 = 1.0f;
    if (__any_sync(0xffffffffu, mx0 > m0 || mx1 > m1)) {
#pragma unroll
      for (int off = 4; off < 32; off <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
      }
      const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
      al0 = fast_exp2(m0 - mn0);
      al1 = fast_exp2(m1 - mn1);
      m0 = mn0;
      m1 = mn1;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        o[mt][0] *= al0;
        o[mt][1] *= al1;
        o[mt][2] *= al0;
        o[mt][3] *= al1;
      }
    }
    float p0 = fast_exp2(s[0] - m0), p1 = fast_exp2(s[1] - m1);
    float p2 = fast_exp2(s[2] - m0), p3 = fast_exp2(s[3] - m1);
    l0 = l0 * al0 + p0 + p2;
    l1 = l1 * al1 + p1 + p3;
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
          x[i] = lookup(cur.v[i][mt / MTPS], VCodes::bits(mt / MTPS), mt % MTPS);
        } else {
          x[i] = cur.v[i][mt];
        }
      }
      mma16816(o[mt], __byte_perm(x[0], x[1], 0x5410), __byte_perm(x[0], x[1], 0x7632),
               __byte_perm(x[2], x[3], 0x5410), __byte_perm(x[2], x[3], 0x7632), pb0, pb1);
    }
  };
  if constexpr (kTq) {
    // kStages − 1 tiles per warp in flight through cp.async (no registers held for them);
    // the stage read now is refilled at the next iteration, after the closing __syncwarp.
    int it = 0;
    for (int tile = warp; tile < ntiles; tile += kWarps, ++it) {
      issue(tile + (kStages - 1) * kWarps, (it + kStages - 1) % kStages);
      cp_async_wait<kStages - 1>();
      __syncwarp();
      const unsigned char* st = ring + (it % kStages) * kStage;
      const int t0 = start + tile * 16, last = split_end - 1;
      Tile cur;
      {
        using KCd = KCodes;
        load_stream<KCd::k_bits(0), KCd::seg_byte(0), KCd::ALIGN>(st + g * KR, tig, cur.ka[0]);
        load_stream<KCd::k_bits(0), KCd::seg_byte(0), KCd::ALIGN>(st + (g + 8) * KR, tig,
                                                                  cur.kb[0]);
        if constexpr (KNSEG == 2) {
          load_stream<KCd::k_bits(1), KCd::seg_byte(1), KCd::ALIGN>(st + g * KR, tig, cur.ka[1]);
          load_stream<KCd::k_bits(1), KCd::seg_byte(1), KCd::ALIGN>(st + (g + 8) * KR, tig,
                                                                    cur.kb[1]);
        }
        using VCd = VCodes;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const unsigned char* row = st + 16 * KR + (2 * tig + (i & 1) + (i >> 1) * 8) * VR;
          load_stream<VCd::v_bits(0), VCd::seg_byte(0), VCd::ALIGN>(row, g, cur.v[i][0]);
          if constexpr (VNSEG == 2)
            load_stream<VCd::v_bits(1), VCd::seg_byte(1), VCd::ALIGN>(row, g, cur.v[i][1]);
        }
      }
      const uint32_t* nw = reinterpret_cast<const uint32_t*>(st + 16 * (KR + VR));
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
    for (int tile = warp; tile < ntiles; tile += kWarps) {
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
  stamp(2);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    // Value pair of (m-tile, g): segment mt / MTPS, its g-th run of MTPS pairs. Stored at
    // red_swizzle(row, dim): unswizzled, the lanes of a warp hit 2 banks (a 16-way conflict
    // that cost ~4 µs per call at d = 128).
    const int dim = 2 * ((mt / MTPS) * (D / (2 * VNSEG)) + g * MTPS + mt % MTPS);
    const int sd = red_swizzle(2 * tig, dim);  // rows 2·tig and 2·tig + 1 swizzle alike
    float* w0 = red_o + (warp * kRowsPerChunk + 2 * tig) * D;
    float* w1 = w0 + D;
    w0[sd] = o[mt][0];
    w1[sd] = o[mt][1];
    w0[sd ^ 1] = o[mt][2];
    w1[sd ^ 1] = o[mt][3];
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
      acc += f * red_o[(w * kRowsPerChunk + col) * D + red_swizzle(col, dim)];
      lsum += f * red_ml[(w * kRowsPerChunk + col) * 2 + 1];
    }
    if (win_n > 0) {  // this CTA's window slice, one more state
      const float mw = win_ml[col], m2 = fmaxf(mmax, mw);
      const float f1 = fast_exp2(mmax - m2), f2 = fast_exp2(mw - m2);
      acc = acc * f1 + win_o[col * D + dim] * f2;
      lsum = lsum * f1 + win_ml[kRowsPerChunk + col] * f2;
      mmax = m2;
    }
    const long long slot =
        (static_cast<long long>(b * p.kv_heads + kvh) * p.rows + row) * p.splits + split;
    p.part_o[slot * D + dim] = acc;
    if (dim == 0) {
      p.part_ml[slot * 2] = mmax;
      p.part_ml[slot * 2 + 1] = lsum;
    }
  }
  stamp(3);
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
  stamp(4);
  if (!s_last) return;
  // The value signs of this thread's output elements, loaded before the partials (the same
  // round trip instead of one more after the rotation).
  float out_sgn[kPerThread];
  load_value_signs(out_sgn);
  __threadfence();
  const int S = p.splits, row0 = chunk * kRowsPerChunk;
  float* wts = scratch;  // [8][S] split weights (region B is free again)
  auto slot_of = [&](int row) {
    return (static_cast<long long>(b * p.kv_heads + kvh) * p.rows + row) * S;
  };
  if (S <= 16) {
    // One pass (the usual case, ≤ 16 splits): every thread loads its rows' (m, l) and partial o
    // of all splits at once — one L2 round trip and no barrier before the sum.
    for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
      const int c = i / D, dim = i % D, row = row0 + c;
      float acc = 0.0f;
      if (row < p.rows) {
        const float* ml = p.part_ml + slot_of(row) * 2;
        const float* po = p.part_o + slot_of(row) * D + dim;
        float mv[16], lv[16], ov[16];
#pragma unroll
        for (int k = 0; k < 16; ++k) {
          if (k < S) {
            mv[k] = __ldcg(ml + 2 * k);
            lv[k] = __ldcg(ml + 2 * k + 1);
            ov[k] = __ldcg(po + static_cast<long long>(k) * D);
          }
        }
        float mx = kNegBig;
#pragma unroll
        for (int k = 0; k < 16; ++k)
          if (k < S) mx = fmaxf(mx, mv[k]);
        float l = 0.0f;
#pragma unroll
        for (int k = 0; k < 16; ++k) {
          if (k < S) {
            const float f = fast_exp2(mv[k] - mx);
            l += f * lv[k];
            acc += f * ov[k];
          }
        }
        if (dim == 0) red_ml[c] = l;
      }
      sq[i] = acc;
    }
    __syncthreads();
  } else {
    if (warp < kRowsPerChunk) {
      const int row = row0 + warp;
      if (row < p.rows) {
        const float* ml = p.part_ml + slot_of(row) * 2;
        float mx = kNegBig;
        for (int k = lane; k < S; k += 32) mx = fmaxf(mx, __ldcg(ml + 2 * k));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
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
  }
  if (p.out_signs) {
    fwht_rows<D>(sq);
  } else if (p.out_pi) {
    dense_rotate_rows<D, kThreads, true>(p.out_pi, sq, scratch + kRowsPerChunk * S);  // Πᵀ z
  }
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = tid + k * kThreads;
    if (i >= kRowsPerChunk * D) break;
    const int c = i / D, j = i % D, row = row0 + c;
    if (row >= p.rows) continue;
    float v = sq[i];
    if (p.out_signs) v *= out_sgn[k] * rsqrtf(static_cast<float>(D));
    const float l = red_ml[c];
    const int qi = row / p.group, qh = kvh * p.group + row % p.group;
    p.out[((static_cast<long long>(b) * p.n_queries + qi) * p.q_heads + qh) * D + j] =
        l > 0.0f ? v / l : 0.0f;
  }
  stamp(5);
}

template <int D, int KC, int VC>
constexpr int smem_bytes() {
  constexpr int W = warps_of<D>();
  constexpr int lut = KC != 0 ? region_a_words<D, KC, VC>() : 0;
  constexpr int ring = KC != 0 ? W * kStages * stage_bytes<D, KC, VC>() / 4 : 0;
  constexpr int red = W * kRowsPerChunk * D;
  return lut * 4 + (ring > red ? ring : red) * 4 + kRowsPerChunk * D * 4 + W * 16 * 8 * 2 +
         W * kRowsPerChunk * 2 * 4 + 2 * (D / 16) * 32 * 4 + (kRowsPerChunk * D + 16) * 4 + 64;
}

template <int D, int KC, int VC>
void launch_one(const SplitParams& p, int batch, cudaStream_t stream) {
  constexpr int smem = smem_bytes<D, KC, VC>();
  static_assert(smem <= 227 * 1024, "tensor-core kernel: over the 227 KB of shared memory per CTA");
  static bool configured = false;  // the attribute is per function, set once
  if (!configured) {
    TQ_CUDA_CHECK(cudaFuncSetAttribute(tc_split_kernel<D, KC, VC>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = true;
  }
  const dim3 grid(p.splits, p.kv_heads, batch * p.row_chunks);
  tc_split_kernel<D, KC, VC><<<grid, warps_of<D>() * 32, smem, stream>>>(p);
  TQ_CUDA_CHECK(cudaGetLastError());
}

template <int D, int KC, int VC>
int occupancy_one() {
  static int n = 0;
  if (n == 0) {
    constexpr int smem = smem_bytes<D, KC, VC>();
    TQ_CUDA_CHECK(cudaFuncSetAttribute(tc_split_kernel<D, KC, VC>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    TQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, tc_split_kernel<D, KC, VC>,
                                                                warps_of<D>() * 32, smem));
    n = std::max(n, 1);
  }
  return n;
}

// The (key, value) code pairs with a tensor-core kernel: the presets tq4, tq3.5, k4v3, tq3,
// tq2.5 and tq2 (others run on the generic kernel); 0/0 is the fp16 baseline. Each pair is
// instantiated for d = 64, 128, 256.
struct Combo {
  int kc, vc;
  void (*launch[3])(const SplitParams&, int, cudaStream_t);
  int (*occupancy[3])();
};
#define TQ_TC_COMBO(K, V)                                                         \
  Combo {                                                                         \
    K, V, {launch_one<64, K, V>, launch_one<128, K, V>, launch_one<256, K, V>}, { \
      occupancy_one<64, K, V>, occupancy_one<128, K, V>, occupancy_one<256, K, V> \
    }                                                                             \
  }
const Combo kCombos[] = {TQ_TC_COMBO(0, 0),   TQ_TC_COMBO(44, 44), TQ_TC_COMBO(43, 43),
                         TQ_TC_COMBO(44, 33), TQ_TC_COMBO(33, 33), TQ_TC_COMBO(32, 32),
                         TQ_TC_COMBO(22, 22)};
#undef TQ_TC_COMBO

const Combo* find_combo(int kc, int vc) {
  for (const Combo& c : kCombos)
    if (c.kc == kc && c.vc == vc) return &c;
  return nullptr;
}
int dim_index(int dim) {
  return dim == 64 ? 0 : (dim == 128 ? 1 : 2);
}

}  // namespace

bool tensor_core_combo_supported(int kc, int vc) {
  return find_combo(kc, vc) != nullptr;
}

void launch_tensor_core_split(const SplitParams& p, int batch, int dim, int kc, int vc,
                              cudaStream_t stream) {
  const Combo* c = find_combo(kc, vc);
  if (!c) {
    throw std::invalid_argument("tensor-core attention: no kernel for key/value codes " +
                                std::to_string(kc) + "/" + std::to_string(vc));
  }
  c->launch[dim_index(dim)](p, batch, stream);
}

int tensor_core_ctas_per_sm(int dim, int kc, int vc) {
  const Combo* c = find_combo(kc, vc);
  return c ? c->occupancy[dim_index(dim)]() : 1;
}

}  // namespace tq::cuda::detail
