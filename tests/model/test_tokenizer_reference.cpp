// SmolLM2 tokenizer against llama.cpp: tests/fixtures/smollm2_reference.json holds token ids that
// llama.cpp (via llama-cpp-python) produced for a set of strings and prompts; our tokenizer must
// reproduce every one of them exactly, and decode them back to the original text.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "turboquant/model/gguf.hpp"
#include "turboquant/model/tokenizer.hpp"

namespace tq {
namespace {

const char* kModel = TQ_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const char* kFixture = TQ_SOURCE_DIR "/tests/fixtures/smollm2_reference.json";

class SmolLM2Reference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) {
      GTEST_SKIP() << "model not found at " << kModel << " (run scripts/fetch_model.sh)";
    }
    if (!std::filesystem::exists(kFixture)) GTEST_SKIP() << "fixture not found at " << kFixture;
    std::ifstream in(kFixture);
    fixture_ = nlohmann::json::parse(in);
    tokenizer_.emplace(Tokenizer::from_gguf(gguf::File::open(kModel)));
  }

  nlohmann::json fixture_;
  std::optional<Tokenizer> tokenizer_;
};

TEST_F(SmolLM2Reference, MetadataAgrees) {
  const auto& meta = fixture_.at("meta");
  EXPECT_EQ(tokenizer_->vocab_size(), meta.at("n_vocab").get<std::size_t>());
  EXPECT_EQ(tokenizer_->bos_id(), meta.at("bos_id").get<TokenId>());
  EXPECT_EQ(tokenizer_->eos_id(), meta.at("eos_id").get<TokenId>());
}

TEST_F(SmolLM2Reference, TokenizerCasesMatchLlamaCpp) {
  const auto& cases = fixture_.at("tokenizer");
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    const bool add_bos = c.at("add_bos").get<bool>();
    const bool special = c.at("special").get<bool>();
    const auto expected = c.at("ids").get<std::vector<TokenId>>();
    const auto ids = tokenizer_->encode(text, add_bos, special);
    EXPECT_EQ(ids, expected) << "case " << c.at("name");
    EXPECT_EQ(tokenizer_->decode(expected, special), text) << "case " << c.at("name");
  }
}

TEST_F(SmolLM2Reference, PromptIdsMatchLlamaCpp) {
  const auto& prompts = fixture_.at("prompts");
  ASSERT_FALSE(prompts.empty());
  for (const auto& p : prompts) {
    const std::string text = p.at("text");
    const auto& bos = p.at("add_bos");
    const bool add_bos = bos.is_boolean() ? bos.get<bool>() : bos.get<std::string>() == "True";
    const auto expected = p.at("ids").get<std::vector<TokenId>>();
    EXPECT_EQ(tokenizer_->encode(text, add_bos, true), expected) << "prompt " << p.at("name");
    // Greedy continuations decode and re-stream consistently.
    if (p.contains("greedy") && p.at("greedy").contains("ids")) {
      const auto greedy = p.at("greedy").at("ids").get<std::vector<TokenId>>();
      StreamDecoder stream(*tokenizer_);
      std::string streamed;
      for (TokenId id : greedy) streamed += stream.push(id);
      streamed += stream.flush();
      EXPECT_EQ(streamed, tokenizer_->decode(greedy)) << "prompt " << p.at("name");
    }
  }
}

}  // namespace
}  // namespace tq
