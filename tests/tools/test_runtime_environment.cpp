// The start-up environment fix-ups of `tq` (OpenMP wait policy, OpenBLAS kernel family).
#include "runtime_environment.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace tq {
namespace {

// Sets or clears one variable for the scope of a test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_.c_str(), old_->c_str(), 1);
    else
      unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

bool has(const std::vector<std::pair<std::string, std::string>>& env, const std::string& name,
         const std::string& value) {
  for (const auto& [n, v] : env)
    if (n == name && v == value) return true;
  return false;
}

bool names(const std::vector<std::pair<std::string, std::string>>& env, const std::string& name) {
  for (const auto& [n, v] : env)
    if (n == name) return true;
  return false;
}

TEST(RuntimeEnvironment, AsksForPassiveOpenMpWaitersUnlessTheUserChose) {
  {
    ScopedEnv unset("OMP_WAIT_POLICY", nullptr);
    EXPECT_TRUE(has(missing_runtime_environment(), "OMP_WAIT_POLICY", "passive"));
  }
  {
    ScopedEnv active("OMP_WAIT_POLICY", "active");
    EXPECT_FALSE(names(missing_runtime_environment(), "OMP_WAIT_POLICY"));
  }
}

TEST(RuntimeEnvironment, BlasOverrideOnlyWhenOpenBlasPickedPreAvx2KernelsOnAnAvx2Cpu) {
  const std::string core = blas_core_name();
  EXPECT_FALSE(core.empty()) << "OpenBLAS reports no kernel family";
  {
    ScopedEnv user("OPENBLAS_CORETYPE", "Haswell");
    EXPECT_EQ(blas_core_override(), "") << "the user's choice wins";
    EXPECT_FALSE(names(missing_runtime_environment(), "OPENBLAS_CORETYPE"));
  }
  ScopedEnv unset("OPENBLAS_CORETYPE", nullptr);
  const std::string override_core = blas_core_override();
  std::printf("OpenBLAS kernel family: %s, override: '%s'\n", core.c_str(), override_core.c_str());
  if (!override_core.empty()) {
    // Only forced where the CPU really has the instructions the forced family uses.
    __builtin_cpu_init();
    EXPECT_TRUE(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
    if (override_core == "SkylakeX") EXPECT_TRUE(__builtin_cpu_supports("avx512f"));
    EXPECT_TRUE(has(missing_runtime_environment(), "OPENBLAS_CORETYPE", override_core));
  }
  if (core == "Haswell" || core == "SkylakeX" || core == "Zen" || core == "CooperLake" ||
      core == "SapphireRapids") {
    EXPECT_EQ(override_core, "") << "a modern family must be left alone";
  }
}

}  // namespace
}  // namespace tq
