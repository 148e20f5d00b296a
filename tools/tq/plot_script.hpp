// The `--plot` option of `tq niah`, `tq bench` and `tq sensitivity`: the commands write their JSON
// record, then scripts/plot.py (matplotlib) draws the figure from it in a child process. The
// script is $TQ_PLOT_SCRIPT when set, else the copy in the source tree this binary was built from
// (compiled in as TQ_PLOT_SCRIPT_PATH); the interpreter is $TQ_PYTHON when set, else python3 on
// PATH.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace tq::cli {

// Checks that the interpreter, the script and matplotlib are there, so that a long run does not
// end without its figure. Throws std::runtime_error naming what to install or set otherwise.
void check_plot_script();

// Runs `python3 plot.py JSON ARGS...`; throws std::runtime_error when the script fails (its own
// message is on stderr).
void run_plot_script(const std::filesystem::path& json, const std::vector<std::string>& args = {});

}  // namespace tq::cli
