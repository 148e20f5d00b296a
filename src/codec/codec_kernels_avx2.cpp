// AVX2/FMA fast paths of the codec hot loops (compiled with -mavx2 -mfma; only called after
// cpu_has_avx2()). Table look-ups for b <= 4 stay in registers: 8 codes are 8·b bits = b bytes,
// broadcast and shifted per lane with vpsrlvd, then looked up with vpermps (and a blend on bit 3
// for 16-entry tables) — no gathers and no memory traffic besides the codes themselves.
#include "base/avx2_math.hpp"
#include "codec_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

namespace tq::kernels {
namespace {

using avx2::horizontal_sum;

template <int kBits>
struct TableLookup {
  __m256 low;   // centroids 0..7 (or fewer, zero padded)
  __m256 high;  // centroids 8..15 (b = 4 only)
  __m256i shifts;
  __m256i mask;

  explicit TableLookup(const float* centroids) {
    alignas(32) float lo[8] = {}, hi[8] = {};
    constexpr int kEntries = 1 << kBits;
    for (int i = 0; i < kEntries && i < 8; ++i) lo[i] = centroids[i];
    for (int i = 8; i < kEntries; ++i) hi[i - 8] = centroids[i];
    low = _mm256_load_ps(lo);
    high = _mm256_load_ps(hi);
    shifts = _mm256_setr_epi32(0, kBits, 2 * kBits, 3 * kBits, 4 * kBits, 5 * kBits, 6 * kBits,
                               7 * kBits);
    mask = _mm256_set1_epi32((1 << kBits) - 1);
  }

  // The 8 centroids of the 8 codes stored in the kBits bytes at p.
  inline __m256 operator()(const std::uint8_t* p) const {
    // Read exactly kBits bytes (never past the segment). For 3 bytes, compose a 16-bit and an
    // 8-bit load: a 3-byte memcpy into a zeroed word stalls on store forwarding.
    std::uint32_t word;
    if constexpr (kBits == 1) {
      word = p[0];
    } else if constexpr (kBits == 2) {
      std::uint16_t w16;
      std::memcpy(&w16, p, 2);
      word = w16;
    } else if constexpr (kBits == 3) {
      std::uint16_t w16;
      std::memcpy(&w16, p, 2);
      word = w16 | (static_cast<std::uint32_t>(p[2]) << 16);
    } else {
      std::memcpy(&word, p, 4);
    }
    const __m256i idx = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts), mask);
    if constexpr (kBits <= 3) {
      return _mm256_permutevar8x32_ps(low, idx);
    } else {
      const __m256 a = _mm256_permutevar8x32_ps(low, idx);
      const __m256 b = _mm256_permutevar8x32_ps(high, idx);
      // Bit 3 of the code picks the high table: move it to the sign bit for blendv.
      return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    }
  }
};

// Up to 8 queries per pass: 8 accumulators + the looked-up centroids + a query load fit in the
// 16 ymm registers.
constexpr int kMaxQueriesPerPass = 8;

template <int kBits, int kQueries>
void segment_dot_multi_impl(const float* const* q, int count, const float* centroids,
                            const std::uint8_t* codes, std::size_t stride, std::size_t n,
                            float* out, std::size_t out_stride) {
  const TableLookup<kBits> lookup(centroids);
  const int groups = count / 8;
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* c = codes + t * stride;
    if constexpr (kQueries == 1) {
      // One query has a single FMA chain per token: split it over even and odd groups so that
      // two chains hide the FMA latency.
      const float* query = q[0];
      __m256 acc0 = _mm256_setzero_ps();
      __m256 acc1 = _mm256_setzero_ps();
      int g = 0;
      for (; g + 1 < groups; g += 2) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(query + 8 * g), lookup(c + g * kBits), acc0);
        acc1 =
            _mm256_fmadd_ps(_mm256_loadu_ps(query + 8 * g + 8), lookup(c + (g + 1) * kBits), acc1);
      }
      if (g < groups) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(query + 8 * g), lookup(c + g * kBits), acc0);
      }
      out[t] = horizontal_sum(_mm256_add_ps(acc0, acc1));
    } else {
      __m256 acc[kQueries];
      for (int i = 0; i < kQueries; ++i) acc[i] = _mm256_setzero_ps();
      for (int g = 0; g < groups; ++g) {
        const __m256 centroid = lookup(c + g * kBits);
        for (int i = 0; i < kQueries; ++i) {
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + 8 * g), centroid, acc[i]);
        }
      }
      for (int i = 0; i < kQueries; ++i) out[i * out_stride + t] = horizontal_sum(acc[i]);
    }
  }
}

template <int kBits, int kQueries>
void segment_axpy_multi_impl(const float* const* w, int count, const float* centroids,
                             const std::uint8_t* codes, std::size_t stride, std::size_t n,
                             float* const* acc) {
  const TableLookup<kBits> lookup(centroids);
  const int groups = count / 8;
  if constexpr (kQueries == 1) {
    // One weight row: token by token with the accumulator in memory, so that the groups of a
    // token are independent FMA chains (a register accumulator would be one chain over tokens).
    // The row pointers are read once: the vector stores may alias the pointer arrays.
    const float* weights = w[0];
    float* out = acc[0];
    for (std::size_t t = 0; t < n; ++t) {
      const std::uint8_t* c = codes + t * stride;
      const __m256 weight = _mm256_set1_ps(weights[t]);
      for (int g = 0; g < groups; ++g) {
        float* a = out + 8 * g;
        _mm256_storeu_ps(a, _mm256_fmadd_ps(weight, lookup(c + g * kBits), _mm256_loadu_ps(a)));
      }
    }
    return;
  }
  // Blocks of tokens small enough for L1, so the per-group column walk re-reads codes from L1
  // while the kQueries accumulators of one 8-coordinate group stay in registers.
  constexpr std::size_t kBlock = 32;
  for (std::size_t t0 = 0; t0 < n; t0 += kBlock) {
    const std::size_t t1 = std::min(n, t0 + kBlock);
    for (int g = 0; g < groups; ++g) {
      __m256 a[kQueries];
      for (int i = 0; i < kQueries; ++i) a[i] = _mm256_loadu_ps(acc[i] + 8 * g);
      const std::uint8_t* c = codes + t0 * stride + g * kBits;
      for (std::size_t t = t0; t < t1; ++t, c += stride) {
        const __m256 centroid = lookup(c);
        for (int i = 0; i < kQueries; ++i) {
          a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(w[i] + t), centroid, a[i]);
        }
      }
      for (int i = 0; i < kQueries; ++i) _mm256_storeu_ps(acc[i] + 8 * g, a[i]);
    }
  }
}

template <typename F, int... kIndex>
void with_constant_among(int value, F& f, std::integer_sequence<int, kIndex...>) {
  ((value == kIndex + 1 && (f(std::integral_constant<int, kIndex + 1>{}), true)) || ...);
}

// Calls f(std::integral_constant<int, N>{}) for N = value clamped to [1, kMax], so that a
// run-time count (queries per pass, code bits) becomes a compile-time constant: accumulators live
// in registers and the code shifts are unrolled.
template <int kMax, typename F>
void with_constant(int value, F&& f) {
  with_constant_among(std::clamp(value, 1, kMax), f, std::make_integer_sequence<int, kMax>{});
}

// Splits n_queries into passes of at most kMaxQueriesPerPass and calls f(bits, queries, first)
// for each, with the code width (1..4) and the pass's query count as compile-time constants.
template <typename F>
void for_each_pass(int n_queries, int bits, F&& f) {
  for (int first = 0; first < n_queries; first += kMaxQueriesPerPass) {
    const int nq = std::min(kMaxQueriesPerPass, n_queries - first);
    with_constant<4>(bits, [&](auto b) {
      with_constant<kMaxQueriesPerPass>(nq, [&](auto k) { f(b, k, first); });
    });
  }
}

}  // namespace

void segment_dot_multi_avx2(const float* const* q, int n_queries, int count, int bits,
                            const float* centroids, const std::uint8_t* codes, std::size_t stride,
                            std::size_t n, float* out, std::size_t out_stride) {
  if (count % 8 != 0 || bits > 4) {
    return segment_dot_multi_scalar(q, n_queries, count, bits, centroids, codes, stride, n, out,
                                    out_stride);
  }
  for_each_pass(n_queries, bits, [&](auto b, auto k, int first) {
    segment_dot_multi_impl<b(), k()>(q + first, count, centroids, codes, stride, n,
                                     out + first * out_stride, out_stride);
  });
}

void segment_axpy_multi_avx2(const float* const* w, int n_queries, int count, int bits,
                             const float* centroids, const std::uint8_t* codes, std::size_t stride,
                             std::size_t n, float* const* acc) {
  if (count % 8 != 0 || bits > 4) {
    return segment_axpy_multi_scalar(w, n_queries, count, bits, centroids, codes, stride, n, acc);
  }
  for_each_pass(n_queries, bits, [&](auto b, auto k, int first) {
    segment_axpy_multi_impl<b(), k()>(w + first, count, centroids, codes, stride, n, acc + first);
  });
}

void quantize_avx2(const float* y, int count, const float* thresholds, int bits,
                   std::uint8_t* idx) {
  if (bits > 4) {
    quantize_scalar(y, count, thresholds, bits, idx);
    return;
  }
  const int levels = (1 << bits) - 1;
  int j = 0;
  for (; j + 8 <= count; j += 8) {
    const __m256 v = _mm256_loadu_ps(y + j);
    // Count thresholds strictly below y: each compare yields −1 in the lanes where it holds.
    __m256i cells = _mm256_setzero_si256();
    for (int k = 0; k < levels; ++k) {
      const __m256 below = _mm256_cmp_ps(_mm256_set1_ps(thresholds[k]), v, _CMP_LT_OQ);
      cells = _mm256_sub_epi32(cells, _mm256_castps_si256(below));
    }
    alignas(32) std::int32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), cells);
    for (int l = 0; l < 8; ++l) idx[j + l] = static_cast<std::uint8_t>(lanes[l]);
  }
  if (j < count) quantize_scalar(y + j, count - j, thresholds, bits, idx + j);
}

void sign_dot_avx2(const float* sketch, int dim, const std::uint8_t* signs, std::size_t stride,
                   std::size_t n, float* out) {
  if (dim % 8 != 0) {
    sign_dot_scalar(sketch, dim, signs, stride, n, out);
    return;
  }
  // Σ_i ±sketch_i = 2·Σ_{bit=1} sketch_i − Σ_i sketch_i.
  __m256 total = _mm256_setzero_ps();
  for (int i = 0; i < dim; i += 8) total = _mm256_add_ps(total, _mm256_loadu_ps(sketch + i));
  const float sketch_sum = horizontal_sum(total);
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (std::size_t t = 0; t < n; ++t) {
    const std::uint8_t* s = signs + t * stride;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < dim; i += 8) {
      const __m256i byte = _mm256_set1_epi32(s[i >> 3]);
      const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(byte, lane_bits), lane_bits);
      acc =
          _mm256_add_ps(acc, _mm256_and_ps(_mm256_castsi256_ps(set), _mm256_loadu_ps(sketch + i)));
    }
    out[t] = 2.0f * horizontal_sum(acc) - sketch_sum;
  }
}

}  // namespace tq::kernels
