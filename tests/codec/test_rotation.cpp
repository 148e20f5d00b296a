// Rotations: orthogonality, inverse round trips, determinism, Haar sign fix, the overlapped
// Hadamard's mixing, the AVX2 Walsh–Hadamard transform against the scalar one, argument errors.
#include "codec/hadamard_kernels.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/base/simd.hpp"
#include "turboquant/codec/rotation.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

namespace tq {
namespace {

double orthogonality_error(const Rotation& rot) {
  const int d = rot.dim();
  const std::vector<float> m = rot.dense_matrix();
  double worst_sq = 0.0;  // Frobenius norm of ΠᵀΠ − I
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) {
      double dot = 0.0;
      for (int r = 0; r < d; ++r) dot += static_cast<double>(m[r * d + i]) * m[r * d + j];
      const double e = dot - (i == j ? 1.0 : 0.0);
      worst_sq += e * e;
    }
  }
  return std::sqrt(worst_sq);
}

TEST(Rotation, HaarIsOrthogonal) {
  for (int d : {64, 96, 128, 256}) {
    EXPECT_LT(orthogonality_error(Rotation(RotationKind::Haar, d, 42 + d)), 1e-5) << "d=" << d;
  }
}

TEST(Rotation, HadamardIsOrthogonal) {
  for (int d : {64, 128, 256}) {
    EXPECT_LT(orthogonality_error(Rotation(RotationKind::Hadamard, d, 7 + d)), 1e-5) << "d=" << d;
  }
}

TEST(Rotation, OverlapHadamardIsOrthogonal) {
  for (int d : {2, 3, 64, 96, 384, 576, 640}) {
    EXPECT_LT(orthogonality_error(Rotation(RotationKind::OverlapHadamard, d, 5 + d)), 2e-5)
        << "d=" << d;
  }
}

// Every output depends on every input with its share of the energy: each 64×64 block of Π
// holds close to its Haar expectation 64·64/d of ‖Π‖² = d. Two rounds instead of three leave
// the block (outputs 0..63, inputs 512..575) of d = 576 empty; one window leaves d − p inputs
// unmixed.
TEST(Rotation, OverlapHadamardMixesEveryBlock) {
  for (int d : {384, 576}) {
    const std::vector<float> m = Rotation(RotationKind::OverlapHadamard, d, 21).dense_matrix();
    const int b = 64;
    double lowest = 1e9;
    for (int bi = 0; bi < d / b; ++bi) {
      for (int bj = 0; bj < d / b; ++bj) {
        double e = 0.0;
        for (int i = bi * b; i < (bi + 1) * b; ++i) {
          for (int j = bj * b; j < (bj + 1) * b; ++j) e += double{m[i * d + j]} * m[i * d + j];
        }
        lowest = std::min(lowest, e);
      }
    }
    EXPECT_GT(lowest, 0.5 * b * b / d) << "d=" << d;
  }
}

// Same butterflies in the same order: the AVX2 transform is bit-identical to the scalar one.
TEST(Rotation, FastWalshHadamardAvx2MatchesScalarBitForBit) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  Xoshiro256 rng(77);
  for (int n = 2; n <= 2048; n *= 2) {
    std::vector<float> a(static_cast<std::size_t>(n));
    for (auto& v : a) v = static_cast<float>(rng.gaussian() * 3.0);
    std::vector<float> b = a;
    kernels::fast_walsh_hadamard_scalar(a.data(), n);
    kernels::fast_walsh_hadamard_avx2(b.data(), n);
    for (int i = 0; i < n; ++i) ASSERT_EQ(a[i], b[i]) << "n=" << n << " i=" << i;
  }
}

TEST(Rotation, InverseUndoesApplyOnBatches) {
  for (RotationKind kind :
       {RotationKind::Haar, RotationKind::Hadamard, RotationKind::OverlapHadamard}) {
    const int d = 128;
    const std::size_t n = 17;
    Rotation rot(kind, d, 99);
    Xoshiro256 rng(5);
    std::vector<float> x(n * d), y(n * d), back(n * d);
    for (auto& v : x) v = static_cast<float>(rng.gaussian());
    rot.apply(x.data(), y.data(), n);
    rot.apply_inverse(y.data(), back.data(), n);
    for (std::size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(back[i], x[i], 1e-4) << to_string(kind);
    // The forward map must not be its own inverse for hadamard (H·D ≠ D·H): a classic bug.
    if (kind != RotationKind::Haar) {
      std::vector<float> twice(n * d);
      rot.apply(y.data(), twice.data(), n);
      double diff = 0.0;
      for (std::size_t i = 0; i < x.size(); ++i) diff += std::fabs(twice[i] - x[i]);
      EXPECT_GT(diff, 1.0);
    }
    // In-place application matches out-of-place.
    std::vector<float> inplace = x;
    rot.apply(inplace.data(), inplace.data(), n);
    for (std::size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(inplace[i], y[i], 1e-6);
  }
}

// The GEMM rotation of bulk encodes agrees with the double-accumulated one to fp32 rounding, for
// a dense haar Π (a transposed Π would be off by O(1): the matrix is not symmetric) and hadamard.
TEST(Rotation, ApplyBatchMatchesApply) {
  for (const auto& [kind, d] : {std::pair{RotationKind::Haar, 576},
                                {RotationKind::Haar, 96},
                                {RotationKind::Hadamard, 128},
                                {RotationKind::OverlapHadamard, 576}}) {
    const std::size_t n = 300;
    Rotation rot(kind, d, 7);
    Xoshiro256 rng(11);
    std::vector<float> x(n * d), ref(n * d), fast(n * d, NAN);
    for (auto& v : x) v = static_cast<float>(rng.gaussian());
    rot.apply(x.data(), ref.data(), n);
    rot.apply_batch(x.data(), fast.data(), n);
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(fast[i], ref[i], 2e-5 * std::sqrt(static_cast<double>(d)))
          << to_string(kind) << " d=" << d << " i=" << i;
      // The Hadamard kinds run apply() per vector (in threads): bit-identical.
      if (kind != RotationKind::Haar) ASSERT_EQ(fast[i], ref[i]) << to_string(kind);
    }
  }
  Rotation haar(RotationKind::Haar, 64, 3);
  std::vector<float> buf(64 * 4, 1.0f);
  EXPECT_THROW(haar.apply_batch(buf.data(), buf.data() + 64, 3), std::invalid_argument);
}

TEST(Rotation, SameSeedSameRotationDifferentSeedDifferent) {
  const auto a = Rotation(RotationKind::Haar, 64, 1).dense_matrix();
  const auto b = Rotation(RotationKind::Haar, 64, 1).dense_matrix();
  const auto c = Rotation(RotationKind::Haar, 64, 2).dense_matrix();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(Rotation(RotationKind::Hadamard, 64, 1).hadamard_signs(),
            Rotation(RotationKind::Hadamard, 64, 2).hadamard_signs());
}

TEST(Rotation, HaarHasNoSignBias) {
  // Without the sign fix the diagonal of Q from a Householder QR is biased; with Gram-Schmidt
  // (R's diagonal positive) the mean of Π's diagonal over many seeds is ~0.
  double sum = 0.0;
  const int d = 16, seeds = 400;
  for (int s = 0; s < seeds; ++s) {
    const auto m = Rotation(RotationKind::Haar, d, 1000 + s).dense_matrix();
    for (int i = 0; i < d; ++i) sum += m[i * d + i];
  }
  // Each diagonal entry has variance 1/d; the mean over seeds·d entries has sd 1/(d·√seeds).
  EXPECT_LT(std::fabs(sum / (seeds * d)), 5.0 / (d * std::sqrt(static_cast<double>(seeds))));
}

TEST(Rotation, DerivedSeedsDifferPerLayerAndSide) {
  const auto k0 = derive_seed(1, 0, KvSide::Key, SeedPurpose::Rotation);
  EXPECT_NE(k0, derive_seed(1, 0, KvSide::Value, SeedPurpose::Rotation));
  EXPECT_NE(k0, derive_seed(1, 1, KvSide::Key, SeedPurpose::Rotation));
  EXPECT_NE(k0, derive_seed(2, 0, KvSide::Key, SeedPurpose::Rotation));
  EXPECT_NE(k0, derive_seed(1, 0, KvSide::Key, SeedPurpose::QjlMatrix));
  EXPECT_EQ(k0, derive_seed(1, 0, KvSide::Key, SeedPurpose::Rotation));
}

TEST(Rotation, RejectsInvalidArguments) {
  EXPECT_THROW(Rotation(RotationKind::Hadamard, 96, 1), std::invalid_argument);
  EXPECT_THROW(Rotation(RotationKind::Haar, 0, 1), std::invalid_argument);
  EXPECT_THROW(Rotation(RotationKind::OverlapHadamard, 1, 1), std::invalid_argument);
  EXPECT_THROW(parse_rotation_kind("givens"), std::invalid_argument);
  EXPECT_EQ(parse_rotation_kind("overlap-hadamard"), RotationKind::OverlapHadamard);
  EXPECT_EQ(to_string(RotationKind::OverlapHadamard), "overlap-hadamard");
  try {
    Rotation(RotationKind::Hadamard, 96, 1);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("96"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tq
