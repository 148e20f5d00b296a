// Detects OpenBLAS kernel-family mis-detection and missing OpenMP wait policy, and re-executes the
// process with the corrected environment (see runtime_environment.hpp).
#include "runtime_environment.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern "C" char* openblas_get_corename(void);

namespace tq {

namespace {

constexpr const char* kReexecMarker = "TQ_RUNTIME_ENV_APPLIED";

// OpenBLAS kernel families that use no AVX2/FMA: picking one of them on an AVX2 CPU means the
// library did not recognise the CPU model.
bool is_pre_avx2_family(const std::string& name) {
  static const char* const kOld[] = {"prescott",   "core2",       "penryn", "dunnington",
                                     "nehalem",    "sandybridge", "atom",   "katmai",
                                     "coppermine", "northwood",   "banias", "generic"};
  std::string lower;
  for (char c : name) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (const char* old : kOld)
    if (lower == old) return true;
  return false;
}

}  // namespace

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name ? std::string(name) : std::string();
}

std::string blas_core_override() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return {};
  if (!is_pre_avx2_family(blas_core_name())) return {};
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return {};
}

std::vector<std::pair<std::string, std::string>> missing_runtime_environment() {
  std::vector<std::pair<std::string, std::string>> missing;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) missing.emplace_back("OMP_WAIT_POLICY", "passive");
  if (std::string core = blas_core_override(); !core.empty())
    missing.emplace_back("OPENBLAS_CORETYPE", core);
  return missing;
}

void reexec_with_runtime_environment(char** argv) {
  if (std::getenv(kReexecMarker) != nullptr) return;
  const auto missing = missing_runtime_environment();
  if (missing.empty()) return;
  for (const auto& [name, value] : missing) setenv(name.c_str(), value.c_str(), /*overwrite=*/0);
  setenv(kReexecMarker, "1", 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure (no /proc, say): carry on with the runtimes as loaded.
}

}  // namespace tq
