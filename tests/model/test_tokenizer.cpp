// Tokenizer tests: synthetic byte-level BPE and SentencePiece vocabularies with hand-checked
// results, and (when the default model is present) SmolLM2's tokenizer against ids produced by
// the Hugging Face `tokenizers` library from the same GGUF vocabulary and merges, for all four
// pre-tokenizers. Also round trips, special tokens, streaming decode, chat templates and speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <string_view>
#include <vector>

#include "turboquant/model/chat_template.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/tokenizer.hpp"

namespace tq {
namespace {

const char* kModelPath = TQ_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

#define REQUIRE_MODEL()                                                                     \
  if (!std::filesystem::exists(kModelPath)) {                                               \
    GTEST_SKIP() << "model not found at " << kModelPath << " (run scripts/fetch_model.sh)"; \
  }

// A byte-level vocabulary: the 256 byte characters of GPT-2's byte map (printable bytes map to
// themselves, the others to U+0100 upwards in byte order, so the space byte is "Ġ" = U+0120),
// a few merged tokens and one control token.
TokenizerVocab tiny_bpe_vocab() {
  TokenizerVocab v;
  v.kind = TokenizerKind::kBytePairGpt2;
  v.pre = PreTokenizerKind::kGpt2;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    const int cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xc0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3f));
    }
    v.tokens.push_back(s);
  }
  for (const char* t :
       {"lo", "low", "er", "lower", "Ġl", "Ġlo", "Ġlow", "Ġlower", "<udt>", "<|sep|>"}) {
    v.tokens.push_back(t);
  }
  v.merges = {"l o", "lo w", "e r", "Ġ l", "Ġl o", "Ġlo w", "low er", "Ġlow er"};
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types.back() = TokenType::kControl;
  v.types[v.types.size() - 2] = TokenType::kUserDefined;
  v.eos = static_cast<TokenId>(v.tokens.size() - 1);
  return v;
}

TEST(TokenizerBpe, MergesFollowRankOrder) {
  const Tokenizer tok(tiny_bpe_vocab());
  auto id = [&](const std::string& s) { return tok.find_token(s).value(); };
  EXPECT_EQ(tok.encode("low"), (std::vector<TokenId>{id("low")}));
  EXPECT_EQ(tok.encode("lower"), (std::vector<TokenId>{id("lower")}));
  EXPECT_EQ(tok.encode("erlo"), (std::vector<TokenId>{id("er"), id("lo")}));
  // "l o" (rank 0) is merged before "Ġ l" (rank 3), so " lower" never reaches "Ġlower":
  // Ġ l o w e r -> Ġ lo w e r -> Ġ low e r -> Ġ low er -> Ġ lower.
  EXPECT_EQ(tok.encode(" lower"), (std::vector<TokenId>{id("Ġ"), id("lower")}));
  // " l" alone does merge.
  EXPECT_EQ(tok.encode(" l"), (std::vector<TokenId>{id("Ġl")}));
  EXPECT_EQ(tok.encode("x"), (std::vector<TokenId>{id("x")}));
  // Every byte string round-trips, including invalid UTF-8.
  const std::string bytes("\xff\xfe a\x80 \xc3", 7);
  EXPECT_EQ(tok.decode(tok.encode(bytes)), bytes);
}

TEST(TokenizerBpe, SpecialTokensOnlyWhenAllowed) {
  const Tokenizer tok(tiny_bpe_vocab());
  const TokenId sep = tok.eos_id();
  const auto plain = tok.encode("low<|sep|>low");
  EXPECT_EQ(std::count(plain.begin(), plain.end(), sep), 0);
  const auto special = tok.encode("low<|sep|>low", false, true);
  const TokenId low = tok.find_token("low").value();
  EXPECT_EQ(special, (std::vector<TokenId>{low, sep, low}));
  EXPECT_EQ(tok.decode(special), "lowlow");
  EXPECT_EQ(tok.decode(special, true), "low<|sep|>low");
  // User-defined tokens are matched (and rendered) even without the special flags.
  const TokenId udt = tok.find_token("<udt>").value();
  EXPECT_EQ(tok.encode("low<udt>low"), (std::vector<TokenId>{low, udt, low}));
  EXPECT_EQ(tok.decode(tok.encode("low<udt>low")), "low<udt>low");
  EXPECT_THROW(tok.decode(std::vector<TokenId>{-1}), std::out_of_range);
  EXPECT_THROW(tok.decode(std::vector<TokenId>{static_cast<TokenId>(tok.vocab_size())}),
               std::out_of_range);
}

TEST(TokenizerBpe, PreTokenizerNames) {
  EXPECT_EQ(pre_tokenizer_from_name("smollm"), PreTokenizerKind::kSmolLM);
  EXPECT_EQ(pre_tokenizer_from_name("llama-bpe"), PreTokenizerKind::kLlama3);
  EXPECT_EQ(pre_tokenizer_from_name("qwen2"), PreTokenizerKind::kQwen2);
  EXPECT_EQ(pre_tokenizer_from_name("default"), PreTokenizerKind::kGpt2);
  EXPECT_EQ(pre_tokenizer_from_name("gpt-2"), PreTokenizerKind::kGpt2);
}

// ---- SentencePiece ---------------------------------------------------------------------------

const std::string kSp = "\xe2\x96\x81";  // U+2581

TokenizerVocab tiny_spm_vocab() {
  TokenizerVocab v;
  v.kind = TokenizerKind::kSentencePiece;
  auto add = [&](std::string text, float score, TokenType type) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, TokenType::kUnknown);
  add("<s>", 0, TokenType::kControl);
  add("</s>", 0, TokenType::kControl);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 0, TokenType::kByte);
  }
  for (const char* c : {"h", "e", "l", "o", "w", "r", "d", "a", "b", "c"}) {
    add(c, -10, TokenType::kNormal);
  }
  add(kSp, -10, TokenType::kNormal);
  float score = -1;
  for (const char* w : {"h", "he", "hel", "hell", "hello"})
    add(kSp + w, score--, TokenType::kNormal);
  score = -1;
  for (const char* w : {"w", "wo", "wor", "worl", "world"})
    add(kSp + w, score--, TokenType::kNormal);
  add("ab", -1.0f, TokenType::kNormal);
  add("bc", -0.5f, TokenType::kNormal);  // higher score: wins over "ab" in "abc"
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

TEST(TokenizerSpm, ScoresDriveMergesAndBytesFallBack) {
  const Tokenizer tok(tiny_spm_vocab());
  auto id = [&](const std::string& s) { return tok.find_token(s).value(); };
  EXPECT_EQ(tok.encode("hello world", true),
            (std::vector<TokenId>{1, id(kSp + "hello"), id(kSp + "world")}));
  EXPECT_EQ(tok.decode(tok.encode("hello world", true)), "hello world");
  // "é" is not in the vocabulary: its two UTF-8 bytes fall back to <0xC3><0xA9>.
  EXPECT_EQ(tok.encode("hello \xc3\xa9"),
            (std::vector<TokenId>{id(kSp + "hello"), id(kSp), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(tok.decode(tok.encode("hello \xc3\xa9")), "hello \xc3\xa9");
  // Higher score first: "abc" -> a + bc, not ab + c.
  EXPECT_EQ(tok.encode("abc"), (std::vector<TokenId>{id(kSp), id("a"), id("bc")}));
  EXPECT_EQ(tok.decode(tok.encode("  a b  ")), "  a b  ");
  EXPECT_EQ(tok.encode(""), std::vector<TokenId>{});
  // After a special token the space prefix is added again (as SentencePiece tokenizes each text
  // fragment separately).
  EXPECT_EQ(tok.encode("hello</s>world", false, true),
            (std::vector<TokenId>{id(kSp + "hello"), 2, id(kSp + "world")}));
  EXPECT_EQ(tok.kind(), TokenizerKind::kSentencePiece);
}

TEST(TokenizerSpm, StreamDecoderHoldsIncompleteCharacters) {
  const Tokenizer tok(tiny_spm_vocab());
  const auto ids = tok.encode("hello \xe6\x97\xa5");  // a 3-byte character via byte fallback
  StreamDecoder stream(tok);
  std::vector<std::string> pieces;
  for (TokenId id : ids) pieces.push_back(stream.push(id));
  pieces.push_back(stream.flush());
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, " hello \xe6\x97\xa5");  // streaming keeps the prefix space
  // No piece ends inside the 3-byte character.
  for (const auto& p : pieces) {
    if (p.find('\xe6') != std::string::npos) {
      EXPECT_EQ(p.back(), '\xa5');
    }
  }
}

// ---- SmolLM2 (real model) --------------------------------------------------------------------

const Tokenizer& smollm_tokenizer() {
  static const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(kModelPath));
  return tok;
}

TEST(TokenizerSmolLM2, MetadataAndKnownIds) {
  REQUIRE_MODEL();
  const Tokenizer& tok = smollm_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 49152u);
  EXPECT_EQ(tok.kind(), TokenizerKind::kBytePairGpt2);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizerKind::kSmolLM);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.pad_id(), 2);
  EXPECT_FALSE(tok.add_bos_by_default());
  EXPECT_EQ(tok.token_text(1), "<|im_start|>");
  EXPECT_EQ(tok.token_type(1), TokenType::kControl);
  // Ids from the Hugging Face `tokenizers` BPE built from this file's vocabulary and merges.
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<TokenId>{19556, 905}));
  EXPECT_EQ(tok.encode("<|im_start|>user\nhi<|im_end|>", false, true),
            (std::vector<TokenId>{1, 4093, 198, 6004, 2}));
  EXPECT_EQ(tok.encode("<|im_start|>user\nhi<|im_end|>"),
            (std::vector<TokenId>{44, 108, 306, 79, 3738, 108, 46, 4093, 198, 6004, 44, 108, 306,
                                  79, 486, 108, 46}));
  EXPECT_EQ(tok.encode("hi", true), (std::vector<TokenId>{1, 6004}));
}

// Expected ids: Hugging Face `tokenizers` with the SmolLM2 vocabulary/merges and each model
// family's pre-tokenizer regex (Split + ByteLevel; Llama 3 with ignore_merges). SmolLM2's
// merges never join digits, so most texts give the same ids under all four.
struct PreCase {
  std::string_view text;
  std::vector<TokenId> ids;               // what every pre-tokenizer gives ...
  std::vector<PreTokenizerKind> differ;   // ... except these,
  std::vector<TokenId> ids_where_differ;  // which give these ids
};

const std::vector<PreCase>& pre_cases() {
  using enum PreTokenizerKind;
  static const std::vector<PreCase> cases = {
      {"Hello world! It's 12345 o'clock.",
       {19556, 905, 17, 657, 506, 216, 33, 34, 35, 36, 37, 263, 23, 17466, 30}},
      {"I'M HERE, YOU'LL SEE", {57, 23, 61, 27873, 28, 12246, 23, 16421, 334, 8405}},
      {"  two  spaces\n\n\tand tabs \n", {216, 827, 216, 5600, 1116, 197, 397, 29416, 3717}},
      {"naïve café 日本語 мир",
       {3546, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248, 41337, 7872, 9175}},
      // Llama 3 / Qwen2 keep ";\r\n" together (punctuation takes the newlines after it).
      {"x=1234567;\r\ny = x+42",
       {104, 45, 33, 34, 35, 36, 37, 38, 39, 43, 201, 198, 105, 446, 1792, 27, 36, 34},
       {kLlama3, kQwen2},
       {104, 45, 33, 34, 35, 36, 37, 38, 39, 43, 2738, 105, 446, 1792, 27, 36, 34}},
      {"emoji 🎉 ok", {391, 33777, 15107, 232, 227, 10907}},
      // No-break space, ideographic space, U+2177 (a letter-number), superscript two (a number).
      {"a\u00a0b\u3000c ⅷ ²",
       {81, 15442, 82, 12109, 218, 83, 216, 173, 223, 132, 216, 19133},
       {kGpt2},
       {81, 15442, 82, 12109, 218, 83, 4636, 223, 132, 3351, 127}},
  };
  return cases;
}

TEST(TokenizerSmolLM2, PreTokenizersMatchReference) {
  REQUIRE_MODEL();
  const gguf::File f = gguf::File::open(kModelPath);
  for (PreTokenizerKind pre : {PreTokenizerKind::kGpt2, PreTokenizerKind::kSmolLM,
                               PreTokenizerKind::kLlama3, PreTokenizerKind::kQwen2}) {
    TokenizerVocab v;
    v.pre = pre;
    v.tokens = f.get_string_array("tokenizer.ggml.tokens");
    v.merges = f.get_string_array("tokenizer.ggml.merges");
    const Tokenizer tok(std::move(v));
    for (const auto& c : pre_cases()) {
      const bool differs = std::find(c.differ.begin(), c.differ.end(), pre) != c.differ.end();
      EXPECT_EQ(tok.encode(c.text), differs ? c.ids_where_differ : c.ids)
          << "pre=" << static_cast<int>(pre) << " text=" << c.text;
      EXPECT_EQ(tok.decode(tok.encode(c.text)), c.text);
    }
  }
}

TEST(TokenizerSmolLM2, RoundTripsAndStreaming) {
  REQUIRE_MODEL();
  const Tokenizer& tok = smollm_tokenizer();
  std::mt19937 rng(7);
  const std::vector<std::string> alphabet = {"a",
                                             "Z",
                                             " ",
                                             "  ",
                                             "\n",
                                             "\t",
                                             "1",
                                             "'s",
                                             "!",
                                             "\xc3\xa9",
                                             "\xe4\xb8\xad",
                                             "\xf0\x9f\x8e\x89",
                                             "\xe2\x80\x83",
                                             "<|im_end|>"};
  // (Only valid UTF-8 here: SmolLM2's vocabulary lacks the byte tokens of bytes that never occur
  // in UTF-8, such as 0xFF; invalid input round-trips with a full byte vocabulary, see above.)
  for (int trial = 0; trial < 300; ++trial) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) s += alphabet[rng() % alphabet.size()];
    const auto ids = tok.encode(s);
    ASSERT_EQ(tok.decode(ids), s);
    StreamDecoder stream(tok);
    std::string streamed;
    for (TokenId id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    ASSERT_EQ(streamed, s);
  }
  // An emoji is split over byte tokens; the streaming decoder never emits half of it.
  const auto ids = tok.encode("\xf0\x9f\x8e\x89");
  ASSERT_GT(ids.size(), 1u);
  StreamDecoder stream(tok);
  std::string first = stream.push(ids[0]);
  EXPECT_TRUE(first.empty());
}

TEST(TokenizerSmolLM2, ChatTemplatePrompt) {
  REQUIRE_MODEL();
  const gguf::File f = gguf::File::open(kModelPath);
  const ChatTemplate t = detect_chat_template(f);
  EXPECT_EQ(t.kind, ChatTemplateKind::kChatML);
  EXPECT_EQ(t.default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const std::vector<ChatMessage> messages = {{"user", "What is 2+2?"}};
  const std::string prompt = apply_chat_template(t, messages, true);
  EXPECT_EQ(prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  const auto ids = smollm_tokenizer().encode(prompt, false, true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 3);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 2);
}

TEST(TokenizerSmolLM2, Encodes300KBQuickly) {
  REQUIRE_MODEL();
  const Tokenizer& tok = smollm_tokenizer();
  // Pseudo-random words (so the per-call word cache does not make it trivial), digits, newlines.
  std::mt19937 rng(3);
  const char* syllables[] = {"ka", "lo", "mi", "tre", "zu", "an", "ol", "ing", "ex", "qu", "th"};
  std::string text;
  while (text.size() < 300 * 1024) {
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < n; ++i) text += syllables[rng() % 11];
    const unsigned r = rng() % 20;
    text += r == 0 ? ".\n" : r == 1 ? ", " : r == 2 ? " 42 " : " ";
  }
  text += std::string(2000, 'x');  // one long word: must not be quadratic
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ timing ] encoded %zu bytes into %zu tokens in %.3f s\n", text.size(), ids.size(),
              seconds);
  EXPECT_EQ(tok.decode(ids), text);
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(seconds, 1.0);  // ~0.03 s measured in Release; only asserted in optimized builds
#endif
}

// ---- chat templates without a model ----------------------------------------------------------

TEST(ChatTemplate, DetectionAndFormats) {
  EXPECT_EQ(detect_chat_template("").kind, ChatTemplateKind::kPlain);
  EXPECT_EQ(detect_chat_template("{{ '<|start_header_id|>' }}").kind, ChatTemplateKind::kLlama3);
  const ChatTemplate chatml = detect_chat_template("{{'<|im_start|>' + message['role']}}");
  EXPECT_EQ(chatml.kind, ChatTemplateKind::kChatML);
  EXPECT_TRUE(chatml.default_system.empty());
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(apply_chat_template(chatml, msgs, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  ChatTemplate with_default = chatml;
  with_default.default_system = "Default.";
  // An explicit system message replaces the default one.
  EXPECT_EQ(apply_chat_template(with_default, msgs, false),
            apply_chat_template(chatml, msgs, false));
  EXPECT_EQ(apply_chat_template(ChatTemplate{ChatTemplateKind::kLlama3, ""}, msgs, true),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(apply_chat_template(ChatTemplate{}, msgs, true),
            "system: Be brief.\nuser: Hi\nassistant:");
  EXPECT_EQ(chat_template_name(ChatTemplateKind::kChatML), "chatml");
}

}  // namespace
}  // namespace tq
