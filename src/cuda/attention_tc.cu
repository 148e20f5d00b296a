// Tensor-core split kernel of the decode / multi-query attention (one CTA = one split of the
// sequence of one (sequence, KV head, chunk of 8 rows); 16 warps (8 at d = 256) take 16-token
// tiles in turn, each through its own 4-stage cp.async ring). The same launch prepares the
// queries (Π q per CTA), merges the splits in the last CTA to finish (atomic arrival counter),
// rotates back once. The exact fp16 window (up to kFusedWindowMax tokens, ⌈W / splits⌉ ≤ d)
// rides in the splits: each CTA folds a slice of it into its partial; longer windows go through
// the separate merge kernel.
//
// Why this shape (docs/DESIGN.md §4.5: attention over codes is bound by the instructions spent per
// code, not by DRAM, so every choice below minimises them):
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
//
// The kernel body (tc_split_kernel, at the end) reads as its phases, each a __forceinline__
// device function so that the code is the one a single function body gives: prologue (queries,
// ring prefill, window slice, tables, query fragments), the tile loop (code tile → registers →
// scores, online softmax, P·V), the per-warp states folded into the split's partial, and the
// fused merge of the last CTA.
#include "attention_kernels.cuh"
#include "fwht.cuh"
#include "ptx.cuh"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace tq::cuda::detail {
namespace {

using ptx::cp_async16;
using ptx::cp_async4;
using ptx::cp_async_commit;
using ptx::cp_async_n;
using ptx::cp_async_wait;
using ptx::mma_m16n8k16;
using State = SoftmaxState<FastExp2>;

// One CTA per SM: 16 warps (8 for d = 256, whose accumulators need ~200 registers) share one
// byte → half2 table and one query preparation, and the split count per (sequence, KV head)
// drops to ~SMs / groups (16 at the Llama shape), which keeps the fused merge short.
template <int D>
constexpr int warps_of() {
  return D == 256 ? 8 : 16;
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
// (an exhaustive check over every such write instruction shows it). dim ^ 1 swizzles like dim for
// even dims.
__device__ __forceinline__ int red_swizzle(int row, int dim) {
  return dim ^ (((row >> 1) & 3) ^ (((dim >> 5) & 7) << 2));
}

template <int D, int KC, int VC>
constexpr int region_a_words() {
  return Tables<KC, VC>::total > kRowsPerChunk * D ? Tables<KC, VC>::total : kRowsPerChunk * D;
}

// The compile-time shape of one instantiation (KC / VC: key / value codes, 0 = fp16).
template <int D, int KC, int VC>
struct TcShape {
  static constexpr int kDim = D;
  static constexpr bool kTq = KC != 0;
  using KCodes = Codes<D, kTq ? KC : 44>;
  using VCodes = Codes<D, kTq ? VC : 44>;
  using Tab = Tables<KC, VC>;
  static_assert(Tab::stride() * 4 == 1 << Tab::shift, "table entries are 2^shift bytes");
  static constexpr int kWarps = warps_of<D>();
  static constexpr int kThreads = kWarps * 32;
  static constexpr int KSTEPS = D / 16;
  static constexpr int MT = D / 16;
  // k-steps per key segment and m-tiles per value segment (fp16: one "segment").
  static constexpr int KNSEG = kTq ? KCodes::NSEG : 1;
  static constexpr int VNSEG = kTq ? VCodes::NSEG : 1;
  static constexpr int KSPS = KSTEPS / KNSEG;
  static constexpr int MTPS = MT / VNSEG;
  static constexpr int kStage = stage_bytes<D, KC, VC>();
  static constexpr int KR = KCodes::ROW, VR = VCodes::ROW;
  using Regs = TileRegs<D, false>;
  using Tile = TqTile<D, kTq ? KC : 44, kTq ? VC : 44>;
  // Elements of the chunk's [8][D] rows per thread (i = tid + k·kThreads): the query
  // preparation, the window fold and the merge's output all split them this way.
  static constexpr int kPerThread = (kRowsPerChunk * D + kThreads - 1) / kThreads;
  // Shared memory (words). Region A: the lane-replicated tables (tq), scratch of the dense-Π query
  // preparation (at least 8·D words: that scratch must not reach the prefilled ring). Region B:
  // the per-warp cp.async rings (tq) during the loop; the per-warp states and the merge's scratch
  // after it.
  static constexpr int kRegionA = kTq ? region_a_words<D, KC, VC>() : 0;
  static constexpr int kRingWords = kTq ? kWarps * kStages * kStage / 4 : 0;
  static constexpr int kRedWords = kWarps * kRowsPerChunk * D;
  static constexpr int kRegionB = kRingWords > kRedWords ? kRingWords : kRedWords;
  // Regions A and B, then the arrays of TcSmem from sq on, and 64 bytes of slack.
  static constexpr int kSmemBytes = kRegionA * 4 + kRegionB * 4 + kRowsPerChunk * D * 4 +
                                    kWarps * 16 * 8 * 2 + kWarps * kRowsPerChunk * 2 * 4 +
                                    2 * KSTEPS * 32 * 4 + (kRowsPerChunk * D + 16) * 4 + 64;
};

// The dynamic shared memory of one CTA, in this order after regions A and B.
struct TcSmem {
  uint32_t* lut;            // region A: the pair → half2 tables
  float* prep_scratch;      // region A: scratch of the dense rotations, the window's queries
  float* red_o;             // region B after the loop: the per-warp o states [warps][8][D]
  float* scratch;           // region B in the merge: split weights, rotation scratch
  unsigned char* ring_all;  // region B during the loop: the warps' cp.async rings
  float* sq;                // [8][D] query rows, later the merged z
  __half* sp_all;           // per warp: a 16 × 8 fp16 tile of P
  float* red_ml;            // per warp: (m, l) of the 8 rows; in the merge, l per row
  // Query B fragments in lane order ([k-step][half][lane] half2 words), built once per CTA: every
  // warp then loads its fragments conflict-free (read straight from sq, the 32 lanes of a warp
  // would hit one bank: a 32-way conflict).
  uint32_t* qbuf;
  // This CTA's slice of the exact window as one more softmax state ([8][D] o, rotated forward
  // like the codes, then [8] m and [8] l), folded into the CTA's partial after the loop.
  float* win_o;
  float* win_ml;
};

template <class S>
__device__ __forceinline__ TcSmem carve_smem(uint4* smem_raw) {
  constexpr int D = S::kDim;
  TcSmem s;
  s.lut = reinterpret_cast<uint32_t*>(smem_raw);
  s.prep_scratch = reinterpret_cast<float*>(smem_raw);
  s.red_o = reinterpret_cast<float*>(smem_raw) + S::kRegionA;
  s.scratch = s.red_o;
  s.ring_all = reinterpret_cast<unsigned char*>(s.red_o);
  s.sq = s.red_o + S::kRegionB;
  s.sp_all = reinterpret_cast<__half*>(s.sq + kRowsPerChunk * D);
  s.red_ml = reinterpret_cast<float*>(s.sp_all + S::kWarps * 16 * 8);
  s.qbuf = reinterpret_cast<uint32_t*>(s.red_ml + S::kWarps * kRowsPerChunk * 2);
  s.win_o = reinterpret_cast<float*>(s.qbuf + 2 * S::KSTEPS * 32);
  s.win_ml = s.win_o + kRowsPerChunk * D;
  return s;
}

// This thread's place: the CTA's split, KV head, sequence b and row chunk, its linear index (for
// the timeline), and the thread's warp, lane and mma fragment coordinates g = lane / 4, tig =
// lane mod 4.
struct TcThread {
  int split, kvh, b, chunk, lin, tid, warp, lane, g, tig;
};

__device__ __forceinline__ TcThread this_thread(const SplitParams& p) {
  TcThread th;
  th.split = blockIdx.x;
  th.kvh = blockIdx.y;
  th.b = blockIdx.z / p.row_chunks;
  th.chunk = blockIdx.z % p.row_chunks;
  th.lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  th.tid = threadIdx.x;
  th.warp = th.tid >> 5;
  th.lane = th.tid & 31;
  th.g = th.lane >> 2;
  th.tig = th.lane & 3;
  return th;
}

// Diagnostics (SplitParams::timeline): %globaltimer at point k of the CTA, %smid with k = 0.
__device__ __forceinline__ void stamp(const SplitParams& p, const TcThread& th, int k) {
  if (p.timeline != nullptr && th.tid == 0) {
    p.timeline[th.lin * 8 + k] = ptx::global_timer();
    if (k == 0) p.timeline[th.lin * 8 + 7] = ptx::sm_id();
  }
}

// The compressed tokens of this CTA: [start, split_end) of the sequence's len, in ntiles 16-token
// tiles; base is the sequence's first slot of this KV head; win_len the sequence's window.
struct TcTokens {
  int len, win_len, start, split_end, ntiles;
  long long base;
};

template <class S>
__device__ __forceinline__ TcTokens tokens_of(const SplitParams& p, const TcThread& th) {
  TcTokens tokens;
  tokens.len = p.lengths[th.b];
  // The window length is loaded now: at the fold it would be one more DRAM round trip.
  tokens.win_len = (S::kTq && p.window_lengths) ? p.window_lengths[th.b] : 0;
  tokens.start = th.split * p.tokens_per_split;
  tokens.split_end = min(tokens.start + p.tokens_per_split, tokens.len);
  tokens.ntiles = tokens.split_end > tokens.start ? (tokens.split_end - tokens.start + 15) / 16 : 0;
  tokens.base = static_cast<long long>(th.b * p.kv_heads + th.kvh) * p.capacity;
  return tokens;
}

// The warp's cp.async ring and where tile 0 of the split comes from (tile t is 16·t rows
// further): a full tile then costs one address per stream instead of the clamped per-row
// arithmetic, which the compiler would rematerialise at every tile under the loop's register
// pressure.
struct CodeRing {
  unsigned char* ring;  // this warp's kStages stages
  bool k_blob, v_blob;  // whether the K / V code rows of the head start 16-byte aligned
  uint32_t ring_addr;
  const unsigned char* k_src0;
  const unsigned char* v_src0;
  // Norms: lane l < 16 takes the aligned word holding token l's K norm, lanes 16–31 the V norm
  // (the parity of base + start + l does not change from tile to tile: tiles are 16 tokens).
  const __half* n_src0;
};

template <class S>
__device__ __forceinline__ CodeRing code_ring(const SplitParams& p, const TcThread& th,
                                              const TcTokens& tokens, const TcSmem& sm) {
  CodeRing r;
  r.ring = sm.ring_all + th.warp * (kStages * S::kStage);
  r.k_blob = ((tokens.base * S::KCodes::ROW) & 15) == 0;
  r.v_blob = ((tokens.base * S::VCodes::ROW) & 15) == 0;
  r.ring_addr = static_cast<uint32_t>(__cvta_generic_to_shared(r.ring));
  r.k_src0 = static_cast<const unsigned char*>(p.k_data) + (tokens.base + tokens.start) * S::KR;
  r.v_src0 = static_cast<const unsigned char*>(p.v_data) + (tokens.base + tokens.start) * S::VR;
  r.n_src0 = (th.lane < 16 ? p.k_norms : p.v_norms) +
             ((tokens.base + tokens.start + (th.lane & 15)) & ~1LL);
  return r;
}

// Codebooks in registers from the start (lane i holds centroid i mod 2^b): their DRAM latency
// overlaps the query loads instead of stalling the table build.
template <class S>
__device__ __forceinline__ void load_codebooks(const SplitParams& p, int lane,
                                               float (&cent_reg)[5]) {
  if constexpr (S::kTq) {
#pragma unroll
    for (int bb = 2; bb <= 4; ++bb)
      if (S::Tab::uses(bb)) cent_reg[bb] = __ldg(p.cent[bb] + (lane & ((1 << bb) - 1)));
  }
}

// One tile's codes and norms into the warp's ring (one commit group per call, empty past the end,
// so that group k always belongs to the warp's k-th tile).
template <class S>
__device__ __forceinline__ void issue_tile(const SplitParams& p, const TcThread& th,
                                           const TcTokens& tokens, const CodeRing& r, int tile,
                                           int stage) {
  if constexpr (S::kTq) {
    constexpr int KR = S::KR, VR = S::VR;
    const int lane = th.lane;
    if (tile < tokens.ntiles) {
      const int t0 = tokens.start + tile * 16, last = tokens.split_end - 1;
      const uint32_t sa = r.ring_addr + stage * S::kStage;
      constexpr int KA = S::KCodes::ALIGN, VA = S::VCodes::ALIGN;
      const unsigned char* kc = static_cast<const unsigned char*>(p.k_data);
      const unsigned char* vc = static_cast<const unsigned char*>(p.v_data);
      // A full tile is one contiguous run of 16 rows: 16-byte chunks when it is 16-byte
      // aligned (always, unless capacity · row bytes is not a multiple of 16); else row-wise
      // chunks of the rows' natural alignment (rows past the end repeat the last).
      const bool full = t0 + 15 <= last;
      if (full && r.k_blob) {
        const unsigned char* src = r.k_src0 + tile * (16 * KR);
#pragma unroll
        for (int c = lane; c < KR; c += 32) cp_async16(sa + c * 16, src + c * 16);
      } else {
#pragma unroll
        for (int c = lane; c < 16 * KR / KA; c += 32) {
          const int row = c / (KR / KA), col = c % (KR / KA);
          const long long tok = tokens.base + min(t0 + row, last);
          cp_async_n<KA>(sa + row * KR + col * KA, kc + tok * KR + col * KA);
        }
      }
      if (full && r.v_blob) {
        const unsigned char* src = r.v_src0 + tile * (16 * VR);
#pragma unroll
        for (int c = lane; c < VR; c += 32) cp_async16(sa + 16 * KR + c * 16, src + c * 16);
      } else {
#pragma unroll
        for (int c = lane; c < 16 * VR / VA; c += 32) {
          const int row = c / (VR / VA), col = c % (VR / VA);
          const long long tok = tokens.base + min(t0 + row, last);
          cp_async_n<VA>(sa + 16 * KR + row * VR + col * VA, vc + tok * VR + col * VA);
        }
      }
      // Each lane needs its token's norm, the half of the aligned pair (tok & ~1, tok | 1) that
      // its parity picks. Where the partner is not a written token of this split (below token 0
      // of an odd base: the previous head's tail; past the split's last when that is even) the
      // lane loads only its own 2 bytes and stores them into the half the consumer reads, so no
      // lane ever reads an unwritten word (a zero-filled partial cp.async still counts as a
      // 4-byte read for compute-sanitizer's initcheck). Tiles touching neither place take the
      // one-address path.
      const uint32_t nsa = sa + 16 * (KR + VR) + lane * 4;
      const bool odd_first = t0 == 0 && (tokens.base & 1);
      const bool even_last = t0 + 15 >= last && ((tokens.base + last) & 1) == 0;
      if (full && !odd_first && !even_last) {
        cp_async4(nsa, r.n_src0 + tile * 16);
      } else {
        const long long tok = tokens.base + min(t0 + (lane & 15), last);
        const __half* nrm = lane < 16 ? p.k_norms : p.v_norms;
        const bool partner_written = (tok & 1) ? tok > tokens.base : tok < tokens.base + last;
        if (partner_written) {
          cp_async4(nsa, nrm + (tok & ~1LL));
        } else {
          // A plain store: the closing __syncwarp orders it like the group's copies.
          const uint32_t h = __half_as_ushort(__ldg(nrm + tok));
          const uint32_t word = (tok & 1) ? h << 16 : h;
          asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(nsa), "r"(word));
        }
      }
    }
    cp_async_commit();
  }
}

// The value signs of this thread's elements (1 without signs or past the end).
template <class S>
__device__ __forceinline__ void load_value_signs(const SplitParams& p, int tid,
                                                 float (&sgn)[S::kPerThread]) {
  constexpr int D = S::kDim;
#pragma unroll
  for (int k = 0; k < S::kPerThread; ++k) {
    const int i = tid + k * S::kThreads;
    sgn[k] = p.out_signs && i < kRowsPerChunk * D ? __ldg(p.out_signs + i % D) : 1.0f;
  }
}

// The query rows' elements of this thread (· scale · log2 e, and the Hadamard signs / √D),
// loaded before the ring prefill so that they do not queue behind the tiles of every SM.
template <class S>
__device__ __forceinline__ void load_queries(const SplitParams& p, const TcThread& th,
                                             float (&qv)[S::kPerThread]) {
  constexpr int D = S::kDim;
#pragma unroll
  for (int k = 0; k < S::kPerThread; ++k) {
    const int i = th.tid + k * S::kThreads, c = i / D, j = i % D;
    const int row = th.chunk * kRowsPerChunk + c;
    float v = 0.0f;
    if (i < kRowsPerChunk * D && row < p.rows) {
      const int qi = row / p.group, qh = th.kvh * p.group + row % p.group;
      v = __ldg(p.q + ((static_cast<long long>(th.b) * p.n_queries + qi) * p.q_heads + qh) * D +
                j) *
          p.scale_log2;
      if (p.rot_signs) v *= __ldg(p.rot_signs + j) * rsqrtf(static_cast<float>(D));
    }
    qv[k] = v;
  }
}

// Query preparation: Π q · scale · log2 e for the chunk's 8 rows, into sq.
template <class S>
__device__ __forceinline__ void prepare_queries(const SplitParams& p, int tid, const TcSmem& sm,
                                                const float (&qv)[S::kPerThread]) {
  constexpr int D = S::kDim;
#pragma unroll
  for (int k = 0; k < S::kPerThread; ++k)
    if (tid + k * S::kThreads < kRowsPerChunk * D) sm.sq[tid + k * S::kThreads] = qv[k];
  __syncthreads();
  if (p.rot_signs) {
    fwht_rows<D, kRowsPerChunk>(sm.sq);
  } else if (p.rot_pi_t) {
    dense_rotate_rows<D, S::kThreads, true>(p.rot_pi_t, sm.sq, sm.prep_scratch);  // Π q from Πᵀ
  }
}

// The tokens of the exact window that this CTA folds into its partial (decode, fused case):
// [t_begin, t_begin + n) with per = ⌈W / S⌉ ≤ D tokens per CTA (the host's condition), so that
// the slice's scores fit the win_o space. (window_lengths[b] ≤ max_window ≤ window_capacity is
// the caller's contract; the clamp only keeps a broken one inside the scratch space.)
struct WindowSlice {
  int n, t_begin;
};

template <class S>
__device__ __forceinline__ WindowSlice window_slice(const SplitParams& p, const TcThread& th,
                                                    const TcTokens& tokens) {
  WindowSlice w{0, 0};
  if constexpr (S::kTq) {
    if (p.window_lengths) {
      const int W = min(tokens.win_len, min(p.window_capacity, kFusedWindowMax));
      const int per = min((W + p.splits - 1) / p.splits, S::kDim);
      w.t_begin = th.split * per;
      w.n = max(0, min(per, W - w.t_begin));
    }
  }
  return w;
}

// The window slice as one more softmax state of the CTA: scores, the row's max and sum,
// o = Σ p·v in the original domain, then Π o (FWHT after the signs for Hadamard) so that it
// merges with the rotated-domain states. Riding in the splits, the window costs every CTA a
// little in its prologue instead of a serial tail in the merging CTA.
template <class S>
__device__ __forceinline__ void fold_window_slice(const SplitParams& p, const TcThread& th,
                                                  const TcSmem& sm, const WindowSlice& slice) {
  constexpr int D = S::kDim, kThreads = S::kThreads, kPerThread = S::kPerThread;
  const int tid = th.tid, warp = th.warp, lane = th.lane, b = th.b, kvh = th.kvh;
  const int chunk = th.chunk;
  const int win_n = slice.n, t_begin = slice.t_begin;
  if (S::kTq && win_n > 0) {
    const int n = win_n, nrows = min(kRowsPerChunk, p.rows - chunk * kRowsPerChunk);
    const long long wbase =
        (static_cast<long long>(b * p.kv_heads + kvh) * p.window_capacity + t_begin) * D;
    float* qo = sm.prep_scratch;  // [8][D] original queries · scale · log2 e (region A, free now)
    float* sw = sm.win_o;         // [8][n] scores, then weights (n ≤ D)
    // This thread's (row, dim) elements of o = Σ w·v: their V values of the first kVPre tokens
    // and the value signs are loaded now, in the same round trip as the keys below (after the
    // weights they would make a chain of three DRAM latencies).
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
    load_value_signs<S>(p, tid, sgn);
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
          const float w = State::weight(sw[c * n + t], m);
          sw[c * n + t] = w;
          l += w;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
      }
      if (lane == 0) {
        sm.win_ml[c] = m;
        sm.win_ml[kRowsPerChunk + c] = l;
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
        sm.win_o[i] = p.out_signs ? acc[k] * sgn[k] * rsqrtf(static_cast<float>(D)) : acc[k];
    }
    __syncthreads();
    if (p.out_signs) {
      // Π o = H (s ⊙ o) / √D, the inverse of the merge's rotation.
      fwht_rows<D, kRowsPerChunk>(sm.win_o);
    } else if (p.out_pi) {
      dense_rotate_rows<D, kThreads, false>(p.out_pi, sm.win_o, sm.prep_scratch);  // Π o
    }
  }
}

// Pair → half2 tables, lane-replicated ([entries][stride], 32 words used per entry), written
// directly with 16-byte stores (entry e = (second code << b) | first code; no staging copy, no
// extra barrier).
template <class S, int B>
__device__ __forceinline__ void build_table(uint32_t* lut, const float (&cent_reg)[5], int tid) {
  using Tab = typename S::Tab;
  if constexpr (Tab::uses(B)) {
    // Whole warps take part (8 stores per entry, entry counts ≥ 16): shuffles are safe.
    for (int i = tid; i < Tab::entries(B) * 8; i += S::kThreads) {
      const int e = i >> 3;
      const uint32_t h = pack_half2(__shfl_sync(0xffffffffu, cent_reg[B], e & ((1 << B) - 1)),
                                    __shfl_sync(0xffffffffu, cent_reg[B], e >> B));
      *reinterpret_cast<uint4*>(lut + Tab::offset(B) + e * Tab::stride() + (i & 7) * 4) =
          make_uint4(h, h, h, h);
    }
  }
}

// What a warp's tile loop reads besides the tiles: the query B fragments, the score column
// limits of this thread's two rows, the tables and the warp's P tile.
template <class S>
struct TileInputs {
  uint32_t qf[S::KSTEPS][2];
  int col_end[2];  // this thread's score columns are rows 2·tig and 2·tig + 1 of the chunk
  const unsigned char* lut_bytes;
  uint32_t lane4;  // 4·lane: the lane's column of a lane-replicated table
  __half* sp;      // the warp's 16 × 8 tile of P
  uint32_t sp_addr;
};

template <class S>
__device__ __forceinline__ void column_limits(const SplitParams& p, const TcThread& th,
                                              const TcTokens& tokens, TileInputs<S>& in) {
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    const int row = th.chunk * kRowsPerChunk + 2 * th.tig + c;
    int lim = 0;
    if (row < p.rows) lim = tokens.len - (p.n_queries - 1 - row / p.group);
    in.col_end[c] = min(tokens.split_end, lim);
  }
}

// Query B fragments, permuted to match the A loads: k-step kb of key segment s = kb / KSPS
// takes pair P = s·D/(2·KNSEG) + tig·D/(8·KNSEG) + 2·(kb mod KSPS) + half (one segment:
// P = tig·D/8 + 2·kb + half). Entry e of qbuf is built by thread e: consecutive threads take
// consecutive (kb, half) of one lane, so the sq reads spread over the banks.
template <class S>
__device__ __forceinline__ void query_fragments(const TcThread& th, const TcSmem& sm,
                                                TileInputs<S>& in) {
  constexpr int D = S::kDim, KSTEPS = S::KSTEPS, KSPS = S::KSPS, KNSEG = S::KNSEG;
  for (int e = th.tid; e < 2 * KSTEPS * 32; e += S::kThreads) {
    const int kbh = e % (2 * KSTEPS), ln = e / (2 * KSTEPS);
    const int kb = kbh >> 1, h = kbh & 1, gg = ln >> 2, tt = ln & 3;
    const int pair = (kb / KSPS) * (D / (2 * KNSEG)) + tt * (D / (8 * KNSEG)) + 2 * (kb % KSPS) + h;
    const float* q = sm.sq + gg * D;  // rows past p.rows are zero
    sm.qbuf[kbh * 32 + ln] = pack_half2(q[2 * pair], q[2 * pair + 1]);
  }
  __syncthreads();
#pragma unroll
  for (int kb = 0; kb < KSTEPS; ++kb) {
    in.qf[kb][0] = sm.qbuf[(2 * kb) * 32 + th.lane];
    in.qf[kb][1] = sm.qbuf[(2 * kb + 1) * 32 + th.lane];
  }
}

// Half2 of the j-th code pair of a normalised stream of b-bit codes (b constant after
// unrolling).
template <class S>
__device__ __forceinline__ uint32_t lookup(const TileInputs<S>& in, const uint32_t* w, int b,
                                           int j) {
  using Tab = typename S::Tab;
  constexpr int SH = Tab::shift;
  uint32_t off;
  if (b == 4)
    off = byte_pair_offset(w, j, in.lane4);  // 4-bit ⇒ wide tables, 4-bit table at offset 0
  else if (b == 3)
    off = Tab::offset(3) * 4 + (pair_offset<3, SH>(w, j) | in.lane4);
  else
    off = Tab::offset(2) * 4 + (pair_offset<2, SH>(w, j) | in.lane4);
  return *reinterpret_cast<const uint32_t*>(in.lut_bytes + off);
}

// One 16-token fp16 tile straight from global memory into registers (the fp16 baseline; the
// code path stages tiles through the cp.async ring).
template <class S>
__device__ __forceinline__ void load_fp16_tile(const SplitParams& p, const TcThread& th,
                                               const TcTokens& tokens, typename S::Regs& r,
                                               int tile) {
  constexpr int D = S::kDim;
  const int g = th.g, tig = th.tig;
  const int t0 = tokens.start + tile * 16;
  const int last = tokens.split_end - 1;
  const int ta = min(t0 + g, last), tb = min(t0 + g + 8, last);
  const __half* kh = static_cast<const __half*>(p.k_data);
  load_words(kh + (tokens.base + ta) * D + tig * (D / 4), r.ka);
  load_words(kh + (tokens.base + tb) * D + tig * (D / 4), r.kb);
  const __half* vh = static_cast<const __half*>(p.v_data);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int tv = min(t0 + 2 * tig + (i & 1) + (i >> 1) * 8, last);
    load_words(vh + (tokens.base + tv) * D + g * (D / 8), r.v[i]);
  }
}

// Code tile → registers: the thread's bit streams of one staged tile (per key segment rows g and
// g + 8, per value segment its 4 tokens) and the tile's norms.
template <class S>
__device__ __forceinline__ void load_code_tile(const unsigned char* st, const TcThread& th,
                                               const TcTokens& tokens, int t0,
                                               typename S::Tile& cur) {
  constexpr int KR = S::KR, VR = S::VR;
  const int g = th.g, tig = th.tig;
  const int last = tokens.split_end - 1;
  {
    using KCd = typename S::KCodes;
    load_stream<KCd::k_bits(0), KCd::seg_byte(0), KCd::ALIGN>(st + g * KR, tig, cur.ka[0]);
    load_stream<KCd::k_bits(0), KCd::seg_byte(0), KCd::ALIGN>(st + (g + 8) * KR, tig, cur.kb[0]);
    if constexpr (S::KNSEG == 2) {
      load_stream<KCd::k_bits(1), KCd::seg_byte(1), KCd::ALIGN>(st + g * KR, tig, cur.ka[1]);
      load_stream<KCd::k_bits(1), KCd::seg_byte(1), KCd::ALIGN>(st + (g + 8) * KR, tig, cur.kb[1]);
    }
    using VCd = typename S::VCodes;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const unsigned char* row = st + 16 * KR + (2 * tig + (i & 1) + (i >> 1) * 8) * VR;
      load_stream<VCd::v_bits(0), VCd::seg_byte(0), VCd::ALIGN>(row, g, cur.v[i][0]);
      if constexpr (S::VNSEG == 2)
        load_stream<VCd::v_bits(1), VCd::seg_byte(1), VCd::ALIGN>(row, g, cur.v[i][1]);
    }
  }
  const uint32_t* nw = reinterpret_cast<const uint32_t*>(st + 16 * (KR + VR));
  auto norm_at = [&](int word, int r) {
    const int odd = static_cast<int>((tokens.base + min(t0 + r, last)) & 1);
    return __half2float(__ushort_as_half(static_cast<unsigned short>(nw[word] >> (16 * odd))));
  };
  cur.kna = norm_at(g, g);
  cur.knb = norm_at(g + 8, g + 8);
  cur.vna = norm_at(16 + g, g);
  cur.vnb = norm_at(24 + g, g + 8);
}

// The softmax states of this thread's two rows (2·tig and 2·tig + 1 of the chunk) over the
// warp's tiles, in the mma accumulator layout: o[mt][0] and o[mt][2] belong to row 2·tig,
// o[mt][1] and o[mt][3] to row 2·tig + 1; l is this lane's share until the loop ends. They stay
// raw fragment registers rather than two SoftmaxState: each o[mt] is bound to an mma as one
// 4-register accumulator holding both rows, and the update (one vote per tile, the 8-lane max
// only when a maximum moves) is per-lane fragment math that a per-row type would not express.
template <class S>
struct FragmentState {
  float o[S::MT][4];
  float m0, m1, l0, l1;
};

// Scores, online softmax, P·V for one 16-token tile (t0: its first token).
template <class S, class TileT>
__device__ __forceinline__ void process_tile(const TileT& cur, int t0, int g, int tig,
                                             const TileInputs<S>& in, FragmentState<S>& f) {
  constexpr bool kTq = S::kTq;
  constexpr int KSTEPS = S::KSTEPS, MT = S::MT, KSPS = S::KSPS, MTPS = S::MTPS;
  float(&o)[MT][4] = f.o;
  // Two accumulators (even / odd k-steps): halves the dependent mma chain of the scores.
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s_odd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int kb = 0; kb < KSTEPS; ++kb) {
    uint32_t a0, a1, a2, a3;
    if constexpr (kTq) {
      const int sg = kb / KSPS, kk = kb % KSPS, bits = S::KCodes::bits(sg);
      a0 = lookup(in, cur.ka[sg], bits, 2 * kk);
      a1 = lookup(in, cur.kb[sg], bits, 2 * kk);
      a2 = lookup(in, cur.ka[sg], bits, 2 * kk + 1);
      a3 = lookup(in, cur.kb[sg], bits, 2 * kk + 1);
    } else {
      a0 = cur.ka[2 * kb];
      a1 = cur.kb[2 * kb];
      a2 = cur.ka[2 * kb + 1];
      a3 = cur.kb[2 * kb + 1];
    }
    mma_m16n8k16((kb & 1) ? s_odd : s, a0, a1, a2, a3, in.qf[kb][0], in.qf[kb][1]);
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
  s[0] = ta < in.col_end[0] ? s[0] : ninf;
  s[1] = ta < in.col_end[1] ? s[1] : ninf;
  s[2] = tb < in.col_end[0] ? s[2] : ninf;
  s[3] = tb < in.col_end[1] ? s[3] : ninf;
  // Online softmax with the row maxima warp-uniform: the 8-lane max reduction (6 shuffles
  // through the MIO pipe) and the rescale of o run only when some score of the tile exceeds its
  // row's running maximum — after the first tiles, rarely. Otherwise p = 2^(s − m) with m kept
  // (exact: the rescale factor would be 1).
  float mx0 = fmaxf(s[0], s[2]), mx1 = fmaxf(s[1], s[3]);
  float al0 = 1.0f, al1 = 1.0f;
  if (__any_sync(0xffffffffu, mx0 > f.m0 || mx1 > f.m1)) {
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(f.m0, mx0), mn1 = fmaxf(f.m1, mx1);
    al0 = State::weight(f.m0, mn0);
    al1 = State::weight(f.m1, mn1);
    f.m0 = mn0;
    f.m1 = mn1;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      o[mt][0] *= al0;
      o[mt][1] *= al1;
      o[mt][2] *= al0;
      o[mt][3] *= al1;
    }
  }
  float p0 = State::weight(s[0], f.m0), p1 = State::weight(s[1], f.m1);
  float p2 = State::weight(s[2], f.m0), p3 = State::weight(s[3], f.m1);
  f.l0 = f.l0 * al0 + p0 + p2;
  f.l1 = f.l1 * al1 + p1 + p3;
  if constexpr (kTq) {
    p0 *= cur.vna;
    p1 *= cur.vna;
    p2 *= cur.vnb;
    p3 *= cur.vnb;
  }
  __syncwarp();
  reinterpret_cast<uint32_t*>(in.sp)[g * 4 + tig] = pack_half2(p0, p1);
  reinterpret_cast<uint32_t*>(in.sp)[(g + 8) * 4 + tig] = pack_half2(p2, p3);
  __syncwarp();
  uint32_t pb0, pb1;
  ptx::ldmatrix_x2_trans(in.sp_addr, pb0, pb1);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    uint32_t x[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kTq) {
        x[i] = lookup(in, cur.v[i][mt / MTPS], S::VCodes::bits(mt / MTPS), mt % MTPS);
      } else {
        x[i] = cur.v[i][mt];
      }
    }
    mma_m16n8k16(o[mt], __byte_perm(x[0], x[1], 0x5410), __byte_perm(x[0], x[1], 0x7632),
                 __byte_perm(x[2], x[3], 0x5410), __byte_perm(x[2], x[3], 0x7632), pb0, pb1);
  }
}

// The warp's tiles (tile = warp, warp + kWarps, …): codes through the cp.async ring with
// kStages − 1 tiles per warp in flight (no registers held for them; the stage read now is
// refilled at the next iteration, after the closing __syncwarp), fp16 tiles straight into
// registers.
template <class S>
__device__ __forceinline__ void tile_loop(const SplitParams& p, const TcThread& th,
                                          const TcTokens& tokens, const CodeRing& r,
                                          const TileInputs<S>& in, FragmentState<S>& f) {
  if constexpr (S::kTq) {
    int it = 0;
    for (int tile = th.warp; tile < tokens.ntiles; tile += S::kWarps, ++it) {
      issue_tile<S>(p, th, tokens, r, tile + (kStages - 1) * S::kWarps,
                    (it + kStages - 1) % kStages);
      cp_async_wait<kStages - 1>();
      __syncwarp();
      const unsigned char* st = r.ring + (it % kStages) * S::kStage;
      const int t0 = tokens.start + tile * 16;
      typename S::Tile cur;
      load_code_tile<S>(st, th, tokens, t0, cur);
      process_tile<S>(cur, t0, th.g, th.tig, in, f);
      __syncwarp();
    }
    cp_async_wait<0>();
  } else {
    typename S::Regs cur;
    for (int tile = th.warp; tile < tokens.ntiles; tile += S::kWarps) {
      load_fp16_tile<S>(p, th, tokens, cur, tile);
      process_tile<S>(cur, tokens.start + tile * 16, th.g, th.tig, in, f);
    }
  }
}

// The warps' states → the split's partial (m, l, o) in global memory, with this CTA's window
// slice merged in.
template <class S>
__device__ __forceinline__ void write_partial(const SplitParams& p, const TcThread& th,
                                              const TcSmem& sm, FragmentState<S>& f, int win_n) {
  constexpr int D = S::kDim, MT = S::MT, MTPS = S::MTPS, VNSEG = S::VNSEG;
  const int warp = th.warp, g = th.g, tig = th.tig;
#pragma unroll
  for (int off = 4; off < 32; off <<= 1) {
    f.l0 += __shfl_xor_sync(0xffffffffu, f.l0, off);
    f.l1 += __shfl_xor_sync(0xffffffffu, f.l1, off);
  }
  __syncthreads();  // the rings are drained; their space holds the per-warp states
  stamp(p, th, 2);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    // Value pair of (m-tile, g): segment mt / MTPS, its g-th run of MTPS pairs. Stored at
    // red_swizzle(row, dim): unswizzled, the lanes of a warp would hit 2 banks (a 16-way
    // conflict).
    const int dim = 2 * ((mt / MTPS) * (D / (2 * VNSEG)) + g * MTPS + mt % MTPS);
    const int sd = red_swizzle(2 * tig, dim);  // rows 2·tig and 2·tig + 1 swizzle alike
    float* w0 = sm.red_o + (warp * kRowsPerChunk + 2 * tig) * D;
    float* w1 = w0 + D;
    w0[sd] = f.o[mt][0];
    w1[sd] = f.o[mt][1];
    w0[sd ^ 1] = f.o[mt][2];
    w1[sd ^ 1] = f.o[mt][3];
  }
  if (g == 0) {
    sm.red_ml[(warp * kRowsPerChunk + 2 * tig) * 2] = f.m0;
    sm.red_ml[(warp * kRowsPerChunk + 2 * tig) * 2 + 1] = f.l0;
    sm.red_ml[(warp * kRowsPerChunk + 2 * tig + 1) * 2] = f.m1;
    sm.red_ml[(warp * kRowsPerChunk + 2 * tig + 1) * 2 + 1] = f.l1;
  }
  __syncthreads();
  for (int i = th.tid; i < kRowsPerChunk * D; i += S::kThreads) {
    const int col = i / D, dim = i % D;
    const int row = th.chunk * kRowsPerChunk + col;
    if (row >= p.rows) continue;
    float mmax = kNegBig;
#pragma unroll
    for (int w = 0; w < S::kWarps; ++w)
      mmax = fmaxf(mmax, sm.red_ml[(w * kRowsPerChunk + col) * 2]);
    State st{mmax};
#pragma unroll
    for (int w = 0; w < S::kWarps; ++w) {
      st.absorb(sm.red_ml[(w * kRowsPerChunk + col) * 2],
                sm.red_ml[(w * kRowsPerChunk + col) * 2 + 1],
                sm.red_o[(w * kRowsPerChunk + col) * D + red_swizzle(col, dim)]);
    }
    if (win_n > 0) {  // this CTA's window slice, one more state
      st.merge(State{sm.win_ml[col], sm.win_ml[kRowsPerChunk + col], {sm.win_o[col * D + dim]}});
    }
    const long long slot =
        (static_cast<long long>(th.b * p.kv_heads + th.kvh) * p.rows + row) * p.splits + th.split;
    p.part_o[slot * D + dim] = st.o[0];
    if (dim == 0) {
      p.part_ml[slot * 2] = st.m;
      p.part_ml[slot * 2 + 1] = st.l;
    }
  }
}

// Fused merge: the last CTA of this (sequence, KV head, chunk) to finish combines all splits,
// rotates back once and writes the output. Classic threadfence pattern: every thread publishes
// its partials before thread 0 counts the CTA in.
template <class S>
__device__ __forceinline__ void fused_merge(const SplitParams& p, const TcThread& th,
                                            const TcSmem& sm) {
  constexpr int D = S::kDim, kThreads = S::kThreads, kPerThread = S::kPerThread;
  const int tid = th.tid, warp = th.warp, lane = th.lane, b = th.b, kvh = th.kvh, chunk = th.chunk;
  __shared__ int s_last;
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    int* ctr = p.counters + (b * p.kv_heads + kvh) * p.row_chunks + chunk;
    const int prev = atomicAdd(ctr, 1);
    s_last = prev == p.splits - 1;
    if (s_last) *ctr = 0;  // every CTA of the group has arrived: ready for the next call
  }
  __syncthreads();
  stamp(p, th, 4);
  if (!s_last) return;
  // The value signs of this thread's output elements, loaded before the partials (the same
  // round trip instead of one more after the rotation).
  float out_sgn[kPerThread];
  load_value_signs<S>(p, tid, out_sgn);
  __threadfence();
  const int n_splits = p.splits, row0 = chunk * kRowsPerChunk;
  float* wts = sm.scratch;  // [8][S] split weights (region B is free again)
  auto slot_of = [&](int row) {
    return (static_cast<long long>(b * p.kv_heads + kvh) * p.rows + row) * n_splits;
  };
  if (n_splits <= 16) {
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
          if (k < n_splits) {
            mv[k] = __ldcg(ml + 2 * k);
            lv[k] = __ldcg(ml + 2 * k + 1);
            ov[k] = __ldcg(po + static_cast<long long>(k) * D);
          }
        }
        float mx = kNegBig;
#pragma unroll
        for (int k = 0; k < 16; ++k)
          if (k < n_splits) mx = fmaxf(mx, mv[k]);
        State st{mx};
#pragma unroll
        for (int k = 0; k < 16; ++k) {
          if (k < n_splits) st.absorb(mv[k], lv[k], ov[k]);
        }
        if (dim == 0) sm.red_ml[c] = st.l;
        acc = st.o[0];
      }
      sm.sq[i] = acc;
    }
    __syncthreads();
  } else {
    if (warp < kRowsPerChunk) {
      const int row = row0 + warp;
      if (row < p.rows) {
        const float* ml = p.part_ml + slot_of(row) * 2;
        float mx = kNegBig;
        for (int k = lane; k < n_splits; k += 32) mx = fmaxf(mx, __ldcg(ml + 2 * k));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        float l = 0.0f;
        for (int k = lane; k < n_splits; k += 32) {
          const float f = State::weight(__ldcg(ml + 2 * k), mx);
          wts[warp * n_splits + k] = f;
          l += f * __ldcg(ml + 2 * k + 1);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
        if (lane == 0) sm.red_ml[warp] = l;
      }
    }
    __syncthreads();
    for (int i = tid; i < kRowsPerChunk * D; i += kThreads) {
      const int c = i / D, dim = i % D, row = row0 + c;
      float acc = 0.0f;
      if (row < p.rows) {
        const float* po = p.part_o + slot_of(row) * D + dim;
        const float* w = wts + c * n_splits;
#pragma unroll 8
        for (int k = 0; k < n_splits; ++k) acc += w[k] * __ldcg(po + static_cast<long long>(k) * D);
      }
      sm.sq[i] = acc;
    }
    __syncthreads();
  }
  if (p.out_signs) {
    fwht_rows<D, kRowsPerChunk>(sm.sq);
  } else if (p.out_pi) {
    dense_rotate_rows<D, kThreads, true>(p.out_pi, sm.sq,
                                         sm.scratch + kRowsPerChunk * n_splits);  // Πᵀ z
  }
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int i = tid + k * kThreads;
    if (i >= kRowsPerChunk * D) break;
    const int c = i / D, j = i % D, row = row0 + c;
    if (row >= p.rows) continue;
    float v = sm.sq[i];
    if (p.out_signs) v *= out_sgn[k] * rsqrtf(static_cast<float>(D));
    const int qi = row / p.group, qh = kvh * p.group + row % p.group;
    p.out[((static_cast<long long>(b) * p.n_queries + qi) * p.q_heads + qh) * D + j] =
        softmax_normalize(v, sm.red_ml[c]);
  }
  stamp(p, th, 5);
}

template <int D, int KC, int VC>
__global__ void __launch_bounds__(warps_of<D>() * 32, 1) tc_split_kernel(const SplitParams p) {
  using S = TcShape<D, KC, VC>;
  extern __shared__ uint4 smem_raw[];
  const TcSmem sm = carve_smem<S>(smem_raw);
  const TcThread th = this_thread(p);
  stamp(p, th, 0);
  const TcTokens tokens = tokens_of<S>(p, th);

  // Prologue: codebooks, queries, ring prefill, query preparation, window slice, tables, query
  // fragments.
  float cent_reg[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  load_codebooks<S>(p, th.lane, cent_reg);
  const CodeRing ring = code_ring<S>(p, th, tokens, sm);
  float qv[S::kPerThread];
  load_queries<S>(p, th, qv);
  if constexpr (S::kTq) {
    // Prefill the ring first: the first tiles' DRAM latency overlaps the setup below.
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i)
      issue_tile<S>(p, th, tokens, ring, th.warp + i * S::kWarps, i);
  }
  prepare_queries<S>(p, th.tid, sm, qv);
  const WindowSlice slice = window_slice<S>(p, th, tokens);
  fold_window_slice<S>(p, th, sm, slice);
  if constexpr (S::kTq) {
    build_table<S, 4>(sm.lut, cent_reg, th.tid);
    build_table<S, 3>(sm.lut, cent_reg, th.tid);
    build_table<S, 2>(sm.lut, cent_reg, th.tid);
  }
  TileInputs<S> in;
  column_limits<S>(p, th, tokens, in);
  query_fragments<S>(th, sm, in);
  in.lut_bytes = reinterpret_cast<const unsigned char*>(sm.lut);
  in.lane4 = static_cast<uint32_t>(th.lane) * 4u;

  FragmentState<S> f;
#pragma unroll
  for (int mt = 0; mt < S::MT; ++mt) f.o[mt][0] = f.o[mt][1] = f.o[mt][2] = f.o[mt][3] = 0.0f;
  f.m0 = kNegBig;
  f.m1 = kNegBig;
  f.l0 = 0.0f;
  f.l1 = 0.0f;
  in.sp = sm.sp_all + th.warp * 128;
  in.sp_addr = static_cast<uint32_t>(__cvta_generic_to_shared(in.sp + (th.lane & 15) * 8));
  stamp(p, th, 1);

  tile_loop<S>(p, th, tokens, ring, in, f);
  write_partial<S>(p, th, sm, f, slice.n);
  stamp(p, th, 3);
  if (p.counters == nullptr) return;  // the host runs the merge kernel (exact window)
  fused_merge<S>(p, th, sm);
}

template <int D, int KC, int VC>
void launch_one(const SplitParams& p, int batch, cudaStream_t stream) {
  constexpr int smem = TcShape<D, KC, VC>::kSmemBytes;
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
    constexpr int smem = TcShape<D, KC, VC>::kSmemBytes;
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
