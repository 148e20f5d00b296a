// MatmulEngine: the GPU runner's matrix products y (+)= x·Wᵀ (+ bias) against DeviceMatrix
// weights, bound to one stream. Up to kGemvMaxRows activation rows go to the direct gemv
// (gpu_weights.cuh); more go to cuBLAS: the weights are dequantized to fp16 scratch in row tiles,
// the activations converted to fp16 scratch, and cublasGemmEx multiplies them with fp32
// accumulation (CUBLAS_COMPUTE_32F) into fp32 y. fp16 activations must stay below 65504 in
// magnitude. Private to tq_model; includable from host C++.
#pragma once

#include "gpu_weights.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

struct cublasContext;  // cublasHandle_t is cublasContext*; cuBLAS stays out of this header

namespace tq::gpu {

class MatmulEngine {
 public:
  // fp16 weight scratch is capped at this many elements (64 MiB): larger matrices go in tiles.
  static constexpr std::size_t kMaxWeightTileElems = std::size_t{32} << 20;

  // Creates the cuBLAS handle (bound to `stream`) and its 32 MiB workspace.
  explicit MatmulEngine(cudaStream_t stream);
  ~MatmulEngine();
  MatmulEngine(const MatmulEngine&) = delete;
  MatmulEngine& operator=(const MatmulEngine&) = delete;

  // Sizes the fp16 scratch for products of up to max_rows activation rows against matrices of up
  // to max_cols columns (and, when given, at most max_matrix_elems = rows·cols elements, which
  // bounds the weight tile for small models). After it, matmul within those bounds allocates
  // nothing and never synchronizes. Without it, matmul grows the scratch on demand (a
  // cudaFree/cudaMalloc, which synchronizes the device, and is refused during graph capture).
  void reserve(int max_rows, int max_cols, std::size_t max_matrix_elems = 0);

  // y[r][c] (+)= Σ_k x[r][k]·w[c][k] (+ bias[c]) for r < rows, c < w.rows(); x [rows][w.cols()]
  // fp32 with leading dimension ldx, y [rows][w.rows()] fp32 with leading dimension ldy, bias
  // [w.rows()] or null. rows <= kGemvMaxRows: gemv (fp32 products); else the fp16 cuBLAS path.
  // Throws std::invalid_argument for bad shapes, std::runtime_error naming a failed CUDA / cuBLAS
  // call, std::logic_error when scratch must grow during graph capture.
  void matmul(const DeviceMatrix& w, const float* x, int rows, int ldx, const float* bias, float* y,
              int ldy, bool accumulate);

  cudaStream_t stream() const { return stream_; }

 private:
  void ensure_scratch(int rows, int cols, std::size_t tile_elems);

  cudaStream_t stream_;
  cublasContext* handle_ = nullptr;
  void* workspace_ = nullptr;
  __half* x_half_ = nullptr;
  std::size_t x_half_elems_ = 0;
  __half* w_half_ = nullptr;
  std::size_t w_half_elems_ = 0;
};

}  // namespace tq::gpu
