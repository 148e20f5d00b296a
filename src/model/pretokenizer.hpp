// Pre-tokenization for byte-level BPE (tokenizer.ggml.pre): the text is split into words, and
// BPE merges only within a word. The rules are hand-written versions of the GPT-2,
// SmolLM/StarCoder, Llama 3 and Qwen2 regexes (std::regex has no notion of the Unicode letter and
// number categories they use), checked against Hugging Face `tokenizers` in
// tests/model/test_tokenizer.cpp.
#pragma once

#include "turboquant/model/tokenizer.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace tq::pretokenizer {

// A code point with the byte offset it starts at. Invalid UTF-8 bytes become one code point each
// (kInvalidCodepoint, category "other") so that byte-level BPE still sees every original byte.
inline constexpr std::uint32_t kInvalidCodepoint = 0xFFFFFFFF;

struct Codepoint {
  std::uint32_t cp;
  std::uint32_t offset;  // byte offset in the text
};

std::vector<Codepoint> to_codepoints(std::string_view text);

// A word: the code points [begin, end) of the text.
struct Word {
  std::size_t begin;
  std::size_t end;
};

// The words of the text in order; together they cover every code point once.
std::vector<Word> split_words(const std::vector<Codepoint>& cps, PreTokenizerKind kind);

}  // namespace tq::pretokenizer
