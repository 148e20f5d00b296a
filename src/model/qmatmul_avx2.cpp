// AVX2/FMA/F16C kernels of the quantized matmul (qmatmul.hpp): per-row dot products of GGUF
// blocks (F16, Q4_0, Q4_1, Q5_0, Q8_0) with an fp32 vector, and block → fp32 row dequantization for
// the prefill tiles. Weights are widened to fp32 in registers (never the activations quantized), so
// only the order of the fp32 sums differs from the scalar reference.
#include "qmatmul.hpp"

#include "base/avx2_math.hpp"

#include <immintrin.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace tq::qmm::detail {

namespace {

using gguf::TensorType;

constexpr int kQK = 32;

inline float half_at(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

using avx2::horizontal_sum;

inline __m256 u8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
}
inline __m256 i8_to_ps(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

// The 32 weights of a Q4 block as four vectors of eight (elements 0–7, 8–15, 16–23, 24–31):
// low nibbles hold elements 0..15, high nibbles 16..31. With `centre` 8 is subtracted (Q4_0).
template <bool kCentre>
inline void q4_unpack(const std::uint8_t* qs, __m256 out[4]) {
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  __m128i lo = _mm_and_si128(q, m4);
  __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
  if constexpr (kCentre) {
    const __m128i eight = _mm_set1_epi8(8);
    lo = _mm_sub_epi8(lo, eight);
    hi = _mm_sub_epi8(hi, eight);
    out[0] = i8_to_ps(lo);
    out[1] = i8_to_ps(_mm_srli_si128(lo, 8));
    out[2] = i8_to_ps(hi);
    out[3] = i8_to_ps(_mm_srli_si128(hi, 8));
  } else {
    out[0] = u8_to_ps(lo);
    out[1] = u8_to_ps(_mm_srli_si128(lo, 8));
    out[2] = u8_to_ps(hi);
    out[3] = u8_to_ps(_mm_srli_si128(hi, 8));
  }
}

// The 32 weights of a Q5_0 block (p: after d; 4 bytes of fifth bits, then nibbles as Q4_x) as
// four vectors of eight, minus 16. Element i's fifth bit is bit i of the little-endian word, in
// the same element order as the nibbles (low nibbles 0..15, high 16..31), so each byte of the
// word is broadcast over its eight elements and tested against one bit per element.
inline void q5_0_unpack(const std::uint8_t* p, __m256 out[4]) {
  std::uint32_t qh;
  std::memcpy(&qh, p, 4);
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 4));
  const __m256i nib =
      _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(qh)),
                          _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                           2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  const __m256i fifth =
      _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
  const __m256i v = _mm256_sub_epi8(_mm256_or_si256(nib, fifth), _mm256_set1_epi8(16));
  const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  out[0] = i8_to_ps(lo);
  out[1] = i8_to_ps(_mm_srli_si128(lo, 8));
  out[2] = i8_to_ps(hi);
  out[3] = i8_to_ps(_mm_srli_si128(hi, 8));
}

inline void q8_unpack(const std::uint8_t* qs, __m256 out[4]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = i8_to_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + 8 * j)));
  }
}

// Σ q·x over one block of 32 (q as four vectors of eight).
inline __m256 block_dot(const __m256 q[4], const float* x) {
  __m256 p = _mm256_mul_ps(q[0], _mm256_loadu_ps(x));
  p = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(x + 8), p);
  p = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(x + 16), p);
  return _mm256_fmadd_ps(q[3], _mm256_loadu_ps(x + 24), p);
}

// Q4_1 weights are q·d + m, so Σ w·x = d·Σ q·x + m·Σ x: the block sums of x are formed once per
// call and each block costs one extra scalar multiply-add instead of a vector one per eight.
void gemv_q4_1(const std::uint8_t* data, std::size_t rb, int cols, const float* x, int r0, int r1,
               float* out) {
  const int nb = cols / kQK;
  thread_local std::vector<float> xsum;
  if (xsum.size() < static_cast<std::size_t>(nb)) xsum.resize(static_cast<std::size_t>(nb));
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kQK;
    const __m256 s =
        _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8)),
                      _mm256_add_ps(_mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)));
    xsum[static_cast<std::size_t>(b)] = horizontal_sum(s);
  }
  for (int r = r0; r < r1; ++r) {
    const std::uint8_t* blk = data + static_cast<std::size_t>(r) * rb;
    __m256 acc = _mm256_setzero_ps();
    float macc = 0.0f;
    for (int b = 0; b < nb; ++b, blk += 20) {
      __m256 q[4];
      q4_unpack<false>(blk + 4, q);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(half_at(blk)), block_dot(q, x + b * kQK), acc);
      macc += half_at(blk + 2) * xsum[static_cast<std::size_t>(b)];
    }
    out[r - r0] = horizontal_sum(acc) + macc;
  }
}

// Q4_0, Q5_0 and Q8_0 rows: blocks of an fp16 scale d then 32 codes, w = q·d, so Σ w·x is
// Σ over blocks of d·Σ q·x. They differ only in block size and in how codes unpack.
template <int kBlockBytes, typename Unpack>
void gemv_scaled_blocks(const std::uint8_t* data, std::size_t rb, int cols, const float* x, int r0,
                        int r1, float* out, Unpack unpack) {
  const int nb = cols / kQK;
  for (int r = r0; r < r1; ++r) {
    const std::uint8_t* blk = data + static_cast<std::size_t>(r) * rb;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b, blk += kBlockBytes) {
      __m256 q[4];
      unpack(blk + 2, q);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(half_at(blk)), block_dot(q, x + b * kQK), acc);
    }
    out[r - r0] = horizontal_sum(acc);
  }
}

// The same blocks dequantized: each of the row's blocks written as d·q.
template <int kBlockBytes, typename Unpack>
void dequantize_scaled_blocks(const std::uint8_t* row, int cols, float* dst, Unpack unpack) {
  for (int b = 0; b < cols / kQK; ++b, row += kBlockBytes, dst += kQK) {
    const __m256 d = _mm256_set1_ps(half_at(row));
    __m256 q[4];
    unpack(row + 2, q);
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(q[j], d));
  }
}

void gemv_f16(const std::uint8_t* data, std::size_t rb, int cols, const float* x, int r0, int r1,
              float* out) {
  for (int r = r0; r < r1; ++r) {
    const std::uint8_t* row = data + static_cast<std::size_t>(r) * rb;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= cols; i += 16) {
      const __m256 w0 =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
      const __m256 w1 =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i + 16)));
      a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
      a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = horizontal_sum(_mm256_add_ps(a0, a1));
    for (; i < cols; ++i) s += half_at(row + 2 * i) * x[i];
    out[r - r0] = s;
  }
}

void gemv_f32(const std::uint8_t* data, std::size_t rb, int cols, const float* x, int r0, int r1,
              float* out) {
  for (int r = r0; r < r1; ++r) {
    const float* row = reinterpret_cast<const float*>(data + static_cast<std::size_t>(r) * rb);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= cols; i += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i), _mm256_loadu_ps(x + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = horizontal_sum(_mm256_add_ps(a0, a1));
    for (; i < cols; ++i) s += row[i] * x[i];
    out[r - r0] = s;
  }
}

[[noreturn]] void no_kernel(TensorType type) {
  throw std::invalid_argument("qmatmul: no AVX2 kernel for tensor type " +
                              gguf::tensor_type_name(type));
}

}  // namespace

void gemv_rows_avx2(TensorType type, const std::uint8_t* data, std::size_t row_bytes, int cols,
                    const float* x, int r0, int r1, float* out) {
  switch (type) {
    case TensorType::kQ4_1:
      return gemv_q4_1(data, row_bytes, cols, x, r0, r1, out);
    case TensorType::kQ4_0:
      return gemv_scaled_blocks<18>(
          data, row_bytes, cols, x, r0, r1, out,
          [](const std::uint8_t* qs, __m256 q[4]) { q4_unpack<true>(qs, q); });
    case TensorType::kQ5_0:
      return gemv_scaled_blocks<22>(data, row_bytes, cols, x, r0, r1, out,
                                    [](const std::uint8_t* p, __m256 q[4]) { q5_0_unpack(p, q); });
    case TensorType::kQ8_0:
      return gemv_scaled_blocks<34>(data, row_bytes, cols, x, r0, r1, out,
                                    [](const std::uint8_t* qs, __m256 q[4]) { q8_unpack(qs, q); });
    case TensorType::kF16:
      return gemv_f16(data, row_bytes, cols, x, r0, r1, out);
    case TensorType::kF32:
      return gemv_f32(data, row_bytes, cols, x, r0, r1, out);
    default:
      no_kernel(type);
  }
}

void dequantize_row_avx2(TensorType type, const std::uint8_t* row, int cols, float* dst) {
  const int nb = cols / kQK;
  switch (type) {
    case TensorType::kQ4_1:
      for (int b = 0; b < nb; ++b, row += 20, dst += kQK) {
        const __m256 d = _mm256_set1_ps(half_at(row)), m = _mm256_set1_ps(half_at(row + 2));
        __m256 q[4];
        q4_unpack<false>(row + 4, q);
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(dst + 8 * j, _mm256_fmadd_ps(q[j], d, m));
      }
      return;
    case TensorType::kQ4_0:
      return dequantize_scaled_blocks<18>(
          row, cols, dst, [](const std::uint8_t* qs, __m256 q[4]) { q4_unpack<true>(qs, q); });
    case TensorType::kQ5_0:
      return dequantize_scaled_blocks<22>(
          row, cols, dst, [](const std::uint8_t* p, __m256 q[4]) { q5_0_unpack(p, q); });
    case TensorType::kQ8_0:
      return dequantize_scaled_blocks<34>(
          row, cols, dst, [](const std::uint8_t* qs, __m256 q[4]) { q8_unpack(qs, q); });
    case TensorType::kF16: {
      int i = 0;
      for (; i + 8 <= cols; i += 8) {
        _mm256_storeu_ps(
            dst + i,
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i))));
      }
      for (; i < cols; ++i) dst[i] = half_at(row + 2 * i);
      return;
    }
    case TensorType::kF32:
      std::memcpy(dst, row, sizeof(float) * static_cast<std::size_t>(cols));
      return;
    default:
      no_kernel(type);
  }
}

}  // namespace tq::qmm::detail
