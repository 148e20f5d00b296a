// The byte-level BPE pre-tokenizers on their own (no model needed): the words each one splits a
// text into, hand-checked against the regexes in include/turboquant/model/tokenizer.hpp. The
// token ids these words lead to are checked against Hugging Face `tokenizers` in
// test_tokenizer.cpp (TokenizerSmolLM2.PreTokenizersMatchReference).
#include "model/pretokenizer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace tq {
namespace {

std::vector<std::string> words_of(std::string_view text, PreTokenizerKind kind) {
  const std::vector<pretokenizer::Codepoint> cps = pretokenizer::to_codepoints(text);
  auto byte_at = [&](std::size_t i) { return i < cps.size() ? cps[i].offset : text.size(); };
  std::vector<std::string> words;
  for (const pretokenizer::Word& w : pretokenizer::split_words(cps, kind)) {
    words.emplace_back(text.substr(byte_at(w.begin), byte_at(w.end) - byte_at(w.begin)));
  }
  return words;
}

struct SplitCase {
  PreTokenizerKind kind;
  std::string_view text;
  std::vector<std::string> words;
};

TEST(PreTokenizer, SplitsAsTheRegexes) {
  using enum PreTokenizerKind;
  const SplitCase cases[] = {
      // GPT-2: lower-case contractions only; a space run leaves its last space to the next word.
      {kGpt2,
       "Hello world! It's 12345 o'clock.",
       {"Hello", " world", "!", " It", "'s", " 12345", " o", "'", "clock", "."}},
      {kGpt2, "I'M HERE, YOU'LL", {"I", "'", "M", " HERE", ",", " YOU", "'", "LL"}},
      {kGpt2,
       "  two  spaces\n\n\tand tabs \n",
       {" ", " two", " ", " spaces", "\n\n", "\t", "and", " tabs", " \n"}},
      {kGpt2, "x=1234567;\r\ny", {"x", "=", "1234567", ";", "\r", "\n", "y"}},
      {kGpt2, "naïve café 日本", {"naïve", " café", " 日本"}},
      // SmolLM: every digit is a word of its own, then the GPT-2 rules.
      {kSmolLM,
       "It's 12345 o'clock.",
       {"It", "'s", " ", "1", "2", "3", "4", "5", " o", "'", "clock", "."}},
      // Llama 3: any-case contractions, up to 3 digits, a non-letter prefix joins a letter run,
      // punctuation keeps the newlines after it.
      {kLlama3, "It's 12345 o'clock.", {"It", "'s", " ", "123", "45", " o", "'clock", "."}},
      {kLlama3, "I'M YOU'LL", {"I", "'M", " YOU", "'LL"}},
      {kLlama3, "spaces\n\n\tand", {"spaces", "\n\n", "\tand"}},
      {kLlama3, "x=1234567;\r\ny", {"x", "=", "123", "456", "7", ";\r\n", "y"}},
      // Qwen2: as Llama 3 with single digits.
      {kQwen2, "x=1234567;\r\ny", {"x", "=", "1", "2", "3", "4", "5", "6", "7", ";\r\n", "y"}},
  };
  for (const SplitCase& c : cases) {
    EXPECT_EQ(words_of(c.text, c.kind), c.words)
        << "kind=" << static_cast<int>(c.kind) << " text=" << c.text;
  }
}

TEST(PreTokenizer, InvalidUtf8BytesStayOneCodepointEach) {
  const std::string text = "a\xff\xc3";  // a stray byte and a truncated sequence
  const std::vector<pretokenizer::Codepoint> cps = pretokenizer::to_codepoints(text);
  ASSERT_EQ(cps.size(), 3u);
  EXPECT_EQ(cps[1].cp, pretokenizer::kInvalidCodepoint);
  EXPECT_EQ(cps[2].cp, pretokenizer::kInvalidCodepoint);
  EXPECT_EQ(cps[2].offset, 2u);
  // Every byte ends up in exactly one word.
  std::string joined;
  for (const std::string& w : words_of(text, PreTokenizerKind::kGpt2)) joined += w;
  EXPECT_EQ(joined, text);
}

}  // namespace
}  // namespace tq
