// Lloyd-Max codebooks on the Beta coordinate law: convergence, reference values, the law itself.
#include "turboquant/codec/codebook.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

namespace tq {
namespace {

TEST(Codebook, D128B3MatchesReferenceCentroids) {
  const Codebook& book = lloyd_max_codebook(128, 3);
  ASSERT_EQ(book.size(), 8u);
  const double expected[4] = {0.021604, 0.066586, 0.118140, 0.188397};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(book.centroids[4 + i], expected[i], 2e-6) << "positive centroid " << i;
    EXPECT_NEAR(book.centroids[3 - i], -expected[i], 2e-6) << "negative centroid " << i;
  }
  EXPECT_NEAR(book.unit_vector_mse, 0.03397, 1e-5);
}

TEST(Codebook, IsAFixedPointOfLloyd) {
  for (int dim : {64, 128, 256}) {
    for (int bits = 1; bits <= 8; ++bits) {
      const Codebook& book = lloyd_max_codebook(dim, bits);
      const std::vector<double> next = lloyd_step(dim, book.centroids);
      for (std::size_t i = 0; i < next.size(); ++i) {
        EXPECT_LE(std::fabs(next[i] - book.centroids[i]), 1e-9)
            << "d=" << dim << " b=" << bits << " centroid " << i;
      }
    }
  }
}

TEST(Codebook, ReferenceDistortions) {
  struct Row {
    int dim;
    double mse[4];
  };
  const Row rows[] = {{64, {0.3584, 0.1145, 0.03339, 0.00913}},
                      {128, {0.3609, 0.1160, 0.03397, 0.00931}},
                      {256, {0.3621, 0.1167, 0.03426, 0.00941}}};
  for (const Row& row : rows) {
    for (int b = 1; b <= 4; ++b) {
      const double got = lloyd_max_codebook(row.dim, b).unit_vector_mse;
      // Reference values carry 3-4 significant digits.
      EXPECT_NEAR(got, row.mse[b - 1], 0.0006 * row.mse[b - 1] + 6e-5)
          << "d=" << row.dim << " b=" << b;
    }
  }
}

TEST(Codebook, SymmetricSortedAndMidpointThresholds) {
  for (int bits = 1; bits <= 8; ++bits) {
    const Codebook& book = lloyd_max_codebook(96, bits);
    ASSERT_EQ(book.centroids.size(), std::size_t{1} << bits);
    ASSERT_EQ(book.thresholds.size(), book.centroids.size() - 1);
    for (std::size_t i = 0; i < book.size(); ++i) {
      EXPECT_DOUBLE_EQ(book.centroids[i], -book.centroids[book.size() - 1 - i]);
      if (i > 0) {
        EXPECT_LT(book.centroids[i - 1], book.centroids[i]);
        EXPECT_DOUBLE_EQ(book.thresholds[i - 1], 0.5 * (book.centroids[i - 1] + book.centroids[i]));
      }
    }
  }
}

TEST(Codebook, QuantizePicksNearestCentroid) {
  const Codebook& book = lloyd_max_codebook(128, 4);
  for (double y = -0.5; y <= 0.5; y += 0.001) {
    const int cell = book.quantize(y);
    double best = 1e9;
    int best_index = -1;
    for (std::size_t i = 0; i < book.size(); ++i) {
      if (std::fabs(y - book.centroids[i]) < best) {
        best = std::fabs(y - book.centroids[i]);
        best_index = static_cast<int>(i);
      }
    }
    EXPECT_EQ(cell, best_index) << "y=" << y;
  }
}

TEST(CoordinateLaw, DensityIntegratesToCdfAndFirstMoment) {
  for (int dim : {3, 16, 128}) {
    // Trapezoid integration of the density and y·density over [−0.3, 0.4].
    const double a = -0.3, b = 0.4;
    const int steps = 200000;
    double mass = 0.0, moment = 0.0;
    for (int i = 0; i <= steps; ++i) {
      const double y = a + (b - a) * i / steps;
      const double w = (i == 0 || i == steps) ? 0.5 : 1.0;
      mass += w * coordinate_density(dim, y);
      moment += w * y * coordinate_density(dim, y);
    }
    mass *= (b - a) / steps;
    moment *= (b - a) / steps;
    EXPECT_NEAR(coordinate_cdf(dim, b) - coordinate_cdf(dim, a), mass, 1e-8) << "d=" << dim;
    EXPECT_NEAR(coordinate_first_moment(dim, a, b), moment, 1e-8) << "d=" << dim;
  }
  EXPECT_NEAR(coordinate_cdf(128, 0.0), 0.5, 1e-15);
  EXPECT_NEAR(coordinate_cdf(128, 1.0), 1.0, 1e-15);
}

TEST(Codebook, RejectsInvalidArguments) {
  EXPECT_THROW(lloyd_max_codebook(128, 0), std::invalid_argument);
  EXPECT_THROW(lloyd_max_codebook(128, 9), std::invalid_argument);
  EXPECT_THROW(lloyd_max_codebook(0, 3), std::invalid_argument);
  try {
    lloyd_max_codebook(128, 9);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("9"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tq
