// GpuLayerKvCache against tq::LayerKvCache fed the same floats: after every append the stored
// bytes (codes, signs, norms; fp16 values on fp16 layers; the exact window) are identical, and
// attention of the appended chunk's queries (decode: one query; prefill: several, causal) is
// within 3e-3 of the double-precision reference over the CPU cache, relative to the largest
// output. Chunk sizes cross the window boundary so that evictions from the ring, chunks longer
// than the window and the no-window path all run. The batched decode step (append_step, all
// sequences in one launch, some sitting steps out) stores the same bytes as per-sequence appends.
// Skips without a GPU.
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

// B sequences decode T steps through append_step (each sitting out some steps, so their lengths
// differ; every other step through its two halves instead: encode_evicted_step on one stream,
// write_step on another after an event, as the GPU runner forks them); a second cache gets the
// same tokens through per-sequence append. Every stored byte (codes, signs, norms, residual
// norms, fp16 rows, the ring's window) must match.
void run_step_case(const std::string& scheme_name, int head_dim) {
  SCOPED_TRACE(scheme_name + " d " + std::to_string(head_dim));
  const tq::KvScheme scheme = tq::parse_kv_scheme(scheme_name);
  const tq::LayerKvShape shape{
      .layer = 0, .n_layers = 2, .n_q_heads = 4, .n_kv_heads = 2, .head_dim = head_dim};
  const int d = head_dim, H = shape.n_kv_heads, B = 3, T = 45;
  tc::GpuLayerKvCache stepped(scheme, shape, B, T);
  tc::GpuLayerKvCache appended(scheme, shape, B, T);
  tc::LayerCacheScratch scratch;
  tq::Xoshiro256 rng(0x5151 + static_cast<std::uint64_t>(d));
  cudaStream_t main_stream = nullptr, side_stream = nullptr;
  cudaEvent_t encoded = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&main_stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&side_stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&encoded, cudaEventDisableTiming), cudaSuccess);
  DevBuf<float> dk(static_cast<std::size_t>(B) * H * d), dv(static_cast<std::size_t>(B) * H * d);
  DevBuf<int> dpos(B);
  ASSERT_TRUE(dk.p && dv.p && dpos.p);
  std::vector<int> sizes(B, 0);
  for (int s = 0; s < T; ++s) {
    const auto k = gaussian(static_cast<std::size_t>(B) * H * d, rng, 2.0f);
    const auto v = gaussian(k.size(), rng, 1.0f);
    std::vector<int> positions(B);
    std::vector<bool> active(B);
    for (int b = 0; b < B; ++b) {
      active[b] = (s + 2 * b) % 5 != 0;  // each sequence sits out every fifth step
      positions[b] = active[b] ? sizes[b] : -1;
    }
    ASSERT_EQ(cudaMemcpy(dk.p, k.data(), k.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dv.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dpos.p, positions.data(), B * 4, cudaMemcpyHostToDevice), cudaSuccess);
    if (s % 2 == 0) {
      stepped.append_step(dk.p, dv.p, dpos.p, nullptr);
    } else {
      stepped.encode_evicted_step(dpos.p, side_stream);
      ASSERT_EQ(cudaEventRecord(encoded, side_stream), cudaSuccess);
      ASSERT_EQ(cudaStreamWaitEvent(main_stream, encoded, 0), cudaSuccess);
      stepped.write_step(dk.p, dv.p, dpos.p, main_stream);
    }
    stepped.advance(active);
    const std::size_t row = static_cast<std::size_t>(H) * d;
    for (int b = 0; b < B; ++b) {
      if (!active[b]) continue;
      appended.append(b, dk.p + b * row, dv.p + b * row, 1, scratch, nullptr);
      ++sizes[b];
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  for (int b = 0; b < B; ++b) {
    ASSERT_EQ(stepped.size(b), appended.size(b));
    ASSERT_EQ(stepped.compressed_size(b), appended.compressed_size(b));
    for (tq::KvSide side : {tq::KvSide::Key, tq::KvSide::Value}) {
      for (int h = 0; h < H; ++h) {
        SCOPED_TRACE("sequence " + std::to_string(b) + " head " + std::to_string(h));
        const tc::HostEncodedTokens x = stepped.download(side, b, h);
        const tc::HostEncodedTokens y = appended.download(side, b, h);
        EXPECT_EQ(x.codes, y.codes) << "codes differ";
        EXPECT_EQ(x.signs, y.signs) << "signs differ";
        EXPECT_EQ(x.norms, y.norms) << "norms (or fp16 rows) differ";
        EXPECT_EQ(x.residual, y.residual) << "residual norms differ";
        EXPECT_EQ(stepped.download_window(side, b, h), appended.download_window(side, b, h))
            << "window differs";
      }
    }
  }
  EXPECT_EQ(stepped.bytes(), appended.bytes());
  cudaEventDestroy(encoded);
  cudaStreamDestroy(side_stream);
  cudaStreamDestroy(main_stream);
}

TEST(GpuLayerKvCache, DecodeStepStoresWhatAppendStores) {
  REQUIRE_GPU();
  for (const auto& [scheme, d] :
       std::vector<std::pair<std::string, int>>{{"tq4:window=16", 128},
                                                {"k4v3:window=8", 64},
                                                {"tq4:window=0", 128},
                                                {"tq3:kcodec=prod,window=4", 64},
                                                {"fp16", 128}}) {
    run_step_case(scheme, d);
  }
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

// A decode step whose device position is past the capacity writes nothing (the fp16 rows would
// belong to the next sequence) and check_capacity reports it once; in-capacity steps stay
// silent. Every layer kind: fp16 rows, a window ring with evictions, no window.
TEST(GpuLayerKvCache, DecodeStepPastCapacityIsReportedNotWritten) {
  REQUIRE_GPU();
  const tq::LayerKvShape shape{
      .layer = 0, .n_layers = 2, .n_q_heads = 4, .n_kv_heads = 2, .head_dim = 64};
  const int B = 2, capacity = 6, d = 64, H = 2;
  for (const std::string scheme : {"fp16", "tq4:window=2", "tq4:window=0"}) {
    SCOPED_TRACE(scheme);
    tc::GpuLayerKvCache cache(tq::parse_kv_scheme(scheme), shape, B, capacity);
    DevBuf<float> x(static_cast<std::size_t>(B) * H * d);
    DevBuf<int> dpos(B);
    std::vector<float> ones(static_cast<std::size_t>(B) * H * d, 1.0f);
    ASSERT_EQ(cudaMemcpy(x.p, ones.data(), ones.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    for (int p = 0; p < capacity; ++p) {  // sequence 0 fills its rows, sequence 1 sits out
      const int pos[B] = {p, -1};
      ASSERT_EQ(cudaMemcpy(dpos.p, pos, sizeof pos, cudaMemcpyHostToDevice), cudaSuccess);
      cache.append_step(x.p, x.p, dpos.p, nullptr);
      cache.advance({true, false});
    }
    EXPECT_NO_THROW(cache.check_capacity(nullptr));
    // What sequence 0 holds, in both heads (a stray fp16 row at position 9 of head 0 would land
    // in head 1's rows) and in the ring; the past-capacity step writes other values.
    auto snapshot = [&] {
      std::vector<std::vector<std::uint16_t>> all;
      for (int h = 0; h < H; ++h) {
        const tq::cuda::HostEncodedTokens t = cache.download(tq::KvSide::Key, 0, h);
        all.push_back(t.norms);
        all.emplace_back(t.codes.begin(), t.codes.end());
        all.push_back(cache.download_window(tq::KvSide::Key, 0, h));
      }
      return all;
    };
    const auto held = snapshot();
    std::vector<float> twos(ones.size(), 2.0f);
    ASSERT_EQ(cudaMemcpy(x.p, twos.data(), twos.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    const int past[B] = {capacity + 3, -1};
    ASSERT_EQ(cudaMemcpy(dpos.p, past, sizeof past, cudaMemcpyHostToDevice), cudaSuccess);
    cache.append_step(x.p, x.p, dpos.p, nullptr);
    try {
      cache.check_capacity(nullptr);
      FAIL() << "a step at position " << past[0] << " of a " << capacity << "-token cache passed";
    } catch (const std::out_of_range& e) {
      EXPECT_NE(std::string(e.what()).find("position 9"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("holds 6 tokens"), std::string::npos) << e.what();
    }
    EXPECT_NO_THROW(cache.check_capacity(nullptr)) << "the record was not cleared";
    EXPECT_EQ(snapshot(), held) << "the dropped token overwrote stored ones";
  }
}

}  // namespace
