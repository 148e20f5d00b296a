// CUDA host API that decodes tokens of a compressed GPU cache side back to fp16 vectors in the
// original (unrotated) domain, as tq::Codec::decode does on the CPU: x̂ = n · Πᵀ c[idx], plus
// for prod the QJL term √(π/2)/d · γ · Sᵀ s. Prefill uses it to expand a layer's compressed
// cache into an fp16 scratch for the fp16 multi-query attention. The GPU cache layout and the
// error conventions are those of turboquant/cuda/attention.hpp.
#pragma once

#include "turboquant/cuda/attention.hpp"

#include <cstdint>

namespace tq::cuda {

// Decodes tokens [first, first + count) of every (sequence b, KV head h) of `side` (laid out for
// `batch` sequences, `kv_heads` heads and `capacity` tokens) into
//   out[((b · kv_heads + h) · out_capacity + (t − first)) · head_dim + j]   (fp16 bits).
// Rows t − first >= count of `out` are not written. The float result before the final fp16
// rounding equals Codec::decode bit for bit (same operations in the same order, no FMA
// contraction); the fp16 value is its round-to-nearest-even. Every codec quantize_append
// encodes: mse and prod, hadamard and haar, fractional bit widths, norm correction.
// Throws std::invalid_argument on a bad shape (batch or kv_heads <= 0, first or count < 0,
// first + count > capacity, count > out_capacity), a head dim other than a multiple of 32 up to
// 256, and (when count > 0) a null or misaligned (codes and signs: 4 bytes) device pointer.
void dequantize_to_half(const DeviceCodec& codec, const GpuCacheSide& side, int batch, int kv_heads,
                        int capacity, int first, int count, std::uint16_t* out, int out_capacity,
                        void* stream = nullptr);

}  // namespace tq::cuda
