// GpuSlidingWindowCache against its CPU reference tq::SlidingWindowCache on fresh random K/V/Q:
// prefill chunks that wrap the ring, batched decode steps with per-sequence positions (one
// sequence sitting steps out), GQA groups 1/4/8 and head dims 64/128/256; outputs are poisoned
// before every kernel, so a row the kernel skips fails the comparison. Plus byte accounting and
// the argument checks.
#include "device_buffer.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/cache/sliding_window_cache.hpp"
#include "turboquant/cuda/sliding_window_cache.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

using tq::cuda::testing::DevBuf;
using tq::cuda::testing::poison;

std::vector<float> gaussian(std::size_t n, tq::Xoshiro256& rng) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.gaussian());
  return v;
}

// Largest |a − b| relative to the largest |b| (outputs are averages of O(1) values).
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0.0, scale = 1e-6;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return err / scale;
}

struct Case {
  int q_heads, kv_heads, head_dim, window, chunk;
};

class SlidingWindowOnGpu : public ::testing::TestWithParam<Case> {};

TEST_P(SlidingWindowOnGpu, PrefillAndDecodeMatchTheCpuCache) {
  REQUIRE_GPU();
  const Case c = GetParam();
  const tq::LayerKvShape shape{
      .n_q_heads = c.q_heads, .n_kv_heads = c.kv_heads, .head_dim = c.head_dim};
  constexpr int kBatch = 3;
  const std::size_t KV = static_cast<std::size_t>(c.kv_heads) * c.head_dim;
  const std::size_t Q = static_cast<std::size_t>(c.q_heads) * c.head_dim;
  tq::cuda::GpuSlidingWindowCache gpu(shape, c.window, c.chunk, kBatch);
  std::vector<tq::SlidingWindowCache> cpu;
  for (int b = 0; b < kBatch; ++b) cpu.emplace_back(shape, c.window, c.chunk);
  tq::Xoshiro256 rng(1234 + c.head_dim + c.window);
  DevBuf<float> dk(c.chunk * KV * kBatch), dv(c.chunk * KV * kBatch), dq(c.chunk * Q * kBatch),
      dout(c.chunk * Q * kBatch);
  DevBuf<int> dpos(kBatch);
  ASSERT_TRUE(dk.p && dv.p && dq.p && dout.p && dpos.p);
  double worst = 0.0;
  // Prefill: sequence b gets prompt_len[b] tokens in chunks (the longest wraps the ring).
  const int prompt_len[kBatch] = {c.window + 2 * c.chunk + 3, 5, c.window - 1};
  for (int b = 0; b < kBatch; ++b) {
    for (int done = 0; done < prompt_len[b];) {
      const int n = std::min(c.chunk, prompt_len[b] - done);
      const auto k = gaussian(n * KV, rng), v = gaussian(n * KV, rng), q = gaussian(n * Q, rng);
      CK(cudaMemcpy(dk.p, k.data(), k.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dv.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dq.p, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
      poison(dout.p, n * Q * 4);
      gpu.append(b, dk.p, dv.p, n);
      gpu.attend(b, dq.p, n, dout.p);
      std::vector<float> got(n * Q), want(n * Q);
      CK(cudaMemcpy(got.data(), dout.p, got.size() * 4, cudaMemcpyDeviceToHost));
      cpu[b].append(k.data(), v.data(), n);
      cpu[b].attend(q.data(), n, cpu[b].size() - n, want.data());
      worst = std::max(worst, rel_error(got, want));
      done += n;
    }
    EXPECT_EQ(gpu.size(b), static_cast<std::size_t>(prompt_len[b]));
  }
  // Decode: one token per sequence per step, sequence 1 sitting out every third step.
  for (int step = 0; step < c.window + 10; ++step) {
    std::vector<int> pos(kBatch);
    std::vector<bool> active(kBatch);
    for (int b = 0; b < kBatch; ++b) {
      active[b] = !(b == 1 && step % 3 == 0);
      pos[b] = active[b] ? static_cast<int>(cpu[b].size()) : -1;
    }
    const auto k = gaussian(kBatch * KV, rng), v = gaussian(kBatch * KV, rng),
               q = gaussian(kBatch * Q, rng);
    CK(cudaMemcpy(dk.p, k.data(), k.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq.p, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dpos.p, pos.data(), kBatch * 4, cudaMemcpyHostToDevice));
    poison(dout.p, kBatch * Q * 4);
    gpu.append_step(dk.p, dv.p, dpos.p);
    gpu.attend_step(dq.p, dpos.p, dout.p);
    gpu.advance(active);
    std::vector<float> got(kBatch * Q);
    CK(cudaMemcpy(got.data(), dout.p, got.size() * 4, cudaMemcpyDeviceToHost));
    for (int b = 0; b < kBatch; ++b) {
      const std::vector<float> g(got.begin() + b * Q, got.begin() + (b + 1) * Q);
      std::vector<float> want(Q, 0.0f);
      if (active[b]) {
        cpu[b].append(&k[b * KV], &v[b * KV], 1);
        cpu[b].attend(&q[b * Q], 1, cpu[b].size() - 1, want.data());
        worst = std::max(worst, rel_error(g, want));
      } else {
        for (const float x : g) EXPECT_EQ(x, 0.0f) << "an inactive row gets zeros";
      }
      EXPECT_EQ(gpu.size(b), cpu[b].size());
    }
  }
  CK(cudaDeviceSynchronize());
  std::printf("[sliding window gpu vs cpu] q%d kv%d d%d W%d chunk%d: max rel error %.2e\n",
              c.q_heads, c.kv_heads, c.head_dim, c.window, c.chunk, worst);
  EXPECT_LT(worst, 1e-3);
  std::size_t cpu_bytes = 0;
  for (const auto& r : cpu) cpu_bytes += r.bytes();
  EXPECT_EQ(gpu.bytes(), cpu_bytes);
  gpu.clear(0);
  EXPECT_EQ(gpu.size(0), 0u);
  EXPECT_EQ(gpu.bytes(), cpu_bytes - cpu[0].bytes());
}

INSTANTIATE_TEST_SUITE_P(Shapes, SlidingWindowOnGpu,
                         ::testing::Values(Case{4, 1, 256, 512, 128},  // Gemma 3 270M
                                           Case{8, 2, 128, 100, 37},   // GQA 4, odd sizes
                                           Case{8, 8, 64, 33, 64},     // MHA, chunk > window
                                           Case{16, 2, 64, 1, 8},      // window of one token
                                           Case{2, 1, 512, 40, 16}));  // two chunks per lane

TEST(SlidingWindowOnGpuArgs, BadArgumentsAreClearErrors) {
  REQUIRE_GPU();
  const tq::LayerKvShape shape{.n_q_heads = 4, .n_kv_heads = 1, .head_dim = 256};
  EXPECT_THROW(tq::cuda::GpuSlidingWindowCache(shape, 0, 8, 1), std::invalid_argument);
  EXPECT_THROW(tq::cuda::GpuSlidingWindowCache(shape, 8, 0, 1), std::invalid_argument);
  EXPECT_THROW(tq::cuda::GpuSlidingWindowCache(shape, 8, 8, 0), std::invalid_argument);
  EXPECT_THROW(tq::cuda::GpuSlidingWindowCache(
                   tq::LayerKvShape{.n_q_heads = 3, .n_kv_heads = 2, .head_dim = 64}, 8, 8, 1),
               std::invalid_argument);
  EXPECT_THROW(tq::cuda::GpuSlidingWindowCache(shape, 1 << 20, 8, 1), std::invalid_argument);
  for (const int bad_dim : {60, 1024}) {  // not a multiple of 8; more than 512
    EXPECT_THROW(
        tq::cuda::GpuSlidingWindowCache(
            tq::LayerKvShape{.n_q_heads = 2, .n_kv_heads = 1, .head_dim = bad_dim}, 8, 8, 1),
        std::invalid_argument)
        << "head dim " << bad_dim;
  }
  tq::cuda::GpuSlidingWindowCache cache(shape, 16, 8, 2);
  DevBuf<float> buf(64 * 256);
  ASSERT_TRUE(buf.p);
  EXPECT_THROW(cache.append(2, buf.p, buf.p, 1), std::invalid_argument);
  EXPECT_THROW(cache.append(0, buf.p, buf.p, 9), std::invalid_argument);
  EXPECT_THROW(cache.attend(0, buf.p, 1, buf.p), std::invalid_argument);  // nothing held
  EXPECT_THROW(cache.advance({true}), std::invalid_argument);
}

}  // namespace
