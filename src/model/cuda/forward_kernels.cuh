// The small kernels of the GPU forward pass (RMSNorm, RoPE, the Q/K/V split, SwiGLU/GeGLU), each
// the device twin of its CPU reference in src/model/ops.hpp, with the same rounding steps where
// that is cheap (double sums in RMSNorm, angles formed in double, unfused products in RoPE).
// Private to tq_model's CUDA backend.
#pragma once

#include "turboquant/model/model.hpp"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace tq::gpu {

// y[r] = x[r] / sqrt(mean(x[r]²) + eps) · w for rows r < rows of n values (row stride n).
void rms_norm(const float* x, const float* w, float* y, int rows, int n, float eps,
              cudaStream_t stream);

// y[r] += the same normalised row (Gemma 3's norms on each sub-block's output).
void rms_norm_add(const float* x, const float* w, float* y, int rows, int n, float eps,
                  cudaStream_t stream);

// QK-norm: in place, RMSNorm of each of `heads` consecutive head_dim-value heads at the start of
// rows [0, rows) of x (row stride ld), all with the weight w[head_dim].
void head_rms_norm(float* x, int rows, int ld, int heads, int head_dim, const float* w, float eps,
                   cudaStream_t stream);

// RoPE in place on the first rope_dim coordinates of each head of rows [0, rows) of x (row
// stride ld): q heads at offset 0, then kv heads at offset q_dim, token r at position pos0 + r.
// inv_freq: device double[rope_dim / 2].
void rope_qk(float* x, int rows, int ld, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
             const double* inv_freq, std::size_t pos0, RopeOrdering ordering, cudaStream_t stream);

// The same with row r at position positions[r] (device ints; a negative entry is treated as 0:
// such a row's result is dropped by its caller).
void rope_qk_at(float* x, int rows, int ld, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
                const double* inv_freq, const int* positions, RopeOrdering ordering,
                cudaStream_t stream);

// Splits rows of the fused projection [q | k | v] (row stride ld) into contiguous q [rows][q_dim],
// k and v [rows][kv_dim].
void split_qkv(const float* qkv, int rows, int ld, int q_dim, int kv_dim, float* q, float* k,
               float* v, cudaStream_t stream);

// Benchmarks: out[i] for i < n = a unit-Gaussian number that depends only on (seed, first + i)
// (a counter-based hash and Box-Muller; not the CPU's Xoshiro stream).
void random_gaussian(float* out, std::size_t n, std::uint64_t seed, std::uint64_t first,
                     cudaStream_t stream);

// Rows of [gate | up] (2·n each): the first n values become silu(gate)·up.
void swiglu(float* gate_up, int rows, int n, cudaStream_t stream);

// Rows of [gate | up]: the first n values become gelu_tanh(gate)·up (Gemma's GeGLU, the same
// tanh approximation as ops::geglu_tanh).
void geglu_tanh(float* gate_up, int rows, int n, cudaStream_t stream);

}  // namespace tq::gpu
