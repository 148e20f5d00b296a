// Haar, randomized-Hadamard and overlapped-Hadamard rotations (include/turboquant/codec/
// rotation.hpp).
// Haar: modified Gram-Schmidt, run twice in double precision, on the columns of a seeded Gaussian
// matrix. Gram-Schmidt produces R with a positive diagonal, which is exactly the sign-fixed QR
// Q·diag(sign(diag R)) that makes Q Haar-distributed.
#include "turboquant/codec/rotation.hpp"

#include "hadamard_kernels.hpp"
#include "turboquant/base/math.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/base/simd.hpp"

#include <cblas.h>

#include <cmath>
#include <stdexcept>

namespace tq {
namespace {

std::vector<float> haar_matrix(int d, std::uint64_t seed) {
  Xoshiro256 rng(seed);
  // Column j of the Gaussian matrix is stored contiguously in cols[j*d ...].
  std::vector<double> cols(static_cast<std::size_t>(d) * d);
  for (auto& v : cols) v = rng.gaussian();
  for (int j = 0; j < d; ++j) {
    double* cj = &cols[static_cast<std::size_t>(j) * d];
    for (int pass = 0; pass < 2; ++pass) {  // re-orthogonalise once for full double accuracy
      for (int i = 0; i < j; ++i) {
        const double* ci = &cols[static_cast<std::size_t>(i) * d];
        double dot = 0.0;
        for (int r = 0; r < d; ++r) dot += ci[r] * cj[r];
        for (int r = 0; r < d; ++r) cj[r] -= dot * ci[r];
      }
    }
    double norm = 0.0;
    for (int r = 0; r < d; ++r) norm += cj[r] * cj[r];
    norm = std::sqrt(norm);
    for (int r = 0; r < d; ++r) cj[r] /= norm;
  }
  // Π = Qᵀ is as Haar as Q; using rows = Q's columns makes apply() a contiguous dot per output.
  std::vector<float> pi(static_cast<std::size_t>(d) * d);
  for (int i = 0; i < d; ++i) {
    for (int r = 0; r < d; ++r) {
      pi[static_cast<std::size_t>(i) * d + r] =
          static_cast<float>(cols[static_cast<std::size_t>(i) * d + r]);
    }
  }
  return pi;
}

// The largest power of two <= d: the Hadamard window of the overlapped rotation.
int hadamard_window(int d) {
  int p = 1;
  while (p * 2 <= d) p *= 2;
  return p;
}

void scale(float* x, int n, float s) {
  for (int i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace

RotationKind parse_rotation_kind(std::string_view name) {
  if (name == "haar") return RotationKind::Haar;
  if (name == "hadamard") return RotationKind::Hadamard;
  if (name == "overlap-hadamard") return RotationKind::OverlapHadamard;
  throw std::invalid_argument("rotation kind '" + std::string(name) +
                              "' is unknown; expected 'haar', 'hadamard' or 'overlap-hadamard'");
}

std::string to_string(RotationKind kind) {
  switch (kind) {
    case RotationKind::Haar:
      return "haar";
    case RotationKind::Hadamard:
      return "hadamard";
    case RotationKind::OverlapHadamard:
      return "overlap-hadamard";
  }
  return "unknown";
}

namespace kernels {

void fast_walsh_hadamard_scalar(float* x, int n) {
  for (int half = 1; half < n; half <<= 1) {
    for (int start = 0; start < n; start += 2 * half) {
      for (int i = start; i < start + half; ++i) {
        const float a = x[i];
        const float b = x[i + half];
        x[i] = a + b;
        x[i + half] = a - b;
      }
    }
  }
}

}  // namespace kernels

void fast_walsh_hadamard(float* x, int n) {
  static const bool avx2 = cpu_has_avx2();
  if (avx2) {
    kernels::fast_walsh_hadamard_avx2(x, n);
  } else {
    kernels::fast_walsh_hadamard_scalar(x, n);
  }
}

Rotation::Rotation(RotationKind kind, int dim, std::uint64_t seed)
    : kind_(kind), dim_(dim), seed_(seed) {
  if (dim < 2) {
    throw std::invalid_argument("rotation: dimension " + std::to_string(dim) +
                                " is invalid; expected d >= 2");
  }
  if (kind == RotationKind::Hadamard) {
    if (!is_power_of_two(dim)) {
      throw std::invalid_argument("rotation: hadamard needs a power-of-two dimension, got " +
                                  std::to_string(dim) + "; use the haar rotation for this d");
    }
    Xoshiro256 rng(seed);
    signs_.resize(dim);
    for (auto& s : signs_) s = rng.coin() ? -1.0f : 1.0f;
  } else if (kind == RotationKind::OverlapHadamard) {
    Xoshiro256 rng(seed);
    signs_.resize(3 * static_cast<std::size_t>(dim));  // D1, D2, D3
    for (auto& s : signs_) s = rng.coin() ? -1.0f : 1.0f;
  } else {
    matrix_ = haar_matrix(dim, seed);
  }
}

void Rotation::apply(const float* in, float* out, std::size_t count) const {
  const std::size_t d = static_cast<std::size_t>(dim_);
  if (kind_ == RotationKind::Hadamard) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(dim_));
    for (std::size_t v = 0; v < count; ++v) {
      float* o = out + v * d;
      const float* x = in + v * d;
      for (std::size_t i = 0; i < d; ++i) o[i] = x[i] * signs_[i];  // D first
      fast_walsh_hadamard(o, dim_);                                 // then H
      for (std::size_t i = 0; i < d; ++i) o[i] *= scale;
    }
    return;
  }
  if (kind_ == RotationKind::OverlapHadamard) {
    // Round r: signs D_r on all d coordinates, then H/√p on window r ([0,p), [d−p,d), [0,p)).
    const int p = hadamard_window(dim_);
    const float s = 1.0f / std::sqrt(static_cast<float>(p));
    for (std::size_t v = 0; v < count; ++v) {
      float* o = out + v * d;
      const float* x = in + v * d;
      for (int r = 0; r < 3; ++r) {
        const float* sg = &signs_[static_cast<std::size_t>(r) * d];
        const float* src = r == 0 ? x : o;
        for (std::size_t i = 0; i < d; ++i) o[i] = src[i] * sg[i];
        float* w = o + (r == 1 ? dim_ - p : 0);
        fast_walsh_hadamard(w, p);
        scale(w, p, s);
      }
    }
    return;
  }
  // A staging row is needed only when the output overwrites the input (in-place apply); the
  // codec's per-token encode writes elsewhere and so allocates nothing here.
  const bool aliased = in < out + count * d && out < in + count * d;
  std::vector<float> staging(aliased ? d : 0);
  for (std::size_t v = 0; v < count; ++v) {
    const float* x = in + v * d;
    float* y = aliased ? staging.data() : out + v * d;
    for (std::size_t i = 0; i < d; ++i) {
      const float* row = &matrix_[i * d];
      double acc = 0.0;
      for (std::size_t r = 0; r < d; ++r) acc += static_cast<double>(row[r]) * x[r];
      y[i] = static_cast<float>(acc);
    }
    if (aliased) std::copy(staging.begin(), staging.end(), out + v * d);
  }
}

void Rotation::apply_batch(const float* in, float* out, std::size_t count) const {
  const std::size_t d = static_cast<std::size_t>(dim_);
  if (in < out + count * d && out < in + count * d) {
    throw std::invalid_argument("rotation: apply_batch needs separate input and output buffers");
  }
  if (kind_ != RotationKind::Haar) {
    // O(d log d) per vector: thread-parallel over vectors (each vector's result is apply()'s).
    const auto n = static_cast<std::ptrdiff_t>(count);
#pragma omp parallel for schedule(static) if (count >= 64)
    for (std::ptrdiff_t v = 0; v < n; ++v) apply(in + v * d, out + v * d, 1);
    return;
  }
  // Y = X·Πᵀ (row-major X: count × d).
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(count), dim_, dim_, 1.0f,
              in, dim_, matrix_.data(), dim_, 0.0f, out, dim_);
}

void Rotation::apply_inverse(const float* in, float* out, std::size_t count) const {
  const std::size_t d = static_cast<std::size_t>(dim_);
  if (kind_ == RotationKind::Hadamard) {
    // (H·D/√d)⁻¹ = D·H/√d since H is symmetric with H·H = d·I: transform first, signs last.
    const float scale = 1.0f / std::sqrt(static_cast<float>(dim_));
    for (std::size_t v = 0; v < count; ++v) {
      float* o = out + v * d;
      if (o != in + v * d) std::copy(in + v * d, in + (v + 1) * d, o);
      fast_walsh_hadamard(o, dim_);
      for (std::size_t i = 0; i < d; ++i) o[i] *= scale * signs_[i];
    }
    return;
  }
  if (kind_ == RotationKind::OverlapHadamard) {
    // The rounds in reverse: H/√p is its own inverse, then the signs again.
    const int p = hadamard_window(dim_);
    const float s = 1.0f / std::sqrt(static_cast<float>(p));
    for (std::size_t v = 0; v < count; ++v) {
      float* o = out + v * d;
      if (o != in + v * d) std::copy(in + v * d, in + (v + 1) * d, o);
      for (int r = 2; r >= 0; --r) {
        float* w = o + (r == 1 ? dim_ - p : 0);
        fast_walsh_hadamard(w, p);
        scale(w, p, s);
        const float* sg = &signs_[static_cast<std::size_t>(r) * d];
        for (std::size_t i = 0; i < d; ++i) o[i] *= sg[i];
      }
    }
    return;
  }
  std::vector<double> acc(d);
  for (std::size_t v = 0; v < count; ++v) {
    const float* y = in + v * d;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (std::size_t i = 0; i < d; ++i) {
      const float* row = &matrix_[i * d];
      for (std::size_t r = 0; r < d; ++r) acc[r] += static_cast<double>(row[r]) * y[i];
    }
    for (std::size_t r = 0; r < d; ++r) out[v * d + r] = static_cast<float>(acc[r]);
  }
}

std::vector<float> Rotation::dense_matrix() const {
  if (kind_ == RotationKind::Haar) return matrix_;
  const std::size_t d = static_cast<std::size_t>(dim_);
  // Column j of Π is Π·e_j; store row-major.
  std::vector<float> m(d * d), e(d), col(d);
  for (std::size_t j = 0; j < d; ++j) {
    std::fill(e.begin(), e.end(), 0.0f);
    e[j] = 1.0f;
    apply(e.data(), col.data());
    for (std::size_t i = 0; i < d; ++i) m[i * d + j] = col[i];
  }
  return m;
}

}  // namespace tq
