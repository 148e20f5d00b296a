// Where a model runs: the CPU runner or the CUDA backend (docs/DESIGN.md §4). Parsed from the
// CLI's --device and the Python package's device strings.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace tq {

enum class Device { Cpu, Cuda };

inline const char* device_name(Device device) {
  return device == Device::Cuda ? "cuda" : "cpu";
}

// "cpu" or "cuda"; anything else throws std::invalid_argument naming the text.
inline Device parse_device(std::string_view text) {
  if (text == "cpu") return Device::Cpu;
  if (text == "cuda") return Device::Cuda;
  throw std::invalid_argument("device '" + std::string(text) + "' is not one of cpu, cuda");
}

}  // namespace tq
