// Hot loops of the codecs, in a plain scalar reference and an AVX2 version with identical
// semantics (tests/codec/test_simd.cpp checks one against the other on random inputs).
// A "segment" is a run of `count` rotated coordinates coded with `bits` bits each, packed as in
// bitpack.hpp; tokens are `stride` bytes apart.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tq::kernels {

// idx[j] = number of thresholds strictly below y[j] (the cell index), j < count.
void quantize_scalar(const float* y, int count, const float* thresholds, int bits,
                     std::uint8_t* idx);
// out[t] = Σ_j q[j] · centroids[code_tj]   (overwrites out)
void segment_dot_scalar(const float* q, int count, int bits, const float* centroids,
                        const std::uint8_t* codes, std::size_t stride, std::size_t n, float* out);
// acc[j] += Σ_t w[t] · centroids[code_tj]
void segment_axpy_scalar(const float* w, int count, int bits, const float* centroids,
                         const std::uint8_t* codes, std::size_t stride, std::size_t n, float* acc);
// out[t] = Σ_i sketch[i] · (2·bit_ti − 1)
void sign_dot_scalar(const float* sketch, int dim, const std::uint8_t* signs, std::size_t stride,
                     std::size_t n, float* out);
// acc[i] += Σ_t w[t] · (2·bit_ti − 1)
void sign_axpy_scalar(const float* w, int dim, const std::uint8_t* signs, std::size_t stride,
                      std::size_t n, float* acc);

// Several queries against the same codes (the GQA group of one KV head; one query is
// n_queries = 1): each code is looked up once and used for every query. q[i] / w[i] / acc[i] are
// per-query rows; out is [n_queries][out_stride]. The scalar versions loop over the single-query
// kernels above.
void segment_dot_multi_scalar(const float* const* q, int n_queries, int count, int bits,
                              const float* centroids, const std::uint8_t* codes, std::size_t stride,
                              std::size_t n, float* out, std::size_t out_stride);
void segment_axpy_multi_scalar(const float* const* w, int n_queries, int count, int bits,
                               const float* centroids, const std::uint8_t* codes,
                               std::size_t stride, std::size_t n, float* const* acc);

// AVX2 versions. They fall back to the scalar code for shapes they do not cover (bits > 4 for
// the table kernels, counts that are not a multiple of 8), so they are always safe to call.
void quantize_avx2(const float* y, int count, const float* thresholds, int bits, std::uint8_t* idx);
void segment_dot_multi_avx2(const float* const* q, int n_queries, int count, int bits,
                            const float* centroids, const std::uint8_t* codes, std::size_t stride,
                            std::size_t n, float* out, std::size_t out_stride);
void segment_axpy_multi_avx2(const float* const* w, int n_queries, int count, int bits,
                             const float* centroids, const std::uint8_t* codes, std::size_t stride,
                             std::size_t n, float* const* acc);
void sign_dot_avx2(const float* sketch, int dim, const std::uint8_t* signs, std::size_t stride,
                   std::size_t n, float* out);

}  // namespace tq::kernels
