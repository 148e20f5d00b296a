// Double-accumulated dot product of float rows, shared by the index layer's exact paths
// (normalization, centring, re-ranking, centroid norms).
#pragma once

namespace tq::index {

inline double dot(const float* a, const float* b, int d) {
  double s = 0.0;
  for (int i = 0; i < d; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace tq::index
