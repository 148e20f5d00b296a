// k-means and GEMM-based nearest-centroid assignment (see kmeans.hpp).
#include "kmeans.hpp"

#include "dot.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <random>

namespace tq::index {
namespace {

std::vector<float> row_norms_sq(const float* x, std::size_t n, int d) {
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float* r = x + i * static_cast<std::size_t>(d);
    out[i] = static_cast<float>(dot(r, r, d));
  }
  return out;
}

}  // namespace

void assign_nearest(const float* x, std::size_t n, const float* centroids, std::size_t k, int d,
                    int* assign) {
  if (n == 0 || k == 0) return;
  const std::vector<float> c_sq = row_norms_sq(centroids, k, d);
  // Rows per GEMM: the n_chunk × k score block stays small (≤ 4 MiB at k = 4096).
  const std::size_t chunk = std::max<std::size_t>(1, std::min<std::size_t>(4096, (1u << 20) / k));
  std::vector<float> ip(std::min(n, chunk) * k);
  for (std::size_t i0 = 0; i0 < n; i0 += chunk) {
    const std::size_t m = std::min(chunk, n - i0);
    const float* xb = x + i0 * static_cast<std::size_t>(d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(k),
                d, 1.0f, xb, d, centroids, d, 0.0f, ip.data(), static_cast<int>(k));
    // ‖x‖² is the same for every centroid of a row, so the argmin needs only ‖c‖² − 2⟨x, c⟩.
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(m); ++i) {
      const float* s = ip.data() + static_cast<std::size_t>(i) * k;
      float best = std::numeric_limits<float>::infinity();
      int best_j = 0;
      for (std::size_t j = 0; j < k; ++j) {
        const float e = c_sq[j] - 2.0f * s[j];
        if (e < best) best = e, best_j = static_cast<int>(j);
      }
      assign[i0 + static_cast<std::size_t>(i)] = best_j;
    }
  }
}

std::vector<float> kmeans(const float* rows, std::size_t m, int d, std::size_t k, int iters,
                          std::uint64_t seed) {
  const auto du = static_cast<std::size_t>(d);
  std::mt19937_64 rng(seed);
  std::vector<float> c(rows, rows + k * du);
  std::vector<int> assign(m, 0);
  std::uniform_int_distribution<std::size_t> pick(0, m - 1);
  for (int it = 0; it < iters; ++it) {
    assign_nearest(rows, m, c.data(), k, d, assign.data());
    std::vector<double> sum(k * du, 0.0);
    std::vector<std::size_t> count(k, 0);
    for (std::size_t i = 0; i < m; ++i) {
      const auto j = static_cast<std::size_t>(assign[i]);
      ++count[j];
      for (std::size_t q = 0; q < du; ++q) sum[j * du + q] += rows[i * du + q];
    }
    for (std::size_t j = 0; j < k; ++j) {
      if (count[j] == 0) {  // empty partition: restart it at a random training row
        std::copy_n(rows + pick(rng) * du, du, c.data() + j * du);
        continue;
      }
      for (std::size_t q = 0; q < du; ++q) {
        c[j * du + q] = static_cast<float>(sum[j * du + q] / static_cast<double>(count[j]));
      }
    }
  }
  return c;
}

}  // namespace tq::index
