// Kernels of forward_kernels.cuh. At decode a row is one token, so a kernel with one block per
// row and a strided loop is a single CTA walking a chain of dependent loads: on the H200 that made
// SwiGLU (14336 values) 46 µs and RMSNorm 14 µs of every layer of the Llama-3.1-8B shape (ncu).
// So every element-wise kernel spreads a row over many blocks (grid.y = row), and RMSNorm, which
// must reduce a row in one block, uses 1024 threads with the loads of a thread issued together.
#include "cuda/internal.cuh"
#include "forward_kernels.cuh"

#include <algorithm>

namespace tq::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kNormThreads = 1024;

unsigned blocks_for(long long n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// Rows go in grid.y, which holds at most 65535: longer prefill chunks go in slices.
constexpr int kMaxGridRows = 65535;
template <class F>
void for_row_slices(int rows, F&& launch) {
  for (int first = 0; first < rows; first += kMaxGridRows) {
    launch(first, std::min(kMaxGridRows, rows - first));
  }
}

// Row r (of n values) starts at (r / group) · ld + (r % group) · n: group = 1, ld = n for plain
// rows; group = heads, ld = the fused row's stride for the per-head norms of QK-norm. In place
// when x == y (each thread reads its own elements before writing them). accumulate: y += norm.
__global__ void __launch_bounds__(kNormThreads)
    rms_norm_kernel(const float* x, const float* __restrict__ w, float* y, int n, float eps,
                    int group, long long ld, bool accumulate) {
  __shared__ double partial[kNormThreads / 32];
  const long long row = blockIdx.x;
  const long long base = (row / group) * ld + (row % group) * n;
  const float* xr = x + base;
  double sum = 0.0;
#pragma unroll 4
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const double v = xr[i];
    sum += v * v;
  }
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  double total = 0.0;
  for (int k = 0; k < kNormThreads / 32; ++k) total += partial[k];
  const float inv = static_cast<float>(1.0 / sqrt(total / n + eps));
  float* yr = y + base;
#pragma unroll 4
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = __fmul_rn(__fmul_rn(xr[i], inv), w[i]);
    yr[i] = accumulate ? __fadd_rn(yr[i], v) : v;
  }
}

// Row r at position pos0 + r, or positions[r] when positions is given.
__global__ void rope_kernel(float* __restrict__ x, int ld, int n_heads, int n_kv_heads,
                            int head_dim, int half, const double* __restrict__ inv_freq,
                            long long pos0, const int* __restrict__ positions, bool neox) {
  const int r = blockIdx.y;
  const double pos =
      positions ? static_cast<double>(max(positions[r], 0)) : static_cast<double>(pos0 + r);
  const int heads = n_heads + n_kv_heads;
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < heads * half) {
    const int h = k / half, i = k % half;
    const double theta = pos * inv_freq[i];
    const float c = static_cast<float>(cos(theta)), s = static_cast<float>(sin(theta));
    float* v = x + static_cast<long long>(r) * ld + static_cast<long long>(h) * head_dim;
    const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
    const float a = v[ia], b = v[ib];
    v[ia] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[ib] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
  }
}

__global__ void split_kernel(const float* __restrict__ qkv, int ld, int q_dim, int kv_dim,
                             float* __restrict__ q, float* __restrict__ k, float* __restrict__ v) {
  const long long r = blockIdx.y;
  const float* row = qkv + r * ld;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < q_dim + 2 * kv_dim) {
    const float val = row[i];
    if (i < q_dim) {
      q[r * q_dim + i] = val;
    } else if (i < q_dim + kv_dim) {
      k[r * kv_dim + i - q_dim] = val;
    } else {
      v[r * kv_dim + i - q_dim - kv_dim] = val;
    }
  }
}

__device__ std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void gaussian_kernel(float* __restrict__ out, std::size_t n, std::uint64_t seed,
                                std::uint64_t first) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const std::uint64_t h = splitmix64(seed ^ splitmix64(first + i));
  const float u1 = (static_cast<float>(h >> 40) + 1.0f) * (1.0f / 16777217.0f);  // (0, 1]
  const float u2 = static_cast<float>((h >> 16) & 0xffffffu) * (1.0f / 16777216.0f);
  out[i] = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

__global__ void swiglu_kernel(float* __restrict__ gu, int n) {
  float* row = gu + static_cast<long long>(blockIdx.y) * 2 * n;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const float g = row[i];
    row[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), row[n + i]);
  }
}

__global__ void geglu_tanh_kernel(float* __restrict__ gu, int n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  float* row = gu + static_cast<long long>(blockIdx.y) * 2 * n;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const float g = row[i];
    row[i] = 0.5f * g * (1.0f + tanhf(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * row[n + i];
  }
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps,
              cudaStream_t stream) {
  if (rows <= 0) return;
  rms_norm_kernel<<<rows, kNormThreads, 0, stream>>>(x, w, y, n, eps, 1, n, false);
  TQ_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_add(const float* x, const float* w, float* y, int rows, int n, float eps,
                  cudaStream_t stream) {
  if (rows <= 0) return;
  rms_norm_kernel<<<rows, kNormThreads, 0, stream>>>(x, w, y, n, eps, 1, n, true);
  TQ_CUDA_CHECK(cudaGetLastError());
}

void head_rms_norm(float* x, int rows, int ld, int heads, int head_dim, const float* w, float eps,
                   cudaStream_t stream) {
  if (rows <= 0 || heads <= 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows) * heads, kNormThreads, 0, stream>>>(
      x, w, x, head_dim, eps, heads, ld, false);
  TQ_CUDA_CHECK(cudaGetLastError());
}

void rope_qk(float* x, int rows, int ld, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
             const double* inv_freq, std::size_t pos0, RopeOrdering ordering, cudaStream_t stream) {
  if (rows <= 0 || rope_dim <= 0) return;
  const unsigned blocks =
      blocks_for(static_cast<long long>(n_heads + n_kv_heads) * (rope_dim / 2), kThreads);
  for_row_slices(rows, [&](int first, int n) {
    rope_kernel<<<dim3(blocks, n), kThreads, 0, stream>>>(
        x + static_cast<std::size_t>(first) * ld, ld, n_heads, n_kv_heads, head_dim, rope_dim / 2,
        inv_freq, static_cast<long long>(pos0 + first), nullptr, ordering == RopeOrdering::kNeox);
    TQ_CUDA_CHECK(cudaGetLastError());
  });
}

void rope_qk_at(float* x, int rows, int ld, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
                const double* inv_freq, const int* positions, RopeOrdering ordering,
                cudaStream_t stream) {
  if (rows <= 0 || rope_dim <= 0) return;
  const unsigned blocks =
      blocks_for(static_cast<long long>(n_heads + n_kv_heads) * (rope_dim / 2), kThreads);
  for_row_slices(rows, [&](int first, int n) {
    rope_kernel<<<dim3(blocks, n), kThreads, 0, stream>>>(
        x + static_cast<std::size_t>(first) * ld, ld, n_heads, n_kv_heads, head_dim, rope_dim / 2,
        inv_freq, 0, positions + first, ordering == RopeOrdering::kNeox);
    TQ_CUDA_CHECK(cudaGetLastError());
  });
}

void split_qkv(const float* qkv, int rows, int ld, int q_dim, int kv_dim, float* q, float* k,
               float* v, cudaStream_t stream) {
  if (rows <= 0) return;
  const unsigned blocks = blocks_for(q_dim + 2LL * kv_dim, kThreads);
  for_row_slices(rows, [&](int first, int n) {
    const std::size_t r = static_cast<std::size_t>(first);
    split_kernel<<<dim3(blocks, n), kThreads, 0, stream>>>(
        qkv + r * ld, ld, q_dim, kv_dim, q + r * q_dim, k + r * kv_dim, v + r * kv_dim);
    TQ_CUDA_CHECK(cudaGetLastError());
  });
}

void random_gaussian(float* out, std::size_t n, std::uint64_t seed, std::uint64_t first,
                     cudaStream_t stream) {
  if (n == 0) return;
  gaussian_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      out, n, seed, first);
  TQ_CUDA_CHECK(cudaGetLastError());
}

void swiglu(float* gate_up, int rows, int n, cudaStream_t stream) {
  if (rows <= 0) return;
  for_row_slices(rows, [&](int first, int count) {
    swiglu_kernel<<<dim3(blocks_for(n, kThreads), count), kThreads, 0, stream>>>(
        gate_up + static_cast<std::size_t>(first) * 2 * n, n);
    TQ_CUDA_CHECK(cudaGetLastError());
  });
}

void geglu_tanh(float* gate_up, int rows, int n, cudaStream_t stream) {
  if (rows <= 0) return;
  for_row_slices(rows, [&](int first, int count) {
    geglu_tanh_kernel<<<dim3(blocks_for(n, kThreads), count), kThreads, 0, stream>>>(
        gate_up + static_cast<std::size_t>(first) * 2 * n, n);
    TQ_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace tq::gpu
