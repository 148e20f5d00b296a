// Tests of the range-checked integer parsing (turboquant/base/parse.hpp): values in range parse
// exactly, everything else is an error naming the thing, the text and the range.
#include "turboquant/base/parse.hpp"

#include "thrown_message.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace {

using tq::tests::thrown_message;

TEST(ParseInteger, AcceptsEveryValueOfTheRangeExactly) {
  EXPECT_EQ(tq::parse_integer<int>("0", "x", 0, 10), 0);
  EXPECT_EQ(tq::parse_integer<int>("10", "x", 0, 10), 10);
  EXPECT_EQ(tq::parse_integer<int>("+7", "x", 0, 10), 7);
  EXPECT_EQ(tq::parse_integer<int>("-3", "x", -5, 10), -3);
  EXPECT_EQ(tq::parse_integer<std::uint64_t>("18446744073709551615", "x"), UINT64_MAX);
  EXPECT_EQ(tq::parse_integer<std::int64_t>("-9223372036854775808", "x"), INT64_MIN);
}

TEST(ParseInteger, OutOfRangeNamesTheValueAndTheRange) {
  EXPECT_EQ(thrown_message([] { tq::parse_integer<int>("11", "window", 0, 10); }),
            "window: 11 is out of range; expected 0..10");
  EXPECT_EQ(thrown_message([] { tq::parse_integer<int>("4294967301", "window", 0, 10); }),
            "window: 4294967301 is out of range; expected 0..10");
  EXPECT_EQ(thrown_message([] { tq::parse_integer<int>("2147483648", "n"); }),
            "n: 2147483648 is out of range; expected -2147483648..2147483647");
  EXPECT_EQ(thrown_message([] { tq::parse_integer<int>("99999999999999999999999", "n", 0, 9); }),
            "n: 99999999999999999999999 is out of range; expected 0..9");
}

TEST(ParseInteger, NegativeForUnsignedIsOutOfRangeNotAHugeNumber) {
  EXPECT_EQ(thrown_message([] { tq::parse_integer<std::size_t>("-1", "-c", 1, 100); }),
            "-c: -1 is out of range; expected 1..100");
  EXPECT_EQ(thrown_message([] { tq::parse_integer<std::uint64_t>("-5", "seed"); }),
            "seed: -5 is out of range; expected 0..18446744073709551615");
}

TEST(ParseInteger, RejectsWhatIsNotAWholeInteger) {
  for (const char* text :
       {"", "abc", "1.5", "12x", " 3", "3 ", "-", "+", "0x10", "--1", "+-5", "++1"}) {
    const std::string message = thrown_message([&] { tq::parse_integer<int>(text, "n", 0, 99); });
    EXPECT_NE(message.find("is not an integer; expected 0..99"), std::string::npos)
        << "'" << text << "': " << message;
  }
}

}  // namespace
