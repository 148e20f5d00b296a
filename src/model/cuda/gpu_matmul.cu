// MatmulEngine (gpu_matmul.cuh): dispatch between the direct gemv and the tiled
// dequantize-to-fp16 + cublasGemmEx path, its scratch, and the small conversion / bias kernels.
#include "gpu_matmul.cuh"

#include "cuda/internal.cuh"

#include <cublas_v2.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace tq::gpu {

namespace {

constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;

[[noreturn]] void throw_cublas(cublasStatus_t st, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS call ") + call +
                           " failed: " + cublasGetStatusName(st) + " (" + file + ":" +
                           std::to_string(line) + ")");
}

#define TQ_CUBLAS_CHECK(call)                                     \
  do {                                                            \
    const cublasStatus_t tq_st_ = (call);                         \
    if (tq_st_ != CUBLAS_STATUS_SUCCESS) {                        \
      ::tq::gpu::throw_cublas(tq_st_, #call, __FILE__, __LINE__); \
    }                                                             \
  } while (0)

// x [rows][ldx] fp32 → dense [rows][cols] fp16 (round to nearest).
__global__ void to_half_kernel(const float* x, int rows, int cols, int ldx, __half* out) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<long long>(rows) * cols) return;
  const long long r = i / cols;
  const int c = static_cast<int>(i - r * cols);
  out[i] = __float2half_rn(x[r * ldx + c]);
}

// y[r][c] += bias[c] for r < rows, c < n.
__global__ void add_bias_kernel(float* y, int rows, int n, int ldy, const float* bias) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<long long>(rows) * n) return;
  const long long r = i / n;
  const int c = static_cast<int>(i - r * n);
  y[r * ldy + c] += bias[c];
}

unsigned grid_for(long long n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  TQ_CUDA_CHECK(cudaStreamIsCapturing(s, &st));
  return st != cudaStreamCaptureStatusNone;
}

}  // namespace

MatmulEngine::MatmulEngine(cudaStream_t stream) : stream_(stream) {
  cublasHandle_t h = nullptr;
  TQ_CUBLAS_CHECK(cublasCreate(&h));
  handle_ = h;
  try {
    TQ_CUBLAS_CHECK(cublasSetStream(h, stream_));
    // A workspace of our own, so that cuBLAS allocates nothing per call (graph capture).
    TQ_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
    TQ_CUBLAS_CHECK(cublasSetWorkspace(h, workspace_, kWorkspaceBytes));
  } catch (...) {
    cublasDestroy(h);
    if (workspace_) cudaFree(workspace_);
    throw;
  }
}

MatmulEngine::~MatmulEngine() {
  // Destructors do not throw: failures here mean the device is already lost.
  if (handle_) cublasDestroy(handle_);
  if (workspace_) cudaFree(workspace_);
  if (x_half_) cudaFree(x_half_);
  if (w_half_) cudaFree(w_half_);
}

void MatmulEngine::ensure_scratch(int rows, int cols, std::size_t tile_elems) {
  const std::size_t x_need = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  if (x_need <= x_half_elems_ && tile_elems <= w_half_elems_) return;
  if (capturing(stream_)) {
    throw std::logic_error("MatmulEngine: scratch for " + std::to_string(rows) + "x" +
                           std::to_string(cols) +
                           " must grow during graph capture; call reserve() first");
  }
  if (x_need > x_half_elems_) {
    if (x_half_) TQ_CUDA_CHECK(cudaFree(x_half_));
    x_half_ = nullptr;
    x_half_elems_ = 0;
    TQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&x_half_), x_need * sizeof(__half)));
    x_half_elems_ = x_need;
  }
  if (tile_elems > w_half_elems_) {
    if (w_half_) TQ_CUDA_CHECK(cudaFree(w_half_));
    w_half_ = nullptr;
    w_half_elems_ = 0;
    TQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&w_half_), tile_elems * sizeof(__half)));
    w_half_elems_ = tile_elems;
  }
}

void MatmulEngine::reserve(int max_rows, int max_cols, std::size_t max_matrix_elems) {
  if (max_rows < 0 || max_cols < 0) {
    throw std::invalid_argument("MatmulEngine::reserve: bad bounds " + std::to_string(max_rows) +
                                "x" + std::to_string(max_cols));
  }
  std::size_t tile = std::max(kMaxWeightTileElems, static_cast<std::size_t>(max_cols));
  if (max_matrix_elems > 0) tile = std::min(tile, max_matrix_elems);
  ensure_scratch(max_rows, max_cols, tile);
}

void MatmulEngine::matmul(const DeviceMatrix& w, const float* x, int rows, int ldx,
                          const float* bias, float* y, int ldy, bool accumulate) {
  if (rows < 0) throw std::invalid_argument("matmul: rows " + std::to_string(rows) + " < 0");
  if (rows == 0 || w.rows() == 0) return;
  if (rows <= kGemvMaxRows) {
    gemv(w, x, rows, ldx, bias, y, ldy, accumulate, stream_);
    return;
  }
  const int cols = w.cols(), n = w.rows();
  if (ldx < cols) {
    throw std::invalid_argument("matmul: ldx " + std::to_string(ldx) + " < the matrix's " +
                                std::to_string(cols) + " columns");
  }
  if (ldy < n) {
    throw std::invalid_argument("matmul: ldy " + std::to_string(ldy) + " < the matrix's " +
                                std::to_string(n) + " rows");
  }
  if (!x || !y) throw std::invalid_argument("matmul: null activation or output pointer");
  if (cols == 0) {
    // An empty inner dimension: the product is zero.
    if (!accumulate) {
      TQ_CUDA_CHECK(cudaMemset2DAsync(y, sizeof(float) * ldy, 0, sizeof(float) * n, rows, stream_));
    }
  } else {
    // The weight tile: as many rows as the scratch holds (all of w when it fits).
    const std::size_t want = static_cast<std::size_t>(n) * static_cast<std::size_t>(cols);
    const std::size_t tile_cap = std::max(kMaxWeightTileElems, static_cast<std::size_t>(cols));
    // Reserved scratch that holds a row is used as it is (in tiles); otherwise grow it.
    ensure_scratch(
        rows, cols,
        w_half_elems_ >= static_cast<std::size_t>(cols) ? w_half_elems_ : std::min(want, tile_cap));
    const int tile_rows =
        static_cast<int>(std::min<std::size_t>(n, w_half_elems_ / static_cast<std::size_t>(cols)));
    constexpr int kThreads = 256;
    const long long xn = static_cast<long long>(rows) * cols;
    to_half_kernel<<<grid_for(xn, kThreads), kThreads, 0, stream_>>>(x, rows, cols, ldx, x_half_);
    TQ_CUDA_CHECK(cudaGetLastError());
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    for (int t0 = 0; t0 < n; t0 += tile_rows) {
      const int tn = std::min(tile_rows, n - t0);
      dequantize_half(w, t0, tn, w_half_, stream_);
      // Column-major view: C (tn × rows, ld ldy) = A^T · B with A = the tile (cols × tn, ld cols)
      // and B = x (cols × rows, ld cols); C(c, r) is y[r][t0 + c].
      TQ_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, tn, rows, cols, &alpha,
                                   w_half_, CUDA_R_16F, cols, x_half_, CUDA_R_16F, cols, &beta,
                                   y + t0, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
    }
  }
  if (bias) {
    constexpr int kThreads = 256;
    const long long yn = static_cast<long long>(rows) * n;
    add_bias_kernel<<<grid_for(yn, kThreads), kThreads, 0, stream_>>>(y, rows, n, ldy, bias);
    TQ_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace tq::gpu
