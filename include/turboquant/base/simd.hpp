// Which implementation of a hot loop to run, and what the CPU offers. Every SIMD fast path in
// the library has a scalar reference with the same semantics; Auto picks AVX2 (with FMA and
// F16C) when the CPU has it.
#pragma once

namespace tq {

enum class SimdLevel { Auto, Scalar, Avx2 };

// True when the CPU supports AVX2, FMA and F16C (all three are needed by the *_avx2.cpp kernels).
bool cpu_has_avx2();

}  // namespace tq
