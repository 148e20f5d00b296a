// Quantized matmul driver (qmatmul.hpp): building WeightMatrix values at load, the scalar
// reference kernels, and the threaded gemv (one token) / tiled dequantize-then-sgemm (a chunk of
// tokens) that dispatch to the AVX2 kernels after a run-time CPU check (BF16, Q4_K and Q6_K have
// none and always take the scalar reference: dequantize a row or tile, then dot / sgemm).
#include "qmatmul.hpp"

#include "ops.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace tq {

void WeightMatrix::dequantize_row(int r, float* dst) const {
  if (r < 0 || r >= rows) {
    throw std::out_of_range("WeightMatrix row " + std::to_string(r) + " outside [0, " +
                            std::to_string(rows) + ")");
  }
  qmm::dequantize_rows(*this, r, 1, dst, SimdLevel::Auto);
}

namespace qmm {

using gguf::TensorType;

bool has_kernel(TensorType type) {
  return has_avx2_kernel(type) || type == TensorType::kBF16 || type == TensorType::kQ4_K ||
         type == TensorType::kQ6_K;
}

bool has_avx2_kernel(TensorType type) {
  return type == TensorType::kF32 || type == TensorType::kF16 || type == TensorType::kQ4_0 ||
         type == TensorType::kQ4_1 || type == TensorType::kQ5_0 || type == TensorType::kQ8_0;
}

WeightMatrix allocate_matrix(TensorType type, int rows, int cols) {
  if (!has_kernel(type)) {
    throw std::invalid_argument("qmatmul: cannot store a matrix as " +
                                gguf::tensor_type_name(type) +
                                " (expected F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K or Q6_K)");
  }
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument("qmatmul: bad matrix shape " + std::to_string(rows) + "x" +
                                std::to_string(cols));
  }
  WeightMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  m.row_bytes = gguf::row_bytes(type, static_cast<std::uint64_t>(cols));
  m.data.resize(m.row_bytes * static_cast<std::size_t>(rows));
  return m;
}

WeightMatrix make_matrix(TensorType type, int rows, int cols, const void* src) {
  if (has_kernel(type)) {
    WeightMatrix m = allocate_matrix(type, rows, cols);
    std::memcpy(m.data.data(), src, m.data.size());
    return m;
  }
  WeightMatrix m = allocate_matrix(TensorType::kF32, rows, cols);
  gguf::dequantize(type, src, reinterpret_cast<float*>(m.data.data()),
                   static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols));
  return m;
}

namespace {

bool use_avx2(SimdLevel simd) {
  static const bool have = cpu_has_avx2();
  if (simd == SimdLevel::Scalar) return false;
  if (simd == SimdLevel::Avx2 && !have) {
    throw std::invalid_argument("qmatmul: AVX2 kernels requested but the CPU lacks AVX2");
  }
  return have;
}

const std::uint8_t* row_ptr(const WeightMatrix& w, int r) {
  return w.data.data() + static_cast<std::size_t>(r) * w.row_bytes;
}

// Scratch that lives as long as the thread, so decode steps do not allocate.
float* scratch(std::vector<float>& buf, std::size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// One thread's share of a single-token product: rows [r0, r1) of w against x.
void gemv_part(const float* x, const WeightMatrix& w, const float* bias, float* y, int r0, int r1,
               bool accumulate, SimdLevel simd) {
  if (r1 <= r0) return;
  if (!bias && !accumulate) {
    gemv_rows(w, x, r0, r1, y + r0, simd);
    return;
  }
  thread_local std::vector<float> tmp;
  float* out = scratch(tmp, static_cast<std::size_t>(r1 - r0));
  gemv_rows(w, x, r0, r1, out, simd);
  for (int r = r0; r < r1; ++r) {
    float v = out[r - r0];
    if (bias) v += bias[r];
    y[r] = accumulate ? y[r] + v : v;
  }
}

// One thread's share of a many-token product: its output rows in tiles of `tile` weight rows,
// each dequantized once into a per-thread buffer and multiplied with every token by sgemm.
void gemm_part(const float* x, int rows, int ldx, const WeightMatrix& w, const float* bias,
               float* y, int ldy, int r0, int r1, bool accumulate, SimdLevel simd) {
  if (r1 <= r0) return;
  const int k = w.cols;
  // ~128 KiB of fp32 per tile: stays in L2 while sgemm streams the chunk's tokens past it.
  const int tile = std::clamp((32768 / std::max(k, 1)) / 16 * 16, 16, 256);
  thread_local std::vector<float> buf;
  float* wt = scratch(buf, static_cast<std::size_t>(tile) * static_cast<std::size_t>(k));
  for (int t0 = r0; t0 < r1; t0 += tile) {
    const int n = std::min(tile, r1 - t0);
    // (fp32 weights never get here: matmul hands every many-token fp32 product to BLAS)
    dequantize_rows(w, t0, n, wt, simd);
    ops::matmul_columns(x, rows, k, ldx, wt, 0, n, bias ? bias + t0 : nullptr, y + t0, ldy,
                        accumulate);
  }
}

}  // namespace

void gemv_rows(const WeightMatrix& w, const float* x, int r0, int r1, float* out, SimdLevel simd) {
  // BF16, Q4_K and Q6_K have no AVX2 kernel: they take the reference at every SIMD level.
  if (use_avx2(simd) && has_avx2_kernel(w.type)) {
    detail::gemv_rows_avx2(w.type, w.data.data(), w.row_bytes, w.cols, x, r0, r1, out);
    return;
  }
  // Reference: dequantize the row, then a plain fp32 dot product in index order.
  thread_local std::vector<float> row;
  float* wr = scratch(row, static_cast<std::size_t>(w.cols));
  for (int r = r0; r < r1; ++r) {
    gguf::dequantize(w.type, row_ptr(w, r), wr, static_cast<std::size_t>(w.cols));
    float s = 0.0f;
    for (int i = 0; i < w.cols; ++i) s += wr[i] * x[i];
    out[r - r0] = s;
  }
}

void dequantize_rows(const WeightMatrix& w, int r0, int n, float* dst, SimdLevel simd) {
  const std::size_t k = static_cast<std::size_t>(w.cols);
  if (use_avx2(simd) && has_avx2_kernel(w.type)) {
    for (int i = 0; i < n; ++i) {
      detail::dequantize_row_avx2(w.type, row_ptr(w, r0 + i), w.cols, dst + i * k);
    }
    return;
  }
  gguf::dequantize(w.type, row_ptr(w, r0), dst, static_cast<std::size_t>(n) * k);
}

void matmul(const float* x, int rows, int ldx, const WeightMatrix& w, const float* bias, float* y,
            int ldy, int threads, bool accumulate, SimdLevel simd) {
  if (rows <= 0 || w.rows == 0) return;
  ops::set_blas_single_threaded();
  (void)use_avx2(simd);  // throws here, not inside the parallel region, for an impossible level
  // fp32 weights (fallback types, or fp32 asked for): the BLAS path as before.
  if (w.type == TensorType::kF32 && (rows > 1 || simd != SimdLevel::Scalar)) {
    ops::matmul(x, rows, w.cols, ldx, reinterpret_cast<const float*>(w.data.data()), w.rows, bias,
                y, ldy, threads, accumulate);
    return;
  }
  ops::parallel_outputs(w.rows, static_cast<double>(rows) * w.cols * w.rows, threads,
                        [&](int r0, int r1) {
                          if (rows == 1) {
                            gemv_part(x, w, bias, y, r0, r1, accumulate, simd);
                          } else {
                            gemm_part(x, rows, ldx, w, bias, y, ldy, r0, r1, accumulate, simd);
                          }
                        });
}

}  // namespace qmm
}  // namespace tq
