// Process-level settings that third-party runtimes (OpenBLAS, libgomp) read only once, when they
// are loaded — before main() runs. A program that wants them changed has to set the environment
// and re-execute itself; `tq` does that at start-up through this header.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace tq {

// The name of the compute kernel family OpenBLAS chose at load time ("Haswell", "SkylakeX",
// "Prescott", ...), or "" when the linked BLAS does not report one.
std::string blas_core_name();

// An OPENBLAS_CORETYPE value to force when OpenBLAS picked a kernel family below what this CPU
// supports — e.g. OpenBLAS 0.3.21 does not know newer Xeon models and falls back to its SSE3
// "Prescott" kernels, which made prefill 3x slower on our CI machine. Empty when no override is
// needed or the user already set OPENBLAS_CORETYPE.
std::string blas_core_override();

// Environment variables (name, value) that should be set before the runtimes load and are not
// set yet: OMP_WAIT_POLICY=passive (spinning OpenMP waiters made decode 12x slower on a shared
// machine) and the OpenBLAS override above. The user's own settings always win.
std::vector<std::pair<std::string, std::string>> missing_runtime_environment();

// If missing_runtime_environment() is not empty: set those variables and re-execute the running
// binary with the same arguments (once; a marker variable stops a loop). Returns only when no
// re-exec was needed or it failed (then the process simply continues with the defaults).
void reexec_with_runtime_environment(char** argv);

}  // namespace tq
