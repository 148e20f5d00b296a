// Monte-Carlo measurement of a codec's distortion on random unit vectors — shared by
// `tq codec` and the statistical tests so that both measure exactly the same thing.
#pragma once

#include "turboquant/codec/codec.hpp"

#include <cstddef>
#include <cstdint>

namespace tq {

struct DistortionReport {
  std::size_t vectors = 0;
  double mse = 0.0;         // measured d·MSE = E‖x − x̂‖² over unit x
  double mse_theory = 0.0;  // exact expectation from the codebooks' integrals
  double ip_distortion = 0.0;  // measured d·E[(⟨q,x⟩ − est)²], q and x independent unit vectors
  double ip_theory = 0.0;      // mse: d·D_mse(b);  prod: (π/2)·d·D_mse(b−1)
  // Mean signed error est − ⟨q,x⟩ on correlated pairs (⟨q,x⟩ ≈ 0.7), where shrinkage shows.
  double ip_bias = 0.0;
  double ip_bias_stderr = 0.0;  // its standard error
  double ip_slope = 0.0;        // least-squares slope of est on ⟨q,x⟩ (1 = unbiased scale)
  double ip_slope_stderr = 0.0;
  double bits_per_value = 0.0;
};

// Encodes `vectors` random unit vectors and scores them against `vectors` independent random
// unit queries, plus a set of correlated pairs (q close to x) so that the slope is measurable.
DistortionReport measure_distortion(const Codec& codec, std::size_t vectors, std::uint64_t seed);

// Fills `out` (count × dim) with independent uniform unit vectors.
void random_unit_vectors(std::size_t count, int dim, std::uint64_t seed, float* out);

}  // namespace tq
