// Random orthogonal rotations Π applied to keys, values and queries before scalar quantization
// (docs/DESIGN.md §2):
//   haar      Q·diag(sign(diag R)) from the QR of a seeded Gaussian matrix (Haar-distributed);
//             any d
//   hadamard  randomized Walsh–Hadamard H·D/√d (D a random ±1 diagonal); O(d log d), d = 2^k
//   overlap-hadamard  three rounds of random signs then an orthonormal Hadamard H_p/√p on a
//             power-of-two window p = 2^⌊log2 d⌋: windows [0,p), [d−p,d), [0,p), so every output
//             depends on every input; any d, O(d log d) — the fast choice for d ≠ 2^k (576, 384,
//             640), where haar costs a d×d product per vector
// All are exact orthogonal maps: apply_inverse(apply(x)) == x up to rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

// The values are stored in index files: append new kinds, never renumber.
enum class RotationKind { Haar = 0, Hadamard = 1, OverlapHadamard = 2 };

// "haar" | "hadamard" | "overlap-hadamard"
RotationKind parse_rotation_kind(std::string_view name);
std::string to_string(RotationKind kind);

class Rotation {
 public:
  Rotation(RotationKind kind, int dim, std::uint64_t seed);

  RotationKind kind() const { return kind_; }
  int dim() const { return dim_; }
  std::uint64_t seed() const { return seed_; }

  // out = Π·in for `count` row vectors of length dim (row-major). in may equal out.
  void apply(const float* in, float* out, std::size_t count = 1) const;
  // out = Π·in for many vectors at once: haar runs one fp32 GEMM (BLAS) instead of apply's
  // double-accumulated dot products, so results agree with apply() to fp32 rounding (~1e-6
  // relative), not bit for bit; the Hadamard kinds run apply() thread-parallel over vectors
  // (bit-identical). in and out must not overlap.
  void apply_batch(const float* in, float* out, std::size_t count) const;
  // out = Πᵀ·in (the inverse).
  void apply_inverse(const float* in, float* out, std::size_t count = 1) const;

  // Π as a dense row-major dim×dim matrix (for GPU upload and tests).
  std::vector<float> dense_matrix() const;
  // For hadamard: the random ±1 diagonal D; overlap-hadamard: D1, D2, D3 (d each); haar: empty.
  const std::vector<float>& hadamard_signs() const { return signs_; }

 private:
  RotationKind kind_;
  int dim_;
  std::uint64_t seed_;
  std::vector<float> matrix_;  // haar: row-major Π
  std::vector<float> signs_;   // hadamard: D; overlap-hadamard: D1 D2 D3
};

// In-place unnormalized fast Walsh–Hadamard transform of one vector of length n = 2^k (AVX2 when
// the CPU has it, bit-identical to the scalar loop).
void fast_walsh_hadamard(float* x, int n);

}  // namespace tq
