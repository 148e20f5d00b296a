// Forward-pass kernels against naive formulas: RoPE in both pairings (including a partial
// rotary dimension), RMSNorm, softmax, SwiGLU and the column-split BLAS matmul (with bias,
// accumulation and leading dimensions), plus a deliberately wrong pairing that must fail.
#include <gtest/gtest.h>

#include "random_inputs.hpp"

#include <cmath>
#include <random>
#include <vector>

#include "model/ops.hpp"

namespace {

using tq::testing::random_normal_vector;

// Naive RoPE on one head at position pos: pair (a, b) of coordinate i rotated by pos·base^(−2i/r).
std::vector<float> naive_rope(std::vector<float> x, int rope_dim, double base, double pos,
                              bool neox) {
  const int half = rope_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = pos * std::pow(base, -2.0 * i / rope_dim);
    const int ia = neox ? i : 2 * i;
    const int ib = neox ? i + half : 2 * i + 1;
    const double a = x[ia], b = x[ib];
    x[ia] = static_cast<float>(a * std::cos(theta) - b * std::sin(theta));
    x[ib] = static_cast<float>(a * std::sin(theta) + b * std::cos(theta));
  }
  return x;
}

void check_rope(tq::RopeOrdering ordering, int head_dim, int rope_dim, std::size_t pos) {
  const int n_heads = 3, half = rope_dim / 2;
  const double base = 10000.0;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(base, -2.0 * i / rope_dim);
  std::vector<float> c(half), s(half);
  tq::ops::rope_angles(pos, 1, inv_freq.data(), half, c.data(), s.data());
  auto x = random_normal_vector(static_cast<std::size_t>(n_heads) * head_dim, 7);
  auto y = x;
  tq::ops::rope(y.data(), n_heads, head_dim, rope_dim, c.data(), s.data(), ordering);
  for (int h = 0; h < n_heads; ++h) {
    std::vector<float> head(x.begin() + h * head_dim, x.begin() + (h + 1) * head_dim);
    const auto expect = naive_rope(head, rope_dim, base, static_cast<double>(pos),
                                   ordering == tq::RopeOrdering::kNeox);
    for (int j = 0; j < head_dim; ++j) {
      EXPECT_NEAR(y[h * head_dim + j], expect[j], 2e-5f) << "head " << h << " coord " << j;
    }
  }
}

TEST(Ops, RopeNormalMatchesNaive) {
  check_rope(tq::RopeOrdering::kNormal, 64, 64, 0);
  check_rope(tq::RopeOrdering::kNormal, 64, 64, 37);
  check_rope(tq::RopeOrdering::kNormal, 64, 32, 4095);  // partial rotary: tail untouched
}

TEST(Ops, RopeNeoxMatchesNaive) {
  check_rope(tq::RopeOrdering::kNeox, 64, 64, 5);
  check_rope(tq::RopeOrdering::kNeox, 128, 128, 8191);
  check_rope(tq::RopeOrdering::kNeox, 64, 32, 123);
}

TEST(Ops, RopeOrderingsDiffer) {
  // Negative control: the two pairings must not agree (a test that cannot tell them apart
  // would pass a model run with the wrong one).
  const int d = 64, half = 32;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(10000.0, -2.0 * i / d);
  std::vector<float> c(half), s(half);
  tq::ops::rope_angles(9, 1, inv_freq.data(), half, c.data(), s.data());
  auto a = random_normal_vector(d, 3), b = a;
  tq::ops::rope(a.data(), 1, d, d, c.data(), s.data(), tq::RopeOrdering::kNormal);
  tq::ops::rope(b.data(), 1, d, d, c.data(), s.data(), tq::RopeOrdering::kNeox);
  double diff = 0;
  for (int j = 0; j < d; ++j) diff = std::max(diff, static_cast<double>(std::abs(a[j] - b[j])));
  EXPECT_GT(diff, 0.1);
}

TEST(Ops, RopePreservesNormAndRelativePosition) {
  // ⟨R(p)q, R(p')k⟩ depends on p − p' only.
  const int d = 64, half = 32;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(10000.0, -2.0 * i / d);
  auto dot_at = [&](std::size_t pq, std::size_t pk) {
    auto q = random_normal_vector(d, 11), k = random_normal_vector(d, 12);
    std::vector<float> c(half), s(half);
    tq::ops::rope_angles(pq, 1, inv_freq.data(), half, c.data(), s.data());
    tq::ops::rope(q.data(), 1, d, d, c.data(), s.data(), tq::RopeOrdering::kNormal);
    tq::ops::rope_angles(pk, 1, inv_freq.data(), half, c.data(), s.data());
    tq::ops::rope(k.data(), 1, d, d, c.data(), s.data(), tq::RopeOrdering::kNormal);
    double dot = 0;
    for (int j = 0; j < d; ++j) dot += static_cast<double>(q[j]) * k[j];
    return dot;
  };
  EXPECT_NEAR(dot_at(10, 3), dot_at(107, 100), 1e-3);
}

TEST(Ops, RmsNormMatchesFormula) {
  const int n = 96;
  auto x = random_normal_vector(2 * n, 5), w = random_normal_vector(n, 6);
  std::vector<float> y(2 * n);
  tq::ops::rms_norm(x.data(), w.data(), y.data(), 2, n, 1e-5f);
  for (int r = 0; r < 2; ++r) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
    const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y[r * n + i], x[r * n + i] * inv * w[i], 1e-5);
  }
}

TEST(Ops, SoftmaxSumsToOneAndIsShiftInvariant) {
  std::vector<float> a = {1.0f, 2.0f, 3.0f, -50.0f}, b = {1001.0f, 1002.0f, 1003.0f, 950.0f};
  tq::ops::softmax(a.data(), 4);
  tq::ops::softmax(b.data(), 4);
  double sum = 0;
  for (int i = 0; i < 4; ++i) {
    sum += a[i];
    EXPECT_NEAR(a[i], b[i], 1e-6);
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
  const double e = std::exp(1.0), z = e + e * e + e * e * e + std::exp(-50.0);
  EXPECT_NEAR(a[2], e * e * e / z, 1e-6);
}

TEST(Ops, SwigluMatchesFormula) {
  std::vector<float> g = {-3.0f, 0.0f, 0.5f, 4.0f}, u = {2.0f, 1.0f, -1.0f, 0.25f}, out(4);
  tq::ops::swiglu(g.data(), u.data(), out.data(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], g[i] / (1.0 + std::exp(-g[i])) * u[i], 1e-6);
}

// GeGLU with GELU's tanh form (Gemma): against the formula in double, and within 1e-3 of the
// exact erf GELU it approximates (a sigmoid or a plain erf here would miss one of the two).
TEST(Ops, GegluTanhMatchesFormula) {
  std::vector<float> g = {-4.0f, -1.0f, 0.0f, 0.3f, 2.0f, 6.0f},
                     u = {1.5f, -2.0f, 3.0f, 1.0f, 0.5f, -1.0f};
  std::vector<float> out(g.size());
  tq::ops::geglu_tanh(g.data(), u.data(), out.data(), static_cast<int>(g.size()));
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double x = g[i];
    const double tanh_form =
        0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
    EXPECT_NEAR(out[i], tanh_form, 1e-5) << "g = " << x;
    const double erf_form = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))) * u[i];
    EXPECT_NEAR(out[i], erf_form, 1e-3 * std::max(1.0, std::abs(erf_form))) << "g = " << x;
    EXPECT_GT(std::abs(out[i] - x / (1.0 + std::exp(-x)) * u[i]) + (x == 0.0 ? 1.0 : 0.0), 1e-3)
        << "g = " << x << ": looks like SiLU";
  }
}

TEST(Ops, MatmulMatchesNaive) {
  for (const int rows : {1, 5}) {
    for (const int threads : {1, 2}) {
      for (const bool with_bias : {false, true}) {
        for (const bool acc : {false, true}) {
          const int inner = 96, cols = 200, ldx = inner + 8, ldy = cols + 3;
          auto x = random_normal_vector(static_cast<std::size_t>(rows) * ldx, 1);
          auto w = random_normal_vector(static_cast<std::size_t>(cols) * inner, 2);
          auto bias = random_normal_vector(cols, 3);
          auto y = random_normal_vector(static_cast<std::size_t>(rows) * ldy, 4);
          const auto y0 = y;
          tq::ops::matmul(x.data(), rows, inner, ldx, w.data(), cols,
                          with_bias ? bias.data() : nullptr, y.data(), ldy, threads, acc);
          for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < cols; ++c) {
              double e = acc ? y0[r * ldy + c] : 0.0;
              if (with_bias) e += bias[c];
              for (int k = 0; k < inner; ++k) e += double(x[r * ldx + k]) * w[c * inner + k];
              ASSERT_NEAR(y[r * ldy + c], e, 1e-3)
                  << rows << " " << threads << " " << r << "," << c;
            }
            // Padding between rows is left alone.
            for (int c = cols; c < ldy && r + 1 < rows; ++c)
              ASSERT_EQ(y[r * ldy + c], y0[r * ldy + c]);
          }
        }
      }
    }
  }
}

}  // namespace
