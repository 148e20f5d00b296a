// The loader and forward pass on tiny synthetic GGUF models built in memory: clear errors that
// name a missing tensor, a wrongly shaped tensor or an unsupported architecture; qwen2 picks
// NeoX RoPE and Q/K/V biases; prefill in chunks gives the same logits as one token at a time;
// --device cuda where it cannot run is a clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "batched_decode.hpp"
#include "test_gguf_writer.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"

namespace {

using tq::gguf::ValueType;
using tq::gguf::testing::f32_bytes;
using tq::gguf::testing::GgufBuilder;

constexpr int kEmbd = 32, kHeads = 4, kKvHeads = 2, kFf = 48, kVocab = 40, kLayers = 2;
constexpr int kHeadDim = kEmbd / kHeads;

struct BuildOptions {
  std::string arch = "llama";
  std::string skip;         // tensor left out
  std::string wrong_shape;  // tensor written with a transposed shape
  bool biases = false;
};

std::vector<std::uint8_t> build_model(const BuildOptions& o) {
  GgufBuilder b;
  b.add_string("general.architecture", o.arch);
  const std::string p = o.arch + ".";
  b.add<std::uint32_t>(p + "block_count", ValueType::kUint32, kLayers);
  b.add<std::uint32_t>(p + "embedding_length", ValueType::kUint32, kEmbd);
  b.add<std::uint32_t>(p + "feed_forward_length", ValueType::kUint32, kFf);
  b.add<std::uint32_t>(p + "attention.head_count", ValueType::kUint32, kHeads);
  b.add<std::uint32_t>(p + "attention.head_count_kv", ValueType::kUint32, kKvHeads);
  b.add<std::uint32_t>(p + "context_length", ValueType::kUint32, 64);
  b.add<float>(p + "attention.layer_norm_rms_epsilon", ValueType::kFloat32, 1e-6f);
  b.add<float>(p + "rope.freq_base", ValueType::kFloat32, 10000.0f);
  std::mt19937 rng(123);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  auto tensor = [&](const std::string& name, std::uint64_t d0, std::uint64_t d1) {
    if (name == o.skip) return;
    std::vector<float> v(d0 * d1);
    for (auto& x : v) x = dist(rng);
    if (name.find("norm") != std::string::npos) {
      for (auto& x : v) x = 1.0f + 0.1f * x;
    }
    std::vector<std::uint64_t> dims =
        d1 == 1 ? std::vector<std::uint64_t>{d0} : std::vector<std::uint64_t>{d0, d1};
    if (name == o.wrong_shape) std::swap(dims.front(), dims.back());
    b.add_tensor({name, dims, 0, f32_bytes(v), std::nullopt});
  };
  tensor("token_embd.weight", kEmbd, kVocab);
  tensor("output_norm.weight", kEmbd, 1);
  for (int l = 0; l < kLayers; ++l) {
    const std::string s = "blk." + std::to_string(l) + ".";
    tensor(s + "attn_norm.weight", kEmbd, 1);
    tensor(s + "attn_q.weight", kEmbd, kHeads * kHeadDim);
    tensor(s + "attn_k.weight", kEmbd, kKvHeads * kHeadDim);
    tensor(s + "attn_v.weight", kEmbd, kKvHeads * kHeadDim);
    if (o.biases) {
      tensor(s + "attn_q.bias", kHeads * kHeadDim, 1);
      tensor(s + "attn_k.bias", kKvHeads * kHeadDim, 1);
      tensor(s + "attn_v.bias", kKvHeads * kHeadDim, 1);
    }
    tensor(s + "attn_output.weight", kHeads * kHeadDim, kEmbd);
    tensor(s + "ffn_norm.weight", kEmbd, 1);
    tensor(s + "ffn_gate.weight", kEmbd, kFf);
    tensor(s + "ffn_up.weight", kEmbd, kFf);
    tensor(s + "ffn_down.weight", kFf, kEmbd);
  }
  return b.build();
}

tq::Model load(const BuildOptions& o) {
  const auto file = tq::gguf::File::from_bytes(build_model(o));
  return tq::Model::from_gguf(file, 1);
}

std::string error_of(const BuildOptions& o) {
  try {
    load(o);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ModelSynthetic, LoadsConfig) {
  const tq::Model m = load({});
  EXPECT_EQ(m.config().n_layers, kLayers);
  EXPECT_EQ(m.config().head_dim, kHeadDim);
  EXPECT_EQ(m.config().n_vocab, kVocab);
  EXPECT_TRUE(m.config().tied_embeddings);
  EXPECT_EQ(m.config().rope, tq::RopeOrdering::kNormal);
  EXPECT_EQ(m.load_stats().weight_bytes % 4, 0u);
}

TEST(ModelSynthetic, ErrorsNameTheProblem) {
  EXPECT_NE(error_of({.skip = "blk.1.ffn_up.weight"}).find("'blk.1.ffn_up.weight' is missing"),
            std::string::npos);
  const std::string shape = error_of({.wrong_shape = "blk.0.attn_k.weight"});
  EXPECT_NE(shape.find("blk.0.attn_k.weight"), std::string::npos) << shape;
  EXPECT_NE(shape.find("expected [32, 16]"), std::string::npos) << shape;
  EXPECT_NE(error_of({.arch = "gpt2"}).find("unsupported model architecture 'gpt2'"),
            std::string::npos);
  // qwen2 requires Q/K/V biases.
  EXPECT_NE(error_of({.arch = "qwen2"}).find("attn_q.bias"), std::string::npos);
}

TEST(ModelSynthetic, Qwen2UsesNeoxAndBiases) {
  const tq::Model m = load({.arch = "qwen2", .biases = true});
  EXPECT_EQ(m.config().rope, tq::RopeOrdering::kNeox);
  EXPECT_TRUE(m.config().qkv_bias);
  EXPECT_EQ(m.layer(0).bqkv.size(), static_cast<std::size_t>((kHeads + 2 * kKvHeads) * kHeadDim));
}

// Chunked prefill (chunk 3) and one token at a time must give the same logits everywhere:
// this exercises RoPE positions, the cache's append/attend offsets and the causal mask.
void check_chunking(const BuildOptions& o, const char* scheme) {
  const tq::Model m = load(o);
  const std::vector<tq::TokenId> ids = {3, 17, 5, 39, 0, 22, 8, 8, 11, 30};
  tq::SessionOptions chunked;
  chunked.prefill_chunk = 3;
  tq::Session a(m, scheme, chunked), b(m, scheme);
  std::vector<float> all(ids.size() * kVocab);
  a.eval(ids, all.data());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto logits = b.decode(ids[i]);
    for (int t = 0; t < kVocab; ++t) {
      ASSERT_NEAR(all[i * kVocab + t], logits[t], 2e-4) << scheme << " position " << i;
    }
  }
  EXPECT_EQ(a.position(), ids.size());
  EXPECT_EQ(a.kv_bytes().bytes, b.kv_bytes().bytes);
  EXPECT_THROW(a.decode(kVocab), std::invalid_argument);
}

TEST(ModelSynthetic, ChunkedPrefillEqualsTokenByToken) {
  check_chunking({}, "fp16");
  check_chunking({.arch = "qwen2", .biases = true}, "fp16");
  check_chunking({}, "tq4:window=0");
}

// decode_batch on the CPU: every active row equals its own single-sequence session (up to the
// summation order of a several-row matmul vs a one-row one), positions advance only for active
// sequences, and a bad batch call is refused.
TEST(ModelSynthetic, BatchedDecodeEqualsSingleSequences) {
  const tq::Model m = load({});
  const std::vector<std::vector<tq::TokenId>> prompts = {
      {3, 17, 5, 39, 0}, {9, 9, 1, 2, 3, 4, 5, 6, 7}, {21, 4}};
  for (const char* scheme : {"fp16", "tq4:window=4", "tq4:window=0", "tq3:kcodec=prod"}) {
    const auto r = tq::testing::check_batched_decode(m, scheme, {}, {}, prompts, 12);
    EXPECT_TRUE(r.positions_ok) << scheme;
    EXPECT_GT(r.rows, 20u) << scheme;
    EXPECT_LE(r.max_abs, 2e-4) << scheme;
  }
  tq::SessionOptions so;
  so.batch = 2;
  tq::Session s(m, "fp16", so);
  EXPECT_THROW(s.decode_batch(std::vector<tq::TokenId>{1}), std::invalid_argument);
  EXPECT_THROW(s.decode_batch(std::vector<tq::TokenId>{1, kVocab}), std::invalid_argument);
  EXPECT_THROW(s.eval(2, std::vector<tq::TokenId>{1}), std::invalid_argument);
  const std::vector<tq::TokenId> none = {tq::Session::kNoToken, tq::Session::kNoToken};
  s.decode_batch(none);
  EXPECT_EQ(s.position(0), 0u);
  so.batch = 0;
  EXPECT_THROW(tq::Session(m, "fp16", so), std::invalid_argument);
}

TEST(ModelSynthetic, ContextLimitIsEnforced) {
  const tq::Model m = load({});
  tq::SessionOptions so;
  so.max_context = 4;
  tq::Session s(m, "fp16", so);
  const std::vector<tq::TokenId> ids = {1, 2, 3, 4, 5};
  EXPECT_THROW(s.eval(ids), std::invalid_argument);
}

// Asking for the GPU says why it cannot be had: no CUDA in this build, no visible device, or (with
// a device) a head dim of 8 that the GPU kernels do not cover.
TEST(ModelSynthetic, CudaDeviceRefusalIsExplained) {
  const tq::Model m = load({});
  tq::SessionOptions so;
  so.device = tq::Device::Cuda;
  std::string message;
  try {
    tq::Session s(m, "fp16", so);
  } catch (const std::exception& e) {
    message = e.what();
  }
#ifndef TQ_HAVE_CUDA
  EXPECT_NE(message.find("no CUDA support"), std::string::npos) << message;
#else
  const bool no_device = message.find("no CUDA device is visible") != std::string::npos;
  const bool head_dim = message.find("head dim 8") != std::string::npos;
  EXPECT_TRUE(no_device || head_dim) << message;
#endif
  EXPECT_EQ(tq::parse_device("cuda"), tq::Device::Cuda);
  EXPECT_EQ(tq::parse_device("cpu"), tq::Device::Cpu);
  EXPECT_THROW(tq::parse_device("gpu"), std::invalid_argument);
}

}  // namespace
