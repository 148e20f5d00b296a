// Self-registration of `tq` subcommands. Each tools/tq/<name>_command.cpp defines a static
// CommandRegistrar that adds its CLI11 subcommand; main.cpp only parses and dispatches. This keeps
// one subcommand per file and lets areas add commands without editing a central list.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace tq::cli {

// A setup function receives the root app, adds its subcommand and installs its callback.
using CommandSetup = std::function<void(CLI::App& root)>;

inline std::vector<CommandSetup>& command_setups() {
  static std::vector<CommandSetup> setups;
  return setups;
}

struct CommandRegistrar {
  explicit CommandRegistrar(CommandSetup setup) { command_setups().push_back(std::move(setup)); }
};

}  // namespace tq::cli
