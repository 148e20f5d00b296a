// The small numerical kernels of the forward pass (RMSNorm, RoPE, SwiGLU, softmax) and the
// matrix-product wrapper around BLAS. Private to tq_model; the tests include it directly.
#pragma once

#include "turboquant/model/model.hpp"

#include <cstddef>
#include <functional>

namespace tq::ops {

// y = x / sqrt(mean(x²) + eps) · w for `rows` rows of n values (y may alias x).
void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps);

// cos/sin of pos·inv_freq[i] for positions pos0 .. pos0 + n_pos − 1 and i < half:
// cos_out/sin_out are [n_pos][half]. Angles are formed in double so that long contexts keep
// full float accuracy.
void rope_angles(std::size_t pos0, int n_pos, const double* inv_freq, int half, float* cos_out,
                 float* sin_out);

// Rotates the first rope_dim coordinates of each of n_heads heads (head_dim apart) of one token
// in place, with the token's cos/sin row (rope_dim/2 values each).
void rope(float* x, int n_heads, int head_dim, int rope_dim, const float* cos_row,
          const float* sin_row, RopeOrdering ordering);

// out[i] = silu(gate[i]) · up[i] (out may alias gate).
void swiglu(const float* gate, const float* up, float* out, int n);

// out[i] = gelu_tanh(gate[i]) · up[i], GELU in its tanh approximation (out may alias gate).
void geglu_tanh(const float* gate, const float* up, float* out, int n);

// In-place softmax of n values (max-subtracted).
void softmax(float* x, int n);

// y[r][c] = Σ_k x[r][k] · w[c][k] (+ bias[c]) for r < rows, c < cols: x is [rows][inner] with
// leading dimension ldx, w is [cols][inner] row-major, y is [rows][cols] with leading dimension
// ldy. With accumulate the product is added to y instead of overwriting it (residual adds).
// The columns are split over `threads` OpenMP threads, each calling single-threaded BLAS
// (sgemv for one row, sgemm otherwise), so that all parallelism lives in one thread pool.
void matmul(const float* x, int rows, int inner, int ldx, const float* w, int cols,
            const float* bias, float* y, int ldy, int threads, bool accumulate = false);

// Tells OpenBLAS to run single-threaded (we parallelise around it); idempotent.
void set_blas_single_threaded();

// Columns [c0, c1) of matmul on the calling thread: y[:, c0:c1] (+)= x · w[c0:c1]ᵀ + bias[c0:c1]
// (w row-major [cols][inner]; with accumulate the product and bias are added to y). BLAS must
// be single-threaded (set_blas_single_threaded).
void matmul_columns(const float* x, int rows, int inner, int ldx, const float* w, int c0, int c1,
                    const float* bias, float* y, int ldy, bool accumulate);

// Splits `outputs` output rows/columns over up to `threads` OpenMP threads (0: all) and calls
// part(begin, end) for each thread's share, in slices rounded to 16 so that each thread's output
// starts on a cache line. Runs serially when `work` (multiply-adds) is below ~64k or there are
// fewer than 32 outputs per thread: then a parallel region costs more than it saves. Shared by
// the fp32 BLAS product and the quantized-weight product.
void parallel_outputs(int outputs, double work, int threads,
                      const std::function<void(int begin, int end)>& part);

}  // namespace tq::ops
