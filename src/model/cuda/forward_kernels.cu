// Kernels of forward_kernels.cuh. They are a small share of a step next to the matrix products
// and attention, so they stay simple: one block per row.
#include "cuda_check.cuh"
#include "forward_kernels.cuh"

namespace tq::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                float* __restrict__ y, int n, float eps) {
  __shared__ double partial[kThreads / 32];
  const long long row = blockIdx.x;
  const float* xr = x + row * n;
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const double v = xr[i];
    sum += v * v;
  }
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  double total = 0.0;
  for (int k = 0; k < kThreads / 32; ++k) total += partial[k];
  const float inv = static_cast<float>(1.0 / sqrt(total / n + eps));
  float* yr = y + row * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = __fmul_rn(__fmul_rn(xr[i], inv), w[i]);
}

__global__ void rope_kernel(float* __restrict__ x, int ld, int n_heads, int n_kv_heads,
                            int head_dim, int half, const double* __restrict__ inv_freq,
                            long long pos0, bool neox) {
  const int r = blockIdx.x;
  const double pos = static_cast<double>(pos0 + r);
  const int heads = n_heads + n_kv_heads;
  for (int k = threadIdx.x; k < heads * half; k += blockDim.x) {
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
  const long long r = blockIdx.x;
  const float* row = qkv + r * ld;
  for (int i = threadIdx.x; i < q_dim + 2 * kv_dim; i += blockDim.x) {
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

__global__ void swiglu_kernel(float* __restrict__ gu, int n) {
  float* row = gu + static_cast<long long>(blockIdx.x) * 2 * n;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float g = row[i];
    row[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), row[n + i]);
  }
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps,
              cudaStream_t stream) {
  if (rows <= 0) return;
  rms_norm_kernel<<<rows, kThreads, 0, stream>>>(x, w, y, n, eps);
  TQ_GPU_CHECK(cudaGetLastError());
}

void rope_qk(float* x, int rows, int ld, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
             const double* inv_freq, std::size_t pos0, RopeOrdering ordering, cudaStream_t stream) {
  if (rows <= 0 || rope_dim <= 0) return;
  rope_kernel<<<rows, kThreads, 0, stream>>>(x, ld, n_heads, n_kv_heads, head_dim, rope_dim / 2,
                                             inv_freq, static_cast<long long>(pos0),
                                             ordering == RopeOrdering::kNeox);
  TQ_GPU_CHECK(cudaGetLastError());
}

void split_qkv(const float* qkv, int rows, int ld, int q_dim, int kv_dim, float* q, float* k,
               float* v, cudaStream_t stream) {
  if (rows <= 0) return;
  split_kernel<<<rows, kThreads, 0, stream>>>(qkv, ld, q_dim, kv_dim, q, k, v);
  TQ_GPU_CHECK(cudaGetLastError());
}

void swiglu(float* gate_up, int rows, int n, cudaStream_t stream) {
  if (rows <= 0) return;
  swiglu_kernel<<<rows, kThreads, 0, stream>>>(gate_up, n);
  TQ_GPU_CHECK(cudaGetLastError());
}

}  // namespace tq::gpu
