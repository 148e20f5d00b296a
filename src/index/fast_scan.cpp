// Fast-scan block packing, LUT quantization and the scalar reference kernel (fast_scan.hpp).
#include "turboquant/index/fast_scan.hpp"

#include "turboquant/base/simd.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tq::index {

int fast_scan_dims(int dim) {
  return dim + (dim & 1);
}

std::size_t fast_scan_block_bytes(int dim) {
  return static_cast<std::size_t>(fast_scan_dims(dim)) * 16;
}

void fast_scan_set(std::uint8_t* blocks, std::size_t v, int dim, const std::uint8_t* codes) {
  const std::size_t bb = fast_scan_block_bytes(dim);
  const std::size_t b = v / 32, i = v % 32;
  const unsigned shift = i < 16 ? 0 : 4;
  for (int j = 0; j < dim; ++j) {
    const std::uint8_t c = codes[j];
    if (c > 15) {
      throw std::invalid_argument("fast scan: code " + std::to_string(c) + " of vector " +
                                  std::to_string(v) + " is not 4-bit (expected 0..15)");
    }
    std::uint8_t& byte = blocks[b * bb + static_cast<std::size_t>(j) * 16 + (i % 16)];
    byte = static_cast<std::uint8_t>((byte & ~(15u << shift)) | (unsigned{c} << shift));
  }
}

void fast_scan_get(const std::uint8_t* blocks, std::size_t v, int dim, std::uint8_t* codes) {
  const std::size_t bb = fast_scan_block_bytes(dim);
  const std::size_t b = v / 32, i = v % 32;
  const unsigned shift = i < 16 ? 0 : 4;
  for (int j = 0; j < dim; ++j) {
    codes[j] = (blocks[b * bb + static_cast<std::size_t>(j) * 16 + (i % 16)] >> shift) & 15u;
  }
}

void fast_scan_set_block(std::uint8_t* block, int dim, const std::uint8_t* codes) {
  const auto du = static_cast<std::size_t>(dim);
  std::uint8_t any = 0;
  for (std::size_t i = 0; i < 32 * du; ++i) any |= codes[i];
  if (any > 15) {
    for (std::size_t i = 0; i < 32 * du; ++i) {
      if (codes[i] > 15) {
        throw std::invalid_argument("fast scan: code " + std::to_string(codes[i]) +
                                    " of block vector " + std::to_string(i / du) +
                                    " is not 4-bit (expected 0..15)");
      }
    }
  }
  for (std::size_t j = 0; j < du; ++j) {
    std::uint8_t* row = block + j * 16;
    for (std::size_t i = 0; i < 16; ++i) {
      row[i] = static_cast<std::uint8_t>(codes[i * du + j] | (codes[(i + 16) * du + j] << 4));
    }
  }
  // The padding dimension of an odd dim scores nothing: code 0 for every vector.
  std::fill(block + du * 16, block + fast_scan_block_bytes(dim), std::uint8_t{0});
}

std::vector<std::uint8_t> pack_fast_scan_blocks(const std::uint8_t* codes, std::size_t n, int dim) {
  std::vector<std::uint8_t> out((n + 31) / 32 * fast_scan_block_bytes(dim), 0);
  for (std::size_t v = 0; v < n; ++v) {
    fast_scan_set(out.data(), v, dim, codes + v * static_cast<std::size_t>(dim));
  }
  return out;
}

QuantizedLut quantize_lut(const float* lut, int dim) {
  QuantizedLut q;
  q.dims = fast_scan_dims(dim);
  q.table.assign(static_cast<std::size_t>(q.dims) * 16, 0);
  std::vector<float> lo(dim);
  float range = 0.0f;
  double bias = 0.0;
  for (int j = 0; j < dim; ++j) {
    const float* t = lut + j * 16;
    for (int c = 0; c < 16; ++c) {
      if (!std::isfinite(t[c])) {
        throw std::invalid_argument("fast scan: table entry [" + std::to_string(j) + "][" +
                                    std::to_string(c) + "] is not finite");
      }
    }
    const auto [mn, mx] = std::minmax_element(t, t + 16);
    lo[j] = *mn;
    bias += *mn;
    range = std::max(range, *mx - *mn);
  }
  const int qmax = std::min(255, 65535 / q.dims);
  q.scale = range > 0.0f ? range / static_cast<float>(qmax) : 1.0f;
  q.bias = static_cast<float>(bias);
  for (int j = 0; j < dim; ++j) {
    for (int c = 0; c < 16; ++c) {
      const float v = std::round((lut[j * 16 + c] - lo[j]) / q.scale);
      q.table[static_cast<std::size_t>(j) * 16 + c] =
          static_cast<std::uint8_t>(std::clamp(v, 0.0f, static_cast<float>(qmax)));
    }
  }
  return q;
}

void fast_scan_scalar(const std::uint8_t* blocks, std::size_t n_blocks, const QuantizedLut& lut,
                      std::uint16_t* sums) {
  const std::size_t bb = static_cast<std::size_t>(lut.dims) * 16;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const std::uint8_t* block = blocks + b * bb;
    for (int i = 0; i < 32; ++i) {
      unsigned s = 0;
      for (int j = 0; j < lut.dims; ++j) {
        const std::uint8_t byte = block[j * 16 + (i % 16)];
        const unsigned c = i < 16 ? (byte & 15u) : (byte >> 4);
        s += lut.table[static_cast<std::size_t>(j) * 16 + c];
      }
      sums[b * 32 + i] = static_cast<std::uint16_t>(s);
    }
  }
}

void fast_scan(const std::uint8_t* blocks, std::size_t n_blocks, const QuantizedLut& lut,
               std::uint16_t* sums) {
  static const bool avx2 = cpu_has_avx2();
  if (avx2) {
    fast_scan_avx2(blocks, n_blocks, lut, sums);
  } else {
    fast_scan_scalar(blocks, n_blocks, lut, sums);
  }
}

}  // namespace tq::index
