// Tokenizer implementation: UTF-8 decoding, the hand-written pre-tokenizer rules (no std::regex:
// it has no notion of Unicode letter/number categories), byte-level BPE with a merge-rank hash map
// and a priority queue per word, SentencePiece score-driven merging with byte fallback, special
// token splitting, and decoding.
#include "turboquant/model/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <queue>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "model/unicode_tables.hpp"
#include "turboquant/model/gguf.hpp"

namespace tq {

namespace {

// ---------------------------------------------------------------------------------------------
// Unicode helpers.

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

// A code point with the byte range it came from. Invalid UTF-8 bytes become one "code point" each
// (kInvalid, category "other") so that byte-level BPE still sees every original byte.
constexpr std::uint32_t kInvalid = 0xFFFFFFFF;

struct Codepoint {
  std::uint32_t cp;
  std::uint32_t offset;  // byte offset in the text
};

// Length of the UTF-8 sequence starting at s[i] and its code point; 0 when invalid.
std::size_t utf8_decode(std::string_view s, std::size_t i, std::uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t len;
  std::uint32_t min;
  if ((b0 & 0xe0) == 0xc0) {
    len = 2, cp = b0 & 0x1f, min = 0x80;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3, cp = b0 & 0x0f, min = 0x800;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

std::vector<Codepoint> to_codepoints(std::string_view s) {
  std::vector<Codepoint> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::uint32_t cp;
    std::size_t len = utf8_decode(s, i, cp);
    if (len == 0) {
      cp = kInvalid;
      len = 1;
    }
    out.push_back({cp, static_cast<std::uint32_t>(i)});
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers. Each matcher returns the end (exclusive, in code points) of the word starting at
// `i` within [.., end); the rules are tried in the order the original regex alternation lists them.

class WordSplitter {
 public:
  WordSplitter(const std::vector<Codepoint>& cps, std::size_t end) : cps_(cps), end_(end) {}

  std::uint32_t at(std::size_t i) const { return i < end_ ? cps_[i].cp : kInvalid - 1; }
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

// Splits cps[begin, end) into words (as code point index ranges) and calls emit(b, e) for each.
template <typename Emit>
void split_words(const std::vector<Codepoint>& cps, std::size_t begin, std::size_t end,
                 PreTokenizerKind kind, Emit&& emit) {
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
    emit(i, e);
    i = e;
  }
}

template <typename Emit>
void pre_tokenize(const std::vector<Codepoint>& cps, PreTokenizerKind kind, Emit&& emit) {
  if (kind != PreTokenizerKind::kSmolLM) {
    split_words(cps, 0, cps.size(), kind, emit);
    return;
  }
  // SmolLM/StarCoder: \p{N} splits first (each digit is a piece), then GPT-2 rules run on each
  // remaining piece separately, so look-aheads stop at a digit.
  std::size_t start = 0;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    if (is_number(cps[i].cp)) {
      if (start < i) split_words(cps, start, i, PreTokenizerKind::kGpt2, emit);
      emit(i, i + 1);
      start = i + 1;
    }
  }
  if (start < cps.size()) split_words(cps, start, cps.size(), PreTokenizerKind::kGpt2, emit);
}

// GPT-2's reversible byte -> printable code point map: printable Latin-1 bytes map to themselves,
// the remaining 68 bytes to U+0100 upwards in byte order.
struct ByteMap {
  std::array<std::uint32_t, 256> to_cp{};
  std::unordered_map<std::uint32_t, std::uint8_t> to_byte;
  ByteMap() {
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      to_cp[b] = printable ? b : next++;
      to_byte[to_cp[b]] = static_cast<std::uint8_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

constexpr std::string_view kSpmSpace = "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

std::uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
         static_cast<std::uint32_t>(b);
}

struct MergeInfo {
  std::int32_t rank;
  TokenId result;
};

}  // namespace

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

// ---------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  TokenizerVocab vocab;
  std::unordered_map<std::string, TokenId> token_to_id;
  std::unordered_map<std::uint64_t, MergeInfo> merges;  // BPE: (left, right) -> rank, result
  std::array<TokenId, 256> byte_token{};                // BPE: byte char / SPM: <0xNN>
  std::vector<TokenId> specials;                        // control + user-defined, by text
  std::array<bool, 256> special_first_byte{};
  std::vector<std::string> decoded;  // per token: the bytes it stands for
  bool ignore_merges = false;        // Llama 3: a word that is a whole token is emitted as it is

  TokenType type(TokenId id) const {
    return vocab.types.empty() ? TokenType::kNormal : vocab.types[static_cast<std::size_t>(id)];
  }

  void build();
  void encode_bpe_word(std::string_view word, std::vector<TokenId>& out) const;
  void encode_bpe(std::string_view text, std::vector<TokenId>& out,
                  std::unordered_map<std::string, std::vector<TokenId>>& cache) const;
  void encode_spm(std::string_view text, bool at_start, std::vector<TokenId>& out) const;
};

void Tokenizer::Impl::build() {
  const std::size_t n = vocab.tokens.size();
  if (n == 0) throw std::invalid_argument("tokenizer: the vocabulary is empty");
  if (n > static_cast<std::size_t>(INT32_MAX)) {
    throw std::invalid_argument("tokenizer: vocabulary of " + std::to_string(n) +
                                " tokens exceeds int32 ids");
  }
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    throw gguf::FormatError("tokenizer: " + std::to_string(vocab.scores.size()) + " scores for " +
                            std::to_string(n) + " tokens (expected equal)");
  }
  if (!vocab.types.empty() && vocab.types.size() != n) {
    throw gguf::FormatError("tokenizer: " + std::to_string(vocab.types.size()) +
                            " token types for " + std::to_string(n) + " tokens (expected equal)");
  }
  for (TokenId* id : {&vocab.bos, &vocab.eos, &vocab.unk, &vocab.pad}) {
    if (*id >= static_cast<TokenId>(n) || *id < -1) {
      throw gguf::FormatError("tokenizer: special token id " + std::to_string(*id) +
                              " is outside the vocabulary of " + std::to_string(n));
    }
  }
  token_to_id.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    // On duplicates the first id wins, as in the reference implementations.
    token_to_id.emplace(vocab.tokens[i], static_cast<TokenId>(i));
  }
  byte_token.fill(-1);
  const ByteMap& bm = byte_map();
  if (vocab.kind == TokenizerKind::kBytePairGpt2) {
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, bm.to_cp[b]);
      if (auto it = token_to_id.find(s); it != token_to_id.end()) byte_token[b] = it->second;
    }
    merges.reserve(vocab.merges.size());
    for (std::size_t r = 0; r < vocab.merges.size(); ++r) {
      const std::string& m = vocab.merges[r];
      const auto space = m.find(' ', 1);  // the left part is never empty
      if (space == std::string::npos) {
        throw gguf::FormatError("tokenizer: merge #" + std::to_string(r) + " '" + m +
                                "' is not of the form 'left right'");
      }
      auto left = token_to_id.find(m.substr(0, space));
      auto right = token_to_id.find(m.substr(space + 1));
      auto result = token_to_id.find(m.substr(0, space) + m.substr(space + 1));
      if (left == token_to_id.end() || right == token_to_id.end() || result == token_to_id.end()) {
        continue;  // a merge that cannot produce a token is unreachable; ignore it
      }
      merges.emplace(pair_key(left->second, right->second),
                     MergeInfo{static_cast<std::int32_t>(r), result->second});
    }
  } else {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      if (auto it = token_to_id.find(name); it != token_to_id.end()) byte_token[b] = it->second;
    }
  }
  ignore_merges =
      vocab.kind == TokenizerKind::kBytePairGpt2 && vocab.pre == PreTokenizerKind::kLlama3;

  decoded.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& text = vocab.tokens[i];
    const TokenType t = type(static_cast<TokenId>(i));
    if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) {
      decoded[i] = text;  // rendered verbatim
      if ((t == TokenType::kControl || t == TokenType::kUserDefined) && !text.empty()) {
        specials.push_back(static_cast<TokenId>(i));
        special_first_byte[static_cast<unsigned char>(text[0])] = true;
      }
      continue;
    }
    if (vocab.kind == TokenizerKind::kSentencePiece) {
      unsigned value;
      if (t == TokenType::kByte && text.size() == 6 &&
          std::sscanf(text.c_str(), "<0x%02X>", &value) == 1) {
        decoded[i] = std::string(1, static_cast<char>(value));
      } else {
        std::string out;
        for (std::size_t k = 0; k < text.size();) {
          if (text.compare(k, kSpmSpace.size(), kSpmSpace) == 0) {
            out += ' ';
            k += kSpmSpace.size();
          } else {
            out += text[k++];
          }
        }
        decoded[i] = std::move(out);
      }
    } else {
      // Byte-level: every code point of the token maps back to one byte.
      std::string out;
      bool ok = true;
      for (std::size_t k = 0; k < text.size();) {
        std::uint32_t cp;
        const std::size_t len = utf8_decode(text, k, cp);
        auto it = len ? bm.to_byte.find(cp) : bm.to_byte.end();
        if (it == bm.to_byte.end()) {
          ok = false;
          break;
        }
        out += static_cast<char>(it->second);
        k += len;
      }
      decoded[i] = ok ? std::move(out) : text;  // tokens outside the byte map render verbatim
    }
  }
  // Longest special tokens first so that "<|im_start|>" beats a shorter prefix token.
  std::sort(specials.begin(), specials.end(),
            [&](TokenId a, TokenId b) { return vocab.tokens[a].size() > vocab.tokens[b].size(); });
}

// Byte-level BPE of one pre-tokenized word: start from one symbol per byte, repeatedly merge the
// adjacent pair with the lowest merge rank (leftmost on ties). Stale queue entries are skipped
// by re-checking the pair, so each merge costs O(log n).
void Tokenizer::Impl::encode_bpe_word(std::string_view word, std::vector<TokenId>& out) const {
  if (ignore_merges) {
    std::string mapped;
    for (unsigned char c : word) append_utf8(mapped, byte_map().to_cp[c]);
    if (auto it = token_to_id.find(mapped); it != token_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const std::size_t n = word.size();
  std::vector<TokenId> ids(n);
  std::vector<std::int32_t> prev(n), next(n);
  for (std::size_t i = 0; i < n; ++i) {
    ids[i] = byte_token[static_cast<unsigned char>(word[i])];
    prev[i] = static_cast<std::int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
  }
  struct Candidate {
    std::int32_t rank;
    std::int32_t left;
    TokenId left_id, right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](std::int32_t left) {
    if (left < 0) return;
    const std::int32_t right = next[left];
    if (right < 0 || ids[left] < 0 || ids[right] < 0) return;
    auto it = merges.find(pair_key(ids[left], ids[right]));
    if (it != merges.end()) queue.push({it->second.rank, left, ids[left], ids[right]});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) consider(static_cast<std::int32_t>(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const std::int32_t right = next[c.left];
    if (ids[c.left] != c.left_id || right < 0 || ids[right] != c.right_id) continue;  // stale
    ids[c.left] = merges.at(pair_key(c.left_id, c.right_id)).result;
    ids[right] = -2;  // dead
    next[c.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.left;
    consider(prev[c.left]);
    consider(c.left);
  }
  for (std::int32_t i = 0; i >= 0 && i < static_cast<std::int32_t>(n); i = next[i]) {
    if (ids[i] >= 0) {
      out.push_back(ids[i]);
    } else if (vocab.unk >= 0) {
      out.push_back(vocab.unk);  // a byte the vocabulary cannot express
    }
  }
}

void Tokenizer::Impl::encode_bpe(
    std::string_view text, std::vector<TokenId>& out,
    std::unordered_map<std::string, std::vector<TokenId>>& cache) const {
  const std::vector<Codepoint> cps = to_codepoints(text);
  auto byte_at = [&](std::size_t cp_index) {
    return cp_index < cps.size() ? cps[cp_index].offset : static_cast<std::uint32_t>(text.size());
  };
  pre_tokenize(cps, vocab.pre, [&](std::size_t b, std::size_t e) {
    const std::string_view word = text.substr(byte_at(b), byte_at(e) - byte_at(b));
    // Repeated words are common in real text; a per-call cache makes them free.
    auto [it, inserted] = cache.try_emplace(std::string(word));
    if (inserted) encode_bpe_word(word, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
  });
}

// SentencePiece-style: spaces become U+2581 (plus one in front when add_space_prefix), then the
// adjacent pair whose concatenation is a vocabulary token with the highest score is merged until
// none is left; symbols that are no token fall back to <0xNN> byte tokens (or unk).
void Tokenizer::Impl::encode_spm(std::string_view raw, bool at_start,
                                 std::vector<TokenId>& out) const {
  std::string text;
  if (at_start && vocab.add_space_prefix) text += kSpmSpace;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpmSpace;
    } else {
      text += c;
    }
  }
  struct Symbol {
    std::uint32_t begin, len;
    std::int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  for (std::size_t i = 0; i < text.size();) {
    std::uint32_t cp;
    std::size_t len = utf8_decode(text, i, cp);
    if (len == 0) len = 1;
    const auto idx = static_cast<std::int32_t>(symbols.size());
    symbols.push_back({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(len), idx - 1,
                       i + len < text.size() ? idx + 1 : -1});
    i += len;
  }
  struct Candidate {
    float score;
    std::int32_t left;
    std::uint32_t len;  // combined length, to detect stale entries
    bool operator<(const Candidate& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](std::int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const Symbol& a = symbols[left];
    const Symbol& b = symbols[a.next];
    auto it = token_to_id.find(std::string(text.data() + a.begin, a.len + b.len));
    if (it == token_to_id.end()) return;
    const float score = vocab.scores.empty() ? 0.0f : vocab.scores[it->second];
    queue.push({score, left, a.len + b.len});
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<std::int32_t>(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& a = symbols[c.left];
    if (a.len == 0 || a.next < 0 || a.len + symbols[a.next].len != c.len) continue;  // stale
    Symbol& b = symbols[a.next];
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (a.next >= 0) symbols[a.next].prev = c.left;
    consider(a.prev);
    consider(c.left);
  }
  for (std::int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string piece(text.data() + s.begin, s.len);
    if (auto it = token_to_id.find(piece); it != token_to_id.end()) {
      out.push_back(it->second);
      continue;
    }
    for (unsigned char c : piece) {
      if (byte_token[c] >= 0) {
        out.push_back(byte_token[c]);
      } else if (vocab.unk >= 0) {
        out.push_back(vocab.unk);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer(TokenizerVocab vocab) : impl_(std::make_unique<Impl>()) {
  impl_->vocab = std::move(vocab);
  impl_->build();
}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const gguf::File& file) {
  TokenizerVocab v;
  const std::string& model = file.get_string("tokenizer.ggml.model");
  if (model == "gpt2") {
    v.kind = TokenizerKind::kBytePairGpt2;
    v.pre = pre_tokenizer_from_name(file.find_string("tokenizer.ggml.pre").value_or("default"));
    v.merges = file.get_string_array("tokenizer.ggml.merges");
  } else if (model == "llama") {
    v.kind = TokenizerKind::kSentencePiece;
  } else {
    throw std::invalid_argument("tokenizer.ggml.model is '" + model +
                                "' (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece)");
  }
  v.tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (file.has("tokenizer.ggml.scores")) v.scores = file.get_f32_array("tokenizer.ggml.scores");
  if (file.has("tokenizer.ggml.token_type")) {
    for (std::int32_t t : file.get_i32_array("tokenizer.ggml.token_type")) {
      v.types.push_back(t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kNormal);
    }
  }
  auto id = [&](const char* key) -> TokenId {
    const auto value = file.find_integer(key);
    if (!value) return -1;
    if (*value < 0 || *value >= static_cast<std::int64_t>(v.tokens.size())) {
      throw gguf::FormatError(std::string(key) + " is " + std::to_string(*value) +
                              " (expected an id below the vocabulary size " +
                              std::to_string(v.tokens.size()) + ")");
    }
    return static_cast<TokenId>(*value);
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  v.add_bos = file.find_bool("tokenizer.ggml.add_bos_token")
                  .value_or(v.kind == TokenizerKind::kSentencePiece);
  v.add_space_prefix = file.find_bool("tokenizer.ggml.add_space_prefix")
                           .value_or(v.kind == TokenizerKind::kSentencePiece);
  return Tokenizer(std::move(v));
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  const Impl& im = *impl_;
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && im.vocab.bos >= 0) out.push_back(im.vocab.bos);
  std::unordered_map<std::string, std::vector<TokenId>> cache;
  bool at_start = true;
  auto encode_plain = [&](std::string_view part) {
    if (part.empty()) return;
    if (im.vocab.kind == TokenizerKind::kBytePairGpt2) {
      im.encode_bpe(part, out, cache);
    } else {
      im.encode_spm(part, at_start, out);
    }
    at_start = false;
  };
  if (im.specials.empty()) {
    encode_plain(text);
    return out;
  }
  std::size_t plain_begin = 0;
  for (std::size_t i = 0; i < text.size();) {
    TokenId match = -1;
    if (im.special_first_byte[static_cast<unsigned char>(text[i])]) {
      for (TokenId id : im.specials) {  // longest first
        // User-defined tokens are always matched; control tokens only when asked (a user typing
        // "<|im_end|>" must not be able to end a turn).
        if (!parse_special && im.type(id) == TokenType::kControl) continue;
        const std::string& s = im.vocab.tokens[id];
        if (text.compare(i, s.size(), s) == 0) {
          match = id;
          break;
        }
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    encode_plain(text.substr(plain_begin, i - plain_begin));
    out.push_back(match);
    at_start = true;  // SentencePiece prefixes a space again after a special token
    i += im.vocab.tokens[match].size();
    plain_begin = i;
  }
  encode_plain(text.substr(plain_begin));
  return out;
}

std::string Tokenizer::token_to_bytes(TokenId id, bool render_special) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->decoded.size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(impl_->decoded.size()));
  }
  if (!render_special && impl_->type(id) == TokenType::kControl) return {};
  return impl_->decoded[static_cast<std::size_t>(id)];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool render_special) const {
  std::string out;
  for (TokenId id : ids) out += token_to_bytes(id, render_special);
  // SentencePiece: the space added in front of the text at encode time is not part of it.
  if (impl_->vocab.kind == TokenizerKind::kSentencePiece && impl_->vocab.add_space_prefix &&
      !out.empty() && out[0] == ' ') {
    out.erase(0, 1);
  }
  return out;
}

std::size_t Tokenizer::vocab_size() const {
  return impl_->vocab.tokens.size();
}
TokenizerKind Tokenizer::kind() const {
  return impl_->vocab.kind;
}
PreTokenizerKind Tokenizer::pre_tokenizer() const {
  return impl_->vocab.pre;
}
TokenId Tokenizer::bos_id() const {
  return impl_->vocab.bos;
}
TokenId Tokenizer::eos_id() const {
  return impl_->vocab.eos;
}
TokenId Tokenizer::unk_id() const {
  return impl_->vocab.unk;
}
TokenId Tokenizer::pad_id() const {
  return impl_->vocab.pad;
}
bool Tokenizer::add_bos_by_default() const {
  return impl_->vocab.add_bos;
}

const std::string& Tokenizer::token_text(TokenId id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= vocab_size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(vocab_size()));
  }
  return impl_->vocab.tokens[static_cast<std::size_t>(id)];
}

TokenType Tokenizer::token_type(TokenId id) const {
  token_text(id);  // range check
  return impl_->type(id);
}

std::optional<TokenId> Tokenizer::find_token(std::string_view text) const {
  auto it = impl_->token_to_id.find(std::string(text));
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

// ---------------------------------------------------------------------------------------------

namespace {

// Number of bytes at the end of `s` that form an incomplete (but so far valid) UTF-8 sequence.
std::size_t incomplete_tail(const std::string& s) {
  const std::size_t n = s.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xc0) == 0x80) continue;  // continuation byte: keep looking for the lead byte
    std::size_t need = 0;
    if ((c & 0xe0) == 0xc0) {
      need = 2;
    } else if ((c & 0xf0) == 0xe0) {
      need = 3;
    } else if ((c & 0xf8) == 0xf0) {
      need = 4;
    }
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

std::string StreamDecoder::push(TokenId id) {
  pending_ += tokenizer_->token_to_bytes(id, render_special_);
  const std::size_t keep = incomplete_tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return ready;
}

std::string StreamDecoder::flush() {
  return std::exchange(pending_, {});
}

}  // namespace tq
