// Bit packing of b-bit codes (b = 1..8) — the storage layout shared by the CPU codecs and the
// CUDA kernels. Layout (see docs/LAYOUT.md): the codes of one segment form an LSB-first bit
// stream in little-endian 32-bit words; code j occupies bits [j·b, j·b + b) of the stream, so bit
// k of the stream is bit (k mod 32) of word k/32, and a code may straddle two words when 32 is not
// a multiple of b. A segment always occupies a whole number of 32-bit words, so every token record
// (and every segment in it) starts 4-byte aligned and a GPU thread can fetch it with wide loads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tq {

// Bytes that `count` codes of `bits` bits occupy (a multiple of 4).
std::size_t packed_bytes(std::size_t count, int bits);

// Packs codes[0..count) (each < 2^bits) into `out` (packed_bytes(count, bits) bytes, fully
// written including zero padding). Throws std::invalid_argument on bits outside 1..8 or a code
// that does not fit.
void pack_codes(const std::uint8_t* codes, std::size_t count, int bits, std::uint8_t* out);

// Unpacks `count` codes from `packed`.
void unpack_codes(const std::uint8_t* packed, std::size_t count, int bits, std::uint8_t* codes);

// Reads code j without unpacking the rest (reference accessor used by scalar kernels).
inline unsigned read_code(const std::uint8_t* packed, std::size_t j, int bits) {
  const std::size_t bit = j * static_cast<std::size_t>(bits);
  const std::size_t byte = bit >> 3;
  const unsigned shift = static_cast<unsigned>(bit & 7u);
  // A code of <= 8 bits starting at bit offset <= 7 spans at most two bytes; the second byte is
  // read only if the code crosses into it, so this never reads past the segment.
  unsigned value = packed[byte] >> shift;
  if (shift + static_cast<unsigned>(bits) > 8u)
    value |= static_cast<unsigned>(packed[byte + 1]) << (8u - shift);
  return value & ((1u << bits) - 1u);
}

}  // namespace tq
