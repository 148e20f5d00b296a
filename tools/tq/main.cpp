// Entry point of the `tq` CLI: builds the CLI11 app from the registered subcommands and turns
// library exceptions into a clear one-line error and a non-zero exit code.
#include "command_registry.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>

int main(int argc, char** argv) {
  // OpenMP threads that spin at barriers are ruinous on a shared or oversubscribed machine (a
  // measured 12x slower decode); sleeping waiters cost little when the machine is idle. The user's
  // own setting wins.
  setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0);
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
