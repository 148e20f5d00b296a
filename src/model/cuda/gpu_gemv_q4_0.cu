// The Q4_0 few-token gemv of gpu_weights.cuh on the tensor cores: y[r] (+)= W·x[r] (+ bias) for
// 1..8 activation rows (tokens), each weight byte read once for all of them.
//
// Why not the generic gemv (gpu_gemv.cu): there, each weight costs ~5 fp32 instructions (unpack,
// convert, one FMA per token) and each 8 weights three 2-byte loads, and it reached only ~30 % of
// the copy bandwidth on the H200 at one token (less at eight). Here a warp feeds 16 weight rows ×
// 16 columns × 8 tokens to one mma.sync m16n8k16 (fp16 in, fp32 accumulate): the tokens are the
// mma's n (8 = kGemvMaxRows; unused columns are zero), the weights its A operand, decoded from
// nibbles to exact fp16 integers q − 8 with 2 LOP3 + 1 HSUB2/HFMA2 per pair of weights, and the
// block's scale applied to the fp32 result once per block. A warp's instruction count per weight
// no longer grows with the tokens.
//
// Layout of the work: rows in tiles of 16; a CTA of 16 warps owns a contiguous range of tiles
// (grid = CTAs resident at once, so each CTA stages the activations once per column chunk, not
// once per tile); its (tile, 256-column group) work units are split evenly over its warps, each
// walking a contiguous run (along rows, then to the next tile) with the next unit's loads in
// flight and the one kPrefetchAhead further on asked of L2. The activations of a column chunk sit
// in shared memory as fp16, already in mma B-fragment order (one conflict-free 16-byte load per
// lane per block); weights come from the device layout of gguf_blocks.cuh (two 16-byte loads of
// nibbles and one of scales per lane per row per 256 columns). The warps' partial sums meet in
// shared memory (fp32 atomics), then y is written once.
#include "gpu_gemv_q4_0.cuh"

#include "cuda/internal.cuh"
#include "cuda/ptx.cuh"
#include "gemv_rows.cuh"
#include "gguf_blocks.cuh"

#include <algorithm>
#include <cstdint>

namespace tq::gpu::detail {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kTileRows = 16;
constexpr int kGroupBlocks = blocks::kQ4_0GroupBlocks;  // 8 blocks = 256 columns
constexpr int kGroupCols = 32 * kGroupBlocks;
constexpr int kXBytesMax = 96 * 1024;     // fp16 activations of one column chunk
constexpr int kAccBytesMax = 120 * 1024;  // the CTA's partial sums [tokens][its rows]
constexpr int kStage = 2;                 // activation entries a thread stages per step
constexpr int kPrefetchAhead = 4;         // work units between a unit's L2 prefetch and its load

struct Args {
  const std::uint8_t* w;
  std::size_t row_bytes;
  int wrows, cols;
  const float* x;
  int ldx;
  int x_aligned;  // x and ldx allow 16-byte loads
  const float* bias;
  float* y;
  int ldy;
  int accumulate;
  int tiles, ctas;  // 16-row tiles, and the CTAs that share them
  int kc;           // activation columns staged at a time (a multiple of 256)
};

__device__ __forceinline__ __half2 as_half2(std::uint32_t u) {
  __half2 h;
  static_assert(sizeof(h) == sizeof(u));
  __builtin_memcpy(&h, &u, sizeof(u));
  return h;
}
__device__ __forceinline__ std::uint32_t as_u32(__half2 h) {
  std::uint32_t u;
  __builtin_memcpy(&u, &h, sizeof(u));
  return u;
}
__device__ __forceinline__ std::uint32_t pack_half2(float lo, float hi) {
  return as_u32(__floats2half2_rn(lo, hi));
}

// Nibbles at bits 0-3 and 16-19 of w as the fp16 pair (q − 8): 0x6400 | q is 1024 + q.
__device__ __forceinline__ std::uint32_t low_nibbles(std::uint32_t w) {
  const std::uint32_t h = (w & 0x000f000fu) | 0x64006400u;
  return as_u32(__hsub2(as_half2(h), as_half2(0x64086408u)));  // − 1032
}
// Nibbles at bits 4-7 and 20-23: 0x6400 | q << 4 is 1024 + 16q; ·(1/16) − 72 = q − 8, exactly.
__device__ __forceinline__ std::uint32_t high_nibbles(std::uint32_t w) {
  const std::uint32_t h = (w & 0x00f000f0u) | 0x64006400u;
  return as_u32(__hfma2(as_half2(h), as_half2(0x2c002c00u), as_half2(0xd480d480u)));
}

__device__ __forceinline__ std::uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}
__device__ __forceinline__ float scale_of(const uint4& s, int block) {
  const std::uint32_t w = word(s, block >> 1);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(w >> (16 * (block & 1)))));
}

// One 256-column group of a lane's two rows (g and g + 8 of its tile): nibble byte quad t of each
// of the 8 blocks (blocks 0-3, 4-7: two 16-byte loads) and the 8 scales, per row.
struct GroupRaw {
  uint4 q[2][2];
  uint4 s[2];
};

__device__ __forceinline__ GroupRaw load_group(const std::uint8_t* row0, const std::uint8_t* row1,
                                               int group, int t) {
  const std::size_t off = static_cast<std::size_t>(group) * blocks::kQ4_0GroupBytes;
  const auto* q0 = reinterpret_cast<const uint4*>(row0 + off + 32 * t);
  const auto* q1 = reinterpret_cast<const uint4*>(row1 + off + 32 * t);
  GroupRaw r;
  r.q[0][0] = __ldg(q0);
  r.q[0][1] = __ldg(q0 + 1);
  r.q[1][0] = __ldg(q1);
  r.q[1][1] = __ldg(q1 + 1);
  r.s[0] = __ldg(reinterpret_cast<const uint4*>(row0 + off + blocks::kQ4_0ScaleOffset));
  r.s[1] = __ldg(reinterpret_cast<const uint4*>(row1 + off + blocks::kQ4_0ScaleOffset));
  return r;
}

// Asks L2 for the group's bytes of the lane's two rows (lane t: its 32 nibble bytes; lane 0 of
// each row also the scales).
__device__ __forceinline__ void prefetch_group(const std::uint8_t* row0, const std::uint8_t* row1,
                                               int group, int t) {
  const std::size_t off = static_cast<std::size_t>(group) * blocks::kQ4_0GroupBytes;
  tq::cuda::ptx::prefetch_l2(row0 + off + 32 * t);
  tq::cuda::ptx::prefetch_l2(row1 + off + 32 * t);
  if (t == 0) {
    tq::cuda::ptx::prefetch_l2(row0 + off + blocks::kQ4_0ScaleOffset);
    tq::cuda::ptx::prefetch_l2(row1 + off + blocks::kQ4_0ScaleOffset);
  }
}

// A work unit's place: tile of the CTA, group of the chunk.
struct Pos {
  int tile, group;
};

// acc += d · (W_block · X_block) for one block: w0 / w1 the lane's nibble quad of rows g / g + 8
// (its columns 4t..4t+3 low, 16 + 4t.. high), xb its B fragments (x at 4t, 4t+2 | 4t+1, 4t+3 |
// the same + 16, for token g). The mma's k order is a permutation of the block's columns that A
// and B share: k = 2t, 2t+1 are columns 4t, 4t+2, k = 2t+8, 2t+9 are 4t+1, 4t+3.
__device__ __forceinline__ void block_product(std::uint32_t w0, std::uint32_t w1, const uint4& xb,
                                              float d0, float d1, float (&acc)[4]) {
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  tq::cuda::ptx::mma_m16n8k16(c, low_nibbles(w0), low_nibbles(w1), low_nibbles(w0 >> 8),
                              low_nibbles(w1 >> 8), xb.x, xb.y);
  tq::cuda::ptx::mma_m16n8k16(c, high_nibbles(w0), high_nibbles(w1), high_nibbles(w0 >> 8),
                              high_nibbles(w1 >> 8), xb.z, xb.w);
  acc[0] = fmaf(d0, c[0], acc[0]);
  acc[1] = fmaf(d0, c[1], acc[1]);
  acc[2] = fmaf(d1, c[2], acc[2]);
  acc[3] = fmaf(d1, c[3], acc[3]);
}

template <int R>
__global__ void __launch_bounds__(kThreads, 1) gemv_q4_0_kernel(Args p) {
  extern __shared__ uint4 smem[];
  uint4* xs = smem;  // [block of the chunk][token][lane t]: the B fragments
  float* acc = reinterpret_cast<float*>(smem + (p.kc / 32) * R * 4);  // [token][row of the CTA]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int tile0 = static_cast<int>(static_cast<long long>(blockIdx.x) * p.tiles / p.ctas);
  const int tile1 = static_cast<int>(static_cast<long long>(blockIdx.x + 1) * p.tiles / p.ctas);
  const int ntiles = tile1 - tile0;
  const int row0 = tile0 * kTileRows;
  const int nrows = min(ntiles * kTileRows, p.wrows - row0);
  if (nrows <= 0) return;  // uniform over the CTA
  for (int i = threadIdx.x; i < R * nrows; i += kThreads) acc[i] = 0.0f;
  const uint4 zero4 = make_uint4(0u, 0u, 0u, 0u);

  for (int k0 = 0; k0 < p.cols; k0 += p.kc) {
    const int kn = min(p.kc, p.cols - k0);
    const int nb = kn / 32, ng = (nb + kGroupBlocks - 1) / kGroupBlocks;  // blocks, groups
    const int g0 = k0 / kGroupCols;
    // Work units: (tile, group) pairs of this CTA and chunk, tile-major; warp w walks units
    // [w·U/16, (w+1)·U/16) in order, so its loads stream along rows and never wait for a
    // restart, and its sums leave for shared memory when the tile changes.
    const int units = ntiles * ng;
    const int ub = static_cast<int>(static_cast<long long>(warp) * units / kWarps);
    const int ue = static_cast<int>(static_cast<long long>(warp + 1) * units / kWarps);
    auto row_ptr = [&](const Pos& q, int h) {
      const int r = min((tile0 + q.tile) * kTileRows + g + 8 * h, p.wrows - 1);  // past: dropped
      return p.w + static_cast<std::size_t>(r) * p.row_bytes;
    };
    auto advance = [&](Pos& q) {
      if (++q.group == ng) q.group = 0, ++q.tile;
    };
    Pos pc{ub / ng, ub % ng};
    __syncthreads();  // the previous chunk's fragment readers are done
    // The warp's first weight loads go out before the activations are staged.
    GroupRaw cur;
    if (ub < ue) cur = load_group(row_ptr(pc, 0), row_ptr(pc, 1), g0 + pc.group, t);
    // Stage the chunk's activations as B fragments: entry e = (block, token, t) holds fp16 x at
    // columns 4t, 4t+2 | 4t+1, 4t+3 | 16 + those, of that block and token. kStage entries per
    // thread per step, so that their loads are in flight together.
    const int entries = nb * R * 4;
    for (int e0 = threadIdx.x; e0 < entries; e0 += kStage * kThreads) {
      float v[kStage][8];
#pragma unroll
      for (int u = 0; u < kStage; ++u) {
        const int e = e0 + u * kThreads;
        if (e < entries) {
          const int tq = e & 3, n = (e >> 2) % R, blk = e / (4 * R);
          const float* xp = p.x + static_cast<std::size_t>(n) * p.ldx + k0 + 32 * blk + 4 * tq;
          if (p.x_aligned) {
            const float4 a = __ldg(reinterpret_cast<const float4*>(xp));
            const float4 b = __ldg(reinterpret_cast<const float4*>(xp + 16));
            v[u][0] = a.x, v[u][1] = a.y, v[u][2] = a.z, v[u][3] = a.w;
            v[u][4] = b.x, v[u][5] = b.y, v[u][6] = b.z, v[u][7] = b.w;
          } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              v[u][i] = __ldg(xp + i);
              v[u][4 + i] = __ldg(xp + 16 + i);
            }
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kStage; ++u) {
        const int e = e0 + u * kThreads;
        if (e < entries) {
          xs[e] = make_uint4(pack_half2(v[u][0], v[u][2]), pack_half2(v[u][1], v[u][3]),
                             pack_half2(v[u][4], v[u][6]), pack_half2(v[u][5], v[u][7]));
        }
      }
    }
    // A last partial group's padding blocks (zero scales in the weights) meet zeros here, so that
    // 0 · (finite) leaves the sums alone.
    for (int e = entries + threadIdx.x; e < ng * kGroupBlocks * R * 4; e += kThreads) xs[e] = zero4;
    __syncthreads();

    Pos pn = pc, pf = pc;  // the unit being loaded, the one being prefetched into L2
    advance(pn);
    for (int i = 0; i < kPrefetchAhead; ++i) advance(pf);
    float a4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int u = ub; u < ue; ++u) {
      const bool more = u + 1 < ue;
      GroupRaw next;
      if (more) next = load_group(row_ptr(pn, 0), row_ptr(pn, 1), g0 + pn.group, t);
      if (u + kPrefetchAhead < ue) prefetch_group(row_ptr(pf, 0), row_ptr(pf, 1), g0 + pf.group, t);
#pragma unroll
      for (int jb = 0; jb < kGroupBlocks; ++jb) {
        const uint4 xb = g < R ? xs[((pc.group * kGroupBlocks + jb) * R + g) * 4 + t] : zero4;
        block_product(word(cur.q[0][jb >> 2], jb & 3), word(cur.q[1][jb >> 2], jb & 3), xb,
                      scale_of(cur.s[0], jb), scale_of(cur.s[1], jb), a4);
      }
      if (!more || pn.tile != pc.tile) {
        // a4: rows g, g + 8 of the tile × tokens 2t, 2t + 1.
        const int lr = pc.tile * kTileRows + g;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int n = 2 * t + c;
            if (n < R && lr + 8 * h < nrows) atomicAdd(&acc[n * nrows + lr + 8 * h], a4[2 * h + c]);
            a4[2 * h + c] = 0.0f;
          }
        }
      }
      if (more) cur = next;
      pc = pn;
      advance(pn);
      advance(pf);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < R * nrows; i += kThreads) {
    const int n = i / nrows, lr = i - n * nrows, c = row0 + lr;
    float v = acc[i];
    if (p.bias) v += p.bias[c];
    float* yp = p.y + static_cast<std::size_t>(n) * p.ldy + c;
    *yp = p.accumulate ? *yp + v : v;
  }
}

template <int R>
void set_attribute(int bytes) {
  TQ_CUDA_CHECK(cudaFuncSetAttribute(gemv_q4_0_kernel<R>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

template <int R>
void launch(const DeviceMatrix& w, const float* x, int ldx, const float* bias, float* y, int ldy,
            bool accumulate, cudaStream_t s, int sms, int smem_bytes) {
  // Shared memory: up to kXBytesMax for the activations, the rest for the sums.
  const int x_bytes = std::min(kXBytesMax, smem_bytes / 2);
  const int acc_bytes = smem_bytes - x_bytes;
  const int cols = w.cols(), wrows = w.rows();
  // All columns at once when they fit (rounded up to whole groups), else chunks of whole groups.
  const int kc_max = std::max(kGroupCols, x_bytes / (R * 2) / kGroupCols * kGroupCols);
  const int kc = std::min((cols + kGroupCols - 1) / kGroupCols * kGroupCols, kc_max);
  const std::size_t x_smem = static_cast<std::size_t>(kc / 32) * R * 4 * sizeof(uint4);
  const int tiles = (wrows + kTileRows - 1) / kTileRows;
  int per_sm = 0;
  TQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_q4_0_kernel<R>,
                                                              kThreads, x_smem));
  // One CTA per resident slot; more when one CTA's sums would not fit.
  int ctas = std::min(tiles, sms * std::max(per_sm, 1));
  const int rows_fit = acc_bytes / (R * static_cast<int>(sizeof(float)));
  const int tiles_fit = std::max(1, rows_fit / kTileRows);
  ctas = std::max(ctas, (tiles + tiles_fit - 1) / tiles_fit);
  const int tiles_per_cta = (tiles + ctas - 1) / ctas;
  const std::size_t smem =
      x_smem + static_cast<std::size_t>(tiles_per_cta) * kTileRows * R * sizeof(float);
  const bool aligned = reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && ldx % 4 == 0;
  const Args a{w.data(), w.row_bytes(),      wrows, cols, x, ldx, aligned ? 1 : 0, bias, y,
               ldy,      accumulate ? 1 : 0, tiles, ctas, kc};
  gemv_q4_0_kernel<R><<<ctas, kThreads, smem, s>>>(a);
  TQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

int prepare_gemv_q4_0() {
  int dev = 0, optin = 0;
  TQ_CUDA_CHECK(cudaGetDevice(&dev));
  TQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const int bytes = std::min(kXBytesMax + kAccBytesMax, optin);
  for_each_gemv_rows([&](auto r) { set_attribute<decltype(r)::value>(bytes); });
  return bytes;
}

void gemv_q4_0(const DeviceMatrix& w, const float* x, int rows, int ldx, const float* bias,
               float* y, int ldy, bool accumulate, cudaStream_t s, int sms, int smem_bytes) {
  with_gemv_rows(rows, [&](auto r) {
    launch<decltype(r)::value>(w, x, ldx, bias, y, ldy, accumulate, s, sms, smem_bytes);
  });
}

}  // namespace tq::gpu::detail
