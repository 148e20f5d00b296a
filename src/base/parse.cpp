// The message of a rejected integer (parse.hpp), built out of line so that the templates stay
// small.
#include "turboquant/base/parse.hpp"

namespace tq {

std::string bad_integer_message(std::string_view text, bool is_integer, std::string_view min,
                                std::string_view max) {
  std::string message = text.empty() ? std::string("''") : std::string(text);
  message += is_integer ? " is out of range" : " is not an integer";
  message += "; expected ";
  message += min;
  message += "..";
  message += max;
  return message;
}

}  // namespace tq
