// Matrix products against weights kept in their GGUF block format (tq::WeightMatrix): F32, F16,
// BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K rows are dequantized on the fly with fp32
// activations and fp32 accumulation, so results equal the dequantize-then-fp32 path up to
// summation order. F32, F16, Q4_0, Q4_1, Q5_0 and Q8_0 have AVX2 kernels; BF16, Q4_K and Q6_K are
// kept raw (so that the GPU runner can upload their GGUF bytes) and use the scalar
// dequantize-then-dot path on the CPU. Decode (one token) runs a gemv split over output rows;
// prefill dequantizes a tile of weight rows into a small per-thread fp32 buffer once and multiplies
// it with every token of the chunk (sgemm), so no fp32 copy of the model is kept. Private to
// tq_model; tests include it directly.
#pragma once

#include "turboquant/base/simd.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"

#include <cstddef>
#include <cstdint>

namespace tq::qmm {

// True for storage types with an on-the-fly kernel (kept quantized at load): F32, F16, BF16, Q4_0,
// Q4_1, Q5_0, Q8_0, Q4_K, Q6_K.
bool has_kernel(gguf::TensorType type);
// The subset with AVX2 kernels (F32, F16, Q4_0, Q4_1, Q5_0, Q8_0); the others run the scalar
// reference.
bool has_avx2_kernel(gguf::TensorType type);

// A matrix of `rows` rows of `cols` values stored as `type` (bytes copied from `src`, rows ×
// row_bytes(type, cols)). Types without a kernel are dequantized to fp32 here.
WeightMatrix make_matrix(gguf::TensorType type, int rows, int cols, const void* src);
// Empty matrix of `rows` × `cols` in `type` (a kernel type or kF32) to be filled by the caller.
WeightMatrix allocate_matrix(gguf::TensorType type, int rows, int cols);

// y[r][c] = Σ_k x[r][k] · w[c][k] (+ bias[c]) for r < rows, c < w.rows: x is [rows][w.cols] with
// leading dimension ldx, y is [rows][w.rows] with leading dimension ldy. With accumulate the
// product is added to y (residual adds). Work is split over `threads` OpenMP threads by output
// rows of w. simd = Scalar forces the reference kernels.
void matmul(const float* x, int rows, int ldx, const WeightMatrix& w, const float* bias, float* y,
            int ldy, int threads, bool accumulate = false, SimdLevel simd = SimdLevel::Auto);

// out[r − r0] = dot(row r of w, x) for r in [r0, r1): the gemv kernel on one thread.
void gemv_rows(const WeightMatrix& w, const float* x, int r0, int r1, float* out, SimdLevel simd);

// Rows [r0, r0 + n) of w dequantized to dst ([n][w.cols]).
void dequantize_rows(const WeightMatrix& w, int r0, int n, float* dst, SimdLevel simd);

namespace detail {
// AVX2 kernels (qmatmul_avx2.cpp), callable only when cpu_has_avx2(); types with
// has_avx2_kernel().
void gemv_rows_avx2(gguf::TensorType type, const std::uint8_t* data, std::size_t row_bytes,
                    int cols, const float* x, int r0, int r1, float* out);
void dequantize_row_avx2(gguf::TensorType type, const std::uint8_t* row, int cols, float* dst);
}  // namespace detail

}  // namespace tq::qmm
