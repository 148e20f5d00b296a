// The llama.cpp block formats: quantization, dequantization and the scalar reference kernels
// (see block_int.hpp for the formats and the storage layout).
#include "block_int.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace tq::blockint {
namespace {

// C's float -> integer conversion (truncation toward zero). ggml's (int8_t) casts only see
// finite, small values here; a non-finite value (an fp32 scale so small that 1/d overflows)
// reads as 0, as x86's truncating conversion leaves it after narrowing.
inline int trunc_int(float v) {
  return std::isfinite(v) && std::fabs(v) < 1e9f ? static_cast<int>(v) : 0;
}

// The value of largest magnitude, sign kept; the first one wins ties (ggml's strict `<`).
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// Nibble i of a 4-bit block of n values (layout in block_int.hpp) and its setter.
inline int nibble(const std::uint8_t* qs, int n, int i) {
  const int h = (n + 1) / 2;
  return i < h ? qs[i] & 0x0f : qs[i - h] >> 4;
}
inline void set_nibble(std::uint8_t* qs, int n, int i, int v) {
  const int h = (n + 1) / 2;
  if (i < h) {
    qs[i] = static_cast<std::uint8_t>((qs[i] & 0xf0) | v);
  } else {
    qs[i - h] = static_cast<std::uint8_t>((qs[i - h] & 0x0f) | (v << 4));
  }
}

// ggml's best_index_int8: the nearest codebook level by bisection (the upper one on ties).
int nearest_level(float x) {
  const std::int8_t* v = kIq4nlValues;
  if (x <= v[0]) return 0;
  if (x >= v[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < v[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

// One block of n values -> its code bytes and halves.
void quantize_block(Format f, const float* x, int n, std::uint8_t* q, half_bits* h) {
  switch (f) {
    case Format::Q8_0: {
      float amax = 0.0f;
      for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      h[0] = float_to_half(d);
      for (int j = 0; j < n; ++j) {
        const float r = std::round(x[j] * id);  // roundf: halves away from zero
        q[j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::isfinite(r) ? r : 0.0f));
      }
      break;
    }
    case Format::Q4_0:
    case Format::Q5_0: {
      const bool five = f == Format::Q5_0;
      const float d = signed_absmax(x, n) / (five ? -16.0f : -8.0f);
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      h[0] = float_to_half(d);
      const std::size_t hb = five ? static_cast<std::size_t>(n + 7) / 8 : 0;
      std::uint8_t* qs = q + hb;
      std::memset(q, 0, block_code_bytes(f, n));
      for (int j = 0; j < n; ++j) {
        const float v = x[j] * id;
        const int l = std::min(five ? 31 : 15, trunc_int(v + (five ? 16.5f : 8.5f)));
        set_nibble(qs, n, j, l & 0x0f);
        if (five && (l & 0x10)) q[j / 8] = static_cast<std::uint8_t>(q[j / 8] | (1u << (j % 8)));
      }
      break;
    }
    case Format::Q4_1: {
      float min = 3.402823466e+38f, max = -3.402823466e+38f;
      for (int j = 0; j < n; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
      }
      const float d = (max - min) / 15.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      h[0] = float_to_half(d);
      h[1] = float_to_half(min);
      std::memset(q, 0, block_code_bytes(f, n));
      for (int j = 0; j < n; ++j) {
        const float v = (x[j] - min) * id;
        set_nibble(q, n, j, std::min(15, trunc_int(v + 0.5f)));
      }
      break;
    }
    case Format::Iq4Nl: {
      std::memset(q, 0, block_code_bytes(f, n));
      float amax = 0.0f, max = 0.0f;
      for (int j = 0; j < n; ++j) {
        if (std::fabs(x[j]) > amax) {
          amax = std::fabs(x[j]);
          max = x[j];
        }
      }
      if (amax < 1e-15f) {
        // ggml leaves the indices of such a block unspecified (its d is 0, so every value reads
        // as 0); ours are those of the level nearest 0, as ggml's scale search would pick.
        h[0] = float_to_half(0.0f);
        for (int j = 0; j < n; ++j) set_nibble(q, n, j, nearest_level(0.0f));
        break;
      }
      const float d0 = max / static_cast<float>(kIq4nlValues[0]);
      const float id = 1.0f / d0;
      float sumqx = 0.0f, sumq2 = 0.0f;
      for (int j = 0; j < n; ++j) {
        const int l = nearest_level(id * x[j]);
        set_nibble(q, n, j, l);
        const float lv = static_cast<float>(kIq4nlValues[l]);
        const float w = x[j] * x[j];
        sumqx += w * lv * x[j];
        sumq2 += w * lv * lv;
      }
      h[0] = float_to_half(sumqx / sumq2);
      break;
    }
  }
}

// The integer level (q8_0, q4_0, q5_0: signed; q4_1: 0..15) or codebook value (iq4_nl) of
// every value of a block, as floats; the block value is level·d (+ m for q4_1).
void block_levels(Format f, const std::uint8_t* q, int n, float* out) {
  switch (f) {
    case Format::Q8_0:
      for (int j = 0; j < n; ++j) out[j] = static_cast<float>(static_cast<std::int8_t>(q[j]));
      break;
    case Format::Q4_0:
      for (int j = 0; j < n; ++j) out[j] = static_cast<float>(nibble(q, n, j) - 8);
      break;
    case Format::Q4_1:
      for (int j = 0; j < n; ++j) out[j] = static_cast<float>(nibble(q, n, j));
      break;
    case Format::Q5_0: {
      const std::uint8_t* qs = q + (n + 7) / 8;
      for (int j = 0; j < n; ++j) {
        const int hi = (q[j / 8] >> (j % 8)) & 1;
        out[j] = static_cast<float>((nibble(qs, n, j) | (hi << 4)) - 16);
      }
      break;
    }
    case Format::Iq4Nl:
      for (int j = 0; j < n; ++j) out[j] = static_cast<float>(kIq4nlValues[nibble(q, n, j)]);
      break;
  }
}

// Walks the blocks of one stored vector: visit(begin, n, code bytes, halves).
template <class Visit>
void for_blocks(Format f, int dim, const std::uint8_t* codes, const half_bits* halves,
                Visit visit) {
  const int hp = halves_per_block(f);
  for (int b = 0; b * kBlock < dim; ++b) {
    const int begin = b * kBlock;
    const int n = std::min(kBlock, dim - begin);
    visit(begin, n, codes, halves + b * hp);
    codes += block_code_bytes(f, n);
  }
}

inline int int4_value(const std::uint8_t* block, int n, int j) {
  return nibble(block, n, j) - 8;
}

// The q8_0 / q4_0 scalar kernels kept in their original form: a block's integer dot product in
// fp32, times the block scale.
template <bool Four>
void int_dot(const float* q, int dim, const std::uint8_t* codes, const half_bits* scales,
             std::size_t n, float* out) {
  const Format f = Four ? Format::Q4_0 : Format::Q8_0;
  const std::size_t stride = row_code_bytes(f, dim);
  const std::size_t blocks = static_cast<std::size_t>(num_blocks(dim));
  for (std::size_t t = 0; t < n; ++t) {
    float total = 0.0f;
    for_blocks(f, dim, codes + t * stride, scales + t * blocks,
               [&](int begin, int nb, const std::uint8_t* bq, const half_bits* h) {
                 float acc = 0.0f;
                 for (int j = 0; j < nb; ++j) {
                   const int v = Four ? int4_value(bq, nb, j)
                                      : static_cast<int>(static_cast<std::int8_t>(bq[j]));
                   acc += q[begin + j] * static_cast<float>(v);
                 }
                 total += acc * half_to_float(h[0]);
               });
    out[t] = total;
  }
}

template <bool Four>
void int_axpy(const float* w, int dim, const std::uint8_t* codes, const half_bits* scales,
              std::size_t n, float* acc) {
  const Format f = Four ? Format::Q4_0 : Format::Q8_0;
  const std::size_t stride = row_code_bytes(f, dim);
  const std::size_t blocks = static_cast<std::size_t>(num_blocks(dim));
  for (std::size_t t = 0; t < n; ++t) {
    for_blocks(f, dim, codes + t * stride, scales + t * blocks,
               [&](int begin, int nb, const std::uint8_t* bq, const half_bits* h) {
                 const float ws = w[t] * half_to_float(h[0]);
                 for (int j = 0; j < nb; ++j) {
                   const int v = Four ? int4_value(bq, nb, j)
                                      : static_cast<int>(static_cast<std::int8_t>(bq[j]));
                   acc[begin + j] += ws * static_cast<float>(v);
                 }
               });
  }
}

}  // namespace

Format format_of(KvFormat format) {
  switch (format) {
    case KvFormat::Int8Block:
      return Format::Q8_0;
    case KvFormat::Int4Block:
      return Format::Q4_0;
    case KvFormat::Q4_1Block:
      return Format::Q4_1;
    case KvFormat::Q5_0Block:
      return Format::Q5_0;
    case KvFormat::Iq4NlBlock:
      return Format::Iq4Nl;
    default:
      throw std::invalid_argument("blockint::format_of: not a block format");
  }
}

void quantize(Format f, const float* x, int dim, std::uint8_t* codes, half_bits* halves) {
  const int hp = halves_per_block(f);
  for (int b = 0; b * kBlock < dim; ++b) {
    const int n = std::min(kBlock, dim - b * kBlock);
    quantize_block(f, x + b * kBlock, n, codes, halves + b * hp);
    codes += block_code_bytes(f, n);
  }
}

void dequantize(Format f, const std::uint8_t* codes, const half_bits* halves, int dim, float* x) {
  for_blocks(f, dim, codes, halves,
             [&](int begin, int n, const std::uint8_t* q, const half_bits* h) {
               float levels[kBlock];
               block_levels(f, q, n, levels);
               const float d = half_to_float(h[0]);
               const float m = f == Format::Q4_1 ? half_to_float(h[1]) : 0.0f;
               for (int j = 0; j < n; ++j) x[begin + j] = levels[j] * d + m;
             });
}

void dot(Format f, const float* q, int dim, const std::uint8_t* codes, const half_bits* halves,
         std::size_t n, float* out) {
  const std::size_t stride = row_code_bytes(f, dim), hstride = row_halves(f, dim);
  for (std::size_t t = 0; t < n; ++t) {
    float total = 0.0f;
    for_blocks(f, dim, codes + t * stride, halves + t * hstride,
               [&](int begin, int nb, const std::uint8_t* bq, const half_bits* h) {
                 float levels[kBlock];
                 block_levels(f, bq, nb, levels);
                 float acc = 0.0f, qsum = 0.0f;
                 for (int j = 0; j < nb; ++j) {
                   acc += q[begin + j] * levels[j];
                   qsum += q[begin + j];
                 }
                 total += acc * half_to_float(h[0]);
                 if (f == Format::Q4_1) total += qsum * half_to_float(h[1]);
               });
    out[t] = total;
  }
}

void axpy(Format f, const float* w, int dim, const std::uint8_t* codes, const half_bits* halves,
          std::size_t n, float* acc) {
  const std::size_t stride = row_code_bytes(f, dim), hstride = row_halves(f, dim);
  for (std::size_t t = 0; t < n; ++t) {
    for_blocks(f, dim, codes + t * stride, halves + t * hstride,
               [&](int begin, int nb, const std::uint8_t* bq, const half_bits* h) {
                 float levels[kBlock];
                 block_levels(f, bq, nb, levels);
                 const float ws = w[t] * half_to_float(h[0]);
                 const float wm = f == Format::Q4_1 ? w[t] * half_to_float(h[1]) : 0.0f;
                 for (int j = 0; j < nb; ++j) acc[begin + j] += ws * levels[j] + wm;
               });
  }
}

const Kernels& scalar_kernels() {
  static const Kernels k{int_dot<false>, int_axpy<false>, int_dot<true>, int_axpy<true>};
  return k;
}

}  // namespace tq::blockint
