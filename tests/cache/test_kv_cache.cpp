// LayerKvCache storage: byte accounting against tq::kv_cache_size for every preset, growth in
// steps, window semantics, chunking independence, protected layers, seeds and bad input.
#include "turboquant/cache/kv_cache.hpp"

#include "thrown_message.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace tq {
namespace {

std::vector<float> random_tokens(std::size_t n, const LayerKvShape& s, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n * s.n_kv_heads * s.head_dim);
  for (auto& v : x) v = g(rng);
  return x;
}

std::vector<float> decode_all(const LayerKvCache& c, KvSide side, int head) {
  std::vector<float> out(c.size() * c.shape().head_dim);
  c.decode(side, head, 0, c.size(), out.data());
  return out;
}

double relative_error(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(KvCache, BytesEqualFormulaForEveryPreset) {
  std::vector<std::string> schemes = kv_scheme_presets();
  for (const auto& p : kv_scheme_presets()) {
    schemes.push_back(p + ":protect=1/1,window=16");
    schemes.push_back(p + ":window=5");
  }
  schemes.push_back("k4v3:kcodec=prod,window=0");
  schemes.push_back("tq3:kcodec=prod,vcodec=prod,protect=0/1,window=3");
  schemes.push_back("tq2.5:rot=haar,normcorr=1,window=0");
  schemes.push_back("tq4.25:window=0");
  schemes.push_back("tq4.5:window=3");
  schemes.push_back("k4.5v4:center=k,window=0");
  schemes.push_back("k5v3.5:center=kv,window=2");
  for (int d : {64, 128}) {
    const ModelShape model{"test", 4, 6, 2, d, 0};
    for (const auto& name : schemes) {
      const KvScheme scheme = parse_kv_scheme(name);
      std::vector<LayerKvCache> layers;
      for (int l = 0; l < model.layers; ++l) {
        layers.emplace_back(scheme,
                            LayerKvShape{l, model.layers, model.q_heads, model.kv_heads, d});
      }
      std::size_t context = 0;
      for (std::size_t chunk : {0, 1, 6, 2, 40, 1, 27}) {
        const LayerKvShape& s = layers[0].shape();
        const auto k = random_tokens(chunk, s, 1 + static_cast<std::uint32_t>(context));
        const auto v = random_tokens(chunk, s, 1000 + static_cast<std::uint32_t>(context));
        std::size_t total = 0;
        for (auto& layer : layers) {
          layer.append(k.data(), v.data(), chunk);
          total += layer.bytes();
          EXPECT_GE(layer.capacity_bytes(), layer.bytes());
        }
        context += chunk;
        EXPECT_EQ(total, kv_cache_size(model, scheme, context).bytes)
            << name << " d=" << d << " context=" << context;
      }
    }
  }
}

TEST(KvCache, CapacityGrowsInSteps) {
  const LayerKvShape s{0, 1, 3, 3, 64};
  LayerKvCache cache(parse_kv_scheme("tq3.5:window=4"), s);
  const auto k = random_tokens(3000, s, 7);
  std::set<std::size_t> capacities;
  for (std::size_t t = 0; t < 3000; ++t) {
    cache.append(k.data() + t * 3 * 64, k.data() + t * 3 * 64, 1);
    capacities.insert(cache.capacity_bytes());
  }
  EXPECT_LE(capacities.size(), 12u);  // ×1.5 steps from 64 tokens: ~9 allocations to 3000
  EXPECT_LE(cache.capacity_bytes(), 2 * cache.bytes());
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
  const std::size_t cap = cache.capacity_bytes();
  cache.append(k.data(), k.data(), 100);
  EXPECT_EQ(cache.capacity_bytes(), cap);
}

TEST(KvCache, WindowHoldsLastTokensExactly) {
  const LayerKvShape s{0, 1, 2, 2, 64};
  const int W = 10;
  LayerKvCache cache(parse_kv_scheme("tq3:window=10"), s);
  const auto k = random_tokens(37, s, 3);
  const auto v = random_tokens(37, s, 4);
  cache.append(k.data(), v.data(), 23);
  cache.append(k.data() + 23 * 128, v.data() + 23 * 128, 14);
  EXPECT_EQ(cache.size(), 37u);
  EXPECT_EQ(cache.window_size(), static_cast<std::size_t>(W));
  EXPECT_EQ(cache.compressed_size(), 27u);
  for (int h = 0; h < 2; ++h) {
    const auto dk = decode_all(cache, KvSide::Key, h);
    const auto dv = decode_all(cache, KvSide::Value, h);
    for (std::size_t t = 0; t < 37; ++t) {
      for (int j = 0; j < 64; ++j) {
        const float xk = k[(t * 2 + h) * 64 + j];
        const float xv = v[(t * 2 + h) * 64 + j];
        if (t >= 27) {
          ASSERT_EQ(dk[t * 64 + j], half_to_float(float_to_half(xk))) << "t=" << t;
          ASSERT_EQ(dv[t * 64 + j], half_to_float(float_to_half(xv))) << "t=" << t;
        }
      }
    }
  }
}

// Decoded tokens (what attention sees) are close to the originals for every format, and a
// deliberately wrong reading (another layer's rotation) is not: guards against basis mix-ups.
TEST(KvCache, DecodeAccuracyPerFormat) {
  const LayerKvShape s{1, 3, 4, 2, 128};
  const std::size_t n = 64;
  const auto k = random_tokens(n, s, 11);
  struct Case {
    const char* scheme;
    double max_error;
  };
  for (const Case& c :
       {Case{"fp16", 1e-3}, Case{"q8", 0.02}, Case{"q8r", 0.02}, Case{"q4", 0.2}, Case{"q4r", 0.2},
        Case{"tq4:window=0", 0.12}, Case{"tq3.5:window=0", 0.17}, Case{"tq3:window=0", 0.22},
        Case{"tq2.5:window=0", 0.3}, Case{"tq3:rot=haar,window=0", 0.22},
        Case{"tq4:kcodec=prod,window=0", 0.3}, Case{"tq4:protect=0/2,window=0", 1e-3}}) {
    LayerKvCache cache(parse_kv_scheme(c.scheme), s);
    cache.append(k.data(), k.data(), n);
    for (int h = 0; h < 2; ++h) {
      for (KvSide side : {KvSide::Key, KvSide::Value}) {
        const auto x = decode_all(cache, side, h);
        std::vector<float> orig(n * 128);
        for (std::size_t t = 0; t < n; ++t) {
          std::copy_n(k.data() + (t * 2 + h) * 128, 128, orig.data() + t * 128);
        }
        const double err = relative_error(x.data(), orig.data(), orig.size());
        EXPECT_LT(err, c.max_error) << c.scheme << " head " << h;
        if (h == 0 && side == KvSide::Key)
          std::printf("%-16s relative error %.4f\n", c.scheme, err);
        EXPECT_GT(err, c.max_error / 1000) << c.scheme << " stores something lossy";
      }
    }
  }
}

TEST(KvCache, FractionalWidthsSitBetweenTheirWholeWidths) {
  // tq4.25 / tq4.5 give 5 bits to a quarter / half of the rotated coordinates: their decode
  // error must fall strictly between tq4's and tq5's, in order, at both head dims.
  for (int d : {64, 128}) {
    const LayerKvShape s{1, 3, 2, 1, d};
    const std::size_t n = 256;
    const auto x = random_tokens(n, s, 29);
    double previous = 1.0;
    for (const char* scheme : {"tq4:window=0", "tq4.25:window=0", "tq4.5:window=0",
                               "k4.75v4.75:window=0", "tq5:window=0"}) {
      LayerKvCache cache(parse_kv_scheme(scheme), s);
      cache.append(x.data(), x.data(), n);
      for (KvSide side : {KvSide::Key, KvSide::Value}) {
        const auto y = decode_all(cache, side, 0);
        const double err = relative_error(y.data(), x.data(), x.size());
        EXPECT_LT(err, previous * 0.985) << scheme << " d=" << d;
        if (side == KvSide::Value) previous = err;
      }
    }
  }
}

TEST(KvCache, ChunkingDoesNotChangeStoredTokens) {
  const LayerKvShape s{2, 4, 6, 2, 64};
  const std::size_t n = 50;
  const auto k = random_tokens(n, s, 21);
  const auto v = random_tokens(n, s, 22);
  for (const char* name : {"fp16", "q8", "q4r", "tq3.5:window=8", "k4v3:kcodec=prod,window=3",
                           "tq2.5:window=0", "tq4:window=64"}) {
    const KvScheme scheme = parse_kv_scheme(name);
    LayerKvCache one(scheme, s), chunked(scheme, s);
    for (std::size_t t = 0; t < n; ++t) one.append(k.data() + t * 128, v.data() + t * 128, 1);
    std::size_t at = 0;
    for (std::size_t chunk : {7, 1, 20, 22}) {
      chunked.append(k.data() + at * 128, v.data() + at * 128, chunk);
      at += chunk;
    }
    ASSERT_EQ(at, n);
    ASSERT_EQ(one.bytes(), chunked.bytes());
    for (int h = 0; h < 2; ++h) {
      for (KvSide side : {KvSide::Key, KvSide::Value}) {
        EXPECT_EQ(decode_all(one, side, h), decode_all(chunked, side, h)) << name << " head " << h;
      }
    }
  }
}

TEST(KvCache, ProtectedLayersStoreFp16) {
  const KvScheme scheme = parse_kv_scheme("tq3:protect=1/2,window=4");
  for (int layer = 0; layer < 6; ++layer) {
    const LayerKvShape s{layer, 6, 2, 2, 64};
    LayerKvCache cache(scheme, s);
    const bool prot = layer == 0 || layer >= 4;
    EXPECT_EQ(cache.is_protected(), prot);
    EXPECT_EQ(cache.side_spec(KvSide::Key).format, prot ? KvFormat::Fp16 : KvFormat::TurboQuant);
    EXPECT_EQ(cache.codec(KvSide::Value) != nullptr, !prot);
    EXPECT_EQ(cache.window(), prot ? 0 : 4);
    const auto k = random_tokens(9, s, 5);
    cache.append(k.data(), k.data(), 9);
    if (prot) {
      const auto x = decode_all(cache, KvSide::Value, 1);
      for (std::size_t t = 0; t < 9; ++t) {
        for (int j = 0; j < 64; ++j) {
          ASSERT_EQ(x[t * 64 + j], half_to_float(float_to_half(k[(t * 2 + 1) * 64 + j])));
        }
      }
    }
  }
}

TEST(KvCache, SeedsDifferPerLayerAndSide) {
  const KvScheme scheme = parse_kv_scheme("tq4:window=0");
  std::set<std::uint64_t> seeds;
  for (int layer = 0; layer < 4; ++layer) {
    LayerKvCache cache(scheme, LayerKvShape{layer, 4, 1, 1, 64});
    for (KvSide side : {KvSide::Key, KvSide::Value}) {
      ASSERT_NE(cache.codec(side), nullptr);
      EXPECT_EQ(cache.codec(side)->spec().seed, kv_codec_spec(scheme, side, layer, 64).seed);
      seeds.insert(cache.codec(side)->spec().seed);
    }
  }
  EXPECT_EQ(seeds.size(), 8u);
}

using tq::tests::thrown_message;

TEST(KvCache, BadInputThrowsNamingTheValue) {
  const KvScheme tq4 = parse_kv_scheme("tq4:window=0");
  struct BadShape {
    KvScheme scheme;
    LayerKvShape shape;
    const char* named;  // what the message must mention
  };
  const BadShape cases[] = {
      {tq4, {0, 1, 7, 3, 64}, "7"},                      // 7 q heads over 3 kv heads
      {tq4, {5, 4, 3, 3, 64}, "5"},                      // layer 5 of 4
      {tq4, {0, 1, 3, 3, 96}, "rot=haar"},               // hadamard needs 2^k: suggest haar
      {parse_kv_scheme("q4r"), {0, 1, 3, 3, 96}, "96"},  // rotated int blocks likewise
      {tq4, {0, 1, 3, 0, 64}, "0"},                      // no kv heads
      {parse_kv_scheme("tq4:protect=99/99"), {0, 30, 3, 3, 64}, "the model has 30"},
  };
  for (const BadShape& c : cases) {
    EXPECT_NE(thrown_message([&] { LayerKvCache(c.scheme, c.shape); }).find(c.named),
              std::string::npos)
        << c.scheme.name << " must name " << c.named;
  }
  // Fine with haar, or unrotated.
  EXPECT_NO_THROW(
      LayerKvCache(parse_kv_scheme("tq4:rot=haar,window=0"), LayerKvShape{0, 1, 3, 3, 96}));
  EXPECT_NO_THROW(LayerKvCache(parse_kv_scheme("q4"), LayerKvShape{0, 1, 3, 3, 96}));
  LayerKvCache cache(tq4, LayerKvShape{0, 1, 3, 3, 64});
  std::vector<float> buf(64 * 3 * 4);
  cache.append(buf.data(), buf.data(), 2);
  EXPECT_NE(thrown_message([&] { cache.decode(KvSide::Key, 3, 0, 1, buf.data()); }).find("3"),
            std::string::npos);
  EXPECT_THROW(cache.decode(KvSide::Key, 0, 1, 2, buf.data()), std::invalid_argument);
}

}  // namespace
}  // namespace tq
