// Random-weight models (random_model.hpp): the shape table carries the published
// hyper-parameters; every shape's file loads (config, architecture quirks, tokenizer) once shrunk
// to test size; the bytes depend on the seed but not on the thread count; and the scales keep
// logits O(1) and input-dependent through many layers, in F32 and in Q4_0.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/random_model.hpp"
#include "turboquant/model/tokenizer.hpp"

namespace {

using tq::RandomModelOptions;
using tq::RandomModelShape;
using tq::gguf::TensorType;

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("tq_random_model_" + std::to_string(::getpid()) + "_" + name);
}

std::vector<char> file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// A shape small enough for a test, keeping the architecture and its quirks.
RandomModelShape shrunk(RandomModelShape s, int layers = 2) {
  s.layers = layers;
  s.embedding = 128;
  s.feed_forward = 256;
  s.heads = 4;
  s.kv_heads = s.kv_heads == s.heads ? 4 : 2;
  s.head_dim = 32;
  s.vocab = 512;
  return s;
}

TEST(RandomModel, ShapesCarryTheirPublishedHyperParameters) {
  const RandomModelShape& llama = tq::find_random_model_shape("Llama-3.1-8B");
  EXPECT_EQ(llama.layers, 32);
  EXPECT_EQ(llama.embedding, 4096);
  EXPECT_EQ(llama.feed_forward, 14336);
  EXPECT_EQ(llama.kv_heads, 8);
  EXPECT_EQ(llama.vocab, 128256);
  EXPECT_EQ(llama.rope_base, 500000.0);
  EXPECT_TRUE(llama.llama3_rope);
  const RandomModelShape& qwen = tq::find_random_model_shape("qwen2.5-7b");
  EXPECT_EQ(qwen.architecture, "qwen2");
  EXPECT_TRUE(qwen.qkv_bias);
  EXPECT_EQ(qwen.heads, 28);
  EXPECT_EQ(qwen.kv_heads, 4);
  EXPECT_EQ(qwen.vocab, 152064);
  const RandomModelShape& smol = tq::find_random_model_shape("smollm2-135m");
  EXPECT_TRUE(smol.tied_embeddings);
  EXPECT_EQ(smol.layers, 30);
  EXPECT_EQ(tq::find_random_model_shape("mistral-7b").vocab, 32768);
  const RandomModelShape& gemma = tq::find_random_model_shape("gemma3-270m");
  EXPECT_EQ(gemma.architecture, "gemma3");
  EXPECT_EQ(gemma.head_dim, 256);
  EXPECT_EQ(gemma.kv_heads, 1);
  EXPECT_EQ(gemma.vocab, 262144);
  EXPECT_EQ(gemma.sliding_window, 512);
  EXPECT_EQ(gemma.sliding_window_pattern, 6);
  EXPECT_THROW(tq::find_random_model_shape("llama-2"), std::invalid_argument);
  EXPECT_EQ(tq::parse_random_weight_type("Q4_0"), TensorType::kQ4_0);
  EXPECT_THROW(tq::parse_random_weight_type("q4_1"), std::invalid_argument);

  // An 8B file in Q4_0: 8.03 G parameters at 18 bytes per 32, about 4.5 GB (counted, not written).
  RandomModelOptions o;
  o.shape = llama;
  o.weights = TensorType::kQ4_0;
  const tq::gguf::Writer layout = tq::random_model_layout(o);
  const double bytes = static_cast<double>(layout.file_size());
  EXPECT_GT(bytes, 4.4e9);
  EXPECT_LT(bytes, 4.7e9);
  std::uint64_t params = 0;
  for (const auto& t : layout.tensors()) params += t.n_elements();
  EXPECT_NEAR(static_cast<double>(params), 8.03e9, 0.01e9);
}

TEST(RandomModel, EveryShapeLoadsWithItsQuirksAndTokenizer) {
  for (const RandomModelShape& full : tq::random_model_shapes()) {
    SCOPED_TRACE(full.name);
    RandomModelOptions o;
    o.shape = shrunk(full);
    o.weights = TensorType::kQ8_0;
    o.seed = 7;
    const auto path = temp_path(full.name + ".gguf");
    tq::write_random_model(o, path);
    const auto file = tq::gguf::File::open(path);
    EXPECT_TRUE(tq::has_random_weights(file));
    EXPECT_EQ(file.get_string("general.name"), "random " + full.name + " seed 7");
    const tq::ModelConfig c = tq::Model::read_config(file);
    EXPECT_EQ(c.architecture, full.architecture);
    EXPECT_EQ(c.n_vocab, 512);
    EXPECT_EQ(c.context_length, full.context);
    EXPECT_EQ(c.rope_base, full.rope_base);
    EXPECT_FLOAT_EQ(c.rms_eps, full.rms_eps);
    EXPECT_EQ(c.qkv_bias, full.qkv_bias);
    EXPECT_EQ(c.tied_embeddings, full.tied_embeddings);
    const bool neox = full.architecture == "qwen2" || full.architecture == "gemma3";
    EXPECT_EQ(c.rope, neox ? tq::RopeOrdering::kNeox : tq::RopeOrdering::kNormal);
    const bool gemma3 = full.architecture == "gemma3";
    EXPECT_EQ(c.qk_norm, gemma3);
    EXPECT_EQ(c.sandwich_norms, gemma3);
    EXPECT_EQ(c.sliding_window, full.sliding_window);
    if (gemma3) {
      EXPECT_EQ(c.sliding_window_pattern, full.sliding_window_pattern);
      EXPECT_EQ(c.rope_base_sliding, full.rope_base_sliding);
      EXPECT_EQ(c.ffn_activation, tq::FfnActivation::kGeluTanh);
    }
    EXPECT_EQ(file.find_tensor("rope_freqs.weight") != nullptr, full.llama3_rope);
    if (full.llama3_rope) {
      // Llama 3.1: high frequencies kept (divisor 1), the lowest divided by the factor 8.
      const auto f = file.dequantize(file.tensor("rope_freqs.weight"));
      EXPECT_EQ(f.front(), 1.0f);
      EXPECT_EQ(f.back(), 8.0f);
    }
    const tq::Model model = tq::Model::from_gguf(file, 1);
    const tq::Tokenizer tok = tq::Tokenizer::from_gguf(file);
    EXPECT_EQ(tok.vocab_size(), 512u);
    EXPECT_EQ(tok.bos_id(), 256);
    EXPECT_EQ(tok.eos_id(), 257);
    EXPECT_EQ(tok.add_bos_by_default(), full.add_bos);
    const std::string text = "h\xc3\xa9llo, world 42\n";
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids.size(), text.size());  // byte by byte: no merges
    EXPECT_EQ(tok.decode(ids), text);
    std::filesystem::remove(path);
  }
}

TEST(RandomModel, BytesDependOnTheSeedNotOnThreads) {
  RandomModelOptions o;
  o.shape = shrunk(tq::find_random_model_shape("qwen2.5-7b"));
  o.weights = TensorType::kQ4_0;
  o.seed = 11;
  const auto a = temp_path("a.gguf"), b = temp_path("b.gguf"), c = temp_path("c.gguf");
  o.threads = 1;
  tq::write_random_model(o, a);
  o.threads = 3;
  tq::write_random_model(o, b);
  o.seed = 12;
  tq::write_random_model(o, c);
  EXPECT_EQ(file_bytes(a), file_bytes(b));
  // Another seed changes every random tensor, not only general.name.
  const auto fa = tq::gguf::File::open(a), fc = tq::gguf::File::open(c);
  for (const auto& t : fa.tensors()) {
    const auto& u = fc.tensor(t.name);
    const bool equal = std::equal(t.data, t.data + t.n_bytes, u.data);
    const bool constant = t.name.find("norm") != std::string::npos;
    EXPECT_EQ(equal, constant) << t.name;
  }
  for (const auto& p : {a, b, c}) std::filesystem::remove(p);
}

// Logits at every position of a 24-layer model: finite, of std between 0.3 and 3, and not the
// same argmax everywhere (the residual stream still carries the input).
void expect_sane_logits(TensorType weights, const std::string& shape = "llama-3.1-8b") {
  SCOPED_TRACE(shape);
  RandomModelOptions o;
  o.shape = shrunk(tq::find_random_model_shape(shape), 24);
  o.weights = weights;
  o.seed = 5;
  const auto path = temp_path("deep.gguf");
  tq::write_random_model(o, path);
  const auto file = tq::gguf::File::open(path);
  const tq::Model model = tq::Model::from_gguf(file, 1);
  tq::SessionOptions so;
  so.threads = 1;
  tq::Session session(model, "fp16", so);
  const std::vector<tq::TokenId> ids = {256, 72,  101, 108, 108, 111, 32,  119,
                                        111, 114, 108, 100, 33,  10,  400, 3};
  const int V = model.config().n_vocab;
  std::vector<float> all(ids.size() * static_cast<std::size_t>(V));
  session.eval(ids, all.data());
  std::set<int> argmaxes;
  for (std::size_t p = 0; p < ids.size(); ++p) {
    const float* l = all.data() + p * static_cast<std::size_t>(V);
    double sum = 0, sq = 0;
    int best = 0;
    for (int v = 0; v < V; ++v) {
      ASSERT_TRUE(std::isfinite(l[v])) << "position " << p;
      sum += l[v];
      sq += static_cast<double>(l[v]) * l[v];
      if (l[v] > l[best]) best = v;
    }
    const double mean = sum / V, sd = std::sqrt(sq / V - mean * mean);
    EXPECT_GT(sd, 0.3) << "position " << p;
    EXPECT_LT(sd, 3.0) << "position " << p;
    argmaxes.insert(best);
  }
  EXPECT_GE(argmaxes.size(), 4u);
  std::filesystem::remove(path);
}

TEST(RandomModel, LogitsStayOrderOneThroughManyLayers) {
  expect_sane_logits(TensorType::kF32);
  expect_sane_logits(TensorType::kQ4_0);
  expect_sane_logits(TensorType::kQ8_0, "gemma3-270m");  // sandwich norms, GeGLU, windows
}

}  // namespace
