// Run-time CPU feature detection for the SIMD fast paths.
#include "turboquant/base/simd.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tq {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  // F16C is read from CPUID leaf 1 (ECX bit 29) because clang's __builtin_cpu_supports does not
  // accept "f16c".
  static const bool has = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace tq
