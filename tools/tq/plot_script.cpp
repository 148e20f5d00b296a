// Locates scripts/plot.py and its interpreter and runs it as a child process (posix_spawnp, no
// shell, so paths with spaces or quotes need no escaping).
#include "plot_script.hpp"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace tq::cli {
namespace {

// plot.py's exit status when matplotlib cannot be imported (see scripts/plot.py).
constexpr int kMissingDependencyStatus = 3;

const char* kInstallHint =
    "install Python 3 and matplotlib (`python3 -m pip install matplotlib`, or run "
    "scripts/setup.sh), or point TQ_PYTHON at an interpreter that has it";

std::string python_interpreter() {
  const char* env = std::getenv("TQ_PYTHON");
  return env != nullptr && *env != '\0' ? env : "python3";
}

std::filesystem::path plot_script_path() {
  const char* env = std::getenv("TQ_PLOT_SCRIPT");
  if (env != nullptr && *env != '\0') return env;
#ifdef TQ_PLOT_SCRIPT_PATH
  return TQ_PLOT_SCRIPT_PATH;
#else
  return "scripts/plot.py";
#endif
}

std::filesystem::path existing_plot_script() {
  const std::filesystem::path script = plot_script_path();
  if (!std::filesystem::is_regular_file(script)) {
    throw std::runtime_error("--plot: the plotting script '" + script.string() +
                             "' does not exist; set TQ_PLOT_SCRIPT to the path of "
                             "scripts/plot.py in the turboquant source tree");
  }
  return script;
}

// Exit status of argv[0] run with argv; throws when it cannot be started.
int run_process(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (err == ENOENT) {
    throw std::runtime_error("--plot: the Python interpreter '" + argv[0] +
                             "' was not found on PATH; " + kInstallHint);
  }
  if (err != 0) {
    throw std::runtime_error("--plot: cannot start '" + argv[0] + "': " + std::strerror(err));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      throw std::runtime_error(std::string("--plot: waiting for plot.py failed: ") +
                               std::strerror(errno));
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

void check_plot_script() {
  const std::string python = python_interpreter();
  const int status = run_process({python, existing_plot_script().string(), "--check"});
  if (status == kMissingDependencyStatus) {
    throw std::runtime_error("--plot: matplotlib is missing for '" + python + "'; " + kInstallHint);
  }
  if (status != 0) {
    throw std::runtime_error("--plot: '" + python + " " + plot_script_path().string() +
                             " --check' exited with status " + std::to_string(status) +
                             " (its message is above)");
  }
}

void run_plot_script(const std::filesystem::path& json, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {python_interpreter(), existing_plot_script().string(),
                                   json.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const int status = run_process(argv);
  if (status != 0) {
    throw std::runtime_error("--plot: scripts/plot.py could not draw the figure from '" +
                             json.string() + "' (exit status " + std::to_string(status) +
                             "; its message is above)");
  }
}

}  // namespace tq::cli
