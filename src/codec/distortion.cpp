// Monte-Carlo distortion measurement (see include/turboquant/codec/distortion.hpp).
#include "turboquant/codec/distortion.hpp"

#include "turboquant/base/random.hpp"
#include "turboquant/codec/codebook.hpp"

#include <cmath>
#include <vector>

namespace tq {

void random_unit_vectors(std::size_t count, int dim, std::uint64_t seed, float* out) {
  Xoshiro256 rng(seed);
  for (std::size_t v = 0; v < count; ++v) {
    float* x = out + v * dim;
    double norm_sq = 0.0;
    for (int j = 0; j < dim; ++j) {
      x[j] = static_cast<float>(rng.gaussian());
      norm_sq += static_cast<double>(x[j]) * x[j];
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(norm_sq));
    for (int j = 0; j < dim; ++j) x[j] *= inv;
  }
}

DistortionReport measure_distortion(const Codec& codec, std::size_t vectors, std::uint64_t seed) {
  const int d = codec.dim();
  const CodeLayout& layout = codec.layout();
  DistortionReport report;
  report.vectors = vectors;
  report.bits_per_value = layout.bits_per_value();
  report.mse_theory = codec.expected_unit_vector_mse();
  if (codec.spec().kind == CodecKind::Mse) {
    report.ip_theory = report.mse_theory;
  } else {
    const double mse_bits = codec.spec().bits - 1.0;
    double base = 1.0;  // b = 1: the whole vector is the residual
    if (mse_bits > 0.0) {
      CodecSpec mse_spec = codec.spec();
      mse_spec.kind = CodecKind::Mse;
      mse_spec.bits = mse_bits;
      base = Codec(mse_spec).expected_unit_vector_mse();
    }
    report.ip_theory = 0.5 * M_PI * base;
    // x − x̃ = r − r̃ and E‖r̃‖² = (1 + π/2)γ², so the reconstruction error is (π/2)·D_mse(b−1).
    report.mse_theory = report.ip_theory;
  }

  std::vector<float> x(vectors * d), q(vectors * d), recon(vectors * d);
  random_unit_vectors(vectors, d, seed, x.data());
  random_unit_vectors(vectors, d, seed ^ 0x5bd1e995u, q.data());
  // Correlated queries q' = (x + q)/‖x + q‖ have ⟨q', x⟩ ≈ 0.7, so a shrinking estimator (mse at
  // low bits scales inner products by E‖c‖² < 1) shows up in the slope.
  std::vector<float> q_corr(vectors * d);
  for (std::size_t v = 0; v < vectors; ++v) {
    double n2 = 0.0;
    for (int j = 0; j < d; ++j) {
      q_corr[v * d + j] = x[v * d + j] + q[v * d + j];
      n2 += static_cast<double>(q_corr[v * d + j]) * q_corr[v * d + j];
    }
    for (int j = 0; j < d; ++j)
      q_corr[v * d + j] = static_cast<float>(q_corr[v * d + j] / std::sqrt(n2));
  }

  EncodedBatch batch(layout, vectors);
  codec.encode(x.data(), vectors, batch.view());
  codec.decode(batch.view(), vectors, recon.data());

  double mse_sum = 0.0;
  for (std::size_t i = 0; i < vectors * d; ++i) {
    const double e = static_cast<double>(x[i]) - recon[i];
    mse_sum += e * e;
  }
  report.mse = mse_sum / static_cast<double>(vectors);

  double err_sq = 0.0, err_sum = 0.0, err_sq_centered = 0.0;
  double sxx = 0.0, sxy = 0.0, syy = 0.0;
  std::vector<double> errors;
  errors.reserve(vectors);
  const ConstEncodedView view = batch.view();
  for (std::size_t v = 0; v < vectors; ++v) {
    const ConstEncodedView one = view.offset(v, layout);
    for (int pass = 0; pass < 2; ++pass) {
      const float* query = (pass == 0 ? q.data() : q_corr.data()) + v * d;
      double truth = 0.0;
      for (int j = 0; j < d; ++j) truth += static_cast<double>(query[j]) * x[v * d + j];
      float est = 0.0f;
      codec.score(codec.prepare_query(query), one, 1, &est);
      const double e = est - truth;
      if (pass == 0) {
        err_sq += e * e;
      } else {
        err_sum += e;
        errors.push_back(e);
      }
      sxx += truth * truth;
      sxy += truth * est;
      syy += static_cast<double>(est) * est;
    }
  }
  const double n = static_cast<double>(vectors);
  report.ip_distortion = d * err_sq / n;
  report.ip_bias = err_sum / n;
  for (double e : errors) err_sq_centered += (e - report.ip_bias) * (e - report.ip_bias);
  report.ip_bias_stderr = std::sqrt(err_sq_centered / (n - 1.0) / n);
  // Regression through the origin est = slope·truth over both query sets.
  report.ip_slope = sxy / sxx;
  const double resid = syy - 2.0 * report.ip_slope * sxy + report.ip_slope * report.ip_slope * sxx;
  report.ip_slope_stderr = std::sqrt(std::max(resid, 0.0) / (2.0 * n - 1.0) / sxx);
  return report;
}

}  // namespace tq
