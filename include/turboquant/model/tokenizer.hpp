// Text <-> token ids for GGUF models: byte-level BPE ("gpt2" tokenizers with merges and a
// model-specific pre-tokenizer: GPT-2, SmolLM/StarCoder, Llama 3, Qwen2) and SentencePiece-style
// ("llama" tokenizers with scores and <0xNN> byte fallback). Special/control tokens such as
// <|im_start|> are recognised in input text only when the caller asks for it.
#pragma once

#include "turboquant/base/token.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

namespace gguf {
class File;
}

// Token attribute, numbered as tokenizer.ggml.token_type in GGUF.
enum class TokenType : std::int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

enum class TokenizerKind { kBytePairGpt2, kSentencePiece };

// How byte-level BPE splits text into words before merging (tokenizer.ggml.pre).
enum class PreTokenizerKind {
  kGpt2,    // 's|'t|... | ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kSmolLM,  // every \p{N} on its own, then the GPT-2 rules (smollm, starcoder, refact, ...)
  kLlama3,  // case-insensitive contractions, \p{N}{1,3}, newline-aware punctuation/space rules
  kQwen2,   // as Llama 3 but single digits
};

// Maps a tokenizer.ggml.pre string to a pre-tokenizer; unknown names fall back to GPT-2.
PreTokenizerKind pre_tokenizer_from_name(std::string_view name);

// Everything a tokenizer is built from (read from GGUF metadata, or filled in by tests).
struct TokenizerVocab {
  TokenizerKind kind = TokenizerKind::kBytePairGpt2;
  PreTokenizerKind pre = PreTokenizerKind::kGpt2;
  std::vector<std::string> tokens;
  std::vector<float> scores;                       // SentencePiece only; empty means all zero
  std::vector<TokenType> types;                    // empty means all normal
  std::vector<std::string> merges;                 // BPE only: "left right", in rank order
  TokenId bos = -1, eos = -1, unk = -1, pad = -1;  // -1 when absent
  bool add_bos = false;                            // tokenizer.ggml.add_bos_token
  bool add_space_prefix = true;                    // SentencePiece: prepend a space to the text
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* metadata. Throws gguf::FormatError when it is missing or inconsistent
  // and std::invalid_argument for an unsupported tokenizer.ggml.model.
  static Tokenizer from_gguf(const gguf::File& file);
  explicit Tokenizer(TokenizerVocab vocab);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes UTF-8 text. add_bos prepends the BOS id (when the vocabulary has one). The text of
  // user-defined tokens is always recognised as those tokens; the text of control tokens (e.g.
  // "<|im_start|>") only when parse_special is set, otherwise it is tokenized as plain text.
  std::vector<TokenId> encode(std::string_view text, bool add_bos = false,
                              bool parse_special = false) const;
  // Decodes ids to text. Control tokens are rendered as their text only when render_special.
  // Throws std::out_of_range for ids outside the vocabulary.
  std::string decode(std::span<const TokenId> ids, bool render_special = false) const;
  // The raw bytes one token stands for (may be an incomplete UTF-8 sequence; see StreamDecoder).
  std::string token_to_bytes(TokenId id, bool render_special = false) const;

  // What the tokenizer was built from.
  const TokenizerVocab& vocab() const;
  std::size_t vocab_size() const { return vocab().tokens.size(); }
  TokenizerKind kind() const { return vocab().kind; }
  PreTokenizerKind pre_tokenizer() const { return vocab().pre; }
  TokenId bos_id() const { return vocab().bos; }
  TokenId eos_id() const { return vocab().eos; }
  TokenId unk_id() const { return vocab().unk; }
  TokenId pad_id() const { return vocab().pad; }
  bool add_bos_by_default() const { return vocab().add_bos; }  // tokenizer.ggml.add_bos_token
  const std::string& token_text(TokenId id) const;             // the vocabulary string as stored
  TokenType token_type(TokenId id) const;
  std::optional<TokenId> find_token(std::string_view text) const;  // exact vocabulary lookup

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text without ever emitting half a UTF-8 character: bytes of an
// incomplete multi-byte sequence are held back until the tokens that complete it arrive.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(&tokenizer), render_special_(render_special) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string push(TokenId id);
  // Returns whatever is still held back (an invalid trailing sequence is returned as is).
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace tq
