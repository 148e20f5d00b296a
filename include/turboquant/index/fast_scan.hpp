// Fast scan of 4-bit codes with quantized look-up tables (issue 15, item 2).
// Codes of 32 vectors form a block; within a block, dimension j takes 16 bytes whose byte i
// holds vector i's code in the low nibble and vector i+16's in the high nibble (dimensions are
// padded to an even count with code 0 and an all-zero table). A query's float table
// lut[j][c] (16 entries per dimension) is quantized to bytes, lut[j][c] ≈ bias_j + scale·q[j][c],
// with q ≤ qmax = min(255, 65535 / dims) so a vector's sum of dims bytes never overflows the
// 16-bit accumulators. The AVX2 kernel looks the 16-entry tables up with vpshufb, two
// dimensions per 256-bit register; the scalar kernel is the reference it is tested against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tq::index {

struct QuantizedLut {
  int dims = 0;                     // padded to even
  std::vector<std::uint8_t> table;  // dims × 16
  float scale = 0.0f;               // score ≈ bias + scale · Σ_j table[j][code_j]
  float bias = 0.0f;                // Σ_j min_c lut[j][c]
};

// Padded dimension count and bytes of one block of 32 vectors.
int fast_scan_dims(int dim);
std::size_t fast_scan_block_bytes(int dim);

// codes: n × dim, one 4-bit code (0..15) per byte. Returns ceil(n/32) blocks; vectors past n
// in the last block get code 0.
std::vector<std::uint8_t> pack_fast_scan_blocks(const std::uint8_t* codes, std::size_t n, int dim);

// Writes / reads vector v's dim codes in place in a block array (it must hold v's block).
void fast_scan_set(std::uint8_t* blocks, std::size_t v, int dim, const std::uint8_t* codes);
void fast_scan_get(const std::uint8_t* blocks, std::size_t v, int dim, std::uint8_t* codes);
// Writes one whole block (fast_scan_block_bytes(dim) bytes) from its 32 vectors' codes
// (32 × dim, one code per byte): the bulk form of 32 fast_scan_set calls, byte for byte the same.
void fast_scan_set_block(std::uint8_t* block, int dim, const std::uint8_t* codes);

// lut: dim × 16 floats. Throws std::invalid_argument on a non-finite entry.
QuantizedLut quantize_lut(const float* lut, int dim);

// sums[b·32 + i] = Σ_j table[j][code of vector i of block b, dim j] for n_blocks blocks.
void fast_scan_scalar(const std::uint8_t* blocks, std::size_t n_blocks, const QuantizedLut& lut,
                      std::uint16_t* sums);
void fast_scan_avx2(const std::uint8_t* blocks, std::size_t n_blocks, const QuantizedLut& lut,
                    std::uint16_t* sums);
// The AVX2 kernel where the CPU has it, else the scalar one.
void fast_scan(const std::uint8_t* blocks, std::size_t n_blocks, const QuantizedLut& lut,
               std::uint16_t* sums);

}  // namespace tq::index
