// Micro-benchmarks of the codec hot paths: encode (rotate + quantize + pack) and prepared-query
// scoring straight from codes, scalar vs AVX2, d = 64/128, b = 2/3/4 (plus 2.5/3.5 and prod).
// Counters: vectors/s, and GB/s of code bytes read (scoring) or written (encode).
#include "turboquant/codec/codec.hpp"
#include "turboquant/codec/distortion.hpp"

#include <benchmark/benchmark.h>

#include <vector>

namespace {

tq::Codec make_codec(int dim, double bits, bool prod, bool avx2) {
  tq::CodecSpec spec;
  spec.dim = dim;
  spec.bits = bits;
  spec.kind = prod ? tq::CodecKind::Prod : tq::CodecKind::Mse;
  tq::Codec codec(spec);
  codec.set_simd(avx2 && tq::cpu_has_avx2() ? tq::SimdLevel::Avx2 : tq::SimdLevel::Scalar);
  return codec;
}

// Arguments: dim, bits×10, prod, avx2.
void BM_Encode(benchmark::State& state) {
  const int dim = static_cast<int>(state.range(0));
  const double bits = state.range(1) / 10.0;
  const tq::Codec codec = make_codec(dim, bits, state.range(2) != 0, state.range(3) != 0);
  const std::size_t n = 1024;
  std::vector<float> x(n * dim);
  tq::random_unit_vectors(n, dim, 1, x.data());
  tq::EncodedBatch batch(codec.layout(), n);
  for (auto _ : state) {
    codec.encode(x.data(), n, batch.view());
    benchmark::ClobberMemory();
  }
  const double vectors = static_cast<double>(state.iterations()) * n;
  state.counters["vectors/s"] = benchmark::Counter(vectors, benchmark::Counter::kIsRate);
  state.counters["GB/s_codes"] = benchmark::Counter(
      vectors * codec.layout().bytes_per_token() / 1e9, benchmark::Counter::kIsRate);
}

void BM_Score(benchmark::State& state) {
  const int dim = static_cast<int>(state.range(0));
  const double bits = state.range(1) / 10.0;
  const tq::Codec codec = make_codec(dim, bits, state.range(2) != 0, state.range(3) != 0);
  const std::size_t n = 16384;  // a 16k-token head: codes stay in L2/L3 like a hot cache block
  std::vector<float> x(n * dim), q(dim), scores(n);
  tq::random_unit_vectors(n, dim, 2, x.data());
  tq::random_unit_vectors(1, dim, 3, q.data());
  tq::EncodedBatch batch(codec.layout(), n);
  codec.encode(x.data(), n, batch.view());
  const tq::PreparedQuery prepared = codec.prepare_query(q.data());
  for (auto _ : state) {
    codec.score(prepared, batch.view(), n, scores.data());
    benchmark::DoNotOptimize(scores.data());
  }
  const double vectors = static_cast<double>(state.iterations()) * n;
  state.counters["vectors/s"] = benchmark::Counter(vectors, benchmark::Counter::kIsRate);
  state.counters["GB/s_codes"] = benchmark::Counter(
      vectors * codec.layout().bytes_per_token() / 1e9, benchmark::Counter::kIsRate);
}

void codec_grid(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dim", "bits10", "prod", "avx2"});
  for (int dim : {64, 128}) {
    for (int bits10 : {20, 30, 40}) {
      for (int avx2 : {0, 1}) b->Args({dim, bits10, 0, avx2});
    }
    for (int bits10 : {25, 35}) b->Args({dim, bits10, 0, 1});
    b->Args({dim, 40, 1, 1});
  }
}

BENCHMARK(BM_Encode)->Apply(codec_grid)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Score)->Apply(codec_grid)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
