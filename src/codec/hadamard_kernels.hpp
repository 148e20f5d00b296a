// The in-place unnormalised fast Walsh–Hadamard transform of one vector of length n = 2^k, as a
// scalar reference and an AVX2 version with bit-identical results (same butterflies, same stage
// order; tests/codec/test_rotation.cpp checks one against the other). fast_walsh_hadamard()
// (rotation.hpp) picks between them.
#pragma once

namespace tq::kernels {

void fast_walsh_hadamard_scalar(float* x, int n);
void fast_walsh_hadamard_avx2(float* x, int n);

}  // namespace tq::kernels
