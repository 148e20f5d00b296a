// Compile-time dispatch over the gemv kernels' token counts: each kernel is a template on its
// number of activation rows R = 1..kGemvMaxRows (gpu_gemv.cu, gpu_gemv_q4_0.cu). Private to
// tq_model; host code.
#pragma once

#include "gpu_weights.cuh"

#include <type_traits>
#include <utility>

namespace tq::gpu::detail {

// f(std::integral_constant<int, R>{}) for every R = 1..kGemvMaxRows.
template <class F>
void for_each_gemv_rows(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I + 1>{}), ...);
  }
  (std::make_integer_sequence<int, kGemvMaxRows>{});
}

// f(std::integral_constant<int, rows>{}) for rows in 1..kGemvMaxRows (the caller checks the range).
template <class F>
void with_gemv_rows(int rows, F&& f) {
  for_each_gemv_rows([&](auto r) {
    if (decltype(r)::value == rows) f(r);
  });
}

}  // namespace tq::gpu::detail
