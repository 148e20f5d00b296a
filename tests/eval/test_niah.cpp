// Tests for the needle-in-a-haystack building blocks: strict digit-run scoring (near-misses are
// rejected), seeded needles, sentence boundaries, haystack normalisation, and the prompt builder
// (budget filled exactly with a word counter, never exceeded with other counters, needles at the
// requested depth by word and character fraction, multi-needle spacing, short haystacks cycled).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>
#include <string>

#include "turboquant/eval/niah.hpp"

namespace tq::eval {
namespace {

std::size_t count_words(std::string_view s) {
  std::size_t n = 0;
  bool in_word = false;
  for (char c : s) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

const TokenCounter kWordCounter = [](const std::string& s) { return count_words(s); };

const char* kPrideAndPrejudice = "/work/shared/data/haystack/pride-and-prejudice-pg1342.txt";

Haystack test_haystack() {
  if (std::filesystem::exists(kPrideAndPrejudice)) return Haystack::from_file(kPrideAndPrejudice);
  return Haystack::filler(3);
}

TEST(EvalNiah, DigitRuns) {
  const auto runs = digit_runs("a1b22 333,4444.x55555");
  ASSERT_EQ(runs.size(), 5u);
  EXPECT_EQ(runs[0], "1");
  EXPECT_EQ(runs[1], "22");
  EXPECT_EQ(runs[2], "333");
  EXPECT_EQ(runs[3], "4444");
  EXPECT_EQ(runs[4], "55555");
  EXPECT_TRUE(digit_runs("no digits here").empty());
}

TEST(EvalNiah, ScoringAcceptsExactValueAndRejectsNearMisses) {
  EXPECT_TRUE(answer_contains_number("The pass key is 48213.", "48213"));
  EXPECT_TRUE(answer_contains_number("48213", "48213"));
  EXPECT_TRUE(answer_contains_number("Sure! I remember: 17, then 48213 and 99.", "48213"));
  EXPECT_TRUE(answer_contains_number("key=48213;", "48213"));
  EXPECT_FALSE(answer_contains_number("The pass key is 4821.", "48213"));
  EXPECT_FALSE(answer_contains_number("The pass key is 482130.", "48213"));
  EXPECT_FALSE(answer_contains_number("The pass key is 148213.", "48213"));
  EXPECT_FALSE(answer_contains_number("The pass key is 48 213.", "48213"));
  EXPECT_FALSE(answer_contains_number("The pass key is 48,213.", "48213"));
  EXPECT_TRUE(answer_contains_number("The pass key is 48213.5", "48213"));  // runs 48213, 5
  EXPECT_FALSE(answer_contains_number("", "48213"));
  EXPECT_FALSE(answer_contains_number("forty-eight thousand two hundred thirteen", "48213"));
  EXPECT_THROW(answer_contains_number("48213", "48a13"), std::invalid_argument);
  EXPECT_THROW(answer_contains_number("48213", ""), std::invalid_argument);
}

TEST(EvalNiah, MultiNeedleNeedsAllValues) {
  std::vector<Needle> needles(3);
  needles[0].value = "1234567";
  needles[1].value = "7654321";
  needles[2].value = "1111111";
  auto s = score_niah_answer("1234567, 7654321 and 1111111", needles);
  EXPECT_TRUE(s.correct);
  EXPECT_EQ(s.retrieved, 3u);
  s = score_niah_answer("1234567, 7654321 and 111111", needles);
  EXPECT_FALSE(s.correct);
  EXPECT_EQ(s.retrieved, 2u);
  EXPECT_EQ(s.found, (std::vector<bool>{true, true, false}));
  EXPECT_THROW(score_niah_answer("x", std::vector<Needle>{}), std::invalid_argument);
}

TEST(EvalNiah, NeedlesAreSeededAndDistinct) {
  NiahOptions o;
  o.n_needles = 8;
  o.depth = 0.2;
  o.seed = 11;
  const auto a = make_needles(o);
  const auto b = make_needles(o);
  o.seed = 12;
  const auto c = make_needles(o);
  ASSERT_EQ(a.size(), 8u);
  std::set<std::string> keys, values;
  for (std::size_t j = 0; j < a.size(); ++j) {
    EXPECT_EQ(a[j].value, b[j].value);
    EXPECT_EQ(a[j].key, b[j].key);
    EXPECT_EQ(a[j].value.size(), 7u);
    EXPECT_NE(a[j].sentence.find(a[j].key + " is " + a[j].value + "."), std::string::npos);
    EXPECT_NEAR(a[j].target_depth, 0.2 + 0.8 * static_cast<double>(j) / 8.0, 1e-12);
    keys.insert(a[j].key);
    values.insert(a[j].value);
  }
  EXPECT_EQ(keys.size(), 8u);
  EXPECT_EQ(values.size(), 8u);
  EXPECT_NE(a[0].value, c[0].value);

  NiahOptions p;
  p.kind = NeedleKind::kPasskey;
  const auto pk = make_needles(p);
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].value.size(), 5u);
  EXPECT_EQ(pk[0].sentence, "The pass key is " + pk[0].value + ". Remember it.");
  p.n_needles = 2;
  EXPECT_THROW(make_needles(p), std::invalid_argument);
  o.n_needles = 0;
  EXPECT_THROW(make_needles(o), std::invalid_argument);
  o.n_needles = 41;
  EXPECT_THROW(make_needles(o), std::invalid_argument);
  o.n_needles = 1;
  o.depth = 1.5;
  EXPECT_THROW(make_needles(o), std::invalid_argument);
}

TEST(EvalNiah, SentenceBoundaries) {
  const std::string text =
      "Mr. Bennet said hi. \"Go!\" he said. J. Smith left? Yes\n\nChapter 2\n\nEnd";
  const auto b = sentence_boundaries(text);
  std::vector<std::string> before;
  for (std::size_t p : b) before.push_back(text.substr(0, p));
  const std::vector<std::string> expected = {
      "",
      "Mr. Bennet said hi.",
      "Mr. Bennet said hi. \"Go!\"",
      "Mr. Bennet said hi. \"Go!\" he said.",
      "Mr. Bennet said hi. \"Go!\" he said. J. Smith left?",
      "Mr. Bennet said hi. \"Go!\" he said. J. Smith left? Yes",
      "Mr. Bennet said hi. \"Go!\" he said. J. Smith left? Yes\n\nChapter 2",
      text};
  EXPECT_EQ(before, expected);
}

TEST(EvalNiah, HaystackNormalisation) {
  const std::string raw =
      "Header text 12345\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n\r\nTitle\r\n\r\n"
      "A line that\r\nwraps here.\r\n\r\n\r\nNext para.\r\n*** END OF THE PROJECT GUTENBERG "
      "EBOOK X ***\r\nLicence 999";
  const auto h = Haystack::from_text(raw);
  EXPECT_EQ(h.text(), "Title\n\nA line that wraps here.\n\nNext para.");
  EXPECT_EQ(h.word_count(), 8u);
  EXPECT_EQ(h.take_words(3), "Title\n\nA line");
  EXPECT_EQ(h.take_words(10), h.text() + "\n\nTitle\n\nA");
  EXPECT_EQ(h.take_words(0), "");
  EXPECT_THROW(Haystack::from_text(" \n\n "), std::invalid_argument);
  EXPECT_THROW(Haystack::from_file("/no/such/haystack.txt"), std::runtime_error);
}

TEST(EvalNiah, FillerIsSeededVariedAndDigitFree) {
  const auto a = Haystack::filler(1, 20000);
  const auto b = Haystack::filler(1, 20000);
  const auto c = Haystack::filler(2, 20000);
  EXPECT_EQ(a.text(), b.text());
  EXPECT_NE(a.text(), c.text());
  EXPECT_GE(a.text().size(), 20000u);
  EXPECT_TRUE(digit_runs(a.text()).empty());
  // Varied: many distinct sentences.
  std::set<std::string> sentences;
  const auto bounds = sentence_boundaries(a.text());
  for (std::size_t i = 1; i < bounds.size(); ++i) {
    sentences.insert(a.text().substr(bounds[i - 1], bounds[i] - bounds[i - 1]));
  }
  EXPECT_GT(sentences.size(), 150u);
}

TEST(EvalNiah, PromptFillsBudgetAndPlacesNeedleAtDepth) {
  const Haystack hay = test_haystack();
  for (std::size_t budget : {500u, 4000u}) {
    for (double depth : {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0}) {
      NiahOptions o;
      o.token_budget = budget;
      o.depth = depth;
      o.seed = 5;
      const NiahPrompt p = build_niah_prompt(hay, o, kWordCounter);
      SCOPED_TRACE("budget " + std::to_string(budget) + " depth " + std::to_string(depth));
      // With a word counter every word is one token, so the budget is met exactly.
      EXPECT_EQ(p.n_tokens, budget);
      EXPECT_EQ(count_words(p.text), budget);
      ASSERT_EQ(p.needles.size(), 1u);
      const Needle& n = p.needles[0];
      ASSERT_EQ(p.text.substr(n.offset, n.sentence.size()), n.sentence);
      EXPECT_EQ(p.text.find(n.value), p.text.rfind(n.value));  // inserted once
      EXPECT_TRUE(p.text.ends_with("\n\n" + p.question));
      // Depth by tokens (words) of the haystack before the needle; sentences in the text are at
      // most a few dozen words, so the nearest boundary is within that of the target.
      const std::size_t context_end = p.text.size() - p.question.size() - 2;
      const double word_depth = static_cast<double>(count_words(p.text.substr(0, n.offset))) /
                                static_cast<double>(p.haystack_tokens);
      const double tolerance = budget == 500 ? 0.1 : 0.02;
      EXPECT_NEAR(word_depth, depth, tolerance);
      EXPECT_NEAR(n.depth, depth, tolerance);
      EXPECT_NEAR(n.depth, word_depth, 1e-12);
      const double char_depth =
          static_cast<double>(n.offset) / static_cast<double>(context_end - n.sentence.size());
      EXPECT_NEAR(char_depth, depth, tolerance + 0.01);
      // The needle starts a sentence: preceded by the start, a newline or ". " / "? " etc.
      // At the end of the haystack it is its own paragraph instead.
      if (n.offset > 0 && p.text[n.offset - 1] == '\n') {
        EXPECT_EQ(p.text.substr(n.offset - 2, 2), "\n\n");
        EXPECT_GT(depth, 0.95);
      } else if (n.offset > 0) {
        EXPECT_EQ(p.text[n.offset - 1], ' ');
        const char before = p.text[n.offset - 2];
        EXPECT_TRUE(std::string(".!?\"'_\n").find(before) != std::string::npos ||
                    static_cast<unsigned char>(before) >= 0x80)
            << "char before needle: '" << before << "'";
      }
      // The answer prefix names the key.
      EXPECT_NE(p.answer_prefix.find(n.key), std::string::npos);
    }
  }
}

TEST(EvalNiah, MultiNeedleSpreadFromDepthToEnd) {
  const Haystack hay = test_haystack();
  NiahOptions o;
  o.token_budget = 8000;
  o.depth = 0.2;
  o.n_needles = 4;
  o.seed = 9;
  const NiahPrompt p = build_niah_prompt(hay, o, kWordCounter);
  EXPECT_EQ(p.n_tokens, 8000u);
  ASSERT_EQ(p.needles.size(), 4u);
  for (std::size_t j = 0; j < 4; ++j) {
    const Needle& n = p.needles[j];
    EXPECT_NEAR(n.depth, 0.2 + 0.2 * static_cast<double>(j), 0.02) << j;
    EXPECT_EQ(p.text.substr(n.offset, n.sentence.size()), n.sentence);
    EXPECT_NE(p.question.find(n.key), std::string::npos);
    if (j > 0) {
      EXPECT_GT(n.offset, p.needles[j - 1].offset);
    }
  }
  // A perfect answer scores; one missing value does not.
  std::string answer;
  for (const Needle& n : p.needles) answer += n.value + ", ";
  EXPECT_TRUE(score_niah_answer(answer, p.needles).correct);
  EXPECT_FALSE(score_niah_answer(answer.substr(0, answer.size() - 6), p.needles).correct);
}

TEST(EvalNiah, RespectsBudgetWithOtherCounters) {
  const Haystack hay = test_haystack();
  // A sub-word counter: roughly 4 characters per token, plus one per word boundary.
  const TokenCounter chars = [](const std::string& s) { return s.size() / 4 + count_words(s) / 3; };
  std::size_t calls = 0;
  const TokenCounter counted = [&](const std::string& s) {
    ++calls;
    return chars(s);
  };
  for (std::size_t budget : {300u, 2048u, 32768u}) {
    calls = 0;
    NiahOptions o;
    o.token_budget = budget;
    o.depth = 0.4;
    o.n_needles = 2;
    const NiahPrompt p = build_niah_prompt(hay, o, counted);
    EXPECT_LE(p.n_tokens, budget);
    EXPECT_EQ(p.n_tokens, chars(p.text));
    EXPECT_GE(p.n_tokens + 4, budget);  // one more word would not fit
    EXPECT_LT(calls, 80u) << budget;
  }
}

TEST(EvalNiah, PasskeyPromptAndShortHaystackCycles) {
  const Haystack tiny = Haystack::from_text("The grass is green. The sky is blue.");
  NiahOptions o;
  o.kind = NeedleKind::kPasskey;
  o.token_budget = 200;
  o.depth = 0.5;
  const NiahPrompt p = build_niah_prompt(tiny, o, kWordCounter);
  EXPECT_EQ(p.n_tokens, 200u);
  EXPECT_TRUE(p.text.starts_with("There is an important piece of information hidden"));
  EXPECT_EQ(p.question, "What is the pass key?");
  EXPECT_EQ(p.answer_prefix, "The pass key is");
  EXPECT_GT(p.haystack_words, 2 * tiny.word_count());  // cycled
  EXPECT_NEAR(p.needles[0].depth, 0.5, 0.05);
}

TEST(EvalNiah, RejectsImpossibleBudget) {
  const Haystack hay = Haystack::filler(1, 5000);
  NiahOptions o;
  o.token_budget = 10;  // the question alone is longer
  EXPECT_THROW(build_niah_prompt(hay, o, kWordCounter), std::invalid_argument);
  o.token_budget = 100;
  EXPECT_THROW(build_niah_prompt(hay, o, TokenCounter{}), std::invalid_argument);
}

}  // namespace
}  // namespace tq::eval
