// GpuLayerKvCache against tq::LayerKvCache fed the same floats: after every append the stored
// bytes (codes, signs, norms; fp16 values on fp16 layers; the exact window) are identical, and
// attention of the appended chunk's queries (decode: one query; prefill: several, causal) is
// within 3e-3 of the double-precision reference over the CPU cache, relative to the largest
// output. Chunk sizes cross the window boundary so that evictions from the ring, chunks longer
// than the window and the no-window path all run. Skips without a GPU.
#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cuda/layer_cache.hpp"

#include "turboquant/base/random.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "device_buffer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

using tq::cuda::testing::DevBuf;
using tq::cuda::testing::poison;

namespace tc = tq::cuda;

std::vector<float> gaussian(std::size_t n, tq::Xoshiro256& rng, float scale) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.gaussian()) * scale;
  return v;
}

struct Case {
  std::string scheme;
  int layer;
  int head_dim;
};

void run_case(const Case& c) {
  SCOPED_TRACE(c.scheme + " layer " + std::to_string(c.layer) + " d " + std::to_string(c.head_dim));
  const tq::KvScheme scheme = tq::parse_kv_scheme(c.scheme);
  const tq::LayerKvShape shape{
      .layer = c.layer, .n_layers = 2, .n_q_heads = 6, .n_kv_heads = 2, .head_dim = c.head_dim};
  const int d = c.head_dim, H = shape.n_kv_heads, QH = shape.n_q_heads;
  const std::vector<int> chunks = {5, 1, 1, 40, 1, 130, 3, 1};
  int capacity = 0;
  for (int n : chunks) capacity += n;
  tq::LayerKvCache cpu(scheme, shape);
  tc::GpuLayerKvCache gpu(scheme, shape, 2, capacity);  // sequence 1 of 2: views must offset
  tc::AttentionWorkspace workspace;
  tc::LayerCacheScratch scratch;
  const int seq = 1;
  tq::Xoshiro256 rng(0x1234 + static_cast<std::uint64_t>(d) + c.layer);
  DevBuf<float> dk(static_cast<std::size_t>(capacity) * H * d);
  DevBuf<float> dv(static_cast<std::size_t>(capacity) * H * d);
  DevBuf<float> dq(static_cast<std::size_t>(capacity) * QH * d);
  DevBuf<float> dout(static_cast<std::size_t>(capacity) * QH * d);
  ASSERT_TRUE(dk.p && dv.p && dq.p && dout.p);
  const tq::CodeLayout* layouts[2] = {nullptr, nullptr};
  for (tq::KvSide side : {tq::KvSide::Key, tq::KvSide::Value}) {
    if (const tq::Codec* codec = cpu.codec(side)) {
      layouts[side == tq::KvSide::Key ? 0 : 1] = &codec->layout();
    }
  }
  std::size_t pos = 0;
  for (const int n : chunks) {
    SCOPED_TRACE("chunk of " + std::to_string(n) + " at " + std::to_string(pos));
    const auto k = gaussian(static_cast<std::size_t>(n) * H * d, rng, 2.0f);
    const auto v = gaussian(static_cast<std::size_t>(n) * H * d, rng, 1.0f);
    const auto q = gaussian(static_cast<std::size_t>(n) * QH * d, rng, 1.0f);
    ASSERT_EQ(cudaMemcpy(dk.p, k.data(), k.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dv.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dq.p, q.data(), q.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    cpu.append(k.data(), v.data(), static_cast<std::size_t>(n));
    gpu.append(seq, dk.p, dv.p, n, scratch, nullptr);
    ASSERT_EQ(gpu.size(seq), cpu.size());
    ASSERT_EQ(gpu.compressed_size(seq), cpu.compressed_size());

    // Stored bytes, head by head and side by side.
    const std::size_t C = cpu.compressed_size();
    for (tq::KvSide side : {tq::KvSide::Key, tq::KvSide::Value}) {
      for (int h = 0; h < H; ++h) {
        const tc::HostEncodedTokens g = gpu.download(side, seq, h);
        const tq::ConstEncodedView e = cpu.encoded(side, h);
        const tq::CodeLayout* L = layouts[side == tq::KvSide::Key ? 0 : 1];
        if (!L) {  // fp16 layer: d halves per token
          ASSERT_EQ(g.norms.size(), C * d);
          EXPECT_EQ(0, std::memcmp(g.norms.data(), e.norms, C * d * 2)) << "fp16 values differ";
          continue;
        }
        ASSERT_EQ(g.codes.size(), C * L->code_bytes);
        EXPECT_EQ(0, std::memcmp(g.codes.data(), e.codes, g.codes.size())) << "codes differ";
        EXPECT_EQ(0, std::memcmp(g.norms.data(), e.norms, C * 2)) << "norms differ";
        if (L->sign_bytes) {
          EXPECT_EQ(0, std::memcmp(g.signs.data(), e.signs, g.signs.size())) << "signs differ";
        }
        if (L->has_residual_norm) {
          EXPECT_EQ(0, std::memcmp(g.residual.data(), e.residual_norms, C * 2));
        }
        const std::vector<tq::half_bits> w = cpu.window_tokens(side, h);
        const std::vector<std::uint16_t> gw = gpu.download_window(side, seq, h);
        ASSERT_EQ(gw.size(), w.size());
        EXPECT_EQ(0, std::memcmp(gw.data(), w.data(), w.size() * 2)) << "window differs";
      }
    }

    // Attention of the chunk's queries over what the caches hold.
    ASSERT_EQ(cudaMemset(dout.p, 0xff, static_cast<std::size_t>(n) * QH * d * 4), cudaSuccess);
    gpu.attend(seq, dq.p, n, dout.p, workspace, scratch, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> got(static_cast<std::size_t>(n) * QH * d), ref(got.size());
    ASSERT_EQ(cudaMemcpy(got.data(), dout.p, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    tq::reference_attention(cpu, q.data(), n, pos, ref.data());
    double worst = 0.0, scale = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << "output " << i << " not written";
      worst = std::max(worst, std::abs(static_cast<double>(got[i]) - ref[i]));
      scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
    }
    EXPECT_LE(worst, 3e-3 * scale)
        << "attention max abs error " << worst << " (scale " << scale << ")";
    pos += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(gpu.bytes(), cpu.bytes());
}

TEST(GpuLayerKvCache, MatchesCpuCacheByteForByteAndInAttention) {
  REQUIRE_GPU();
  const std::vector<Case> cases = {
      {"tq4", 0, 128},
      {"tq3.5", 0, 128},
      {"k4v3", 1, 64},
      {"tq4:window=0", 0, 128},
      {"tq3:kcodec=prod", 0, 64},
      {"tq4:rot=haar,window=16", 1, 64},
      {"tq2.5:window=50", 0, 256},
      {"fp16", 0, 128},
      {"tq4:protect=1/0", 0, 64},
  };
  for (const Case& c : cases) run_case(c);
}

TEST(GpuLayerKvCache, RefusesWhatItCannotStore) {
  REQUIRE_GPU();
  const tq::LayerKvShape shape{
      .layer = 0, .n_layers = 2, .n_q_heads = 4, .n_kv_heads = 2, .head_dim = 64};
  try {
    tc::GpuLayerKvCache cache(tq::parse_kv_scheme("q8"), shape, 1, 16);
    FAIL() << "q8 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("block int"), std::string::npos) << e.what();
  }
  tq::LayerKvShape odd = shape;
  odd.head_dim = 96;
  EXPECT_THROW(tc::GpuLayerKvCache(tq::parse_kv_scheme("tq4:rot=haar"), odd, 1, 16),
               std::invalid_argument);
  tc::GpuLayerKvCache cache(tq::parse_kv_scheme("tq4"), shape, 1, 4);
  tc::LayerCacheScratch scratch;
  DevBuf<float> x(5 * 2 * 64);
  try {
    cache.append(0, x.p, x.p, 5, scratch, nullptr);
    FAIL() << "append past the capacity accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("capacity of 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cache.append(1, x.p, x.p, 1, scratch, nullptr), std::invalid_argument);
}

}  // namespace
