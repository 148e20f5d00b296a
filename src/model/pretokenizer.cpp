// Pre-tokenizer rules (see pretokenizer.hpp) and tq::pre_tokenizer_from_name.
#include "pretokenizer.hpp"

#include "model/unicode_tables.hpp"
#include "model/utf8.hpp"

#include <algorithm>
#include <span>

namespace tq {

PreTokenizerKind pre_tokenizer_from_name(std::string_view name) {
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3" || name == "falcon3" ||
      name == "dbrx" || name == "smaug-bpe" || name == "pixtral") {
    return PreTokenizerKind::kLlama3;
  }
  if (name == "qwen2" || name == "deepseek-r1-qwen" || name == "megrez") {
    return PreTokenizerKind::kQwen2;
  }
  if (name == "smollm" || name == "starcoder" || name == "refact" || name == "command-r" ||
      name == "codeshell" || name == "exaone" || name == "minerva-7b") {
    return PreTokenizerKind::kSmolLM;
  }
  return PreTokenizerKind::kGpt2;
}

namespace pretokenizer {
namespace {

bool in_ranges(std::uint32_t cp, std::span<const unicode::CodepointRange> ranges) {
  auto it = std::upper_bound(
      ranges.begin(), ranges.end(), cp,
      [](std::uint32_t c, const unicode::CodepointRange& r) { return c < r.first; });
  if (it == ranges.begin()) return false;
  --it;
  return cp <= it->last;
}

bool is_letter(std::uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(cp, unicode::kLetterRanges);
}

bool is_number(std::uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(cp, unicode::kNumberRanges);
}

// The Unicode White_Space property, which is what \s means in the tokenizers' regexes.
bool is_space(std::uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
  return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool is_newline(std::uint32_t cp) {
  return cp == '\r' || cp == '\n';
}

// The matchers return the end (exclusive, in code points) of the word starting at `i` within
// [.., end); the rules are tried in the order the original regex alternation lists them.
class WordSplitter {
 public:
  WordSplitter(const std::vector<Codepoint>& cps, std::size_t end) : cps_(cps), end_(end) {}

  std::uint32_t at(std::size_t i) const { return i < end_ ? cps_[i].cp : kInvalidCodepoint - 1; }
  bool valid(std::size_t i) const { return i < end_; }
  bool letter(std::size_t i) const { return valid(i) && is_letter(at(i)); }
  bool number(std::size_t i) const { return valid(i) && is_number(at(i)); }
  bool space(std::size_t i) const { return valid(i) && is_space(at(i)); }
  // [^\s\p{L}\p{N}]
  bool other(std::size_t i) const { return valid(i) && !space(i) && !letter(i) && !number(i); }

  // 's|'t|'re|'ve|'m|'ll|'d (ASCII case-insensitive when `any_case`): length or 0.
  std::size_t contraction(std::size_t i, bool any_case) const {
    if (at(i) != '\'' || !valid(i + 1)) return 0;
    auto lower = [&](std::size_t k) -> std::uint32_t {
      const std::uint32_t c = at(k);
      return any_case && c >= 'A' && c <= 'Z' ? c + 32 : c;
    };
    const std::uint32_t c1 = lower(i + 1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (valid(i + 2)) {
      const std::uint32_t c2 = lower(i + 2);
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        return 3;
      }
    }
    return 0;
  }

  // The GPT-2 rules.
  std::size_t gpt2(std::size_t i) const {
    if (std::size_t n = contraction(i, false)) return i + n;
    const std::size_t j = at(i) == ' ' ? i + 1 : i;  // optional leading space
    if (letter(j)) return run(j, &WordSplitter::letter);
    if (number(j)) return run(j, &WordSplitter::number);
    if (other(j)) return run(j, &WordSplitter::other);
    return whitespace(i);
  }

  // The Llama 3 / Qwen2 rules; max_digits is 3 (Llama 3) or 1 (Qwen2).
  std::size_t llama3(std::size_t i, std::size_t max_digits) const {
    if (std::size_t n = contraction(i, true)) return i + n;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (letter(i)) return run(i, &WordSplitter::letter);
    if (valid(i) && !is_newline(at(i)) && !number(i) && letter(i + 1)) {
      return run(i + 1, &WordSplitter::letter);
    }
    // \p{N}{1,max_digits}
    if (number(i)) {
      std::size_t k = i;
      while (k - i < max_digits && number(k)) ++k;
      return k;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const std::size_t j = at(i) == ' ' ? i + 1 : i;
    if (other(j)) {
      std::size_t k = run(j, &WordSplitter::other);
      while (valid(k) && is_newline(at(k))) ++k;
      return k;
    }
    // \s*[\r\n]+ : the whitespace run up to and including its last newline.
    std::size_t k = i;
    std::size_t last_newline = 0;
    bool has_newline = false;
    while (space(k)) {
      if (is_newline(at(k))) {
        has_newline = true;
        last_newline = k;
      }
      ++k;
    }
    if (has_newline) return last_newline + 1;
    return whitespace(i);
  }

 private:
  std::size_t run(std::size_t i, bool (WordSplitter::*pred)(std::size_t) const) const {
    while ((this->*pred)(i)) ++i;
    return i;
  }

  // \s+(?!\S)|\s+ : a whitespace run, leaving its last character to the next word when a
  // non-space follows (so " word" keeps its space), unless the run is a single character.
  std::size_t whitespace(std::size_t i) const {
    std::size_t k = i;
    while (space(k)) ++k;
    if (k == i) return i + 1;  // not reachable for valid input; never stall
    if (valid(k) && k - i >= 2) return k - 1;
    return k;
  }

  const std::vector<Codepoint>& cps_;
  std::size_t end_;
};

// Splits cps[begin, end) into words and appends them to `words`.
void split_range(const std::vector<Codepoint>& cps, std::size_t begin, std::size_t end,
                 PreTokenizerKind kind, std::vector<Word>& words) {
  WordSplitter splitter(cps, end);
  for (std::size_t i = begin; i < end;) {
    std::size_t e;
    switch (kind) {
      case PreTokenizerKind::kLlama3:
        e = splitter.llama3(i, 3);
        break;
      case PreTokenizerKind::kQwen2:
        e = splitter.llama3(i, 1);
        break;
      default:
        e = splitter.gpt2(i);
        break;
    }
    e = std::clamp(e, i + 1, end);
    words.push_back({i, e});
    i = e;
  }
}

}  // namespace

std::vector<Codepoint> to_codepoints(std::string_view text) {
  std::vector<Codepoint> out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp;
    std::size_t len = utf8::decode(text, i, cp);
    if (len == 0) {
      cp = kInvalidCodepoint;
      len = 1;
    }
    out.push_back({cp, static_cast<std::uint32_t>(i)});
    i += len;
  }
  return out;
}

std::vector<Word> split_words(const std::vector<Codepoint>& cps, PreTokenizerKind kind) {
  std::vector<Word> words;
  if (kind != PreTokenizerKind::kSmolLM) {
    split_range(cps, 0, cps.size(), kind, words);
    return words;
  }
  // SmolLM/StarCoder: \p{N} splits first (each digit is a piece), then GPT-2 rules run on each
  // remaining piece separately, so look-aheads stop at a digit.
  std::size_t start = 0;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    if (is_number(cps[i].cp)) {
      if (start < i) split_range(cps, start, i, PreTokenizerKind::kGpt2, words);
      words.push_back({i, i + 1});
      start = i + 1;
    }
  }
  if (start < cps.size()) split_range(cps, start, cps.size(), PreTokenizerKind::kGpt2, words);
  return words;
}

}  // namespace pretokenizer
}  // namespace tq
