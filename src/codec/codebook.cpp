// Lloyd-Max codebooks on the exact Beta coordinate law (see include/turboquant/codec/codebook.hpp).
// Plain Lloyd iteration converges very slowly for b >= 4 (the map's Jacobian has an eigenvalue
// close to 1), so after a few Lloyd steps we solve the fixed-point equations c = F(c) by Newton's
// method: F_i depends only on c_{i−1}, c_i, c_{i+1} (through the two midpoints), so the Jacobian
// is tridiagonal and each Newton step is O(2^b).
#include "turboquant/codec/codebook.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace tq {
namespace {

void check_dim_bits(int dim, int bits) {
  if (dim < 2) {
    throw std::invalid_argument("codebook: dimension " + std::to_string(dim) +
                                " is invalid; expected d >= 2");
  }
  if (bits < kMinBits || bits > kMaxBits) {
    throw std::invalid_argument("codebook: bits " + std::to_string(bits) +
                                " out of range; expected 1..8");
  }
}

// log of the density's normalising constant Γ(d/2) / (√π Γ((d−1)/2)).
double log_normaliser(int dim) {
  return std::lgamma(0.5 * dim) - 0.5 * std::log(M_PI) - std::lgamma(0.5 * (dim - 1));
}

// Continued fraction for the regularized incomplete beta (modified Lentz), valid for
// x < (a+1)/(a+b+2); the caller uses the symmetry relation otherwise.
double incomplete_beta_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-16;
  const double qab = a + b;
  const double qap = a + 1.0;
  const double qam = a - 1.0;
  double c = 1.0;
  double d = 1.0 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1.0) < kEps) break;
  }
  return h;
}

// I_x(a, b), the regularized incomplete beta function.
double regularized_incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  const double front = std::exp(log_front);
  if (x < (a + 1.0) / (a + b + 2.0)) return front * incomplete_beta_fraction(a, b, x) / a;
  return 1.0 - front * incomplete_beta_fraction(b, a, 1.0 - x) / b;
}

struct CellStats {
  double probability;
  double first_moment;
};

CellStats cell_stats(int dim, double lo, double hi) {
  return {coordinate_cdf(dim, hi) - coordinate_cdf(dim, lo), coordinate_first_moment(dim, lo, hi)};
}

std::vector<double> midpoints(const std::vector<double>& centroids) {
  std::vector<double> t(centroids.size() - 1);
  for (std::size_t i = 0; i + 1 < centroids.size(); ++i) {
    t[i] = 0.5 * (centroids[i] + centroids[i + 1]);
  }
  return t;
}

// Solve a tridiagonal system (Thomas algorithm); sub[i] multiplies x[i−1], sup[i] x[i+1].
std::vector<double> solve_tridiagonal(std::vector<double> sub, std::vector<double> diag,
                                      std::vector<double> sup, std::vector<double> rhs) {
  const std::size_t n = diag.size();
  for (std::size_t i = 1; i < n; ++i) {
    const double w = sub[i] / diag[i - 1];
    diag[i] -= w * sup[i - 1];
    rhs[i] -= w * rhs[i - 1];
  }
  std::vector<double> x(n);
  x[n - 1] = rhs[n - 1] / diag[n - 1];
  for (std::size_t i = n - 1; i-- > 0;) x[i] = (rhs[i] - sup[i] * x[i + 1]) / diag[i];
  return x;
}

double max_abs_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// One Newton step on G(c) = F(c) − c with the exact tridiagonal Jacobian of the Lloyd map.
// For cell i = [t_{i−1}, t_i] with mass P and centroid F_i = M/P:
//   ∂F_i/∂t_i = f(t_i)(t_i − F_i)/P,   ∂F_i/∂t_{i−1} = f(t_{i−1})(F_i − t_{i−1})/P,
// and t_i = (c_i + c_{i+1})/2.
std::vector<double> newton_step(int dim, const std::vector<double>& c) {
  const std::size_t k = c.size();
  const std::vector<double> t = midpoints(c);
  const std::vector<double> f = lloyd_step(dim, c);
  std::vector<double> sub(k, 0.0), diag(k, 0.0), sup(k, 0.0), rhs(k);
  for (std::size_t i = 0; i < k; ++i) {
    const double lo = i == 0 ? -1.0 : t[i - 1];
    const double hi = i + 1 == k ? 1.0 : t[i];
    const double mass = coordinate_cdf(dim, hi) - coordinate_cdf(dim, lo);
    double d_hi = 0.0, d_lo = 0.0;
    if (i + 1 < k) d_hi = coordinate_density(dim, hi) * (hi - f[i]) / mass;
    if (i > 0) d_lo = coordinate_density(dim, lo) * (f[i] - lo) / mass;
    // dF_i/dc_{i−1} = d_lo/2, dF_i/dc_i = (d_lo + d_hi)/2, dF_i/dc_{i+1} = d_hi/2.
    sub[i] = 0.5 * d_lo;
    diag[i] = 0.5 * (d_lo + d_hi) - 1.0;
    sup[i] = 0.5 * d_hi;
    rhs[i] = -(f[i] - c[i]);
  }
  const std::vector<double> delta = solve_tridiagonal(sub, diag, sup, rhs);
  std::vector<double> next(k);
  for (std::size_t i = 0; i < k; ++i) next[i] = c[i] + delta[i];
  return next;
}

bool strictly_increasing_inside(const std::vector<double>& c) {
  if (c.front() <= -1.0 || c.back() >= 1.0) return false;
  for (std::size_t i = 1; i < c.size(); ++i) {
    if (!(c[i] > c[i - 1])) return false;
  }
  return true;
}

Codebook compute_codebook(int dim, int bits) {
  const std::size_t k = std::size_t{1} << bits;
  // Start from the Gaussian-limit quantiles: cell centres of equal-mass cells of N(0, 1/d).
  std::vector<double> c(k);
  const double sigma = 1.0 / std::sqrt(static_cast<double>(dim));
  for (std::size_t i = 0; i < k; ++i) {
    const double p = (static_cast<double>(i) + 0.5) / static_cast<double>(k);
    // Inverse normal CDF by bisection on erfc (only used for a starting point).
    double lo = -10.0, hi = 10.0;
    for (int it = 0; it < 200; ++it) {
      const double mid = 0.5 * (lo + hi);
      (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
    }
    c[i] = std::clamp(0.5 * (lo + hi) * sigma, -0.999, 0.999);
  }
  int iterations = 0;
  for (int it = 0; it < 50; ++it, ++iterations) c = lloyd_step(dim, c);
  // Newton polish, falling back to Lloyd steps if a Newton step leaves the feasible region.
  for (int it = 0; it < 200; ++it, ++iterations) {
    std::vector<double> next = newton_step(dim, c);
    if (!strictly_increasing_inside(next)) next = lloyd_step(dim, c);
    const double moved = max_abs_difference(next, c);
    c = std::move(next);
    if (moved < 1e-14) break;
  }
  // Exact symmetry: average each centroid with its mirror image.
  for (std::size_t i = 0; i < k / 2; ++i) {
    const double m = 0.5 * (c[k - 1 - i] - c[i]);
    c[i] = -m;
    c[k - 1 - i] = m;
  }
  Codebook book;
  book.dim = dim;
  book.bits = bits;
  book.centroids = c;
  book.thresholds = midpoints(c);
  book.unit_vector_mse = codebook_unit_vector_mse(dim, c);
  book.iterations = iterations;
  return book;
}

}  // namespace

int Codebook::quantize(double y) const {
  return static_cast<int>(std::upper_bound(thresholds.begin(), thresholds.end(), y) -
                          thresholds.begin());
}

double coordinate_density(int dim, double y) {
  if (y <= -1.0 || y >= 1.0) return 0.0;
  return std::exp(log_normaliser(dim) + 0.5 * (dim - 3) * std::log1p(-y * y));
}

double coordinate_cdf(int dim, double y) {
  if (y <= -1.0) return 0.0;
  if (y >= 1.0) return 1.0;
  const double half_mass = 0.5 * regularized_incomplete_beta(0.5, 0.5 * (dim - 1), y * y);
  return y >= 0.0 ? 0.5 + half_mass : 0.5 - half_mass;
}

double coordinate_first_moment(int dim, double a, double b) {
  // ∫ y (1−y²)^α dy = −(1−y²)^(α+1) / (2(α+1)),  α = (d−3)/2.
  const double alpha1 = 0.5 * (dim - 1);
  auto antiderivative = [&](double y) {
    y = std::clamp(y, -1.0, 1.0);
    const double base = 1.0 - y * y;
    if (base <= 0.0) return 0.0;
    return -std::exp(log_normaliser(dim) + alpha1 * std::log(base)) / (2.0 * alpha1);
  };
  return antiderivative(b) - antiderivative(a);
}

std::vector<double> lloyd_step(int dim, const std::vector<double>& centroids) {
  const std::size_t k = centroids.size();
  const std::vector<double> t = midpoints(centroids);
  std::vector<double> next(k);
  for (std::size_t i = 0; i < k; ++i) {
    const double lo = i == 0 ? -1.0 : t[i - 1];
    const double hi = i + 1 == k ? 1.0 : t[i];
    const CellStats s = cell_stats(dim, lo, hi);
    next[i] = s.probability > 0.0 ? s.first_moment / s.probability : 0.5 * (lo + hi);
  }
  return next;
}

double codebook_unit_vector_mse(int dim, const std::vector<double>& centroids) {
  // E[(y−c)²] over each cell = E[y²; cell] − 2c·M + c²·P, and Σ E[y²; cell] = E[y²] = 1/d.
  const std::size_t k = centroids.size();
  const std::vector<double> t = midpoints(centroids);
  double cross = 0.0;
  for (std::size_t i = 0; i < k; ++i) {
    const double lo = i == 0 ? -1.0 : t[i - 1];
    const double hi = i + 1 == k ? 1.0 : t[i];
    const CellStats s = cell_stats(dim, lo, hi);
    cross += -2.0 * centroids[i] * s.first_moment + centroids[i] * centroids[i] * s.probability;
  }
  return dim * (1.0 / dim + cross);
}

const Codebook& lloyd_max_codebook(int dim, int bits) {
  check_dim_bits(dim, bits);
  static std::mutex mutex;
  static std::map<std::pair<int, int>, std::unique_ptr<Codebook>> cache;
  std::lock_guard lock(mutex);
  auto& slot = cache[{dim, bits}];
  if (!slot) slot = std::make_unique<Codebook>(compute_codebook(dim, bits));
  return *slot;
}

}  // namespace tq
