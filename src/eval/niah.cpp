// Needle-in-a-haystack prompt construction and scoring (see include/turboquant/eval/niah.hpp).
#include "turboquant/eval/niah.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tq::eval {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Strips a Project Gutenberg header and footer when both markers are present: the licence text
// would otherwise sit in the haystack and its numbers could look like needles.
std::string_view strip_gutenberg(std::string_view text) {
  const std::size_t start = text.find("*** START OF");
  if (start != std::string_view::npos) {
    const std::size_t line_end = text.find('\n', start);
    if (line_end != std::string_view::npos) text.remove_prefix(line_end + 1);
  }
  const std::size_t end = text.find("*** END OF");
  if (end != std::string_view::npos) text = text.substr(0, end);
  return text;
}

// Joins hard-wrapped lines into paragraphs: lines are joined with one space, paragraphs (separated
// by one or more blank lines) with "\n\n"; runs of spaces inside a line are kept.
std::string unwrap_paragraphs(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_paragraph = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_space(line.back())) line.remove_suffix(1);
    if (line.empty()) {
      pending_paragraph = !out.empty();
    } else {
      if (!out.empty()) out += pending_paragraph ? "\n\n" : " ";
      out += line;
      pending_paragraph = false;
    }
    pos = eol + 1;
  }
  return out;
}

// Words before a '.' that do not end a sentence.
bool is_abbreviation(std::string_view word) {
  static constexpr std::array<std::string_view, 9> kAbbreviations = {
      "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Messrs", "Capt"};
  if (word.size() == 1 && std::isupper(static_cast<unsigned char>(word[0]))) return true;
  return std::find(kAbbreviations.begin(), kAbbreviations.end(), word) != kAbbreviations.end();
}

// Length of a closing quote or bracket at text[pos] (ASCII or UTF-8 ’ ”), 0 if none.
std::size_t closing_mark_length(std::string_view text, std::size_t pos) {
  const char c = text[pos];
  if (c == '"' || c == '\'' || c == ')' || c == ']') return 1;
  if (text.substr(pos, 3) == "\xE2\x80\x99" || text.substr(pos, 3) == "\xE2\x80\x9D") return 3;
  return 0;
}

std::uint64_t draw(std::mt19937_64& rng, std::uint64_t lo, std::uint64_t hi_inclusive) {
  // mt19937_64 is fully specified by the standard (uniform_int_distribution is not), so the same
  // seed gives the same needles with every standard library; the modulo bias is < 1e-12.
  return lo + rng() % (hi_inclusive - lo + 1);
}

constexpr std::array<std::string_view, 40> kCities = {
    "Lima",      "Oslo",     "Nairobi",   "Kyoto",    "Lisbon",     "Hanoi",     "Quito",
    "Dublin",    "Accra",    "Tbilisi",   "Montreal", "Seville",    "Bergen",    "Cusco",
    "Auckland",  "Valletta", "Marrakesh", "Krakow",   "Hobart",     "Tallinn",   "Cartagena",
    "Ljubljana", "Windhoek", "Salzburg",  "Busan",    "Reykjavik",  "Dakar",     "Porto",
    "Antwerp",   "Medellin", "Zanzibar",  "Bruges",   "Valparaiso", "Kathmandu", "Bordeaux",
    "Samarkand", "Chengdu",  "Tromso",    "Asmara",   "Galway"};

constexpr std::string_view kPasskeyInstruction =
    "There is an important piece of information hidden inside a lot of irrelevant text. Find it "
    "and memorize it. I will quiz you about the important information there.";

std::string join_keys(const std::vector<Needle>& needles) {
  std::string out;
  for (std::size_t i = 0; i < needles.size(); ++i) {
    if (i > 0) out += needles.size() == 2 ? " and " : (i + 1 == needles.size() ? ", and " : ", ");
    out += needles[i].key;
  }
  return out;
}

struct Layout {
  std::string text;
  std::vector<std::size_t> needle_offsets;  // in text, same order as the needles
};

// Inserts the needles into `haystack` at the given boundary offsets (non-decreasing) and wraps the
// result in the prompt layout.
Layout assemble(std::string_view instruction, const std::string& haystack,
                const std::vector<Needle>& needles, const std::vector<std::size_t>& at,
                const std::string& question) {
  Layout out;
  if (!instruction.empty()) {
    out.text += instruction;
    out.text += "\n\n";
  }
  std::size_t copied = 0;
  for (std::size_t j = 0; j < needles.size(); ++j) {
    out.text.append(haystack, copied, at[j] - copied);
    copied = at[j];
    const bool at_start = out.text.empty() || out.text.back() == '\n';
    // At the end of the haystack (usually cut mid-sentence by the budget) a needle becomes its own
    // paragraph; elsewhere it follows the sentence end after a space.
    const bool after_needle = j > 0 && at[j - 1] == at[j];
    if (!at_start) out.text += copied == haystack.size() && !after_needle ? "\n\n" : " ";
    out.needle_offsets.push_back(out.text.size());
    out.text += needles[j].sentence;
    // A needle at the very start (or after a paragraph break) precedes the text that follows it.
    if (at_start && copied < haystack.size() && !is_space(haystack[copied])) out.text += ' ';
  }
  out.text.append(haystack, copied, std::string::npos);
  out.text += "\n\n";
  out.text += question;
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Haystack.

Haystack Haystack::from_text(std::string_view text) {
  Haystack h;
  h.text_ = unwrap_paragraphs(strip_gutenberg(text));
  for (std::size_t i = 0; i < h.text_.size(); ++i) {
    if (!is_space(h.text_[i]) && (i + 1 == h.text_.size() || is_space(h.text_[i + 1]))) {
      h.word_ends_.push_back(i + 1);
    }
  }
  if (h.word_ends_.empty()) throw std::invalid_argument("haystack text has no words");
  return h;
}

Haystack Haystack::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open haystack file " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  try {
    return from_text(ss.str());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("haystack file " + path.string() + ": " + e.what());
  }
}

Haystack Haystack::filler(std::uint64_t seed, std::size_t min_chars) {
  static constexpr std::array<std::string_view, 16> kSubjects = {
      "The old harbour",    "A quiet village",   "The river",
      "Our neighbour",      "The morning train", "A travelling painter",
      "The small library",  "The garden wall",   "An autumn wind",
      "The baker",          "The lighthouse",    "A flock of geese",
      "The market square",  "The schoolteacher", "A narrow bridge",
      "The northern forest"};
  static constexpr std::array<std::string_view, 16> kPredicates = {"keeps its lanterns lit",
                                                                   "waits patiently",
                                                                   "hums a familiar tune",
                                                                   "looks different",
                                                                   "smells of fresh bread",
                                                                   "fills with soft light",
                                                                   "gathers a crowd of visitors",
                                                                   "sleeps under thick snow",
                                                                   "tells an old story",
                                                                   "turns toward the sea",
                                                                   "shelters the tired birds",
                                                                   "rings its bells",
                                                                   "welcomes every stranger",
                                                                   "shines in the rain",
                                                                   "grows quiet",
                                                                   "remembers the summer"};
  static constexpr std::array<std::string_view, 16> kWhen = {
      "after the first frost",     "before anyone wakes up",     "on long winter evenings",
      "whenever the tide is low",  "during the harvest fair",    "at the end of every week",
      "while the clouds drift by", "when the roads are muddy",   "as the sun goes down",
      "in the middle of spring",   "long after the guests left", "once the rain has stopped",
      "under a pale blue sky",     "beside the sleeping town",   "throughout the holidays",
      "on the edge of the valley"};
  static constexpr std::array<std::string_view, 8> kAsides = {
      "Nobody is quite sure why.",     "It has always been that way.",
      "Children like to watch it.",    "The visitors rarely notice.",
      "Some say it brings good luck.", "Life goes on as usual.",
      "Everyone agrees it is lovely.", "The old maps mention it too."};
  std::mt19937_64 rng(seed ^ 0x5eedf111e5ull);
  std::string text;
  text.reserve(min_chars + 256);
  while (text.size() < min_chars) {
    const std::size_t sentences = 4 + rng() % 4;
    for (std::size_t s = 0; s < sentences; ++s) {
      if (s > 0) text += ' ';
      if (rng() % 6 == 0) {
        text += kAsides[rng() % kAsides.size()];
        continue;
      }
      text += kSubjects[rng() % kSubjects.size()];
      text += ' ';
      text += kPredicates[rng() % kPredicates.size()];
      text += ' ';
      text += kWhen[rng() % kWhen.size()];
      text += '.';
    }
    text += "\n\n";
  }
  return from_text(text);
}

std::string Haystack::take_words(std::size_t n_words) const {
  std::string out;
  const std::size_t per_copy = word_ends_.size();
  while (n_words > 0) {
    if (!out.empty()) out += "\n\n";
    const std::size_t take = std::min(n_words, per_copy);
    out.append(text_, 0, word_ends_[take - 1]);
    n_words -= take;
  }
  return out;
}

std::vector<std::size_t> sentence_boundaries(std::string_view text) {
  std::vector<std::size_t> out = {0};
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' && i > 0 && text[i - 1] != '\n' && i + 1 < text.size() && text[i + 1] == '\n') {
      out.push_back(i);  // end of a paragraph (headings end without punctuation)
      continue;
    }
    if (c != '.' && c != '!' && c != '?') continue;
    std::size_t j = i + 1;
    while (j < text.size()) {
      const std::size_t mark = closing_mark_length(text, j);
      if (mark == 0) break;
      j += mark;
    }
    if (j < text.size() && !is_space(text[j])) continue;
    if (c == '.') {
      std::size_t word_start = i;
      while (word_start > 0 && !is_space(text[word_start - 1])) --word_start;
      if (is_abbreviation(text.substr(word_start, i - word_start))) continue;
    }
    out.push_back(j);
  }
  out.push_back(text.size());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Needles and prompt.

std::vector<Needle> make_needles(const NiahOptions& options) {
  if (options.n_needles == 0) throw std::invalid_argument("NIAH: n_needles is 0, expected >= 1");
  if (!(options.depth >= 0 && options.depth <= 1)) {
    throw std::invalid_argument("NIAH: depth " + std::to_string(options.depth) +
                                ", expected a value in [0, 1]");
  }
  if (options.kind == NeedleKind::kPasskey && options.n_needles != 1) {
    throw std::invalid_argument("NIAH: passkey mode takes 1 needle, got " +
                                std::to_string(options.n_needles));
  }
  if (options.n_needles > kCities.size()) {
    throw std::invalid_argument("NIAH: " + std::to_string(options.n_needles) +
                                " needles requested, at most " + std::to_string(kCities.size()));
  }
  std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + 0x4e33d1e5ull);
  std::vector<Needle> needles;
  const std::size_t k = options.n_needles;
  std::vector<std::size_t> city_order(kCities.size());
  for (std::size_t i = 0; i < city_order.size(); ++i) city_order[i] = i;
  for (std::size_t i = 0; i < k; ++i) {  // partial Fisher-Yates with the portable draw()
    std::swap(city_order[i], city_order[draw(rng, i, city_order.size() - 1)]);
  }
  for (std::size_t j = 0; j < k; ++j) {
    Needle n;
    std::string value;
    do {
      value = options.kind == NeedleKind::kPasskey ? std::to_string(draw(rng, 10000, 99999))
                                                   : std::to_string(draw(rng, 1000000, 9999999));
    } while (std::any_of(needles.begin(), needles.end(),
                         [&](const Needle& other) { return other.value == value; }));
    n.value = value;
    if (options.kind == NeedleKind::kPasskey) {
      n.key = "pass key";
      n.sentence = "The pass key is " + value + ". Remember it.";
    } else {
      n.key = std::string(kCities[city_order[j]]);
      n.sentence = "The special magic number for " + n.key + " is " + value + ".";
    }
    n.target_depth =
        options.depth + static_cast<double>(j) * (1.0 - options.depth) / static_cast<double>(k);
    needles.push_back(std::move(n));
  }
  return needles;
}

NiahPrompt build_niah_prompt(const Haystack& haystack, const NiahOptions& options,
                             const TokenCounter& count_tokens) {
  if (!count_tokens) throw std::invalid_argument("NIAH: count_tokens is empty");
  NiahPrompt prompt;
  prompt.needles = make_needles(options);
  std::vector<Needle>& needles = prompt.needles;
  const std::string keys = join_keys(needles);
  std::string_view instruction;
  if (options.kind == NeedleKind::kPasskey) {
    instruction = kPasskeyInstruction;
    prompt.question = "What is the pass key?";
    prompt.answer_prefix = "The pass key is";
  } else if (needles.size() == 1) {
    prompt.question =
        "What is the special magic number for " + keys + " mentioned in the provided text?";
    prompt.answer_prefix =
        "The special magic number for " + keys + " mentioned in the provided text is";
  } else {
    prompt.question = "What are the special magic numbers for " + keys +
                      " mentioned in the provided text? Give all of them.";
    prompt.answer_prefix =
        "The special magic numbers for " + keys + " mentioned in the provided text are";
  }

  // Cheap placement for sizing: by character fraction of the haystack.
  const auto place_by_chars = [&](const std::string& hay) {
    const auto bounds = sentence_boundaries(hay);
    std::vector<std::size_t> at;
    for (const Needle& n : needles) {
      const double target = n.target_depth * static_cast<double>(hay.size());
      auto it = std::lower_bound(bounds.begin(), bounds.end(), static_cast<std::size_t>(target));
      if (it == bounds.end()) --it;
      if (it != bounds.begin() &&
          target - static_cast<double>(*(it - 1)) < static_cast<double>(*it) - target) {
        --it;
      }
      at.push_back(*it);
    }
    std::sort(at.begin(), at.end());
    return at;
  };
  const auto tokens_for_words = [&](std::size_t n_words) {
    const std::string hay = haystack.take_words(n_words);
    return count_tokens(
        assemble(instruction, hay, needles, place_by_chars(hay), prompt.question).text);
  };

  const std::size_t budget = options.token_budget;
  const std::size_t overhead = tokens_for_words(0);
  if (overhead > budget) {
    throw std::invalid_argument("NIAH: token budget " + std::to_string(budget) +
                                " cannot hold the question and needles alone (" +
                                std::to_string(overhead) + " tokens)");
  }
  // Largest word count that fits: estimate from a sample, gallop to bracket, then bisect.
  const auto fits = [&](std::size_t n_words) { return tokens_for_words(n_words) <= budget; };
  const std::size_t sample = 256;
  const std::size_t sample_tokens = tokens_for_words(sample);
  const double per_word =
      std::max(0.05, static_cast<double>(std::max(sample_tokens, overhead + 1) - overhead) /
                         static_cast<double>(sample));
  const std::size_t guess = std::max<std::size_t>(
      1, static_cast<std::size_t>(static_cast<double>(budget - overhead) / per_word));
  std::size_t lo = 0, hi = guess;  // invariant: lo fits, hi does not
  if (fits(guess)) {
    lo = guess;
    std::size_t step = std::max<std::size_t>(guess / 32, 16);
    for (hi = lo + step; fits(hi); hi = lo + step) {
      lo = hi;
      step *= 2;
    }
  }
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (tokens_for_words(mid) <= budget) {
      lo = mid;
    } else {
      hi = mid;
    }
  }

  // Exact placement by tokens, shrinking by a word in the rare case it no longer fits.
  for (std::size_t n_words = lo;; --n_words) {
    const std::string hay = haystack.take_words(n_words);
    const auto bounds = sentence_boundaries(hay);
    std::map<std::size_t, std::size_t> prefix_tokens;  // boundary index -> tokens of hay prefix
    const auto prefix_count = [&](std::size_t b) {
      auto it = prefix_tokens.find(b);
      if (it != prefix_tokens.end()) return it->second;
      const std::size_t c = b == 0 ? 0 : count_tokens(hay.substr(0, bounds[b]));
      prefix_tokens.emplace(b, c);
      return c;
    };
    const std::size_t total = prefix_count(bounds.size() - 1);
    std::vector<std::size_t> at;
    std::size_t previous = 0;
    for (std::size_t j = 0; j < needles.size(); ++j) {
      const double target = needles[j].target_depth * static_cast<double>(total);
      // First boundary whose prefix has >= target tokens, then the closer of it and its
      // predecessor.
      std::size_t a = 0, b = bounds.size() - 1;
      while (a < b) {
        const std::size_t mid = a + (b - a) / 2;
        if (static_cast<double>(prefix_count(mid)) < target) {
          a = mid + 1;
        } else {
          b = mid;
        }
      }
      if (a > 0 && target - static_cast<double>(prefix_count(a - 1)) <
                       static_cast<double>(prefix_count(a)) - target) {
        --a;
      }
      if (j > 0 && a <= previous && previous + 1 < bounds.size()) a = previous + 1;
      a = std::max(a, previous);
      previous = a;
      at.push_back(bounds[a]);
      needles[j].depth = total == 0
                             ? needles[j].target_depth
                             : static_cast<double>(prefix_count(a)) / static_cast<double>(total);
    }
    Layout layout = assemble(instruction, hay, needles, at, prompt.question);
    const std::size_t n_tokens = count_tokens(layout.text);
    if (n_tokens <= budget || n_words == 0) {
      if (n_tokens > budget) {
        throw std::invalid_argument("NIAH: token budget " + std::to_string(budget) +
                                    " cannot hold the question and needles alone");
      }
      prompt.text = std::move(layout.text);
      for (std::size_t j = 0; j < needles.size(); ++j) needles[j].offset = layout.needle_offsets[j];
      prompt.n_tokens = n_tokens;
      prompt.haystack_tokens = total;
      prompt.haystack_words = n_words;
      return prompt;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scoring.

std::vector<std::string_view> digit_runs(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (!is_digit(text[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && is_digit(text[j])) ++j;
    out.push_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

bool answer_contains_number(std::string_view answer, std::string_view number) {
  if (number.empty() || !std::all_of(number.begin(), number.end(), is_digit)) {
    throw std::invalid_argument("NIAH: expected value \"" + std::string(number) +
                                "\" is not a run of digits");
  }
  const auto runs = digit_runs(answer);
  return std::find(runs.begin(), runs.end(), number) != runs.end();
}

NiahScore score_niah_answer(std::string_view answer, std::span<const Needle> needles) {
  if (needles.empty()) throw std::invalid_argument("NIAH: no needles to score against");
  NiahScore score;
  for (const Needle& n : needles) {
    const bool hit = answer_contains_number(answer, n.value);
    score.found.push_back(hit);
    if (hit) ++score.retrieved;
  }
  score.correct = score.retrieved == needles.size();
  return score;
}

}  // namespace tq::eval
