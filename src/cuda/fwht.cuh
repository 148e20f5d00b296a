// The fast Walsh–Hadamard transform of the CUDA kernels (the H of the Hadamard rotation
// Π = H·D/√d): the tensor-core kernel's query preparation, window fold and merge, the generic
// path's query preparation and merge kernel, and quantize-append all call it. Not a public header.
//
// Unnormalised and in place, with the butterflies of the CPU's fast_walsh_hadamard in the same
// order (stride 1, 2, 4, …; a + b and a − b of the same operands), so the result is bit-exact
// with the CPU: quantize-append relies on that. Plain + and − are exact IEEE round-to-nearest
// here: only loads and sums feed them, so there is no product to contract into an FMA (the
// explicitly rounded __fadd_rn computes the same but hides the adds from the optimiser).
#pragma once

namespace tq::cuda::detail {

// Rows of D floats in shared memory (row r at y + r·D), one warp per row: warp w < kRows loads
// row w into registers (element i·32 + lane in x[i]), strides below 32 go through xor shuffles,
// larger ones between the registers of a lane, then one barrier for the whole block. Callers
// synchronise before (the rows must be written); the block must have at least kRows warps.
template <int D, int kRows>
__device__ __forceinline__ void fwht_rows(float* y) {
  static_assert(D % 32 == 0 && (D & (D - 1)) == 0, "FWHT rows are a power of two >= 32");
  constexpr int E = D / 32;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (warp < kRows) {
    float* r = y + warp * D;
    float x[E];
#pragma unroll
    for (int i = 0; i < E; ++i) x[i] = r[i * 32 + lane];
#pragma unroll
    for (int h = 1; h < 32; h <<= 1) {
#pragma unroll
      for (int i = 0; i < E; ++i) {
        const float o = __shfl_xor_sync(0xffffffffu, x[i], h);
        x[i] = (lane & h) ? o - x[i] : x[i] + o;
      }
    }
#pragma unroll
    for (int h = 1; h < E; h <<= 1) {
#pragma unroll
      for (int i = 0; i < E; ++i) {
        if ((i & h) == 0) {
          const float u = x[i], v = x[i + h];
          x[i] = u + v;
          x[i + h] = u - v;
        }
      }
    }
#pragma unroll
    for (int i = 0; i < E; ++i) r[i * 32 + lane] = x[i];
  }
  __syncthreads();
}

// One row of n floats for kernels whose n is a run-time value (n = 32, 64, 128 or 256, a power of
// two: the Hadamard rotation's condition). n must be the same for the whole block.
__device__ __forceinline__ void fwht_row(float* y, int n) {
  switch (n) {
    case 32:
      fwht_rows<32, 1>(y);
      break;
    case 64:
      fwht_rows<64, 1>(y);
      break;
    case 128:
      fwht_rows<128, 1>(y);
      break;
    default:
      fwht_rows<256, 1>(y);
      break;
  }
}

}  // namespace tq::cuda::detail
