// KV scheme parsing and byte accounting.
#include "turboquant/cache/kv_scheme.hpp"

#include "thrown_message.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace tq {
namespace {

TEST(KvScheme, ParsesPresetsAndOptions) {
  for (const auto& name : kv_scheme_presets()) {
    const KvScheme s = parse_kv_scheme(name);
    EXPECT_EQ(parse_kv_scheme(s.name).name, s.name) << name;  // canonical names round-trip
  }
  const KvScheme k4v3 = parse_kv_scheme("k4v3:kcodec=prod,protect=1/2,window=64,rot=haar");
  EXPECT_EQ(k4v3.key.format, KvFormat::TurboQuant);
  EXPECT_EQ(k4v3.key.bits, 4.0);
  EXPECT_EQ(k4v3.value.bits, 3.0);
  EXPECT_EQ(k4v3.key.codec, CodecKind::Prod);
  EXPECT_EQ(k4v3.value.codec, CodecKind::Mse);
  EXPECT_EQ(k4v3.protect_first, 1);
  EXPECT_EQ(k4v3.protect_last, 2);
  EXPECT_EQ(k4v3.window, 64);
  EXPECT_EQ(k4v3.rotation, RotationKind::Haar);
  EXPECT_TRUE(k4v3.layer_is_protected(0, 30));
  EXPECT_FALSE(k4v3.layer_is_protected(1, 30));
  EXPECT_TRUE(k4v3.layer_is_protected(28, 30));
  EXPECT_EQ(parse_kv_scheme("tq3.5").key.bits, 3.5);
  // TurboQuant schemes keep a 128-token exact window by default; the canonical name omits the
  // default and spells out any other choice, including none.
  EXPECT_EQ(parse_kv_scheme("tq3.5").window, kTurboQuantDefaultWindow);
  EXPECT_EQ(parse_kv_scheme("tq3.5").name, "tq3.5");
  EXPECT_EQ(parse_kv_scheme("tq3.5:window=128").name, "tq3.5");
  EXPECT_EQ(parse_kv_scheme("tq3.5:window=64").name, "tq3.5:window=64");
  EXPECT_EQ(parse_kv_scheme("tq3.5:window=0").window, 0);
  EXPECT_EQ(parse_kv_scheme("tq3.5:window=0").name, "tq3.5:window=0");
  EXPECT_EQ(parse_kv_scheme("q4r").window, 0);
  EXPECT_EQ(parse_kv_scheme("q4r:window=64").name, "q4r:window=64");
  EXPECT_TRUE(parse_kv_scheme("q4r").key.rotated);
  EXPECT_FALSE(parse_kv_scheme("q4").key.rotated);
}

TEST(KvScheme, RejectsBadStrings) {
  for (const char* bad :
       {"tq0", "tq9", "tqx", "k4", "zz", "tq4:window=-1", "tq4:protect=1", "tq4:foo=1",
        "q4:kcodec=prod", "tq1.5:kcodec=prod", "tq4:kcodec=lattice"}) {
    EXPECT_THROW(parse_kv_scheme(bad), std::invalid_argument) << bad;
  }
}

std::string scheme_error(const std::string& text) {
  return tests::thrown_message([&] { parse_kv_scheme(text); });
}

TEST(KvScheme, FractionalWidthsParseAndRoundTrip) {
  // Quarter and eighth widths for equal-stored-bits comparisons, symmetric and per side.
  struct Case {
    const char* text;
    double key_bits;
    double value_bits;
    const char* name;
  };
  for (const Case& c :
       {Case{"tq4.25", 4.25, 4.25, "tq4.25"}, Case{"tq4.5", 4.5, 4.5, "tq4.5"},
        Case{"TQ4.125:window=0", 4.125, 4.125, "tq4.125:window=0"},
        Case{"k4.5v4:window=0,center=k", 4.5, 4.0, "k4.5v4:center=k,window=0"},
        Case{"k5v3.5", 5.0, 3.5, "k5v3.5"}, Case{"k4.25v4.25", 4.25, 4.25, "tq4.25"}}) {
    const KvScheme s = parse_kv_scheme(c.text);
    EXPECT_EQ(s.key.format, KvFormat::TurboQuant) << c.text;
    EXPECT_EQ(s.key.bits, c.key_bits) << c.text;
    EXPECT_EQ(s.value.bits, c.value_bits) << c.text;
    EXPECT_EQ(s.name, c.name) << c.text;
    EXPECT_EQ(parse_kv_scheme(s.name).name, s.name) << c.text;
  }
}

TEST(KvScheme, WidthsNoHeadDimSplitsAreRejectedNamingTheScheme) {
  // 0.3 of a coordinate's bit cannot be spread over whole coordinates at any power-of-two d.
  EXPECT_EQ(scheme_error("tq4.3:window=0"),
            "kv scheme 'tq4.3:window=0': 4.3 bits: the fractional part 0.3 times the head dim "
            "must be a whole number of coordinates; expected a multiple of 1/128 (1/64 for head "
            "dim 64), e.g. 4.5, 4.25 or 4.125");
  EXPECT_EQ(scheme_error("k4v3.1"),
            "kv scheme 'k4v3.1': 3.1 bits: the fractional part 0.1 times the head dim must be a "
            "whole number of coordinates; expected a multiple of 1/128 (1/64 for head dim 64), "
            "e.g. 4.5, 4.25 or 4.125");
  // prod keeps b-1 mse bits: the same rule applies to its fractional part.
  EXPECT_THROW(parse_kv_scheme("tq4.3:kcodec=prod"), std::invalid_argument);
  EXPECT_NO_THROW(parse_kv_scheme("tq4.25:kcodec=prod"));
}

TEST(KvScheme, IntegerOptionsAreRangeCheckedNotWrapped) {
  // 4294967301 = 2^32 + 5 once wrapped to window 5.
  EXPECT_EQ(scheme_error("tq3:window=4294967301"),
            "kv scheme 'tq3:window=4294967301': window: 4294967301 is out of range; expected "
            "0..2147483647");
  // 4294967295 once became protect_first = -1; 2147483648 became -2^31.
  EXPECT_EQ(scheme_error("tq3:protect=4294967295/0"),
            "kv scheme 'tq3:protect=4294967295/0': protect first: 4294967295 is out of range; "
            "expected 0..65536");
  EXPECT_EQ(scheme_error("tq3:protect=2147483648/1"),
            "kv scheme 'tq3:protect=2147483648/1': protect first: 2147483648 is out of range; "
            "expected 0..65536");
  EXPECT_EQ(scheme_error("tq3:protect=1/-2"),
            "kv scheme 'tq3:protect=1/-2': protect last: -2 is out of range; expected 0..65536");
  EXPECT_EQ(scheme_error("tq3:seed=-1"),
            "kv scheme 'tq3:seed=-1': seed: -1 is out of range; expected "
            "0..18446744073709551615");
  EXPECT_EQ(scheme_error("tq3:window=x"),
            "kv scheme 'tq3:window=x': window: x is not an integer; expected 0..2147483647");
  // The whole ranges stay accepted.
  EXPECT_EQ(parse_kv_scheme("tq3:window=2147483647").window, 2147483647);
  EXPECT_EQ(parse_kv_scheme("tq3:seed=18446744073709551615").seed, UINT64_MAX);
  EXPECT_EQ(parse_kv_scheme("tq3:protect=65536/0").protect_first, 65536);
}

TEST(KvScheme, ProtectMoreLayersThanTheModelHasIsAnError) {
  const KvScheme s = parse_kv_scheme("tq3:protect=99/99");
  EXPECT_EQ(tests::thrown_message([&] { check_scheme_fits_layers(s, 30); }),
            "kv scheme 'tq3:protect=99/99': protect=99/99 names 198 layers, the model has 30; "
            "expected first + last <= 30");
  EXPECT_NO_THROW(check_scheme_fits_layers(parse_kv_scheme("tq3:protect=15/15"), 30));
  EXPECT_NO_THROW(check_scheme_fits_layers(parse_kv_scheme("tq3:protect=30/0"), 30));
  EXPECT_THROW(check_scheme_fits_layers(parse_kv_scheme("tq3:protect=0/31"), 30),
               std::invalid_argument);
  ModelShape shape = find_model_shape("smollm2-135m");
  EXPECT_THROW(kv_cache_size(shape, s, 4096), std::invalid_argument);
}

TEST(KvSize, HugeShapesAreComputedWithoutPerLayerWorkOrOverflow) {
  // Two billion layers once took minutes (one codec layout per layer).
  ModelShape shape{"custom", 2000000000, 1, 1, 64, 0};
  const KvSizeBreakdown s = kv_cache_size(shape, parse_kv_scheme("tq4:protect=1/1,window=0"), 1);
  const std::size_t tq_token =
      kv_side_bytes_per_token(parse_kv_scheme("tq4").key, 64, RotationKind::Hadamard);
  EXPECT_EQ(s.bytes, 2ull * 2 * 64 * 2 + 1999999998ull * 2 * tq_token);
  EXPECT_EQ(s.fp16_bytes, 2000000000ull * 2 * 64 * 2);
  // Bytes past what std::size_t holds are an error, not a wrapped number.
  ModelShape huge{"custom", 2000000000, 1, 2000000000, 2000000000, 0};
  EXPECT_THROW(kv_cache_size(huge, parse_kv_scheme("fp16"), SIZE_MAX / 2), std::overflow_error);
}

TEST(KvSize, MatchesHandComputedBytes) {
  const ModelShape& llama = find_model_shape("llama-3.1-8b");
  const std::size_t ctx = 131072;
  const std::size_t fp16 = 2ull * 32 * 8 * 128 * 2 * ctx;  // K+V, layers, heads, d, bytes
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("fp16"), ctx).bytes, fp16);
  // tq4: 64 B codes + 2 B norm per token-head-side.
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("tq4:window=0"), ctx).bytes,
            2ull * 32 * 8 * 66 * ctx);
  // The default 64-token window is stored in fp16 (256 B per token-head for K+V... per side 256).
  EXPECT_EQ(
      kv_cache_size(llama, parse_kv_scheme("tq4"), ctx).bytes,
      2ull * 32 * 8 * (66 * (ctx - kTurboQuantDefaultWindow) + 256 * kTurboQuantDefaultWindow));
  // tq3.5: 32 + 24 B codes + 2 B norm.
  const KvSizeBreakdown t35 = kv_cache_size(llama, parse_kv_scheme("tq3.5:window=0"), ctx);
  EXPECT_EQ(t35.bytes, 2ull * 32 * 8 * 58 * ctx);
  EXPECT_NEAR(t35.bits_per_value, 3.5 + 16.0 / 128, 1e-12);
  EXPECT_NEAR(t35.ratio(), 58.0 / 256.0, 1e-12);
  // q4: 64 B + 4 fp16 scales; q8: 128 B + 4 scales.
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("q4"), ctx).bytes, 2ull * 32 * 8 * 72 * ctx);
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("q8"), ctx).bytes, 2ull * 32 * 8 * 136 * ctx);
  // Protected layers and a window are stored in fp16.
  const KvSizeBreakdown p =
      kv_cache_size(llama, parse_kv_scheme("tq4:protect=1/1,window=100"), ctx);
  const std::size_t per_layer_fp16 = 2ull * 8 * 128 * 2 * ctx;
  const std::size_t per_layer_tq = 2ull * 8 * (66 * (ctx - 100) + 256 * 100);
  EXPECT_EQ(p.bytes, 2 * per_layer_fp16 + 30 * per_layer_tq);
  // A context shorter than the window is all fp16.
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("tq4:window=100"), 50).ratio(), 1.0);
  EXPECT_THROW(find_model_shape("gpt-5"), std::invalid_argument);
}

// Sliding-window layers (Gemma 3 style) hold min(context, window) fp16 tokens whatever the
// scheme; the other layers follow the scheme, protection counted by layer index. Checked against
// a per-layer sum of one-layer shapes.
TEST(KvSize, SlidingWindowLayersHoldTheirWindow) {
  ModelShape shape{"hybrid", 12, 4, 2, 64, 4096, 100, 4};  // layers 3, 7, 11 global
  ModelShape one{"one", 1, 4, 2, 64, 4096};
  for (const char* name : {"fp16", "tq4", "tq3.5:protect=2/1,window=16", "tq4:center=k"}) {
    const KvScheme scheme = parse_kv_scheme(name);
    for (const std::size_t ctx :
         {std::size_t{0}, std::size_t{50}, std::size_t{100}, std::size_t{1000}}) {
      std::size_t expected = 0, fp16 = 0;
      for (int l = 0; l < shape.layers; ++l) {
        const bool sliding = (l + 1) % 4 != 0;
        const bool prot = l < scheme.protect_first || l >= shape.layers - scheme.protect_last;
        const std::size_t held = sliding ? std::min<std::size_t>(ctx, 100) : ctx;
        const std::size_t exact = kv_cache_size(one, parse_kv_scheme("fp16"), held).bytes;
        KvScheme single = scheme;
        single.protect_first = single.protect_last = 0;
        expected += sliding || prot ? exact : kv_cache_size(one, single, ctx).bytes;
        fp16 += exact;
      }
      const KvSizeBreakdown got = kv_cache_size(shape, scheme, ctx);
      EXPECT_EQ(got.bytes, expected) << name << " at " << ctx;
      EXPECT_EQ(got.fp16_bytes, fp16) << name << " at " << ctx;
    }
  }
  // The Gemma 3 270M preset at 32k: 3 global layers of 32768 tokens and 15 of 512, fp16.
  const KvSizeBreakdown g =
      kv_cache_size(find_model_shape("gemma3-270m"), parse_kv_scheme("fp16"), 32768);
  EXPECT_EQ(g.bytes, (3ull * 32768 + 15ull * 512) * 2 * 256 * 2);
  EXPECT_NEAR(g.bits_per_value, 16.0, 1e-12);
}

TEST(KvSize, FractionalWidthsStoredBits) {
  // Each code part (hi, lo) is packed in whole 32-bit words: tq4.25 at d = 64 holds 16 x 5 bits
  // (80 -> 96 bits, 12 B) + 48 x 4 bits (24 B) + the fp16 norm = 38 B, the same as tq4.5
  // (20 + 16 + 2); at d = 128 both parts fill whole words (20 + 48 + 2 = 70 B).
  const auto side = [](const char* text, int d) {
    return kv_side_bytes_per_token(parse_kv_scheme(text).key, d, RotationKind::Hadamard);
  };
  EXPECT_EQ(side("tq4", 64), 34u);
  EXPECT_EQ(side("tq4.25", 64), 38u);
  EXPECT_EQ(side("tq4.5", 64), 38u);
  EXPECT_EQ(side("tq5", 64), 42u);
  EXPECT_EQ(side("tq3.5", 64), 30u);
  EXPECT_EQ(side("tq4.25", 128), 70u);
  EXPECT_EQ(side("tq4.5", 128), 74u);
  // SmolLM2 (head dim 64) at the 512-token evaluation context: the schemes that store exactly the
  // 4.5 bits/value of the rotated block formats split the bits unevenly between K and V.
  const ModelShape& smol = find_model_shape("smollm2-135m");
  const auto bits = [&](const char* text) {
    return kv_cache_size(smol, parse_kv_scheme(text), 512).bits_per_value;
  };
  EXPECT_EQ(bits("q4r"), 4.5);
  EXPECT_EQ(bits("iq4nlr"), 4.5);
  EXPECT_EQ(bits("k4.5v4:window=0"), 4.5);
  EXPECT_EQ(bits("k5v3.5:window=0"), 4.5);
  EXPECT_EQ(bits("tq4:window=0"), 4.25);
  EXPECT_EQ(bits("tq4.25:window=0"), 4.75);
  EXPECT_EQ(bits("tq4.5:window=0"), 4.75);
  EXPECT_EQ(bits("k4v3:window=0"), 3.75);
  // One fp16 mu of 64 values per centered side, head and layer: 1024 bits per 65536 values.
  EXPECT_EQ(bits("k4.5v4:window=0,center=k"), 4.5 + 1.0 / 64);
  EXPECT_EQ(bits("k4.5v4:window=0,center=kv"), 4.5 + 2.0 / 64);
  // Llama-3.1-8B (head dim 128): tq4.25 stores 4.375 bits/value, under the block formats' 4.5.
  const ModelShape& llama = find_model_shape("llama-3.1-8b");
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("tq4.25:window=0"), 4096).bits_per_value, 4.375);
  EXPECT_EQ(kv_cache_size(llama, parse_kv_scheme("q4r"), 4096).bits_per_value, 4.5);
}

}  // namespace
}  // namespace tq
