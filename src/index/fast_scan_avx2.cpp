// AVX2 fast-scan kernel (fast_scan.hpp): one 256-bit load holds the codes of two dimensions
// for 32 vectors (lane 0 dimension j, lane 1 dimension j+1) and one load their two 16-byte
// tables, so a vpshufb on the low and one on the high nibbles yields 64 table bytes; they are
// widened to 16 bits and summed, and the two lanes are added at the end.
#include "turboquant/index/fast_scan.hpp"

#include <immintrin.h>

namespace tq::index {

void fast_scan_avx2(const std::uint8_t* blocks, std::size_t n_blocks, const QuantizedLut& lut,
                    std::uint16_t* sums) {
  const std::size_t bb = static_cast<std::size_t>(lut.dims) * 16;
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint8_t* block = blocks + b * bb;
    __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    for (int j = 0; j < lut.dims; j += 2) {
      const __m256i c = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(block + static_cast<std::size_t>(j) * 16));
      const __m256i t = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(lut.table.data() + static_cast<std::size_t>(j) * 16));
      const __m256i lo = _mm256_shuffle_epi8(t, _mm256_and_si256(c, nib));
      const __m256i hi = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(c, 4), nib));
      a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(lo, zero));  // vectors 0..7
      a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(lo, zero));  // vectors 8..15
      a2 = _mm256_add_epi16(a2, _mm256_unpacklo_epi8(hi, zero));  // vectors 16..23
      a3 = _mm256_add_epi16(a3, _mm256_unpackhi_epi8(hi, zero));  // vectors 24..31
    }
    const __m256i* acc[4] = {&a0, &a1, &a2, &a3};
    for (int g = 0; g < 4; ++g) {
      const __m128i s =
          _mm_add_epi16(_mm256_castsi256_si128(*acc[g]), _mm256_extracti128_si256(*acc[g], 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sums + b * 32 + g * 8), s);
    }
  }
}

}  // namespace tq::index
