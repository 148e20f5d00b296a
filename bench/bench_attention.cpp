// Decode attention over one layer's KV cache (LayerKvCache::attend with one query) for the
// SmolLM2-135M shape (9 q heads, 3 kv heads, d = 64) and a Llama-8B layer (32 / 8 / 128) at 1k,
// 4k and 16k cached tokens, per cache format. Counters: tok/s = decode steps per second for this
// layer, GB/s = stored cache bytes (LayerKvCache::bytes) read per second, bits/val = stored bits
// per K/V value. Threads: OpenMP default (set OMP_NUM_THREADS to pin).
#include "turboquant/cache/kv_cache.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

struct BenchShape {
  const char* name;
  int q_heads, kv_heads, head_dim;
};
const BenchShape kShapes[] = {{"smollm2", 9, 3, 64}, {"llama8b", 32, 8, 128}};
const char* const kSchemes[] = {"fp16", "q8", "q4r", "tq4", "tq3.5", "tq3"};

void BM_DecodeAttention(benchmark::State& state) {
  const BenchShape& shape = kShapes[state.range(0)];
  const char* scheme_name = kSchemes[state.range(1)];
  const std::size_t context = static_cast<std::size_t>(state.range(2));
  const tq::LayerKvShape s{1, 3, shape.q_heads, shape.kv_heads, shape.head_dim};
  tq::LayerKvCache cache(tq::parse_kv_scheme(scheme_name), s);
  cache.reserve(context);
  // Cheap approximately normal values (sum of 4 uniforms): setup of 16k-token caches stays fast.
  std::uint64_t lcg = 0x9e3779b97f4a7c15ull;
  const auto g = [&lcg] {
    float sum = 0.0f;
    for (int i = 0; i < 4; ++i) {
      lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
      sum += static_cast<float>(lcg >> 40) * (1.0f / 16777216.0f);
    }
    return (sum - 2.0f) * 1.7320508f;
  };
  const std::size_t per = static_cast<std::size_t>(shape.kv_heads) * shape.head_dim;
  const std::size_t chunk = 512;
  std::vector<float> k(chunk * per), v(chunk * per);
  for (std::size_t at = 0; at < context; at += chunk) {
    for (auto& x : k) x = g();
    for (auto& x : v) x = g();
    cache.append(k.data(), v.data(), std::min(chunk, context - at));
  }
  std::vector<float> q(static_cast<std::size_t>(shape.q_heads) * shape.head_dim), out(q.size());
  for (auto& x : q) x = g();
  for (auto _ : state) {
    cache.attend(q.data(), 1, context - 1, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = static_cast<double>(cache.bytes());
  state.SetLabel(std::string(shape.name) + "/" + scheme_name + "/" + std::to_string(context));
  state.counters["tok/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bits/val"] = 8.0 * bytes / (2.0 * static_cast<double>(context) * per);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int shape = 0; shape < 2; ++shape) {
    for (int scheme = 0; scheme < static_cast<int>(std::size(kSchemes)); ++scheme) {
      for (int context : {1024, 4096, 16384}) b->Args({shape, scheme, context});
    }
  }
}

}  // namespace

BENCHMARK(BM_DecodeAttention)->Apply(Args)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
