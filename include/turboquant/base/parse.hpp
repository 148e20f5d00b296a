// Range-checked parsing of whole decimal integers, shared by the KV-scheme strings and the `tq`
// options: a value outside [min, max] is an error, never a wrap-around or a negative number read
// as a huge unsigned one. Messages name the text and the accepted range (and what is parsed).
#pragma once

#include <charconv>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace tq {

// "<text> is not an integer; expected <min>..<max>" or "<text> is out of range; expected ...".
std::string bad_integer_message(std::string_view text, bool is_integer, std::string_view min,
                                std::string_view max);

// Why `text` is not a T in [min, max] (the whole text must be the number, a leading '+' is
// accepted), or an empty string when it is one, which is then stored in *value.
template <typename T>
std::string integer_problem(std::string_view text, T min, T max, T* value) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  std::string_view digits = text;
  if (digits.size() > 1 && digits[0] == '+' && digits[1] >= '0' && digits[1] <= '9') {
    digits.remove_prefix(1);  // a '+' only before a digit: "+-5" is not a number
  }
  // Read as the widest type of the same signedness, so that a too large value and "-1" for an
  // unsigned T are reported as out of range rather than as not a number.
  using Wide = std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>;
  Wide wide = 0;
  const char* end = digits.data() + digits.size();
  const auto [ptr, ec] = std::from_chars(digits.data(), end, wide);
  const bool negative_for_unsigned = std::is_unsigned_v<T> && digits.size() > 1 &&
                                     digits[0] == '-' && digits[1] >= '0' && digits[1] <= '9';
  const bool is_integer =
      negative_for_unsigned || (!digits.empty() && ptr == end && ec != std::errc::invalid_argument);
  if (!is_integer || negative_for_unsigned || ec == std::errc::result_out_of_range ||
      wide < static_cast<Wide>(min) || wide > static_cast<Wide>(max)) {
    return bad_integer_message(text, is_integer, std::to_string(min), std::to_string(max));
  }
  *value = static_cast<T>(wide);
  return {};
}

// The text as a T in [min, max]; throws std::invalid_argument "<what>: <problem>" otherwise.
template <typename T>
T parse_integer(std::string_view text, std::string_view what, T min = std::numeric_limits<T>::min(),
                T max = std::numeric_limits<T>::max()) {
  T value{};
  const std::string problem = integer_problem<T>(text, min, max, &value);
  if (!problem.empty()) throw std::invalid_argument(std::string(what) + ": " + problem);
  return value;
}

}  // namespace tq
