// Needle-in-a-haystack building blocks for `tq niah` (issue 4), independent of the model: a
// haystack (a text file, normalised, or a seeded built-in filler), seeded needles (magic numbers
// for cities, or a passkey), a prompt builder that fills a token budget using the caller's token
// counter and inserts the needles at sentence boundaries at the requested depth, and strict
// exact-match scoring of a generated answer.
//
// Prompt layout (the text whose tokens are budgeted):
//   [instruction "\n\n"] context "\n\n" question
// where context is a prefix of the haystack (cycled if the haystack is too short, copies separated
// by a blank line) with each needle inserted as its own sentence after a sentence end.
// The answer prefix ("The special magic number for Lima mentioned in the provided text is") is
// returned separately: the runner puts it at the start of the assistant turn. If the budget is
// meant for the templated prompt, pass a counter that applies the chat template before counting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tq::eval {

// Returns the number of tokens in a text (the real tokenizer in the CLI; a word counter in tests).
using TokenCounter = std::function<std::size_t(const std::string&)>;

class Haystack {
 public:
  // Normalises the text: CRLF -> LF; a Project Gutenberg header/footer ("*** START OF" ...
  // "*** END OF") is cut off; hard-wrapped lines are joined into paragraphs (one space), paragraphs
  // are separated by one blank line. Throws std::invalid_argument when nothing is left.
  static Haystack from_text(std::string_view text);
  static Haystack from_file(const std::filesystem::path& path);  // throws std::runtime_error
  // A seeded generator of varied, plain sentences ("The old harbour keeps its lanterns lit after
  // the first frost.") in paragraphs, at least min_chars long. Contains no digits, so it cannot
  // be mistaken for a needle.
  static Haystack filler(std::uint64_t seed, std::size_t min_chars = 1 << 20);

  const std::string& text() const { return text_; }
  std::size_t word_count() const { return word_ends_.size(); }
  // The first n_words words (cycling through the text as often as needed, copies joined by a
  // blank line), ending right after the last word.
  std::string take_words(std::size_t n_words) const;

 private:
  std::string text_;
  std::vector<std::size_t> word_ends_;  // offset just past each word of text_
};

// Offsets in `text` where a sentence may be inserted: 0, every position right after a sentence end
// (. ! ? plus closing quotes/brackets, followed by whitespace; "Mr." "Mrs." "Dr." "St." and single
// initials are not sentence ends), and text.size(). Sorted, unique.
std::vector<std::size_t> sentence_boundaries(std::string_view text);

enum class NeedleKind {
  kMagicNumber,  // "The special magic number for Lima is 4821307." (7 digits, one city per needle)
  kPasskey,      // "The pass key is 48213. Remember it." (5 digits, k = 1); the prompt starts with
                 // the usual passkey instruction (find and memorise the hidden information)
};

struct Needle {
  std::string key;          // the city (magic number) or "pass key"
  std::string value;        // the digits to retrieve
  std::string sentence;     // the text inserted into the haystack
  double target_depth = 0;  // requested depth in [0, 1]
  double depth = 0;         // achieved: haystack tokens before the needle / haystack tokens
  std::size_t offset = 0;   // byte offset of the sentence in NiahPrompt::text
};

struct NiahOptions {
  NeedleKind kind = NeedleKind::kMagicNumber;
  std::size_t token_budget = 0;  // maximum tokens of NiahPrompt::text (filled as fully as possible)
  double depth = 0.5;            // where the first needle goes, in [0, 1]
  // Number of needles. Needle j (0-based) goes at depth + j·(1 − depth)/k, i.e. spread evenly from
  // the requested depth to the end (the multi-needle convention of the LLMTest NIAH harness); each
  // at a distinct boundary where the haystack has enough of them.
  std::size_t n_needles = 1;
  std::uint64_t seed = 0;  // needle values and cities
};

struct NiahPrompt {
  std::string text;                 // the prompt (layout above)
  std::string question;             // included at the end of text
  std::string answer_prefix;        // for the start of the assistant turn; not in text
  std::vector<Needle> needles;      // in the order they appear in text
  std::size_t n_tokens = 0;         // count_tokens(text) <= token_budget
  std::size_t haystack_tokens = 0;  // count_tokens of the haystack part without needles
  std::size_t haystack_words = 0;
};

// Draws the needles for a cell (values distinct, cities distinct), with target depths set.
// Throws std::invalid_argument for k = 0, k > 1 with kPasskey, k above the number of cities (40)
// or a depth outside [0, 1].
std::vector<Needle> make_needles(const NiahOptions& options);

// Builds the prompt: the largest haystack prefix (by whole words) such that the whole text fits
// token_budget, then places each needle at the sentence boundary whose token depth is closest to
// its target (binary search with count_tokens over boundary prefixes). count_tokens is called
// O(log budget + k·log boundaries) times. Throws std::invalid_argument when the budget cannot hold
// the question and needles alone.
NiahPrompt build_niah_prompt(const Haystack& haystack, const NiahOptions& options,
                             const TokenCounter& count_tokens);

// The maximal runs of ASCII digits in text, in order ("is 4,821,307." -> "4", "821", "307").
std::vector<std::string_view> digit_runs(std::string_view text);
// True when `number` (all digits) occurs in the answer as a whole digit run: "48213" matches
// "It is 48213." but not "4821", "482130", "48 213" or "48,213".
bool answer_contains_number(std::string_view answer, std::string_view number);

struct NiahScore {
  std::vector<bool> found;  // per needle
  std::size_t retrieved = 0;
  bool correct = false;  // every needle retrieved
};
NiahScore score_niah_answer(std::string_view answer, std::span<const Needle> needles);

}  // namespace tq::eval
