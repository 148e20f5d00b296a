// Float rows to GGUF tensor bytes, for writing files: F32, F16, BF16 and the Q8_0 / Q4_0 blocks
// (the inverses of dequantize() in gguf.hpp, same block layouts). Round to nearest; every value
// exactly representable in the target format survives a quantize -> dequantize round trip.
#pragma once

#include "turboquant/model/gguf.hpp"

#include <cstddef>

namespace tq::gguf {

// True for the types quantize() writes.
bool can_quantize(TensorType type);

// Encodes `n` floats (a multiple of block_elements(type)) from `src` into row_bytes(type, n) bytes
// at `dst`. Throws std::invalid_argument for a type can_quantize() rejects or a bad `n`.
void quantize(TensorType type, const float* src, void* dst, std::size_t n);

}  // namespace tq::gguf
