// GGUF weight matrices on the GPU (DeviceMatrix: the stored bytes of a tq::WeightMatrix, uploaded
// as they are except for Q4_0, regrouped for aligned loads: gguf_blocks.cuh) and the kernels that
// read them directly: fp16 dequantization of a row range (for the cuBLAS prefill path,
// gpu_matmul.cuh) and the few-token gemv of decode (gpu_gemv.cu). Types: F32, F16, BF16, Q4_0,
// Q4_1, Q8_0, Q4_K, Q6_K (what qmm::has_kernel keeps raw). Private to tq_model; includable from
// host C++ (no device code here).
#pragma once

#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace tq::gpu {

// Most activation rows (tokens) one gemv call takes; MatmulEngine sends more to cuBLAS.
inline constexpr int kGemvMaxRows = 8;

// True for the storage types DeviceMatrix accepts.
bool device_supported(gguf::TensorType type);

// One weight matrix [rows][cols] (rows = outputs) in device memory, row r at data() + r·row_bytes()
// in its GGUF block format (Q4_0: the device layout of gguf_blocks.cuh, whose rows are a whole
// number of 256-column groups, so bytes() exceeds the GGUF size for rows of other lengths).
// Move-only; owns its allocation.
class DeviceMatrix {
 public:
  DeviceMatrix() = default;
  // Uploads w's bytes (synchronous cudaMemcpy). Throws std::invalid_argument naming the type for
  // a type device_supported() rejects, std::runtime_error on a CUDA failure.
  explicit DeviceMatrix(const WeightMatrix& w);
  ~DeviceMatrix();
  DeviceMatrix(DeviceMatrix&& o) noexcept;
  DeviceMatrix& operator=(DeviceMatrix&& o) noexcept;
  DeviceMatrix(const DeviceMatrix&) = delete;
  DeviceMatrix& operator=(const DeviceMatrix&) = delete;

  gguf::TensorType type() const { return type_; }
  int rows() const { return rows_; }
  int cols() const { return cols_; }
  std::size_t row_bytes() const { return row_bytes_; }
  std::size_t bytes() const { return row_bytes_ * static_cast<std::size_t>(rows_); }
  const std::uint8_t* data() const { return data_; }
  bool empty() const { return rows_ == 0; }

 private:
  void release() noexcept;
  gguf::TensorType type_ = gguf::TensorType::kF32;
  int rows_ = 0;
  int cols_ = 0;
  std::size_t row_bytes_ = 0;
  std::uint8_t* data_ = nullptr;
};

// Rows [r0, r0 + n) of w as fp16 into dst ([n][w.cols()], device, dense, 8-byte aligned), on
// stream s. Values are the fp32 dequantization rounded to nearest fp16. Throws
// std::invalid_argument for a range outside [0, w.rows()) or a null dst.
void dequantize_half(const DeviceMatrix& w, int r0, int n, __half* dst, cudaStream_t s);

// y[r][c] (+)= Σ_k x[r][k]·w[c][k] (+ bias[c]) for r < rows, c < w.rows(), on stream s: x is
// [rows][w.cols()] fp32 with leading dimension ldx, y [rows][w.rows()] fp32 with leading dimension
// ldy (ldx >= cols, ldy >= w.rows() even for one row), bias (optional) [w.rows()]; y must not
// overlap x or bias. 1 <= rows <= kGemvMaxRows. The GGUF blocks are read directly
// (each weight byte once for all `rows` tokens) with fp32 products and fp32 accumulation, except
// Q4_0, which goes through the tensor cores (gpu_gemv_q4_0.cu): activations rounded to fp16 once
// (a relative error of at most 2^-11 each; |x| beyond fp16's 65504 becomes infinite), exact
// weights, fp32 accumulation. No
// allocation or synchronization: capturable in a CUDA graph. Throws std::invalid_argument for bad
// rows / leading dimensions / null pointers.
void gemv(const DeviceMatrix& w, const float* x, int rows, int ldx, const float* bias, float* y,
          int ldy, bool accumulate, cudaStream_t s);

}  // namespace tq::gpu
