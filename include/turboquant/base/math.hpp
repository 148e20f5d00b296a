// Small numeric helpers shared by the host codecs, the cache and the CUDA kernels (constexpr, so
// device code can use them too).
#pragma once

namespace tq {

// √(π/2): the QJL estimator's scale is √(π/2)/d times the residual norm (docs/DESIGN.md §2).
inline constexpr double kSqrtHalfPi = 1.2533141373155002512;

constexpr bool is_power_of_two(int n) {
  return n > 0 && (n & (n - 1)) == 0;
}

}  // namespace tq
