// k-means (Lloyd) and nearest-centroid assignment for IvfIndex's coarse quantizer. Distances go
// through ‖x − c‖² = ‖x‖² − 2⟨x, c⟩ + ‖c‖² with the ⟨x, c⟩ block as one BLAS GEMM per chunk of
// rows, so assignment costs a GEMM instead of n·k scalar distance loops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tq::index {

// assign[i] = argmin_j ‖x_i − c_j‖² for n rows of x (n × d) against k centroids (k × d).
void assign_nearest(const float* x, std::size_t n, const float* centroids, std::size_t k, int d,
                    int* assign);

// Lloyd's k-means on m rows (m × d, m >= k): starts from the first k rows, runs `iters` rounds;
// an empty partition restarts at a random row drawn from `seed`. Returns k × d centroids.
std::vector<float> kmeans(const float* rows, std::size_t m, int d, std::size_t k, int iters,
                          std::uint64_t seed);

}  // namespace tq::index
