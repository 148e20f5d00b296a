// Lloyd-Max scalar codebooks for one coordinate of a uniformly random unit vector in R^d.
// After a random rotation every coordinate y of a unit vector follows
//   f_d(y) = Γ(d/2) / (√π Γ((d−1)/2)) · (1−y²)^((d−3)/2)  on [−1, 1],
// and y² ~ Beta(1/2, (d−1)/2). Cell probabilities use the regularized incomplete beta and cell
// first moments have a closed form, so Lloyd-Max runs on exact integrals (no sampling, no grid).
#pragma once

#include <cstddef>
#include <vector>

namespace tq {

inline constexpr int kMinBits = 1;
inline constexpr int kMaxBits = 8;

struct Codebook {
  int dim = 0;
  int bits = 0;
  std::vector<double> centroids;   // ascending, 2^bits entries, symmetric about 0
  std::vector<double> thresholds;  // 2^bits − 1 midpoints between consecutive centroids
  // Expected squared error of one coordinate times d: the MSE of a unit vector's reconstruction
  // (what docs/DESIGN.md §2 calls "d·MSE per coordinate").
  double unit_vector_mse = 0.0;
  int iterations = 0;  // Lloyd + Newton steps used to converge

  std::size_t size() const { return centroids.size(); }
  // Index of the cell that holds y (binary search over thresholds).
  int quantize(double y) const;
};

// The converged codebook for (dim, bits), computed once per process and cached (thread-safe).
// Throws std::invalid_argument for dim < 2 or bits outside [1, 8].
const Codebook& lloyd_max_codebook(int dim, int bits);

// One plain Lloyd step (midpoint thresholds, then conditional means) applied to `centroids`;
// returns the new centroids. Exposed so tests can check that the cached codebook is a fixed point.
std::vector<double> lloyd_step(int dim, const std::vector<double>& centroids);

// The coordinate law, exposed for tests: density, CDF, and ∫_a^b y f_d(y) dy.
double coordinate_density(int dim, double y);
double coordinate_cdf(int dim, double y);
double coordinate_first_moment(int dim, double a, double b);
// Expected squared error d·E[(y − c(y))²] of a set of centroids with midpoint thresholds.
double codebook_unit_vector_mse(int dim, const std::vector<double>& centroids);

}  // namespace tq
