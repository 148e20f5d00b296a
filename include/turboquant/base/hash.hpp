// FNV-1a 64: the one byte hash of the project. It names the text a logits file was made on
// (eval/runner) and checks vector-index files (index/index_file); not for security.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tq {

inline std::uint64_t fnv1a64(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < size; ++i) {
    h ^= bytes[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace tq
