// The llama.cpp block baselines (src/cache/block_int.hpp) against an independent reference
// written here from the published ggml algorithm (quantize_row_{q8_0,q4_0,q4_1,q5_0,iq4_nl}_ref
// semantics) and the GGUF block definitions: exact GGUF block bytes for random blocks and edge
// cases (zeros, one outlier, negative maximum, ties, constant blocks), exact dequantized values
// (also for the short last block of dims that are not a multiple of 32), the cache storing those
// bytes, scheme names and byte accounting, and attention on a head dim with a short block.
#include "cache/block_int.hpp"
#include "turboquant/base/half.hpp"
#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cache/kv_scheme.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace tq {
namespace {

using blockint::Format;

constexpr Format kFormats[] = {Format::Q8_0, Format::Q4_0, Format::Q4_1, Format::Q5_0,
                               Format::Iq4Nl};
constexpr int kCodebook[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};

const char* name(Format f) {
  switch (f) {
    case Format::Q8_0:
      return "q8_0";
    case Format::Q4_0:
      return "q4_0";
    case Format::Q4_1:
      return "q4_1";
    case Format::Q5_0:
      return "q5_0";
    case Format::Iq4Nl:
      return "iq4_nl";
  }
  return "?";
}

// ---- Reference: one block of n values as ggml's reference quantizers define it ----------------

// What a block quantizer decides: fp16 scale (and q4_1's minimum) and a level index per value
// (q8_0: the int8, q4_x/q5_0: the unsigned stored integer, iq4_nl: the codebook index).
struct RefBlock {
  half_bits d = 0, m = 0;
  std::vector<int> q;
};

RefBlock ref_quantize(Format f, const float* x, int n) {
  RefBlock r;
  r.q.assign(static_cast<std::size_t>(n), 0);
  if (f == Format::Q8_0) {
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    r.d = float_to_half(d);
    for (int j = 0; j < n; ++j) r.q[j] = static_cast<int>(std::roundf(x[j] * id));
    return r;
  }
  if (f == Format::Q4_1) {
    float lo = x[0], hi = x[0];
    for (int j = 0; j < n; ++j) {
      lo = std::min(lo, x[j]);
      hi = std::max(hi, x[j]);
    }
    const float d = (hi - lo) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    r.d = float_to_half(d);
    r.m = float_to_half(lo);
    for (int j = 0; j < n; ++j) {
      const float v = (x[j] - lo) * id;
      r.q[j] = std::min(15, static_cast<int>(static_cast<std::int8_t>(v + 0.5f)));
    }
    return r;
  }
  // The signed maximum: the first value of largest magnitude.
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (f == Format::Q4_0 || f == Format::Q5_0) {
    const int half_levels = f == Format::Q4_0 ? 8 : 16;
    const float d = max / static_cast<float>(-half_levels);
    const float id = d ? 1.0f / d : 0.0f;
    r.d = float_to_half(d);
    for (int j = 0; j < n; ++j) {
      const float v = x[j] * id;
      r.q[j] = std::min(2 * half_levels - 1,
                        static_cast<int>(static_cast<std::int8_t>(v + (half_levels + 0.5f))));
    }
    return r;
  }
  // iq4_nl, the reference path (no scale search): d0 = max / -127, nearest codebook level of
  // x / d0 (ties to the upper level), then the x²-weighted least-squares scale.
  const auto nearest = [](float v) {
    int best = 0;
    for (int l = 1; l < 16; ++l) {
      if (std::fabs(v - kCodebook[l]) <= std::fabs(v - kCodebook[best])) best = l;
    }
    return best;
  };
  if (amax < 1e-15f) {
    r.d = float_to_half(0.0f);
    for (int j = 0; j < n; ++j) r.q[j] = nearest(0.0f);  // d = 0: any index reads as 0
    return r;
  }
  const float d0 = max / -127.0f;
  const float id = 1.0f / d0;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < n; ++j) {
    r.q[j] = nearest(id * x[j]);
    const float w = x[j] * x[j];
    const float lv = static_cast<float>(kCodebook[r.q[j]]);
    sumqx += w * lv * x[j];
    sumq2 += w * lv * lv;
  }
  r.d = float_to_half(sumqx / sumq2);
  return r;
}

// The GGUF block of a full 32-value RefBlock: fp16 d little-endian, [m], [qh], qs.
std::vector<std::uint8_t> gguf_block(Format f, const RefBlock& r) {
  std::vector<std::uint8_t> out;
  const auto put16 = [&out](half_bits h) {
    out.push_back(static_cast<std::uint8_t>(h & 0xff));
    out.push_back(static_cast<std::uint8_t>(h >> 8));
  };
  put16(r.d);
  if (f == Format::Q4_1) put16(r.m);
  if (f == Format::Q8_0) {
    for (int v : r.q) out.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(v)));
    return out;
  }
  if (f == Format::Q5_0) {
    std::uint32_t qh = 0;
    for (int j = 0; j < 32; ++j) qh |= static_cast<std::uint32_t>((r.q[j] >> 4) & 1) << j;
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<std::uint8_t>(qh >> (8 * b)));
  }
  for (int j = 0; j < 16; ++j) {
    out.push_back(static_cast<std::uint8_t>((r.q[j] & 0xf) | ((r.q[j + 16] & 0xf) << 4)));
  }
  return out;
}

// The GGUF block definitions' dequantization of one full block (value = level·d [+ m]).
std::vector<float> gguf_dequantize(Format f, const std::vector<std::uint8_t>& b) {
  const auto h16 = [&b](std::size_t at) {
    return half_to_float(static_cast<half_bits>(b[at] | (b[at + 1] << 8)));
  };
  std::vector<float> y(32);
  const float d = h16(0);
  switch (f) {
    case Format::Q8_0:
      for (int j = 0; j < 32; ++j)
        y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
      break;
    case Format::Q4_0:
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((b[2 + j] & 0xf) - 8) * d;
        y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
      }
      break;
    case Format::Q4_1: {
      const float m = h16(2);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(b[4 + j] & 0xf) * d + m;
        y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
      }
      break;
    }
    case Format::Q5_0: {
      std::uint32_t qh = 0;
      std::memcpy(&qh, b.data() + 2, 4);
      for (int j = 0; j < 16; ++j) {
        const int lo = b[6 + j] & 0xf, hi = b[6 + j] >> 4;
        y[j] = static_cast<float>((lo | static_cast<int>(((qh >> j) & 1) << 4)) - 16) * d;
        y[j + 16] =
            static_cast<float>((hi | static_cast<int>(((qh >> (j + 16)) & 1) << 4)) - 16) * d;
      }
      break;
    }
    case Format::Iq4Nl:
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(kCodebook[b[2 + j] & 0xf]) * d;
        y[j + 16] = static_cast<float>(kCodebook[b[2 + j] >> 4]) * d;
      }
      break;
  }
  return y;
}

// The reference value of level index q in a block (for the short-block check).
float ref_value(Format f, const RefBlock& r, int q) {
  const float d = half_to_float(r.d);
  switch (f) {
    case Format::Q8_0:
      return static_cast<float>(q) * d;
    case Format::Q4_0:
      return static_cast<float>(q - 8) * d;
    case Format::Q4_1:
      return static_cast<float>(q) * d + half_to_float(r.m);
    case Format::Q5_0:
      return static_cast<float>(q - 16) * d;
    case Format::Iq4Nl:
      return static_cast<float>(kCodebook[q]) * d;
  }
  return NAN;
}

// ---- The cache's blocks as GGUF bytes -------------------------------------------------------

// The cache's quantization of one full block, its halves and code bytes laid out as a GGUF block.
std::vector<std::uint8_t> cache_block(Format f, const float* x) {
  std::vector<std::uint8_t> codes(blockint::row_code_bytes(f, 32));
  std::vector<half_bits> halves(blockint::row_halves(f, 32));
  blockint::quantize(f, x, 32, codes.data(), halves.data());
  std::vector<std::uint8_t> out;
  for (half_bits h : halves) {
    out.push_back(static_cast<std::uint8_t>(h & 0xff));
    out.push_back(static_cast<std::uint8_t>(h >> 8));
  }
  out.insert(out.end(), codes.begin(), codes.end());
  return out;
}

std::string hex(const std::vector<std::uint8_t>& b) {
  std::string s;
  char buf[4];
  for (std::uint8_t v : b) {
    std::snprintf(buf, sizeof buf, "%02x", v);
    s += buf;
  }
  return s;
}

// Random blocks of several kinds plus the edge cases.
std::vector<std::vector<float>> test_blocks() {
  std::mt19937 rng(20261202);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> blocks;
  for (int i = 0; i < 400; ++i) {
    std::vector<float> x(32);
    const float sd = std::pow(10.0f, u(rng) * 3.0f);  // scales 1e-3 .. 1e3
    for (auto& v : x) v = (i % 3 == 0 ? u(rng) : g(rng)) * sd;
    if (i % 5 == 0) x[rng() % 32] *= 20.0f;  // an outlier
    if (i % 7 == 0)
      for (auto& v : x) v = std::fabs(v);  // all positive (q4_1 minimum > 0)
    blocks.push_back(x);
  }
  blocks.push_back(std::vector<float>(32, 0.0f));  // all zeros
  std::vector<float> outlier(32, 0.01f);
  outlier[17] = 50.0f;  // one outlier, the rest tiny
  blocks.push_back(outlier);
  std::vector<float> negative(32);
  for (int j = 0; j < 32; ++j) negative[j] = 0.1f * static_cast<float>(j % 9) - 0.3f;
  negative[5] = -4.0f;  // the maximum magnitude is negative: d > 0 for q4_0 / q5_0
  blocks.push_back(negative);
  std::vector<float> tie(32, 0.5f);
  tie[3] = -2.0f;
  tie[9] = 2.0f;  // |max| tie with opposite signs: the first one (negative) wins
  blocks.push_back(tie);
  blocks.push_back(std::vector<float>(32, -1.25f));  // constant (q4_1: d = 0)
  std::vector<float> steps(32);
  for (int j = 0; j < 32; ++j) steps[j] = static_cast<float>(j - 16) * 0.5f;  // exact ties
  blocks.push_back(steps);
  return blocks;
}

TEST(BlockFormats, GgufBytesMatchTheReferenceQuantizer) {
  const auto blocks = test_blocks();
  for (Format f : kFormats) {
    int i = 0;
    for (const auto& x : blocks) {
      const std::vector<std::uint8_t> want = gguf_block(f, ref_quantize(f, x.data(), 32));
      const std::vector<std::uint8_t> got = cache_block(f, x.data());
      ASSERT_EQ(hex(got), hex(want)) << name(f) << " block " << i;
      ++i;
    }
  }
}

TEST(BlockFormats, BlockBytesAreTheGgufSizes) {
  EXPECT_EQ(2 + blockint::row_code_bytes(Format::Q8_0, 32), 34u);
  EXPECT_EQ(2 + blockint::row_code_bytes(Format::Q4_0, 32), 18u);
  EXPECT_EQ(4 + blockint::row_code_bytes(Format::Q4_1, 32), 20u);
  EXPECT_EQ(2 + blockint::row_code_bytes(Format::Q5_0, 32), 22u);
  EXPECT_EQ(2 + blockint::row_code_bytes(Format::Iq4Nl, 32), 18u);
}

TEST(BlockFormats, DequantizeMatchesTheGgufBlockDefinition) {
  const auto blocks = test_blocks();
  for (Format f : kFormats) {
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const float* x = blocks[i].data();
      const std::vector<float> want = gguf_dequantize(f, cache_block(f, x));
      std::vector<std::uint8_t> codes(blockint::row_code_bytes(f, 32));
      std::vector<half_bits> halves(blockint::row_halves(f, 32));
      blockint::quantize(f, x, 32, codes.data(), halves.data());
      std::vector<float> got(32, NAN);
      blockint::dequantize(f, codes.data(), halves.data(), 32, got.data());
      for (int j = 0; j < 32; ++j) ASSERT_EQ(got[j], want[j]) << name(f) << " block " << i;
    }
  }
}

TEST(BlockFormats, EdgeCasesDecodeAsExpected) {
  // All zeros decode to zeros in every format; q4_0 stores -0 as its scale (0 / -8) and level 8.
  const std::vector<float> zeros(32, 0.0f);
  for (Format f : kFormats) {
    const auto y = gguf_dequantize(f, cache_block(f, zeros.data()));
    for (float v : y) EXPECT_EQ(v, 0.0f) << name(f);
  }
  const auto q40 = cache_block(Format::Q4_0, zeros.data());
  EXPECT_EQ(q40[0] | (q40[1] << 8), 0x8000);
  for (std::size_t j = 2; j < q40.size(); ++j) EXPECT_EQ(q40[j], 0x88);
  // q4_0 maps the signed maximum to -8 exactly: a negative maximum -4 gives d = 0.5 and level 0.
  std::vector<float> neg(32, 0.25f);
  neg[5] = -4.0f;
  const auto y = gguf_dequantize(Format::Q4_0, cache_block(Format::Q4_0, neg.data()));
  EXPECT_EQ(y[5], -4.0f);
  // One outlier: it is reconstructed exactly by q4_0 (level -8) and q8_0 (within fp16 of d).
  std::vector<float> out(32, 0.01f);
  out[17] = 64.0f;
  EXPECT_EQ(gguf_dequantize(Format::Q4_0, cache_block(Format::Q4_0, out.data()))[17], 64.0f);
  EXPECT_NEAR(gguf_dequantize(Format::Q8_0, cache_block(Format::Q8_0, out.data()))[17], 64.0f,
              64.0f * 1e-3f);
}

TEST(BlockFormats, ShortLastBlockFollowsTheSameRules) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (Format f : kFormats) {
    for (int dim : {13, 20, 40, 80, 96}) {
      std::vector<float> x(static_cast<std::size_t>(dim));
      for (auto& v : x) v = g(rng);
      std::vector<std::uint8_t> codes(blockint::row_code_bytes(f, dim));
      std::vector<half_bits> halves(blockint::row_halves(f, dim));
      blockint::quantize(f, x.data(), dim, codes.data(), halves.data());
      std::vector<float> got(x.size(), NAN);
      blockint::dequantize(f, codes.data(), halves.data(), dim, got.data());
      for (int b = 0; b * 32 < dim; ++b) {
        const int n = std::min(32, dim - b * 32);
        const RefBlock r = ref_quantize(f, x.data() + b * 32, n);
        const int hp = blockint::halves_per_block(f);
        EXPECT_EQ(halves[b * hp], r.d) << name(f) << " dim=" << dim << " block " << b;
        for (int j = 0; j < n; ++j) {
          ASSERT_EQ(got[b * 32 + j], ref_value(f, r, r.q[j]))
              << name(f) << " dim=" << dim << " value " << b * 32 + j;
        }
      }
    }
  }
}

TEST(BlockFormats, ScalarKernelsMatchDequantizedDotsAndSums) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (Format f : kFormats) {
    for (int dim : {20, 64, 80}) {
      const std::size_t n = 9;
      const std::size_t cb = blockint::row_code_bytes(f, dim), hb = blockint::row_halves(f, dim);
      std::vector<float> x(n * dim), q(dim), w(n);
      for (auto& v : x) v = g(rng);
      for (auto& v : q) v = g(rng);
      for (auto& v : w) v = g(rng);
      std::vector<std::uint8_t> codes(n * cb);
      std::vector<half_bits> halves(n * hb);
      std::vector<float> dec(n * dim);
      for (std::size_t t = 0; t < n; ++t) {
        blockint::quantize(f, x.data() + t * dim, dim, codes.data() + t * cb,
                           halves.data() + t * hb);
        blockint::dequantize(f, codes.data() + t * cb, halves.data() + t * hb, dim,
                             dec.data() + t * dim);
      }
      std::vector<float> dots(n, NAN), acc(dim, 0.25f);
      blockint::dot(f, q.data(), dim, codes.data(), halves.data(), n, dots.data());
      blockint::axpy(f, w.data(), dim, codes.data(), halves.data(), n, acc.data());
      for (std::size_t t = 0; t < n; ++t) {
        double want = 0, mag = 0;
        for (int j = 0; j < dim; ++j) {
          want += static_cast<double>(q[j]) * dec[t * dim + j];
          mag += std::fabs(static_cast<double>(q[j]) * dec[t * dim + j]);
        }
        EXPECT_NEAR(dots[t], want, 1e-5 * (1 + mag)) << name(f) << " dim=" << dim;
      }
      for (int j = 0; j < dim; ++j) {
        double want = 0.25, mag = 0.25;
        for (std::size_t t = 0; t < n; ++t) {
          want += static_cast<double>(w[t]) * dec[t * dim + j];
          mag += std::fabs(static_cast<double>(w[t]) * dec[t * dim + j]);
        }
        EXPECT_NEAR(acc[j], want, 1e-5 * (1 + mag)) << name(f) << " dim=" << dim;
      }
    }
  }
}

// The cache stores exactly the reference blocks of each token (window = 0, unrotated).
TEST(BlockFormats, CacheStoresTheReferenceBlocks) {
  const struct {
    const char* scheme;
    Format format;
  } cases[] = {{"q8", Format::Q8_0},
               {"q4", Format::Q4_0},
               {"q4_1", Format::Q4_1},
               {"q5_0", Format::Q5_0},
               {"iq4nl", Format::Iq4Nl}};
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const LayerKvShape shape{0, 1, 2, 2, 64};
  const std::size_t tokens = 7, d = 64, heads = 2;
  std::vector<float> k(tokens * heads * d), v(k.size());
  for (auto& x : k) x = g(rng);
  for (auto& x : v) x = g(rng) * 3.0f;
  for (const auto& c : cases) {
    LayerKvCache cache(parse_kv_scheme(c.scheme), shape);
    cache.append(k.data(), v.data(), tokens);
    ASSERT_EQ(cache.compressed_size(), tokens) << c.scheme;
    const std::size_t cb = blockint::row_code_bytes(c.format, 64);
    const std::size_t hb = blockint::row_halves(c.format, 64);
    for (KvSide side : {KvSide::Key, KvSide::Value}) {
      const std::vector<float>& src = side == KvSide::Key ? k : v;
      for (int h = 0; h < 2; ++h) {
        const ConstEncodedView e = cache.encoded(side, h);
        for (std::size_t t = 0; t < tokens; ++t) {
          for (int b = 0; b < 2; ++b) {
            const float* x = src.data() + (t * heads + h) * d + b * 32;
            const std::vector<std::uint8_t> want =
                gguf_block(c.format, ref_quantize(c.format, x, 32));
            std::vector<std::uint8_t> got;
            for (int i = 0; i < blockint::halves_per_block(c.format); ++i) {
              const half_bits hv = e.norms[t * hb + b * blockint::halves_per_block(c.format) + i];
              got.push_back(static_cast<std::uint8_t>(hv & 0xff));
              got.push_back(static_cast<std::uint8_t>(hv >> 8));
            }
            const std::uint8_t* codes = e.codes + t * cb + b * (cb / 2);
            got.insert(got.end(), codes, codes + cb / 2);
            ASSERT_EQ(hex(got), hex(want)) << c.scheme << " token " << t << " block " << b;
          }
        }
      }
    }
  }
}

TEST(BlockFormats, SchemeNamesAndBytes) {
  const struct {
    const char* text;
    const char* canonical;
    KvFormat format;
    bool rotated;
    std::size_t bytes_d64;  // per token and side at head dim 64
    double bits;            // stored bits per value
  } cases[] = {
      {"q8", "q8", KvFormat::Int8Block, false, 68, 8.5},
      {"q8_0", "q8", KvFormat::Int8Block, false, 68, 8.5},
      {"q4_0r", "q4r", KvFormat::Int4Block, true, 36, 4.5},
      {"q4_1", "q4_1", KvFormat::Q4_1Block, false, 40, 5.0},
      {"Q4_1R", "q4_1r", KvFormat::Q4_1Block, true, 40, 5.0},
      {"q5_0", "q5_0", KvFormat::Q5_0Block, false, 44, 5.5},
      {"q5_0r:window=16", "q5_0r:window=16", KvFormat::Q5_0Block, true, 44, 0.0},
      {"iq4nl", "iq4nl", KvFormat::Iq4NlBlock, false, 36, 4.5},
      {"iq4_nl", "iq4nl", KvFormat::Iq4NlBlock, false, 36, 4.5},
      {"iq4nlr:protect=1/0", "iq4nlr:protect=1/0", KvFormat::Iq4NlBlock, true, 36, 0.0},
  };
  for (const auto& c : cases) {
    const KvScheme s = parse_kv_scheme(c.text);
    EXPECT_EQ(s.name, c.canonical) << c.text;
    EXPECT_EQ(parse_kv_scheme(s.name).name, s.name) << c.text;
    EXPECT_EQ(s.key.format, c.format) << c.text;
    EXPECT_EQ(s.value.format, c.format) << c.text;
    EXPECT_EQ(s.key.rotated, c.rotated) << c.text;
    EXPECT_EQ(kv_side_bytes_per_token(s.key, 64, s.rotation), c.bytes_d64) << c.text;
    if (c.bits > 0) {
      EXPECT_DOUBLE_EQ(kv_cache_size(ModelShape{"m", 4, 6, 2, 64, 0}, s, 1000).bits_per_value,
                       c.bits)
          << c.text;
    }
  }
  // A short last block: head dim 80 = 32 + 32 + 16.
  const KvScheme q5 = parse_kv_scheme("q5_0");
  EXPECT_EQ(kv_side_bytes_per_token(q5.key, 80, q5.rotation), (4 + 16) * 2 + (2 + 8) + 2 * 3u);
  const KvScheme q41 = parse_kv_scheme("q4_1");
  EXPECT_EQ(kv_side_bytes_per_token(q41.key, 80, q41.rotation), 40u + 4 * 3u);
  for (const char* bad : {"q4_2", "q5_1", "iq4", "q4_1rr", "iq4nl:kcodec=prod"}) {
    EXPECT_THROW(parse_kv_scheme(bad), std::invalid_argument) << bad;
  }
}

TEST(BlockFormats, CacheBytesEqualTheFormula) {
  for (const char* name :
       {"q4_1", "q5_0", "iq4nl", "q4", "q8", "q5_0:window=5", "q4_1:protect=1/0"}) {
    const KvScheme scheme = parse_kv_scheme(name);
    for (int d : {64, 80}) {
      const ModelShape model{"t", 2, 4, 2, d, 0};
      std::mt19937 rng(5);
      std::normal_distribution<float> g(0.0f, 1.0f);
      std::vector<float> k(23 * 2 * d), v(k.size());
      for (auto& x : k) x = g(rng);
      for (auto& x : v) x = g(rng);
      std::size_t total = 0;
      for (int l = 0; l < 2; ++l) {
        LayerKvCache layer(scheme, LayerKvShape{l, 2, 4, 2, d});
        layer.append(k.data(), v.data(), 23);
        total += layer.bytes();
      }
      EXPECT_EQ(total, kv_cache_size(model, scheme, 23).bytes) << name << " d=" << d;
    }
  }
}

// Attention on a head dim with a short block (80) and on 64, against the brute-force reference.
TEST(BlockFormats, AttentionMatchesReference) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (const char* name : {"q4_1", "q5_0", "iq4nl", "q4", "q8", "q4_1r", "iq4nlr"}) {
    for (int d : {64, 80}) {
      if (d == 80 && std::string(name).back() == 'r') continue;  // Hadamard needs 2^k
      const LayerKvShape shape{0, 1, 6, 2, d};
      LayerKvCache cache(parse_kv_scheme(name), shape);
      const std::size_t n = 30;
      std::vector<float> k(n * 2 * d), v(k.size()), q(3 * 6 * d);
      for (auto& x : k) x = g(rng);
      for (auto& x : v) x = g(rng);
      for (auto& x : q) x = g(rng);
      cache.append(k.data(), v.data(), n);
      std::vector<float> fast(q.size()), scalar(q.size()), ref(q.size());
      cache.attend(q.data(), 3, n - 3, fast.data());
      AttentionOptions opt;
      opt.simd = SimdLevel::Scalar;
      cache.attend(q.data(), 3, n - 3, scalar.data(), opt);
      reference_attention(cache, q.data(), 3, n - 3, ref.data());
      for (std::size_t i = 0; i < q.size(); ++i) {
        ASSERT_NEAR(fast[i], ref[i], 1e-4f * (1.0f + std::fabs(ref[i]))) << name << " d=" << d;
        ASSERT_NEAR(scalar[i], ref[i], 1e-4f * (1.0f + std::fabs(ref[i]))) << name << " d=" << d;
      }
    }
  }
}

}  // namespace
}  // namespace tq
