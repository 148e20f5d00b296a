// Bit packing of b-bit codes into 4-byte-aligned little-endian bit streams
// (layout documented in include/turboquant/codec/bitpack.hpp and docs/LAYOUT.md).
#include "turboquant/codec/bitpack.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace tq {
namespace {

void check_bits(int bits) {
  if (bits < 1 || bits > 8) {
    throw std::invalid_argument("bit packing: bits " + std::to_string(bits) +
                                " out of range; expected 1..8");
  }
}

}  // namespace

std::size_t packed_bytes(std::size_t count, int bits) {
  check_bits(bits);
  const std::size_t total_bits = count * static_cast<std::size_t>(bits);
  return (total_bits + 31) / 32 * 4;
}

void pack_codes(const std::uint8_t* codes, std::size_t count, int bits, std::uint8_t* out) {
  const std::size_t bytes = packed_bytes(count, bits);
  std::memset(out, 0, bytes);
  const unsigned limit = 1u << bits;
  // Accumulate into a 64-bit register and flush whole bytes: the byte order of the stream is
  // then little-endian by construction, independent of the host's endianness.
  std::uint64_t acc = 0;
  unsigned acc_bits = 0;
  std::size_t pos = 0;
  for (std::size_t j = 0; j < count; ++j) {
    if (codes[j] >= limit) {
      throw std::invalid_argument("bit packing: code " + std::to_string(codes[j]) + " at index " +
                                  std::to_string(j) + " does not fit in " + std::to_string(bits) +
                                  " bits");
    }
    acc |= static_cast<std::uint64_t>(codes[j]) << acc_bits;
    acc_bits += static_cast<unsigned>(bits);
    while (acc_bits >= 8) {
      out[pos++] = static_cast<std::uint8_t>(acc);
      acc >>= 8;
      acc_bits -= 8;
    }
  }
  if (acc_bits > 0) out[pos] = static_cast<std::uint8_t>(acc);
}

void unpack_codes(const std::uint8_t* packed, std::size_t count, int bits, std::uint8_t* codes) {
  check_bits(bits);
  for (std::size_t j = 0; j < count; ++j)
    codes[j] = static_cast<std::uint8_t>(read_code(packed, j, bits));
}

}  // namespace tq
