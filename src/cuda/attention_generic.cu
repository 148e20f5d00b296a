// Generic split kernel: every codec the CPU supports (bits 1..8, fractional splits, mse or prod
// keys and values), fp32 arithmetic. It is the reference-grade GPU path and the fallback for
// codecs the tensor-core kernel does not cover; it favours clarity over speed.
// Each warp takes 32-token tiles: lane = token for the scores (its codes are read with the same
// bit arithmetic as tq::read_code), then lane = coordinate for the value accumulation, so the
// accumulators stay in registers and the softmax weights go through shared memory.
#include "attention_kernels.cuh"

namespace tq::cuda::detail {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int R = kRowsPerChunk;

__device__ __forceinline__ unsigned read_code_dev(const unsigned char* packed, int j, int bits) {
  const int bit = j * bits;
  const int byte = bit >> 3;
  const unsigned shift = bit & 7;
  unsigned value = packed[byte] >> shift;
  if (shift + bits > 8u) value |= static_cast<unsigned>(packed[byte + 1]) << (8u - shift);
  return value & ((1u << bits) - 1u);
}

template <int D>
__global__ void __launch_bounds__(kThreads) generic_split_kernel(const SplitParams p) {
  __shared__ float sq[R][D];   // prepared query rows of the chunk
  __shared__ float ssk[R][D];  // their QJL sketches (prod keys)
  __shared__ float kc_hi[256], kc_lo[256], vc_hi[256], vc_lo[256];
  __shared__ float pw[kWarps][32][R];  // weight · value norm
  __shared__ float pg[kWarps][32][R];  // weight · value residual norm (prod values)
  __shared__ float red_ml[kWarps][R][2];

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int b = blockIdx.z / p.row_chunks, chunk = blockIdx.z % p.row_chunks;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int rows_here = min(R, p.rows - chunk * R);
  const long long qbase = static_cast<long long>(b * p.kv_heads + kvh) * p.rows + chunk * R;
  for (int i = tid; i < R * D; i += kThreads) {
    const int r = i / D, j = i % D;
    sq[r][j] = r < rows_here ? p.q_prep[(qbase + r) * D + j] : 0.0f;
    ssk[r][j] = (r < rows_here && p.k_prod) ? p.q_sketch[(qbase + r) * D + j] : 0.0f;
  }
  for (int i = tid; i < 256; i += kThreads) {
    kc_hi[i] = (p.k_layout.hi_count > 0 && i < (1 << p.k_layout.hi_bits)) ? p.k_cent_hi[i] : 0.0f;
    kc_lo[i] =
        (p.k_layout.code_bytes > 0 && p.k_layout.hi_count < D && i < (1 << p.k_layout.lo_bits))
            ? p.k_cent_lo[i]
            : 0.0f;
    vc_hi[i] = (p.v_layout.hi_count > 0 && i < (1 << p.v_layout.hi_bits)) ? p.v_cent_hi[i] : 0.0f;
    vc_lo[i] =
        (p.v_layout.code_bytes > 0 && p.v_layout.hi_count < D && i < (1 << p.v_layout.lo_bits))
            ? p.v_cent_lo[i]
            : 0.0f;
  }
  __syncthreads();

  const int len = p.lengths[b];
  const int start = split * p.tokens_per_split;
  const int split_end = min(start + p.tokens_per_split, len);
  int col_end[R];
#pragma unroll
  for (int c = 0; c < R; ++c) {
    const int row = chunk * R + c;
    const int lim = row < p.rows ? len - (p.n_queries - 1 - row / p.group) : 0;
    col_end[c] = min(split_end, lim);
  }
  const long long base = static_cast<long long>(b * p.kv_heads + kvh) * p.capacity;
  constexpr int JL = D / 32;  // coordinates per lane in the value phase
  // Per row c, the softmax state of this warp's tokens: o holds this lane's value coordinates
  // lane + 32·k, and accs (the sign accumulator of prod values) is rescaled with it. l is summed
  // per lane (over the lane's own tokens) until the warp reduces it after the loop.
  using State = SoftmaxState<AccurateExp2, JL>;
  State st[R];
  float accs[R][JL];
#pragma unroll
  for (int c = 0; c < R; ++c) {
#pragma unroll
    for (int k = 0; k < JL; ++k) accs[c][k] = 0.0f;
  }
  const unsigned char* kcodes = static_cast<const unsigned char*>(p.k_data);
  const unsigned char* vcodes = static_cast<const unsigned char*>(p.v_data);
  const int ntiles = split_end > start ? (split_end - start + 31) / 32 : 0;
  for (int tile = warp; tile < ntiles; tile += kWarps) {
    const int t0 = start + tile * 32;
    const int t = t0 + lane;
    const int tl = min(t, split_end - 1);
    float s[R];
#pragma unroll
    for (int c = 0; c < R; ++c) s[c] = 0.0f;
    if (p.k_layout.code_bytes > 0) {
      const unsigned char* code = kcodes + (base + tl) * p.k_layout.code_bytes;
      for (int j = 0; j < D; ++j) {
        const bool hi = j < p.k_layout.hi_count;
        const float cj = hi ? kc_hi[read_code_dev(code, j, p.k_layout.hi_bits)]
                            : kc_lo[read_code_dev(code + p.k_layout.hi_bytes,
                                                  j - p.k_layout.hi_count, p.k_layout.lo_bits)];
#pragma unroll
        for (int c = 0; c < R; ++c) s[c] += sq[c][j] * cj;
      }
      const float n = __half2float(p.k_norms[base + tl]);
#pragma unroll
      for (int c = 0; c < R; ++c) s[c] *= n;
    }
    if (p.k_prod) {
      const unsigned char* sg = p.k_signs + (base + tl) * p.k_layout.sign_bytes;
      const float gam = __half2float(p.k_rnorms[base + tl]);
      float e[R];
#pragma unroll
      for (int c = 0; c < R; ++c) e[c] = 0.0f;
      for (int i = 0; i < D; ++i) {
        const float sgn = ((sg[i >> 3] >> (i & 7)) & 1u) ? 1.0f : -1.0f;
#pragma unroll
        for (int c = 0; c < R; ++c) e[c] += sgn * ssk[c][i];
      }
#pragma unroll
      for (int c = 0; c < R; ++c) s[c] += gam * e[c];
    }
    const float vn = __half2float(p.v_norms[base + tl]);
    const float vg = p.v_prod ? __half2float(p.v_rnorms[base + tl]) : 0.0f;
#pragma unroll
    for (int c = 0; c < R; ++c) {
      const float sc = t < col_end[c] ? s[c] : -__int_as_float(0x7f800000);
      float mx = sc;
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
      const float mn = fmaxf(st[c].m, mx);
      const float al = State::weight(st[c].m, mn);
      st[c].m = mn;
      const float pr = State::weight(sc, mn);
      st[c].l = st[c].l * al + pr;
#pragma unroll
      for (int k = 0; k < JL; ++k) {
        st[c].o[k] *= al;
        accs[c][k] *= al;
      }
      pw[warp][lane][c] = pr * vn;
      pg[warp][lane][c] = pr * vg;
    }
    __syncwarp();
    const int nt = min(32, split_end - t0);
    for (int tt = 0; tt < nt; ++tt) {
      const long long slot = base + t0 + tt;
      float w[R], wg[R];
#pragma unroll
      for (int c = 0; c < R; ++c) {
        w[c] = pw[warp][tt][c];
        wg[c] = pg[warp][tt][c];
      }
      if (p.v_layout.code_bytes > 0) {
        const unsigned char* code = vcodes + slot * p.v_layout.code_bytes;
#pragma unroll
        for (int k = 0; k < JL; ++k) {
          const int j = lane + 32 * k;
          const bool hi = j < p.v_layout.hi_count;
          const float cj = hi ? vc_hi[read_code_dev(code, j, p.v_layout.hi_bits)]
                              : vc_lo[read_code_dev(code + p.v_layout.hi_bytes,
                                                    j - p.v_layout.hi_count, p.v_layout.lo_bits)];
#pragma unroll
          for (int c = 0; c < R; ++c) st[c].o[k] += w[c] * cj;
        }
      }
      if (p.v_prod) {
        const unsigned char* sg = p.v_signs + slot * p.v_layout.sign_bytes;
#pragma unroll
        for (int k = 0; k < JL; ++k) {
          const int i = lane + 32 * k;
          const float sgn = ((sg[i >> 3] >> (i & 7)) & 1u) ? 1.0f : -1.0f;
#pragma unroll
          for (int c = 0; c < R; ++c) accs[c][k] += wg[c] * sgn;
        }
      }
    }
    __syncwarp();
  }
  // Combine the warps: l is per lane, reduce it; then merge the warps through shared memory.
#pragma unroll
  for (int c = 0; c < R; ++c) {
    for (int off = 16; off > 0; off >>= 1) st[c].l += __shfl_xor_sync(0xffffffffu, st[c].l, off);
  }
  if (lane == 0) {
#pragma unroll
    for (int c = 0; c < R; ++c) {
      red_ml[warp][c][0] = st[c].m;
      red_ml[warp][c][1] = st[c].l;
    }
  }
  __syncthreads();
  float f[R];
#pragma unroll
  for (int c = 0; c < R; ++c) {
    float mm = kNegBig;
    for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, red_ml[w][c][0]);
    f[c] = State::weight(st[c].m, mm);
  }
  // Reuse sq / ssk as the reduction buffers (queries no longer needed).
  __syncthreads();
  for (int i = tid; i < R * D; i += kThreads) {
    (&sq[0][0])[i] = 0.0f;
    (&ssk[0][0])[i] = 0.0f;
  }
  __syncthreads();
  for (int w = 0; w < kWarps; ++w) {
    if (warp == w) {
#pragma unroll
      for (int c = 0; c < R; ++c) {
#pragma unroll
        for (int k = 0; k < JL; ++k) {
          sq[c][lane + 32 * k] += f[c] * st[c].o[k];
          ssk[c][lane + 32 * k] += f[c] * accs[c][k];
        }
      }
    }
    __syncthreads();
  }
  for (int i = tid; i < R * D; i += kThreads) {
    const int c = i / D, j = i % D;
    if (c >= rows_here) continue;
    float mm = kNegBig;
    for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, red_ml[w][c][0]);
    float lsum = 0.0f;
    for (int w = 0; w < kWarps; ++w) lsum += State::weight(red_ml[w][c][0], mm) * red_ml[w][c][1];
    const long long slot = (qbase + c) * p.splits + split;
    p.part_o[slot * D + j] = sq[c][j];
    if (p.v_prod) p.part_s[slot * D + j] = ssk[c][j];
    if (j == 0) {
      p.part_ml[slot * 2] = mm;
      p.part_ml[slot * 2 + 1] = lsum;
    }
  }
}

}  // namespace

template <int D>
void launch_generic_split(const SplitParams& p, int batch, cudaStream_t stream) {
  const dim3 grid(p.splits, p.kv_heads, batch * p.row_chunks);
  generic_split_kernel<D><<<grid, kThreads, 0, stream>>>(p);
  TQ_CUDA_CHECK(cudaGetLastError());
}

template void launch_generic_split<64>(const SplitParams&, int, cudaStream_t);
template void launch_generic_split<128>(const SplitParams&, int, cudaStream_t);
template void launch_generic_split<256>(const SplitParams&, int, cudaStream_t);

}  // namespace tq::cuda::detail
