// Entry point of the `tq` CLI: builds the CLI11 app from the registered subcommands and turns
// library exceptions into a clear one-line error and a non-zero exit code.
#include "command_registry.hpp"
#include "runtime_environment.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>

int main(int argc, char** argv) {
  // libgomp and OpenBLAS read their settings when they are loaded, before main(): a passive
  // OpenMP wait policy (spinning waiters made decode 12x slower on a shared machine) and, where
  // OpenBLAS fell back to SSE3 kernels on an AVX2/AVX-512 CPU, the right kernel family (3x
  // faster prefill on our CI machine) need a re-exec with the environment set. The user's own
  // settings win.
  tq::reexec_with_runtime_environment(argv);
  CLI::App app{"turboquant: KV-cache compression with TurboQuant codecs"};
  app.require_subcommand(1);
  for (auto& setup : tq::cli::command_setups()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
