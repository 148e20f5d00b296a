// Tests of the per-layer KV sensitivity (turboquant/eval/sensitivity.hpp): the single-layer
// scheme compresses exactly one layer on one side; on fake models whose error is known per
// layer and side the results come back in layer order, on the right side, zero where a layer
// adds no error, with the fp16 reference run first and fp16 sides not run; on a tiny synthetic
// GGUF model every compressed layer moves the distribution, and a window holding every token
// (nothing compressed) gives exactly zero.
#include "turboquant/eval/sensitivity.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"

#include "model/test_gguf_writer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace tq::eval {
namespace {

tq::SessionOptions one_thread() {
  tq::SessionOptions so;
  so.threads = 1;
  return so;
}

// Logits that depend on the previous token and the position, plus an error of size
// `noise` (zero: the exact model).
class NoisyModel : public LogitsModel {
 public:
  NoisyModel(std::size_t vocab, double noise) : vocab_(vocab), noise_(noise), last_(vocab) {}
  std::size_t n_vocab() const override { return vocab_; }
  void reset() override { pos_ = 0; }
  std::span<const float> eval(std::span<const TokenId> tokens, float* all_logits) override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      for (std::size_t v = 0; v < vocab_; ++v) {
        const double x = 2.0 * std::sin(0.37 * tokens[i] * (v + 1) + 0.01 * pos_) +
                         noise_ * std::cos(1.3 * v + 0.7 * tokens[i] + 0.11 * pos_);
        last_[v] = static_cast<float>(x);
      }
      ++pos_;
      if (all_logits) std::copy(last_.begin(), last_.end(), all_logits + i * vocab_);
    }
    return last_;
  }

 private:
  std::size_t vocab_;
  double noise_;
  std::size_t pos_ = 0;
  std::vector<float> last_;
};

constexpr std::size_t kVocab = 24;
constexpr int kLayers = 5;
// The fp16 reference's logits are stored in float16 (metrics.hpp), so a run identical to it
// still reads a KLD of ~1e-8: "no error" means below this, and every real error is far above.
constexpr double kNoError = 1e-6;

std::vector<TokenId> token_stream(std::size_t n) {
  std::vector<TokenId> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<TokenId>((i * 7 + i / 3) % kVocab);
  return t;
}

PerplexityOptions two_windows() {
  PerplexityOptions po;
  po.context = 16;
  po.max_windows = 2;
  return po;
}

// The one layer and side a scheme compresses, read back from its protection and formats:
// {-1, side} for an all-fp16 scheme.
struct CompressedPart {
  int layer = -1;
  KvSide side = KvSide::Key;
};
CompressedPart compressed_part(const KvScheme& s) {
  const bool keys = s.key.format != KvFormat::Fp16, values = s.value.format != KvFormat::Fp16;
  if (!keys && !values) return {};
  EXPECT_NE(keys, values) << s.name << ": both sides compressed";
  int layer = -1;
  for (int l = 0; l < kLayers; ++l) {
    if (s.layer_is_protected(l, kLayers)) continue;
    EXPECT_EQ(layer, -1) << s.name << ": more than one layer compressed";
    layer = l;
  }
  return {layer, keys ? KvSide::Key : KvSide::Value};
}

// A factory of NoisyModels whose error is error(layer, side) for the compressed part of the
// scheme and 0 for fp16; it records the schemes it was asked for.
struct FakeFactory {
  std::function<double(int, KvSide)> error;
  std::vector<KvScheme> schemes;
  SchemeModelFactory factory() {
    return [this](const KvScheme& s) {
      schemes.push_back(s);
      const CompressedPart part = compressed_part(s);
      const double noise = part.layer < 0 ? 0.0 : error(part.layer, part.side);
      return std::make_unique<NoisyModel>(kVocab, noise);
    };
  }
};

TEST(EvalSensitivity, SingleLayerSchemeCompressesOnlyThatLayerAndSide) {
  const KvScheme base = parse_kv_scheme("k4v3:protect=1/1");
  for (int l = 0; l < kLayers; ++l) {
    for (const KvSide side : {KvSide::Key, KvSide::Value}) {
      const KvScheme s = single_layer_scheme(base, l, kLayers, side);
      for (int j = 0; j < kLayers; ++j) {
        EXPECT_EQ(s.layer_is_protected(j, kLayers), j != l) << s.name << " layer " << j;
      }
      const KvSideSpec& kept = side == KvSide::Key ? s.key : s.value;
      const KvSideSpec& other = side == KvSide::Key ? s.value : s.key;
      EXPECT_EQ(kept.bits, side == KvSide::Key ? 4.0 : 3.0) << s.name;
      EXPECT_EQ(kept.format, KvFormat::TurboQuant) << s.name;
      EXPECT_EQ(other.format, KvFormat::Fp16) << s.name;
      EXPECT_EQ(s.window, base.window);
      EXPECT_EQ(s.name,
                base.name + "@layer" + std::to_string(l) + (side == KvSide::Key ? "K" : "V"));
    }
  }
  EXPECT_THROW(single_layer_scheme(base, kLayers, kLayers, KvSide::Key), std::invalid_argument);
  EXPECT_THROW(single_layer_scheme(base, -1, kLayers, KvSide::Key), std::invalid_argument);
}

TEST(EvalSensitivity, FollowsEachLayersErrorOnTheRightSide) {
  // Keys: error grows with the layer; values: it shrinks; layer 2 adds none on either side.
  FakeFactory fake{[](int l, KvSide side) {
    if (l == 2) return 0.0;
    return side == KvSide::Key ? 0.2 * (l + 1) : 0.15 * (kLayers - l);
  }};
  std::vector<int> done;
  const auto progress = [&](const LayerSensitivity& r, int d, int n, double seconds) {
    EXPECT_EQ(r.layer, d - 1);
    EXPECT_EQ(n, kLayers);
    EXPECT_GE(seconds, 0.0);
    done.push_back(d);
  };
  const std::vector<TokenId> tokens = token_stream(64);
  const std::vector<LayerSensitivity> rows = run_sensitivity(
      fake.factory(), kLayers, parse_kv_scheme("tq3"), tokens, two_windows(), progress);

  EXPECT_EQ(done, (std::vector<int>{1, 2, 3, 4, 5}));
  ASSERT_EQ(fake.schemes.size(), 1u + 2 * kLayers);  // the fp16 reference first
  EXPECT_EQ(compressed_part(fake.schemes.front()).layer, -1);
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(kLayers));
  for (int l = 0; l < kLayers; ++l) {
    const LayerSensitivity& r = rows[static_cast<std::size_t>(l)];
    EXPECT_EQ(r.layer, l);
    if (l == 2) {
      EXPECT_LT(r.kld_keys, kNoError);
      EXPECT_LT(r.kld_values, kNoError);
      EXPECT_EQ(r.top1_keys, 1.0);
      EXPECT_EQ(r.top1_values, 1.0);
      continue;
    }
    EXPECT_GT(r.kld_keys, 1e3 * kNoError) << "layer " << l;
    EXPECT_GT(r.kld_values, 1e3 * kNoError) << "layer " << l;
    EXPECT_LE(r.top1_keys, 1.0);
    EXPECT_GE(r.top1_keys, 0.0);
  }
  // Ordering follows the errors: keys up with the layer, values down (layer 2 aside).
  const std::vector<int> others = {0, 1, 3, 4};
  for (std::size_t i = 1; i < others.size(); ++i) {
    const LayerSensitivity& a = rows[static_cast<std::size_t>(others[i - 1])];
    const LayerSensitivity& b = rows[static_cast<std::size_t>(others[i])];
    EXPECT_LT(a.kld_keys, b.kld_keys) << "layers " << a.layer << ", " << b.layer;
    EXPECT_GT(a.kld_values, b.kld_values) << "layers " << a.layer << ", " << b.layer;
  }
}

TEST(EvalSensitivity, SideKeptInFp16IsNotRun) {
  KvScheme keys_only = parse_kv_scheme("tq3");
  keys_only.value = KvSideSpec{};
  keys_only.name = "tq3-keys";
  FakeFactory fake{[](int l, KvSide) { return 0.1 * (l + 1); }};
  const std::vector<TokenId> tokens = token_stream(64);
  const auto rows = run_sensitivity(fake.factory(), kLayers, keys_only, tokens, two_windows());
  EXPECT_EQ(fake.schemes.size(), 1u + kLayers);
  for (const LayerSensitivity& r : rows) {
    EXPECT_GT(r.kld_keys, 1e3 * kNoError);
    EXPECT_EQ(r.kld_values, 0.0);
    EXPECT_EQ(r.top1_values, 0.0);
  }
}

TEST(EvalSensitivity, RefusesSchemesWithNothingToMeasure) {
  FakeFactory fake{[](int, KvSide) { return 0.0; }};
  const std::vector<TokenId> tokens = token_stream(64);
  EXPECT_THROW(check_sensitivity_scheme(parse_kv_scheme("fp16")), std::invalid_argument);
  EXPECT_THROW(
      run_sensitivity(fake.factory(), kLayers, parse_kv_scheme("fp16"), tokens, two_windows()),
      std::invalid_argument);
  EXPECT_TRUE(fake.schemes.empty());  // refused before any run
  EXPECT_THROW(run_sensitivity(fake.factory(), 0, parse_kv_scheme("tq3"), tokens, two_windows()),
               std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// On a real (tiny, random) model.

using gguf::ValueType;

// A 3-layer Llama with head dimension 32 and random f32 weights.
Model synthetic_llama() {
  constexpr std::uint64_t embd = 64, heads = 2, kv_heads = 1, ff = 96, vocab = kVocab;
  constexpr std::uint64_t head_dim = embd / heads;
  gguf::testing::GgufBuilder b;
  b.add_string("general.architecture", "llama");
  const std::vector<std::pair<const char*, std::uint32_t>> shape = {
      {"llama.block_count", 3},
      {"llama.embedding_length", embd},
      {"llama.feed_forward_length", ff},
      {"llama.attention.head_count", heads},
      {"llama.attention.head_count_kv", kv_heads},
      {"llama.context_length", 64}};
  for (const auto& [key, value] : shape) b.add<std::uint32_t>(key, ValueType::kUint32, value);
  b.add<float>("llama.attention.layer_norm_rms_epsilon", ValueType::kFloat32, 1e-6f);
  b.add<float>("llama.rope.freq_base", ValueType::kFloat32, 10000.0f);
  std::mt19937 rng(7);
  std::normal_distribution<float> weight(0.0f, 0.4f);
  const auto add = [&](const std::string& name, std::vector<std::uint64_t> dims) {
    std::size_t n = 1;
    for (const auto d : dims) n *= d;
    std::vector<float> v(n);
    const bool norm = name.find("norm") != std::string::npos;
    for (auto& x : v) x = norm ? 1.0f : weight(rng);
    b.add_tensor({name, dims, 0, gguf::testing::f32_bytes(v), std::nullopt});
  };
  add("token_embd.weight", {embd, vocab});
  add("output_norm.weight", {embd});
  for (int l = 0; l < 3; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* norm : {"attn_norm.weight", "ffn_norm.weight"}) add(p + norm, {embd});
    add(p + "attn_q.weight", {embd, heads * head_dim});
    for (const char* kv : {"attn_k.weight", "attn_v.weight"})
      add(p + kv, {embd, kv_heads * head_dim});
    add(p + "attn_output.weight", {heads * head_dim, embd});
    for (const char* up : {"ffn_gate.weight", "ffn_up.weight"}) add(p + up, {embd, ff});
    add(p + "ffn_down.weight", {ff, embd});
  }
  return Model::from_gguf(gguf::File::from_bytes(b.build()), 1);
}

TEST(EvalSensitivity, SyntheticModelEveryCompressedLayerCountsAndFp16WindowIsExact) {
  const Model model = synthetic_llama();
  const std::vector<TokenId> tokens = token_stream(96);
  const PerplexityOptions po = two_windows();
  const auto compressed =
      run_sensitivity(model, parse_kv_scheme("tq2:window=0"), tokens, po, one_thread());
  ASSERT_EQ(compressed.size(), 3u);
  for (const LayerSensitivity& r : compressed) {
    EXPECT_GT(r.kld_keys, 1e3 * kNoError) << "layer " << r.layer;
    EXPECT_GT(r.kld_values, 1e3 * kNoError) << "layer " << r.layer;
    EXPECT_TRUE(std::isfinite(r.kld_keys) && std::isfinite(r.kld_values));
  }
  // The default 128-token window holds every token of a 16-token window: nothing is compressed,
  // so every layer's run is the fp16 run.
  const auto windowed = run_sensitivity(model, parse_kv_scheme("tq2"), tokens, po, one_thread());
  for (const LayerSensitivity& r : windowed) {
    EXPECT_LT(r.kld_keys, kNoError) << "layer " << r.layer;
    EXPECT_LT(r.kld_values, kNoError) << "layer " << r.layer;
    EXPECT_EQ(r.top1_keys, 1.0);
    EXPECT_EQ(r.top1_values, 1.0);
  }
}

}  // namespace
}  // namespace tq::eval
