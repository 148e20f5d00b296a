// Tokenizer construction from GGUF metadata (synthetic files): the SentencePiece path with scores,
// token types and defaults, and the errors for inconsistent or unsupported tokenizer metadata.
#include <gtest/gtest.h>

#include "test_gguf_writer.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/tokenizer.hpp"

namespace tq {
namespace {

using gguf::ValueType;
using gguf::testing::GgufBuilder;

const std::string kSp = "\xe2\x96\x81";  // U+2581

// A SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then a few pieces.
GgufBuilder spm_builder() {
  GgufBuilder b;
  b.add_string("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<std::int32_t> types = {2, 3, 3};
  for (int i = 0; i < 256; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", i);
    tokens.push_back(name);
    scores.push_back(0);
    types.push_back(6);
  }
  for (const std::string& piece :
       {kSp, kSp + "a", kSp + "ab", std::string("a"), std::string("b")}) {
    tokens.push_back(piece);
    scores.push_back(-static_cast<float>(piece.size()));
    types.push_back(1);
  }
  b.add_string_array("tokenizer.ggml.tokens", tokens);
  b.add_array<float>("tokenizer.ggml.scores", ValueType::kFloat32, scores);
  b.add_array<std::int32_t>("tokenizer.ggml.token_type", ValueType::kInt32, types);
  b.add<std::uint32_t>("tokenizer.ggml.bos_token_id", ValueType::kUint32, 1);
  b.add<std::uint32_t>("tokenizer.ggml.eos_token_id", ValueType::kUint32, 2);
  b.add<std::uint32_t>("tokenizer.ggml.unknown_token_id", ValueType::kUint32, 0);
  return b;
}

TEST(TokenizerFromGguf, SentencePieceDefaults) {
  const auto file = gguf::File::from_bytes(spm_builder().build());
  const Tokenizer tok = Tokenizer::from_gguf(file);
  EXPECT_EQ(tok.kind(), TokenizerKind::kSentencePiece);
  EXPECT_TRUE(tok.add_bos_by_default());  // SentencePiece default when the key is absent
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(tok.token_type(3), TokenType::kByte);
  const TokenId ab = tok.find_token(kSp + "ab").value();
  // "ab b" -> ▁ab ▁ b (space prefix added, ▁b is no token so ▁ and b stay apart).
  const auto ids = tok.encode("ab b", true);
  EXPECT_EQ(
      ids, (std::vector<TokenId>{1, ab, tok.find_token(kSp).value(), tok.find_token("b").value()}));
  EXPECT_EQ(tok.decode(ids), "ab b");
  // "c" has no piece: byte fallback.
  EXPECT_EQ(tok.encode("c").back(), tok.find_token("<0x63>").value());
  EXPECT_EQ(tok.decode(tok.encode("c")), "c");
}

TEST(TokenizerFromGguf, SpacePrefixCanBeDisabled) {
  GgufBuilder b = spm_builder();
  b.add<std::uint8_t>("tokenizer.ggml.add_space_prefix", ValueType::kBool, 0);
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::from_bytes(b.build()));
  EXPECT_EQ(tok.encode("ab"),
            (std::vector<TokenId>{tok.find_token("a").value(), tok.find_token("b").value()}));
  EXPECT_EQ(tok.decode(tok.encode(" ab")), " ab");
}

TEST(TokenizerFromGguf, InconsistentMetadataIsRejected) {
  {
    GgufBuilder b;
    b.add_string("tokenizer.ggml.model", "bert");
    b.add_string_array("tokenizer.ggml.tokens", {"a"});
    EXPECT_THROW(Tokenizer::from_gguf(gguf::File::from_bytes(b.build())), std::invalid_argument);
  }
  {
    GgufBuilder b = spm_builder();
    b.add<std::uint32_t>("tokenizer.ggml.padding_token_id", ValueType::kUint32, 100000);
    EXPECT_THROW(Tokenizer::from_gguf(gguf::File::from_bytes(b.build())), gguf::FormatError);
  }
  {
    GgufBuilder b;
    b.add_string("tokenizer.ggml.model", "llama");
    b.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
    b.add_array<float>("tokenizer.ggml.scores", ValueType::kFloat32, {0.0f});
    EXPECT_THROW(Tokenizer::from_gguf(gguf::File::from_bytes(b.build())), gguf::FormatError);
  }
  {
    GgufBuilder b;
    b.add_string("tokenizer.ggml.model", "gpt2");
    b.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
    EXPECT_THROW(Tokenizer::from_gguf(gguf::File::from_bytes(b.build())), gguf::FormatError)
        << "merges are required for gpt2";
  }
  {
    GgufBuilder b;
    b.add_string("tokenizer.ggml.model", "gpt2");
    b.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
    b.add_string_array("tokenizer.ggml.merges", {"ab"});
    EXPECT_THROW(Tokenizer::from_gguf(gguf::File::from_bytes(b.build())), gguf::FormatError);
  }
  {
    GgufBuilder b;
    b.add_string("tokenizer.ggml.model", "gpt2");
    b.add_string_array("tokenizer.ggml.tokens", {});
    b.add_string_array("tokenizer.ggml.merges", {});
    EXPECT_THROW(Tokenizer::from_gguf(gguf::File::from_bytes(b.build())), std::invalid_argument);
  }
}

}  // namespace
}  // namespace tq
