// The per-layer width chooser (exact DP against brute force, a case greedy gets wrong, the
// budget byte-exact through kv_cache_size) and plan files (round trip, bad files, shape checks).
#include "turboquant/eval/calibrate.hpp"

#include "turboquant/cache/kv_cache.hpp"

#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>

namespace tq::eval {
namespace {

std::size_t side_bytes(double bits, int d) {
  KvSideSpec s;
  s.format = KvFormat::TurboQuant;
  s.bits = bits;
  return kv_side_bytes_per_token(s, d, RotationKind::Hadamard);
}

// Every assignment of candidates to the 2L sides; the least total cost within the capacity.
double brute_force(const SensitivityTable& t, int d, double budget) {
  const std::size_t n_items = 2 * t.kld_keys.size(), n_cand = t.candidates.size();
  const std::size_t capacity =
      static_cast<std::size_t>(std::floor(budget * 2.0 * t.kld_keys.size() * d / 8.0 + 1e-9));
  std::size_t combos = 1;
  for (std::size_t i = 0; i < n_items; ++i) combos *= n_cand;
  double best = 1e300;
  for (std::size_t code = 0; code < combos; ++code) {
    std::size_t rest = code, bytes = 0;
    double cost = 0;
    for (std::size_t i = 0; i < n_items; ++i) {
      const std::size_t c = rest % n_cand;
      rest /= n_cand;
      bytes += side_bytes(t.candidates[c], d);
      cost += (i % 2 == 0 ? t.kld_keys : t.kld_values)[i / 2][c];
    }
    if (bytes <= capacity && cost < best) best = cost;
  }
  return best;
}

SensitivityTable random_table(int layers, const std::vector<double>& cands, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  SensitivityTable t;
  t.candidates = cands;
  for (int l = 0; l < layers; ++l) {
    for (auto* rows : {&t.kld_keys, &t.kld_values}) {
      // Decreasing in bits with a random scale and shape: sometimes convex, sometimes not.
      std::vector<double> row(cands.size());
      double v = 0.05 * u(rng) + 1e-4;
      for (std::size_t c = 0; c < cands.size(); ++c) {
        row[c] = v;
        v *= u(rng);
      }
      rows->push_back(row);
    }
  }
  return t;
}

TEST(Calibrate, ChooserMatchesBruteForce) {
  const int d = 64;
  const std::vector<double> cands = {2, 3, 4, 5};
  for (unsigned seed = 0; seed < 20; ++seed) {
    const SensitivityTable t = random_table(3, cands, seed);
    for (const double budget : {2.6, 3.0, 3.3, 3.5, 4.0, 4.6}) {
      const LayerBitsChoice c = choose_layer_bits(t, d, budget);
      EXPECT_NEAR(c.predicted_kld, brute_force(t, d, budget), 1e-15)
          << "seed " << seed << " budget " << budget;
      // The reported prediction is the sum of the chosen entries, and the bytes add up.
      double sum = 0;
      std::size_t bytes = 0;
      for (std::size_t l = 0; l < c.bits.size(); ++l) {
        const auto at = [&](double b) {
          return static_cast<std::size_t>(std::find(cands.begin(), cands.end(), b) - cands.begin());
        };
        sum += t.kld_keys[l][at(c.bits[l].key)] + t.kld_values[l][at(c.bits[l].value)];
        bytes += side_bytes(c.bits[l].key, d) + side_bytes(c.bits[l].value, d);
      }
      EXPECT_NEAR(sum, c.predicted_kld, 1e-15);
      EXPECT_EQ(bytes, c.bytes_per_token);
      EXPECT_LE(c.bits_per_value, budget + 1e-12);
    }
  }
}

// One layer, keys and values, candidates 2/3/4: a greedy by KLD saved per byte first spends on the
// keys' cheap 2->3 step and then cannot afford the values' big 2->4 jump.
TEST(Calibrate, ChooserBeatsGreedyOnAKnownCase) {
  SensitivityTable t;
  t.candidates = {2, 3, 4};
  t.kld_keys = {{0.30, 0.05, 0.04}};    // 2->3 saves 0.25 per 8 bytes (the best ratio)
  t.kld_values = {{0.50, 0.49, 0.05}};  // only 2->4 pays off
  // d = 64: 18/26/34 bytes per side (codes + fp16 norm); 3.25 bits/value = 52 bytes allows
  // K2 V4, K3 V3 or K4 V2.
  const LayerBitsChoice c = choose_layer_bits(t, 64, 3.25);
  EXPECT_EQ(c.bits[0].key, 2.0);
  EXPECT_EQ(c.bits[0].value, 4.0);
  EXPECT_NEAR(c.predicted_kld, 0.35, 1e-12);  // greedy: K3 V3 = 0.54
}

TEST(Calibrate, BudgetIsByteExactInKvSize) {
  const SensitivityTable t = random_table(30, {2, 2.5, 3, 3.5, 4, 4.5, 5}, 7);
  const ModelShape shape{"smollm2-135m", 30, 9, 3, 64, 8192};
  for (const double budget : {2.5, 3.0, 3.5, 4.0, 4.25}) {
    const LayerBitsChoice c = choose_layer_bits(t, 64, budget);
    KvScheme s = parse_kv_scheme("tq3:window=0");
    s.layer_bits = c.bits;
    s.plan_path = "mem";
    s.plan_kv_heads = 3;
    s.plan_head_dim = 64;
    const KvSizeBreakdown kb = kv_cache_size(shape, s, 4096);
    EXPECT_EQ(kb.bytes, c.bytes_per_token * 3 * 4096) << budget;
    EXPECT_LE(kb.bits_per_value, budget) << budget;
    EXPECT_GT(kb.bits_per_value, budget - 0.25) << budget;  // the budget is used, not wasted
  }
}

TEST(Calibrate, ChooserErrors) {
  SensitivityTable t;
  EXPECT_THROW(choose_layer_bits(t, 64, 3.0), std::invalid_argument);
  t.candidates = {3, 4};
  t.kld_keys = {{0.1, 0.05}};
  t.kld_values = {{0.1}};
  EXPECT_THROW(choose_layer_bits(t, 64, 3.0), std::invalid_argument);  // ragged
  t.kld_values = {{0.1, 0.05}};
  try {
    choose_layer_bits(t, 64, 2.0);
    FAIL() << "a budget below every candidate must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("budget 2"), std::string::npos) << e.what();
  }
}

class PlanFile : public ::testing::Test {
 protected:
  std::string path = (std::filesystem::temp_directory_path() /
                      ("tq_test_plan_" + std::to_string(::getpid()) + ".json"))
                         .string();
  void TearDown() override { std::filesystem::remove(path); }
  void write(const std::string& text) { std::ofstream(path) << text; }
  KvPlan plan(int layers) {
    KvPlan p;
    p.model = "m.gguf";
    p.layers = layers;
    p.kv_heads = 3;
    p.head_dim = 64;
    for (int l = 0; l < layers; ++l) p.bits.push_back({l % 2 ? 4.0 : 3.5, 2.5 + l % 3});
    return p;
  }
  std::string error_of(const std::string& scheme) {
    try {
      parse_kv_scheme(scheme);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no error)";
  }
};

TEST_F(PlanFile, RoundTripAndPerLayerCaches) {
  const KvPlan p = plan(4);
  write(kv_plan_json(p));
  const KvScheme s = parse_kv_scheme("plan=" + path + ",center=k,window=0");
  EXPECT_EQ(s.layer_bits, p.bits);
  EXPECT_TRUE(s.center_keys);
  EXPECT_EQ(s.window, 0);
  const KvScheme again = parse_kv_scheme(s.name);
  EXPECT_EQ(again.name, s.name);
  EXPECT_EQ(again.layer_bits, p.bits);
  EXPECT_EQ(read_kv_plan(path).bits, p.bits);
  for (int l = 0; l < 4; ++l) {
    const LayerKvCache cache(s, LayerKvShape{l, 4, 9, 3, 64});
    EXPECT_EQ(cache.side_spec(KvSide::Key).bits, p.bits[l].key);
    EXPECT_EQ(cache.side_spec(KvSide::Value).bits, p.bits[l].value);
    EXPECT_EQ(cache.codec(KvSide::Value)->spec().bits, p.bits[l].value);
  }
  // kv_size counts each layer's own widths.
  const ModelShape shape{"m", 4, 9, 3, 64, 1024};
  std::size_t expect = 0;
  for (int l = 0; l < 4; ++l) {
    expect += (side_bytes(p.bits[l].key, 64) + side_bytes(p.bits[l].value, 64)) * 100 + 2 * 64;
  }
  EXPECT_EQ(kv_cache_size(shape, s, 100).bytes, expect * 3);  // center=k: one fp16 μ per head
}

// The plan's base options (the sensitivity runs', e.g. window=0) are the scheme's defaults: a
// plain plan=FILE gets them, options in the scheme string override them, and the canonical name
// parses back to the same scheme either way. Bad base options are an error naming the plan.
TEST_F(PlanFile, BaseOptionsApplyOnLoad) {
  KvPlan p = plan(4);
  p.base = "window=0,normcorr=1";
  write(kv_plan_json(p));
  const KvScheme s = parse_kv_scheme("plan=" + path);
  EXPECT_EQ(s.window, 0);
  EXPECT_TRUE(s.norm_correction);
  EXPECT_EQ(s.name, "plan=" + path);
  const KvScheme wide = parse_kv_scheme("plan=" + path + ",window=128,normcorr=0");
  EXPECT_EQ(wide.window, 128);
  EXPECT_FALSE(wide.norm_correction);
  const KvScheme again = parse_kv_scheme(wide.name);
  EXPECT_EQ(again.window, 128) << wide.name;
  EXPECT_FALSE(again.norm_correction) << wide.name;
  EXPECT_EQ(again.name, wide.name);
  p.base = "window=-1";
  write(kv_plan_json(p));
  EXPECT_NE(error_of("plan=" + path).find("the plan's base options"), std::string::npos)
      << error_of("plan=" + path);
}

TEST_F(PlanFile, BadFiles) {
  EXPECT_NE(error_of("plan=/nonexistent/p.json").find("cannot be read"), std::string::npos);
  EXPECT_NE(error_of("plan=").find("expects a plan file"), std::string::npos);
  write("{not json");
  EXPECT_NE(error_of("plan=" + path).find("not valid JSON"), std::string::npos);
  write("{\"version\": 1}");
  EXPECT_NE(error_of("plan=" + path).find("missing"), std::string::npos);
  KvPlan p = plan(3);
  p.layers = 4;
  write(kv_plan_json(p));
  EXPECT_NE(error_of("plan=" + path).find("3 layer widths; expected 4"), std::string::npos);
  p = plan(3);
  p.bits[1].value = 9;
  write(kv_plan_json(p));
  EXPECT_NE(error_of("plan=" + path).find("layer 1 width 9"), std::string::npos);
  p.bits[1].value = 3.3;
  write(kv_plan_json(p));
  EXPECT_NE(error_of("plan=" + path).find("layer 1 width 3.3"), std::string::npos);
  std::string v2 = kv_plan_json(plan(3));
  v2.replace(v2.find("\"version\": 1"), 12, "\"version\": 2");
  write(v2);
  EXPECT_NE(error_of("plan=" + path).find("version 2"), std::string::npos);
}

TEST_F(PlanFile, PlanForAnotherModelIsAnError) {
  write(kv_plan_json(plan(4)));
  const KvScheme s = parse_kv_scheme("plan=" + path);
  EXPECT_THROW(LayerKvCache(s, LayerKvShape{0, 5, 9, 3, 64}), std::invalid_argument);
  EXPECT_THROW(LayerKvCache(s, LayerKvShape{0, 4, 8, 4, 64}), std::invalid_argument);
  EXPECT_THROW(LayerKvCache(s, LayerKvShape{0, 4, 9, 3, 128}), std::invalid_argument);
  EXPECT_THROW(check_scheme_fits_layers(s, 30), std::invalid_argument);
  EXPECT_THROW(kv_cache_size(ModelShape{"x", 4, 9, 3, 128, 1}, s, 10), std::invalid_argument);
}

}  // namespace
}  // namespace tq::eval
