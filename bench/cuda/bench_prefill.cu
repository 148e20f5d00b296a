// GPU benchmark of prefill attention (docs/CUDA_NOTES.md "Seventh pass: prefill"): one
// Llama-3.1-8B layer (32 q heads, 8 KV heads, d = 128), batch 1, a causal chunk of n queries
// that are the last n of `ctx` cached tokens. Median µs over --reps launches (L2 rewritten with
// 256 MiB before each) of
//   fp16_flash   attention_prefill_fp16 over an fp16 cache (version 2: ldmatrix.x4; _v1 the
//                first version, K by 32-bit shared loads)
//   fp16_split   attention_fp16 with path TensorCore: the split multi-query kernel of before
//   tq4 / tq3.5 / k4v3 _deq_flash  dequantize_to_half of K and V into an fp16 scratch + the
//                flash kernel, timed together (what a compressed layer's prefill costs)
//   tq4_mq       attention() over the compressed cache: the multi-query tensor-core kernel
// with TFLOP/s over 4 · n · ctx · d · q_heads. Usage: tq_bench_prefill OUT.json [--quick]
// [--reps=N]. PyTorch SDPA on the same table: bench/cuda/sdpa_bench.py OUT.json --prefill.
#include "turboquant/cuda/attention.hpp"
#include "turboquant/cuda/dequantize.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace tc = tq::cuda;

#define CK(call)                                                                             \
  do {                                                                                       \
    cudaError_t e_ = (call);                                                                 \
    if (e_ != cudaSuccess)                                                                   \
      throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(e_) + " at " + \
                               __FILE__ + ":" + std::to_string(__LINE__));                   \
  } while (0)

namespace {

struct Timer {
  cudaEvent_t a, b;
  void* flush = nullptr;
  std::size_t flush_bytes = 256u << 20;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaMalloc(&flush, flush_bytes));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(flush);
  }
  template <typename F>
  double median_us(F&& f, int reps) {
    f();  // warm-up
    CK(cudaDeviceSynchronize());
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      CK(cudaMemsetAsync(flush, r & 0xff, flush_bytes));
      CK(cudaEventRecord(a));
      f();
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, a, b));
      t.push_back(ms * 1000.0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

// Random bytes into device memory (a 16 MiB random block tiled).
void fill_random(void* dst, std::size_t bytes, std::mt19937& rng, bool half_values) {
  const std::size_t block = std::min<std::size_t>(bytes, 16u << 20);
  std::vector<std::uint16_t> h((block + 1) / 2);
  std::uniform_int_distribution<int> any(0, 0xffff);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (auto& v : h) {
    if (half_values) {  // fp16 bits of a value in (-1, 1): sign, exponent 10..14, any mantissa
      const int e = 10 + any(rng) % 5;
      v = static_cast<std::uint16_t>((any(rng) & 0x8000) | (e << 10) | (any(rng) & 0x3ff));
    } else {
      v = static_cast<std::uint16_t>(any(rng));
    }
  }
  void* tmp = nullptr;
  CK(cudaMalloc(&tmp, block));
  CK(cudaMemcpy(tmp, h.data(), block, cudaMemcpyHostToDevice));
  for (std::size_t off = 0; off < bytes; off += block) {
    CK(cudaMemcpy(static_cast<char*>(dst) + off, tmp, std::min(block, bytes - off),
                  cudaMemcpyDeviceToDevice));
  }
  CK(cudaFree(tmp));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string out_path = argc > 1 ? argv[1] : "cuda_prefill.json";
    bool quick = false;
    int reps = 7;
    for (int i = 2; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--quick") {
        quick = true;
      } else if (arg.rfind("--reps=", 0) == 0) {
        reps = std::stoi(arg.substr(7));
      } else {
        throw std::invalid_argument("unknown argument " + arg + "; expected --quick or --reps=N");
      }
    }
    if (!tc::device_available()) throw std::runtime_error("no CUDA device");
    const int QH = 32, KVH = 8, D = 128;
    std::printf("device: %s, %d SMs\n", tc::device_name().c_str(), tc::device_sm_count());
    std::mt19937 rng(7);
    Timer timer;
    tc::AttentionWorkspace ws;
    std::vector<std::string> rows;
    const std::vector<int> contexts =
        quick ? std::vector<int>{32768} : std::vector<int>{8192, 32768, 131072};
    const std::vector<int> chunks =
        quick ? std::vector<int>{16, 512} : std::vector<int>{16, 32, 64, 128, 512, 2048, 8192};
    const int max_chunk = *std::max_element(chunks.begin(), chunks.end());
    const std::size_t qn = static_cast<std::size_t>(max_chunk) * QH * D;
    float *dq = nullptr, *dout = nullptr;
    int* dlen = nullptr;
    CK(cudaMalloc(&dq, qn * 4));
    CK(cudaMalloc(&dout, qn * 4));
    CK(cudaMalloc(&dlen, sizeof(int)));
    {
      std::vector<float> hq(qn);
      std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
      for (auto& v : hq) v = uni(rng);
      CK(cudaMemcpy(dq, hq.data(), qn * 4, cudaMemcpyHostToDevice));
    }
    auto row = [&](const char* kernel, int ctx, int nq, double us) {
      const double tflops = 4.0 * nq * ctx * D * QH / (us * 1e-6) / 1e12;
      std::printf("%-16s ctx=%-7d n=%-5d %10.1f us  %6.1f TFLOP/s\n", kernel, ctx, nq, us, tflops);
      std::fflush(stdout);
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "{\"kernel\":\"%s\",\"context\":%d,\"n_queries\":%d,\"us\":%.2f,"
                    "\"tflops\":%.2f}",
                    kernel, ctx, nq, us, tflops);
      rows.emplace_back(buf);
    };
    struct Config {
      const char* name;
      double kbits, vbits;
    };
    const Config configs[] = {
        {"tq4_deq_flash", 4, 4}, {"tq3.5_deq_flash", 3.5, 3.5}, {"k4v3_deq_flash", 4, 3}};
    for (int ctx : contexts) {
      CK(cudaMemcpy(dlen, &ctx, sizeof(int), cudaMemcpyHostToDevice));
      const std::size_t per_side = static_cast<std::size_t>(KVH) * ctx * D;
      std::uint16_t *k16 = nullptr, *v16 = nullptr;
      CK(cudaMalloc(&k16, per_side * 2));
      CK(cudaMalloc(&v16, per_side * 2));
      fill_random(k16, per_side * 2, rng, true);
      fill_random(v16, per_side * 2, rng, true);
      const tc::GpuFp16Cache fc{1, KVH, D, ctx, k16, v16};
      tc::AttentionArgs a;
      a.q = dq;
      a.out = dout;
      a.batch = 1;
      a.q_heads = QH;
      a.lengths = dlen;
      a.max_length = ctx;
      for (int nq : chunks) {
        a.n_queries = nq;
        row("fp16_flash", ctx, nq,
            timer.median_us([&] { tc::attention_prefill_fp16(fc, a); }, reps));
        row("fp16_flash_v1", ctx, nq,
            timer.median_us([&] { tc::attention_prefill_fp16(fc, a, nullptr, 1); }, reps));
        if (nq <= 512) {
          a.path = tc::AttentionPath::TensorCore;
          row("fp16_split", ctx, nq, timer.median_us([&] { tc::attention_fp16(fc, a, ws); }, reps));
          a.path = tc::AttentionPath::Auto;
        }
      }
      for (const Config& cf : configs) {
        auto spec = [&](double bits, std::uint64_t seed) {
          return tq::CodecSpec{D,    bits, tq::CodecKind::Mse, tq::RotationKind::Hadamard,
                               seed, false};
        };
        tc::DeviceCodec dk(spec(cf.kbits, 1)), dv(spec(cf.vbits, 2));
        tc::GpuKvCacheStorage store(dk.layout(), dv.layout(), 1, KVH, ctx);
        const tc::GpuKvCache& c = store.cache();
        const std::size_t slots = static_cast<std::size_t>(KVH) * ctx;
        fill_random(c.key.codes, slots * dk.layout().code_bytes, rng, false);
        fill_random(c.value.codes, slots * dv.layout().code_bytes, rng, false);
        fill_random(c.key.norms, slots * 2, rng, true);
        fill_random(c.value.norms, slots * 2, rng, true);
        for (int nq : chunks) {
          if (nq < 512 && nq != 16) continue;
          a.n_queries = nq;
          row(cf.name, ctx, nq,
              timer.median_us(
                  [&] {
                    tc::dequantize_to_half(dk, c.key, 1, KVH, ctx, 0, ctx, k16, ctx);
                    tc::dequantize_to_half(dv, c.value, 1, KVH, ctx, 0, ctx, v16, ctx);
                    tc::attention_prefill_fp16(fc, a);
                  },
                  reps));
          if (cf.kbits == 4 && cf.vbits == 4 && nq <= 512) {
            a.path = tc::AttentionPath::TensorCore;
            try {
              row("tq4_mq", ctx, nq,
                  timer.median_us([&] { tc::attention(dk, dv, c, a, ws); }, reps));
            } catch (const std::exception& e) {
              std::printf("tq4_mq ctx=%d n=%d failed: %s\n", ctx, nq, e.what());
            }
            a.path = tc::AttentionPath::Auto;
          }
        }
      }
      CK(cudaFree(k16));
      CK(cudaFree(v16));
    }
    FILE* f = std::fopen(out_path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + out_path);
    std::fprintf(f, "{\"device\":\"%s\",\"rows\":[\n", tc::device_name().c_str());
    for (std::size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f, "%s%s\n", rows[i].c_str(), i + 1 < rows.size() ? "," : "");
    std::fprintf(f, "]}\n");
    std::fclose(f);
    CK(cudaFree(dq));
    CK(cudaFree(dout));
    CK(cudaFree(dlen));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tq_bench_prefill: %s\n", e.what());
    return 1;
  }
}
