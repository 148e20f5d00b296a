// Tokenizer implementation: byte-level BPE with a merge-rank hash map and a priority queue per
// word (the words come from the pre-tokenizer, pretokenizer.hpp), SentencePiece score-driven
// merging with byte fallback, special token splitting, and decoding.
#include "turboquant/model/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <queue>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "model/pretokenizer.hpp"
#include "model/utf8.hpp"
#include "turboquant/model/gguf.hpp"

namespace tq {

namespace {

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
      utf8::append(s, bm.to_cp[b]);
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
        const std::size_t len = utf8::decode(text, k, cp);
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
    for (unsigned char c : word) utf8::append(mapped, byte_map().to_cp[c]);
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
  const std::vector<pretokenizer::Codepoint> cps = pretokenizer::to_codepoints(text);
  auto byte_at = [&](std::size_t cp_index) {
    return cp_index < cps.size() ? cps[cp_index].offset : static_cast<std::uint32_t>(text.size());
  };
  for (const pretokenizer::Word& w : pretokenizer::split_words(cps, vocab.pre)) {
    const std::string_view word = text.substr(byte_at(w.begin), byte_at(w.end) - byte_at(w.begin));
    // Repeated words are common in real text; a per-call cache makes them free.
    auto [it, inserted] = cache.try_emplace(std::string(word));
    if (inserted) encode_bpe_word(word, it->second);
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
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
    std::size_t len = utf8::decode(text, i, cp);
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

const TokenizerVocab& Tokenizer::vocab() const {
  return impl_->vocab;
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
