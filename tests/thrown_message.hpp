// The message of the std::invalid_argument a call throws, for tests that check what an error
// names; "(nothing thrown)" when it returns.
#pragma once

#include <stdexcept>
#include <string>

namespace tq::tests {

template <class F>
std::string thrown_message(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

}  // namespace tq::tests
