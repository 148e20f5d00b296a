// The few-token gemv of gpu_weights.cuh: y[r] (+)= W·x[r] (+ bias) for 1..kGemvMaxRows activation
// rows, reading each GGUF weight byte once for all of them. Q4_0 goes to its tensor-core kernel
// (gpu_gemv_q4_0.cu); this file's fp32 kernel serves the other types.
//
// Layout of the work: a CTA of 16 warps owns a contiguous range of output rows and stages the
// activations ([rows][kc] fp32, kc columns at a time) in shared memory once for all of them, so
// the activations cost one L2 read per CTA, not per row. A warp takes 2 or 4 weight rows at once
// (kRowsPerWarp), so that each activation value read from shared memory serves all of them; its
// row blocks go round-robin over the CTA's warps. When there are fewer row blocks than resident
// warps, `split` warps share a block, each taking every split-th decode unit (gguf_blocks.cuh),
// and their partial sums meet in shared memory. Lanes take consecutive units, so a warp's loads
// cover consecutive bytes of a row, and each lane loads kUnroll units per row before using any.
// Each unit's small quant values are dotted with every token's activations first, then scaled
// once per run of columns (d·Σq·x, + m·Σx for types with a min), all in fp32. The CTA count is
// what the occupancy calculator says is resident at once (1..4 per SM).
//
// Measured on the H200 (bench/cuda/bench_gemv.cu, 4096-column shapes of Llama-3.1-8B): F16
// reaches the copy bandwidth at 1-2 tokens on the large matrices; Q8_0 ~55 % of it at one token
// (Q4_0 ~30 % here, before its own kernel). The quantized types are bound by issue /
// shared-memory work per weight, not DRAM.
#include "gpu_weights.cuh"

#include "cuda/internal.cuh"
#include "gemv_rows.cuh"
#include "gguf_blocks.cuh"
#include "gpu_gemv_q4_0.cuh"

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace tq::gpu {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kXBytes = 96 * 1024;  // activations staged per CTA
constexpr int kAccFloats = 2048;    // partial sums per CTA: split × rows-per-CTA × tokens
constexpr int kSmemBytes = kXBytes + kAccFloats * 4;

struct GemvArgs {
  const std::uint8_t* w;
  std::size_t row_bytes;
  int wrows, cols;
  const float* x;
  int ldx;
  const float* bias;
  float* y;
  int ldy;
  int accumulate;
  int rows_per_cta;
  int split;
  int kc;  // activation columns staged at a time (all of them, or a multiple of 256)
};

// Weight rows a warp takes at once (each x value read from shared memory serves all of them:
// shared-memory bandwidth for x, not DRAM, was the limit with one row per warp), and units a lane
// loads per step per row (so that several loads are in flight per warp, ~2 KB).
template <class U>
constexpr int kRowsPerWarp = U::kElems >= 32 ? 2 : 4;
template <class U>
constexpr int kUnrollOf = U::kUnroll / kRowsPerWarp<U> > 0 ? U::kUnroll / kRowsPerWarp<U> : 1;

// s[i][r] += Σ over the unit's columns of weight_i · x[r] for one unit of each of NR rows (same
// columns): Σq·x per run, then the run's scale (and min · Σx, Σx shared by the rows) once.
template <class U, int R, int NR>
__device__ __forceinline__ void dot_units(const float (&q)[NR][U::kGroups][U::kWidth],
                                          const float (&a)[NR][U::kGroups],
                                          const float (&b)[NR][U::kGroups],
                                          const int (&col)[U::kGroups], const float* xs, int k0,
                                          int kc, float (&s)[NR][R]) {
#pragma unroll
  for (int gi = 0; gi < U::kGroups; ++gi) {
    const float* xc = xs + (col[gi] - k0);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float sq[NR], sx = 0.0f;
#pragma unroll
      for (int i = 0; i < NR; ++i) sq[i] = 0.0f;
      if constexpr (U::kWidth % 4 == 0) {
#pragma unroll
        for (int j = 0; j < U::kWidth; j += 4) {
          const float4 xv = *reinterpret_cast<const float4*>(xc + r * kc + j);
#pragma unroll
          for (int i = 0; i < NR; ++i) {
            sq[i] = fmaf(q[i][gi][j], xv.x, sq[i]);
            sq[i] = fmaf(q[i][gi][j + 1], xv.y, sq[i]);
            sq[i] = fmaf(q[i][gi][j + 2], xv.z, sq[i]);
            sq[i] = fmaf(q[i][gi][j + 3], xv.w, sq[i]);
          }
          if constexpr (U::kHasMin) sx += (xv.x + xv.y) + (xv.z + xv.w);
        }
      } else {
#pragma unroll
        for (int j = 0; j < U::kWidth; ++j) {
          const float xv = xc[r * kc + j];
#pragma unroll
          for (int i = 0; i < NR; ++i) sq[i] = fmaf(q[i][gi][j], xv, sq[i]);
          if constexpr (U::kHasMin) sx += xv;
        }
      }
#pragma unroll
      for (int i = 0; i < NR; ++i) {
        if constexpr (U::kScaled) {
          s[i][r] = fmaf(a[i][gi], sq[i], s[i][r]);
        } else {
          s[i][r] += sq[i];
        }
        if constexpr (U::kHasMin) s[i][r] = fmaf(b[i][gi], sx, s[i][r]);
      }
    }
  }
}

template <class U, int R>
__global__ void __launch_bounds__(kThreads) gemv_kernel(GemvArgs p) {
  constexpr int kUnroll = kUnrollOf<U>;
  constexpr int NR = kRowsPerWarp<U>;
  extern __shared__ float4 smem4[];
  float* xs = reinterpret_cast<float*>(smem4);  // [R][kc]
  float* acc = xs + R * p.kc;                   // [split][rows of this CTA][R]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int split = p.split, groups = kWarps / split;
  const int g = warp / split, part = warp % split;
  const int rb0 = blockIdx.x * p.rows_per_cta;
  const int rbn = min(p.rows_per_cta, p.wrows - rb0);
  if (rbn <= 0) return;  // uniform over the CTA
  for (int i = threadIdx.x; i < split * rbn * R; i += kThreads) acc[i] = 0.0f;

  for (int k0 = 0; k0 < p.cols; k0 += p.kc) {
    const int kn = min(p.kc, p.cols - k0);
    __syncthreads();  // the previous chunk's readers are done
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float* xr = p.x + static_cast<std::size_t>(r) * p.ldx + k0;
      // Four independent loads per thread per step (the staging is latency-bound otherwise).
      for (int k = threadIdx.x; k < kn; k += 4 * kThreads) {
        float v[4];
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          v[t] = k + t * kThreads < kn ? __ldg(xr + k + t * kThreads) : 0.0f;
        }
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          if (k + t * kThreads < kn) xs[r * p.kc + k + t * kThreads] = v[t];
        }
      }
    }
    __syncthreads();
    const int u0 = k0 / U::kElems, un = kn / U::kElems;
    // Row block lb: rows NR·lb .. NR·lb + NR − 1 of this CTA (rows past its end read the last
    // row again and are dropped).
    for (int lb = g; lb * NR < rbn; lb += groups) {
      const std::uint8_t* rows[NR];
#pragma unroll
      for (int i = 0; i < NR; ++i) {
        rows[i] = p.w + static_cast<std::size_t>(rb0 + min(lb * NR + i, rbn - 1)) * p.row_bytes;
      }
      float s[NR][R];
#pragma unroll
      for (int i = 0; i < NR; ++i) {
#pragma unroll
        for (int r = 0; r < R; ++r) s[i][r] = 0.0f;
      }
      // kUnroll units per lane per step for each row, all loaded before any is used, so that a
      // warp keeps several loads in flight instead of one DRAM latency per unit.
      const int step = 32 * split;
      int u = part * 32 + lane;
      for (; u + (kUnroll - 1) * step < un; u += kUnroll * step) {
        typename U::Raw raw[kUnroll][NR];
#pragma unroll
        for (int t = 0; t < kUnroll; ++t) {
#pragma unroll
          for (int i = 0; i < NR; ++i) raw[t][i] = U::load(rows[i], u0 + u + t * step);
        }
#pragma unroll
        for (int t = 0; t < kUnroll; ++t) {
          float q[NR][U::kGroups][U::kWidth], a[NR][U::kGroups], b[NR][U::kGroups];
          int col[U::kGroups];
#pragma unroll
          for (int i = 0; i < NR; ++i)
            U::unpack(raw[t][i], u0 + u + t * step, q[i], a[i], b[i], col);
          dot_units<U, R, NR>(q, a, b, col, xs, k0, p.kc, s);
        }
      }
      for (; u < un; u += step) {
        float q[NR][U::kGroups][U::kWidth], a[NR][U::kGroups], b[NR][U::kGroups];
        int col[U::kGroups];
#pragma unroll
        for (int i = 0; i < NR; ++i) U::decode(rows[i], u0 + u, q[i], a[i], b[i], col);
        dot_units<U, R, NR>(q, a, b, col, xs, k0, p.kc, s);
      }
#pragma unroll
      for (int i = 0; i < NR; ++i) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) s[i][r] += __shfl_xor_sync(0xffffffffu, s[i][r], o);
        }
      }
      if (lane == 0) {
        // (part, row) belongs to this warp alone in every chunk: no race across chunks.
#pragma unroll
        for (int i = 0; i < NR; ++i) {
          const int lr = lb * NR + i;
          if (lr < rbn) {
            float* ap = acc + (part * rbn + lr) * R;
#pragma unroll
            for (int r = 0; r < R; ++r) ap[r] += s[i][r];
          }
        }
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < rbn * R; i += kThreads) {
    const int r = i / rbn, lr = i - r * rbn;
    float v = 0.0f;
    for (int pt = 0; pt < split; ++pt) v += acc[(pt * rbn + lr) * R + r];
    const int c = rb0 + lr;
    if (p.bias) v += p.bias[c];
    float* yp = p.y + static_cast<std::size_t>(r) * p.ldy + c;
    *yp = p.accumulate ? *yp + v : v;
  }
}

template <class U, int R>
void set_smem_attribute() {
  TQ_CUDA_CHECK(cudaFuncSetAttribute(gemv_kernel<U, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     kSmemBytes));
}

template <class U>
void prepare_unit() {
  detail::for_each_gemv_rows([](auto r) { set_smem_attribute<U, decltype(r)::value>(); });
}

struct DeviceState {
  bool prepared = false;
  int sms = 0;
  int q4_0_smem = 0;  // what prepare_gemv_q4_0 opted in to
};

// Per device: the opt-in to > 48 KB of shared memory for every instantiation (Q4_0's tensor-core
// kernel included), and the SM count.
// Done once per device outside any graph capture (DeviceMatrix's constructor calls it first).
const DeviceState& device_state() {
  static std::mutex mutex;
  static std::vector<DeviceState> states;
  int dev = 0;
  TQ_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mutex);
  if (states.size() <= static_cast<std::size_t>(dev)) states.resize(dev + 1);
  DeviceState& st = states[dev];
  if (!st.prepared) {
    using namespace blocks;
    prepare_unit<Unit<Kind::kF32>>();
    prepare_unit<Unit<Kind::kF32, true>>();
    prepare_unit<Unit<Kind::kF16>>();
    prepare_unit<Unit<Kind::kF16, true>>();
    prepare_unit<Unit<Kind::kBF16>>();
    prepare_unit<Unit<Kind::kBF16, true>>();
    st.q4_0_smem = detail::prepare_gemv_q4_0();
    prepare_unit<Unit<Kind::kQ4_1>>();
    prepare_unit<Unit<Kind::kQ5_0>>();
    prepare_unit<Unit<Kind::kQ8_0>>();
    prepare_unit<Unit<Kind::kQ4_K>>();
    prepare_unit<Unit<Kind::kQ6_K>>();
    TQ_CUDA_CHECK(cudaDeviceGetAttribute(&st.sms, cudaDevAttrMultiProcessorCount, dev));
    st.prepared = true;
  }
  return st;
}

template <class U, int R>
void launch(const DeviceMatrix& w, const float* x, int ldx, const float* bias, float* y, int ldy,
            bool accumulate, cudaStream_t s) {
  const int sms = device_state().sms;
  const int cols = w.cols(), wrows = w.rows();
  // All columns at once when they fit; else chunks of a multiple of 256 columns, which no unit
  // or block straddles (units are at most 32 columns, blocks 32 or 256).
  int kc = cols;
  const int kc_max = (kXBytes / (R * 4)) / 256 * 256;
  if (kc > kc_max) kc = kc_max;
  // As many CTAs as are resident at once (2..4 per SM, by shared memory and registers); more
  // when the partial sums of one CTA would not fit.
  int per_sm = 0;
  const std::size_t x_smem = static_cast<std::size_t>(R) * kc * sizeof(float);
  TQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_kernel<U, R>, kThreads,
                                                              x_smem + kAccFloats * 4));
  const int target = sms * std::clamp(per_sm, 1, 4);
  // Warps per row block (kRowsPerWarp rows): enough that every resident warp has one (few-row
  // matrices), as long as each warp still gets a full unrolled step of units per chunk.
  constexpr int NR = kRowsPerWarp<U>;
  const int units_per_chunk = kc / U::kElems;
  const long long resident_warps = static_cast<long long>(target) * kWarps;
  const long long row_blocks = (wrows + NR - 1) / NR;
  int split = 1;
  while (split < kWarps && row_blocks * split * 2 <= resident_warps &&
         units_per_chunk >= 32 * kUnrollOf<U> * split * 2) {
    split *= 2;
  }
  // Rows per CTA: a multiple of its warp groups' row blocks, so that its warps share the work.
  const int groups = kWarps / split;
  const long long per_group = (row_blocks + static_cast<long long>(target) * groups - 1) /
                              (static_cast<long long>(target) * groups);
  int rows_per_cta = NR * groups * static_cast<int>(std::max<long long>(1, per_group));
  rows_per_cta = std::min(rows_per_cta, kAccFloats / (R * split));
  const int ctas = (wrows + rows_per_cta - 1) / rows_per_cta;
  GemvArgs a{w.data(), w.row_bytes(),      wrows,        cols,  x, ldx, bias, y,
             ldy,      accumulate ? 1 : 0, rows_per_cta, split, kc};
  const std::size_t smem =
      (static_cast<std::size_t>(R) * kc + static_cast<std::size_t>(split) * rows_per_cta * R) *
      sizeof(float);
  gemv_kernel<U, R><<<ctas, kThreads, smem, s>>>(a);
  TQ_CUDA_CHECK(cudaGetLastError());
}

template <class U>
void launch_rows(int rows, const DeviceMatrix& w, const float* x, int ldx, const float* bias,
                 float* y, int ldy, bool accumulate, cudaStream_t s) {
  detail::with_gemv_rows(
      rows, [&](auto r) { launch<U, decltype(r)::value>(w, x, ldx, bias, y, ldy, accumulate, s); });
}

}  // namespace

namespace detail {
void prepare_gemv_kernels() {
  (void)device_state();
}
}  // namespace detail

void gemv(const DeviceMatrix& w, const float* x, int rows, int ldx, const float* bias, float* y,
          int ldy, bool accumulate, cudaStream_t s) {
  if (rows < 1 || rows > kGemvMaxRows) {
    throw std::invalid_argument("gemv: rows " + std::to_string(rows) + " outside [1, " +
                                std::to_string(kGemvMaxRows) + "]");
  }
  if (ldx < w.cols()) {
    throw std::invalid_argument("gemv: ldx " + std::to_string(ldx) + " < the matrix's " +
                                std::to_string(w.cols()) + " columns");
  }
  if (ldy < w.rows()) {
    throw std::invalid_argument("gemv: ldy " + std::to_string(ldy) + " < the matrix's " +
                                std::to_string(w.rows()) + " rows");
  }
  if (w.rows() == 0) return;
  if (!x || !y) throw std::invalid_argument("gemv: null activation or output pointer");
  if (w.type() == gguf::TensorType::kQ4_0) {
    const DeviceState& st = device_state();
    return detail::gemv_q4_0(w, x, rows, ldx, bias, y, ldy, accumulate, s, st.sms, st.q4_0_smem);
  }
  blocks::with_unit(w.type(), w.cols(), [&](auto unit) {
    using U = decltype(unit);
    if constexpr (!std::is_same_v<U, blocks::Unit<blocks::Kind::kQ4_0>>) {
      launch_rows<U>(rows, w, x, ldx, bias, y, ldy, accumulate, s);
    }
  });
}

}  // namespace tq::gpu
