// The flash prefill kernel (attention_prefill_fp16) against a double-precision causal softmax
// attention over the same fp16 cache on the CPU, on fresh random inputs, the output NaN-poisoned
// before every launch: lengths 1 / 7 / 1000 / 65,537, GQA 1 / 4 / 8, d = 64 / 128 / 256, chunks
// of 1..2048 queries (shorter and longer than a 64-row CTA tile, a chunk that is the whole
// sequence), a batch with different lengths; attention_fp16's route to it; and a compressed
// layer cache's long chunks (decode-to-scratch + flash) against the CPU cache. Skips without a
// GPU.
#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cuda/attention.hpp"
#include "turboquant/cuda/layer_cache.hpp"

#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "device_buffer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

namespace {

using tq::cuda::testing::DevBuf;
using tq::cuda::testing::poison;
namespace tc = tq::cuda;

struct PCase {
  int d, kv_heads, group, n_queries;
  std::vector<int> lengths;  // per sequence, each >= 1
  bool via_route = false;    // through attention_fp16 instead of the kernel's own entry
};

void check_prefill(const PCase& c, std::uint64_t seed) {
  const int d = c.d, H = c.kv_heads, G = c.group, qheads = H * G, nq = c.n_queries;
  const int batch = static_cast<int>(c.lengths.size());
  const int cap = *std::max_element(c.lengths.begin(), c.lengths.end()) + 3;
  tq::Xoshiro256 rng(seed);
  const std::size_t kvn = static_cast<std::size_t>(batch) * H * cap * d;
  std::vector<std::uint16_t> k16(kvn), v16(kvn);
  for (std::size_t i = 0; i < kvn; ++i) {
    const std::size_t t = (i / d) % cap;
    k16[i] = tq::float_to_half(static_cast<float>(rng.gaussian()) *
                               (1.0f + 0.5f * std::sin(0.37f * static_cast<float>(t))));
    v16[i] = tq::float_to_half(static_cast<float>(rng.gaussian()));
  }
  const std::size_t qn = static_cast<std::size_t>(batch) * nq * qheads * d;
  std::vector<float> q(qn);
  for (auto& x : q) x = static_cast<float>(rng.gaussian());

  DevBuf<std::uint16_t> dk(kvn), dv(kvn);
  DevBuf<float> dq(qn), dout(qn);
  DevBuf<int> dlen(batch);
  ASSERT_TRUE(dk.p && dv.p && dq.p && dout.p && dlen.p);
  CK(cudaMemcpy(dk.p, k16.data(), kvn * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dv.p, v16.data(), kvn * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dq.p, q.data(), qn * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dlen.p, c.lengths.data(), batch * 4, cudaMemcpyHostToDevice));
  tc::GpuFp16Cache cache{batch, H, d, cap, dk.p, dv.p};
  tc::AttentionArgs a;
  a.q = dq.p;
  a.out = dout.p;
  a.batch = batch;
  a.q_heads = qheads;
  a.n_queries = nq;
  a.lengths = dlen.p;
  a.max_length = cap - 3;
  // Both numbered versions of the kernel (or the route), each on a freshly poisoned output.
  const std::vector<int> versions = c.via_route ? std::vector<int>{0} : std::vector<int>{1, 2};
  std::vector<std::vector<float>> outs;
  for (int version : versions) {
    poison(dout.p, qn * 4);
    if (c.via_route) {
      tc::AttentionWorkspace ws;
      tc::attention_fp16(cache, a, ws);
    } else {
      tc::attention_prefill_fp16(cache, a, nullptr, version);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    outs.emplace_back(qn);
    CK(cudaMemcpy(outs.back().data(), dout.p, qn * 4, cudaMemcpyDeviceToHost));
  }

  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<double> err2(outs.size(), 0.0);
  double ref2 = 0.0;
  std::vector<int> nonfinite(outs.size(), 0);
  std::vector<double> s, o(d);
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < nq; ++i) {
      const int visible = std::max(0, c.lengths[b] - (nq - 1 - i));
      for (int qh = 0; qh < qheads; ++qh) {
        const float* qv = &q[((static_cast<std::size_t>(b) * nq + i) * qheads + qh) * d];
        const std::size_t slot0 = (static_cast<std::size_t>(b) * H + qh / G) * cap;
        s.assign(visible, 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int t = 0; t < visible; ++t) {
          double acc = 0.0;
          for (int j = 0; j < d; ++j) acc += qv[j] * tq::half_to_float(k16[(slot0 + t) * d + j]);
          s[t] = acc * scale;
          mx = std::max(mx, s[t]);
        }
        double l = 0.0;
        std::fill(o.begin(), o.end(), 0.0);
        for (int t = 0; t < visible; ++t) {
          const double w = std::exp(s[t] - mx);
          l += w;
          for (int j = 0; j < d; ++j) o[j] += w * tq::half_to_float(v16[(slot0 + t) * d + j]);
        }
        const std::size_t at = ((static_cast<std::size_t>(b) * nq + i) * qheads + qh) * d;
        for (int j = 0; j < d; ++j) {
          const double ref = l > 0 ? o[j] / l : 0.0;
          ref2 += ref * ref;
          for (std::size_t v = 0; v < outs.size(); ++v) {
            const float got = outs[v][at + j];
            if (!std::isfinite(got)) ++nonfinite[v];
            err2[v] += (got - ref) * (got - ref);
          }
        }
      }
    }
  }
  for (std::size_t v = 0; v < outs.size(); ++v) {
    const double rel = std::sqrt(err2[v] / std::max(ref2, 1e-300));
    EXPECT_EQ(nonfinite[v], 0) << "version " << versions[v];
    EXPECT_LT(rel, 1e-3) << "version " << versions[v] << " d=" << d << " G=" << G << " nq=" << nq
                         << " len0=" << c.lengths[0];
    std::printf("[ rel err ] prefill v%d d=%d H=%d G=%d nq=%d len0=%d batch=%d%s: %.2e\n",
                versions[v], d, H, G, nq, c.lengths[0], batch, c.via_route ? " (route)" : "", rel);
  }
}

TEST(CudaPrefill, LengthsGroupsAndDims) {
  REQUIRE_GPU();
  std::uint64_t seed = 1000;
  for (int d : {64, 128, 256}) {
    for (int G : {1, 4, 8}) {
      // Length 1 and 7 (chunk = whole sequence), 1000 with a chunk over two row tiles.
      check_prefill({d, 2, G, 1, {1}}, seed++);
      check_prefill({d, 2, G, 7, {7}}, seed++);
      check_prefill({d, 2, G, 100, {1000, 300}}, seed++);
    }
  }
}

TEST(CudaPrefill, LongCacheAndLongChunks) {
  REQUIRE_GPU();
  // 65,537 cached tokens (not a multiple of the key tile), GQA 8.
  check_prefill({128, 1, 8, 16, {65537}}, 2000);
  // Chunks longer than a CTA tile, up to 2048 queries, the last a chunk that is the sequence.
  check_prefill({128, 2, 4, 513, {1500, 700}}, 2001);
  check_prefill({64, 1, 4, 2048, {2100}}, 2002);
  check_prefill({128, 1, 1, 2048, {2048}}, 2003);
  check_prefill({256, 1, 8, 129, {129, 4000, 640}}, 2004);
}

TEST(CudaPrefill, Fp16RouteTakesPrefillKernel) {
  REQUIRE_GPU();
  // Enough CTAs to fill the GPU: attention_fp16 takes the flash kernel (result checked either
  // way, so the route cannot change the answer).
  ::unsetenv("TQ_CUDA_PREFILL");  // the default: routes on
  const int sms = tc::device_sm_count();
  const int nq = 512;
  ASSERT_GE(tc::prefill_ctas(1, 8, 32, nq), 128);
  check_prefill({128, 8, 4, nq, {nq + 1000}, true}, 3000);
  std::printf("[ route ] prefill CTAs %d vs %d SMs\n", tc::prefill_ctas(1, 8, 32, nq), sms);
}

// A Llama-3.1-8B-shaped layer (32 q heads, 8 KV heads, d = 128): chunks of 700 and 300 queries
// fill the GPU, so GpuLayerKvCache::attend decodes the compressed segment to fp16 and runs the
// flash kernel, with and without an exact window; within 3e-3 of the CPU cache's reference
// relative to the largest output, as test_gpu_layer_cache.cpp checks the other routes.
TEST(CudaPrefill, CompressedLayerCacheLongChunks) {
  REQUIRE_GPU();
  ::unsetenv("TQ_CUDA_PREFILL");  // the default: routes on
  for (const char* name : {"tq4:window=0", "tq4", "k4v3:window=0"}) {
    SCOPED_TRACE(name);
    const tq::KvScheme scheme = tq::parse_kv_scheme(name);
    const tq::LayerKvShape shape{
        .layer = 0, .n_layers = 2, .n_q_heads = 32, .n_kv_heads = 8, .head_dim = 128};
    const int d = 128, H = 8, QH = 32;
    const std::vector<int> chunks = {700, 300};
    const int capacity = 1000;
    ASSERT_GE(tc::prefill_ctas(1, H, QH, 300), tc::device_sm_count());
    tq::LayerKvCache cpu(scheme, shape);
    tc::GpuLayerKvCache gpu(scheme, shape, 1, capacity);
    tc::AttentionWorkspace workspace;
    tc::LayerCacheScratch scratch;
    tq::Xoshiro256 rng(0x7777);
    DevBuf<float> dk(static_cast<std::size_t>(capacity) * H * d);
    DevBuf<float> dv(static_cast<std::size_t>(capacity) * H * d);
    DevBuf<float> dq(static_cast<std::size_t>(capacity) * QH * d);
    DevBuf<float> dout(static_cast<std::size_t>(capacity) * QH * d);
    ASSERT_TRUE(dk.p && dv.p && dq.p && dout.p);
    std::size_t pos = 0;
    for (const int n : chunks) {
      auto gauss = [&](std::size_t count, float sc) {
        std::vector<float> v(count);
        for (auto& x : v) x = static_cast<float>(rng.gaussian()) * sc;
        return v;
      };
      const auto k = gauss(static_cast<std::size_t>(n) * H * d, 2.0f);
      const auto v = gauss(static_cast<std::size_t>(n) * H * d, 1.0f);
      const auto q = gauss(static_cast<std::size_t>(n) * QH * d, 1.0f);
      CK(cudaMemcpy(dk.p, k.data(), k.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dv.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dq.p, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
      cpu.append(k.data(), v.data(), static_cast<std::size_t>(n));
      gpu.append(0, dk.p, dv.p, n, scratch, nullptr);
      poison(dout.p, static_cast<std::size_t>(n) * QH * d * 4);
      gpu.attend(0, dq.p, n, dout.p, workspace, scratch, nullptr);
      CK(cudaDeviceSynchronize());
      std::vector<float> got(static_cast<std::size_t>(n) * QH * d), ref(got.size());
      CK(cudaMemcpy(got.data(), dout.p, got.size() * 4, cudaMemcpyDeviceToHost));
      tq::reference_attention(cpu, q.data(), n, pos, ref.data());
      double worst = 0.0, scale = 0.0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << "output " << i << " not written";
        worst = std::max(worst, std::abs(static_cast<double>(got[i]) - ref[i]));
        scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
      }
      EXPECT_LE(worst, 3e-3 * scale) << "chunk " << n << ": max abs error " << worst;
      std::printf("[ rel err ] layer cache %s chunk %d: max abs %.2e of %.2e\n", name, n, worst,
                  scale);
      pos += static_cast<std::size_t>(n);
    }
  }
}

// TQ_CUDA_PREFILL=split turns the flash routes off (A/B timing, fallback); anything else or
// nothing leaves them on.
TEST(CudaPrefill, EnvironmentSwitchesTheRoutes) {
  ::setenv("TQ_CUDA_PREFILL", "split", 1);
  EXPECT_FALSE(tc::prefill_flash_routes_enabled());
  ::setenv("TQ_CUDA_PREFILL", "flash", 1);
  EXPECT_TRUE(tc::prefill_flash_routes_enabled());
  ::unsetenv("TQ_CUDA_PREFILL");
  EXPECT_TRUE(tc::prefill_flash_routes_enabled());
}

TEST(CudaPrefill, RejectsBadShapes) {
  REQUIRE_GPU();
  DevBuf<std::uint16_t> kv(64 * 64);
  DevBuf<float> q(64 * 4), out(64 * 4);
  DevBuf<int> len(1);
  tc::GpuFp16Cache cache{1, 1, 64, 64, kv.p, kv.p};
  tc::AttentionArgs a;
  a.q = q.p;
  a.out = out.p;
  a.batch = 1;
  a.q_heads = 1;
  a.n_queries = 4;
  a.lengths = len.p;
  a.max_length = 65;
  EXPECT_THROW(tc::attention_prefill_fp16(cache, a), std::invalid_argument);  // > capacity
  a.max_length = 10;
  cache.head_dim = 96;
  EXPECT_THROW(tc::attention_prefill_fp16(cache, a), std::invalid_argument);  // head dim
  cache.head_dim = 64;
  a.q = nullptr;
  EXPECT_THROW(tc::attention_prefill_fp16(cache, a), std::invalid_argument);  // null
  a.q = q.p;
  EXPECT_THROW(tc::attention_prefill_fp16(cache, a, nullptr, 3), std::invalid_argument);
}

}  // namespace
