// GPU benchmark of the TurboQuant attention kernels (reported as docs/DESIGN.md §5.1 says): median
// µs with a cold L2 (a 256 MiB buffer is rewritten before every timed launch), GB/s over the bytes
// the kernel must read, % of the device-to-device copy bandwidth measured in the same run, for the
// tensor-core path (tq4, tq3.5, k4v3, tq3, tq2.5), the generic path (3 bits) and our fp16
// kernel; plus quantize-append.
// Usage: tq_bench_cuda OUT.json [--quick|--one [--ctx=N] [--kernel=NAME]] [--read-flush]
//        [--contexts=N,N,…] [--kernels=NAME,NAME,…] [--reps=N]
// (--contexts / --kernels / --reps narrow a run for A/B measurements of one change.)
// --read-flush empties L2 by reading 256 MiB instead of writing it (no dirty lines left to write
// back during the timed call; see docs/CUDA_NOTES.md). PyTorch SDPA is timed by
// bench/cuda/sdpa_bench.py and the two are joined by bench/cuda/report.py (scripts/gpu_bench.sh
// runs all three).
#include "turboquant/cuda/attention.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

// Reads n 16-byte words (the result is never true; the store keeps the loads alive).
__global__ void read_flush_kernel(const uint4* __restrict__ p, std::size_t n, int* sink) {
  uint32_t acc = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcg(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u && sink) *sink = 1;
}

struct Timer {
  cudaEvent_t a, b;
  bool read_flush = false;
  int* sink = nullptr;
  void* flush = nullptr;
  std::size_t flush_bytes = 256u << 20;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaMalloc(&flush, flush_bytes));
    CK(cudaMemset(flush, 0x5a, flush_bytes));
    CK(cudaMalloc(&sink, sizeof(int)));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(flush);
    cudaFree(sink);
  }
  template <typename F>
  double median_us(F&& f, int reps) {
    f();  // warm-up
    f();
    CK(cudaDeviceSynchronize());
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      if (read_flush) {
        read_flush_kernel<<<132 * 8, 256>>>(static_cast<const uint4*>(flush), flush_bytes / 16,
                                            sink);
        CK(cudaGetLastError());
      } else {
        CK(cudaMemsetAsync(flush, r & 0xff, flush_bytes));
      }
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

// Fills `bytes` of device memory with random bytes (tiling a random block).
void fill_random(void* dst, std::size_t bytes, std::uint32_t seed, const void* block,
                 std::size_t block_bytes) {
  (void)seed;
  std::size_t off = 0;
  while (off < bytes) {
    const std::size_t n = std::min(block_bytes, bytes - off);
    CK(cudaMemcpy(static_cast<char*>(dst) + off, block, n, cudaMemcpyDeviceToDevice));
    off += n;
  }
}

struct Shape {
  const char* name;
  int q_heads, kv_heads, dim;
};

std::string json_row(const std::string& kernel, const Shape& s, int ctx, int batch, double us,
                     double bytes, double copy_gbs) {
  char buf[512];
  const double gbs = bytes / (us * 1e-6) / 1e9;
  std::snprintf(
      buf, sizeof buf,
      "{\"kernel\":\"%s\",\"shape\":\"%s\",\"q_heads\":%d,\"kv_heads\":%d,\"dim\":%d,"
      "\"context\":%d,\"batch\":%d,\"us\":%.2f,\"bytes\":%.0f,\"gbs\":%.1f,\"pct_copy\":%.1f}",
      kernel.c_str(), s.name, s.q_heads, s.kv_heads, s.dim, ctx, batch, us, bytes, gbs,
      100.0 * gbs / copy_gbs);
  std::printf("%-14s %-8s ctx=%-8d b=%d  %9.1f us  %7.1f GB/s  %5.1f%% of copy\n", kernel.c_str(),
              s.name, ctx, batch, us, gbs, 100.0 * gbs / copy_gbs);
  std::fflush(stdout);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (!tc::device_available()) {
      std::fprintf(stderr, "no CUDA device\n");
      return 1;
    }
    const std::string out_path = argc > 1 ? argv[1] : "cuda_attention.json";
    bool quick = false, one = false, read_flush = false;
    int one_ctx = 131072;
    std::string one_kernel = "tq4_tc";
    int reps_arg = 0;
    std::vector<int> contexts_arg;
    std::vector<std::string> kernels_arg;
    auto split_list = [](const std::string& list) {
      std::vector<std::string> out;
      std::size_t pos = 0;
      while (pos <= list.size()) {
        const std::size_t comma = std::min(list.find(',', pos), list.size());
        if (comma > pos) out.push_back(list.substr(pos, comma - pos));
        pos = comma + 1;
      }
      return out;
    };
    for (int i = 2; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.rfind("--contexts=", 0) == 0)
        for (const std::string& c : split_list(arg.substr(11)))
          contexts_arg.push_back(std::stoi(c));
      if (arg.rfind("--kernels=", 0) == 0) kernels_arg = split_list(arg.substr(10));
      if (arg.rfind("--reps=", 0) == 0) reps_arg = std::stoi(arg.substr(7));

      if (arg.rfind("--ctx=", 0) == 0) one_ctx = std::atoi(arg.c_str() + 6);  // with --one
      if (arg.rfind("--kernel=", 0) == 0) one_kernel = arg.substr(9);         // with --one
      quick |= arg == "--quick";
      one |= arg == "--one";  // one case, for ncu
      read_flush |= arg == "--read-flush";
    }
    Timer timer;
    timer.read_flush = read_flush;
    std::vector<std::string> rows;

    // Random source block (64 MiB) on the device.
    const std::size_t block_bytes = 64u << 20;
    std::vector<unsigned char> host(block_bytes);
    std::mt19937 rng(12345);
    for (auto& c : host) c = static_cast<unsigned char>(rng());
    void* block = nullptr;
    CK(cudaMalloc(&block, block_bytes));
    CK(cudaMemcpy(block, host.data(), block_bytes, cudaMemcpyHostToDevice));
    // Random fp16 values in [-1, 1] and norms in [0.5, 1.5] (no NaN/Inf bit patterns).
    std::vector<std::uint16_t> hv(block_bytes / 2), hn(1 << 20);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f), pos(0.5f, 1.5f);
    auto to_half = [](float f) {
      // simple round-to-nearest fp16 for normal values in range
      unsigned u;
      std::memcpy(&u, &f, 4);
      const unsigned sign = (u >> 16) & 0x8000u;
      const int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
      if (exp <= 0) return static_cast<std::uint16_t>(sign);
      const unsigned mant = (u >> 13) & 0x3ffu;
      return static_cast<std::uint16_t>(sign | (exp << 10) | mant);
    };
    for (auto& v : hv) v = to_half(uni(rng));
    for (auto& v : hn) v = to_half(pos(rng));
    void *hblock = nullptr, *nblock = nullptr;
    CK(cudaMalloc(&hblock, block_bytes));
    CK(cudaMalloc(&nblock, hn.size() * 2));
    CK(cudaMemcpy(hblock, hv.data(), block_bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(nblock, hn.data(), hn.size() * 2, cudaMemcpyHostToDevice));

    // Copy bandwidth: 1 GiB device-to-device, bytes read + written.
    double copy_gbs = 0;
    {
      const std::size_t n = 1u << 30;
      void *src = nullptr, *dst = nullptr;
      CK(cudaMalloc(&src, n));
      CK(cudaMalloc(&dst, n));
      fill_random(src, n, 1, block, block_bytes);
      const double us =
          timer.median_us([&] { CK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice)); }, 15);
      copy_gbs = 2.0 * n / (us * 1e-6) / 1e9;
      CK(cudaFree(src));
      CK(cudaFree(dst));
    }
    std::printf("device: %s, %d SMs, copy bandwidth %.1f GB/s\n", tc::device_name().c_str(),
                tc::device_sm_count(), copy_gbs);

    const Shape shapes[] = {{"llama8b", 32, 8, 128}, {"smollm2", 9, 3, 64}};
    std::vector<int> contexts = {4096, 16384, 32768, 131072, 1048576};
    if (quick) contexts = {4096, 32768, 131072};
    if (one) contexts = {one_ctx};
    if (!contexts_arg.empty()) contexts = contexts_arg;
    const int reps = reps_arg > 0 ? reps_arg : (one ? 2 : (quick ? 10 : 25));
    auto wanted = [&](const std::string& name) {
      if (one) return name == one_kernel;
      return kernels_arg.empty() ||
             std::find(kernels_arg.begin(), kernels_arg.end(), name) != kernels_arg.end();
    };
    // TQ_BENCH_CAPACITY_PAD=N: cache capacity ctx + N tokens (stride experiments; default 0).
    const char* pad_env = std::getenv("TQ_BENCH_CAPACITY_PAD");
    const int capacity_pad = pad_env ? std::atoi(pad_env) : 0;
    tc::AttentionWorkspace ws;
    for (const Shape& s : shapes) {
      // Presets on the tensor-core path (and 3 bits on the generic kernel, for reference).
      // *_w128: the default schemes' 128-token exact fp16 window on top (its bytes count).
      struct Config {
        const char* name;
        double kbits, vbits;
        tc::AttentionPath path;
        int window = 0;
      };
      const Config configs[] = {{"tq4_tc", 4, 4, tc::AttentionPath::TensorCore},
                                {"tq3.5_tc", 3.5, 3.5, tc::AttentionPath::TensorCore},
                                {"k4v3_tc", 4, 3, tc::AttentionPath::TensorCore},
                                {"tq3_tc", 3, 3, tc::AttentionPath::TensorCore},
                                {"tq2.5_tc", 2.5, 2.5, tc::AttentionPath::TensorCore},
                                {"tq4_tc_w128", 4, 4, tc::AttentionPath::TensorCore, 128},
                                {"tq3.5_tc_w128", 3.5, 3.5, tc::AttentionPath::TensorCore, 128},
                                {"tq3_generic", 3, 3, tc::AttentionPath::Generic}};
      auto codec_of = [&](double bits, std::uint64_t seed) {
        return tq::CodecSpec{s.dim, bits, tq::CodecKind::Mse, tq::RotationKind::Hadamard,
                             seed,  false};
      };
      for (int ctx : contexts) {
        for (int batch : {1, 8}) {
          if (ctx > 131072 && batch > 1) continue;
          if (one && (batch > 1 || s.dim != 128)) continue;
          const int G = s.q_heads / s.kv_heads;
          std::vector<int> lens(batch, ctx);
          int* dlen = nullptr;
          float *dq = nullptr, *dout = nullptr;
          const std::size_t qn = static_cast<std::size_t>(batch) * s.q_heads * s.dim;
          CK(cudaMalloc(&dlen, batch * sizeof(int)));
          CK(cudaMalloc(&dq, qn * 4));
          CK(cudaMalloc(&dout, qn * 4));
          CK(cudaMemcpy(dlen, lens.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
          {
            std::vector<float> hq(qn);
            for (auto& v : hq) v = uni(rng);
            CK(cudaMemcpy(dq, hq.data(), qn * 4, cudaMemcpyHostToDevice));
          }
          tc::AttentionArgs a;
          a.q = dq;
          a.out = dout;
          a.batch = batch;
          a.q_heads = s.q_heads;
          a.lengths = dlen;
          a.max_length = ctx;
          const std::size_t slots = static_cast<std::size_t>(batch) * s.kv_heads * ctx;
          (void)G;
          for (const Config& cf : configs) {
            const bool generic = cf.path == tc::AttentionPath::Generic;
            if (generic && (quick || one || batch > 1 || ctx > 131072)) continue;
            if (!wanted(cf.name)) continue;
            tc::DeviceCodec dk(codec_of(cf.kbits, 1)), dv(codec_of(cf.vbits, 2));
            a.path = cf.path;
            tc::GpuKvCacheStorage store(dk.layout(), dv.layout(), batch, s.kv_heads,
                                        ctx + capacity_pad, cf.window);
            const tc::GpuKvCache& c = store.cache();
            double bytes = static_cast<double>(store.compressed_bytes());
            int* dwin = nullptr;
            a.window_lengths = nullptr;
            a.max_window = 0;
            if (cf.window > 0) {
              const std::size_t wbytes =
                  static_cast<std::size_t>(batch) * s.kv_heads * cf.window * s.dim * 2;
              fill_random(c.key_window, wbytes, 8, hblock, block_bytes);
              fill_random(c.value_window, wbytes, 9, hblock, block_bytes);
              const std::vector<int> wins(batch, cf.window);
              CK(cudaMalloc(&dwin, batch * sizeof(int)));
              CK(cudaMemcpy(dwin, wins.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
              a.window_lengths = dwin;
              a.max_window = cf.window;
              bytes += 2.0 * wbytes;
            }
            fill_random(c.key.codes, slots * dk.layout().code_bytes, 1, block, block_bytes);
            fill_random(c.value.codes, slots * dv.layout().code_bytes, 2, block, block_bytes);
            fill_random(c.key.norms, slots * 2, 3, nblock, hn.size() * 2);
            fill_random(c.value.norms, slots * 2, 4, nblock, hn.size() * 2);
            const double us = timer.median_us([&] { tc::attention(dk, dv, c, a, ws); }, reps);
            rows.push_back(json_row(cf.name, s, ctx, batch, us, bytes, copy_gbs));
            if (dwin) CK(cudaFree(dwin));
            a.window_lengths = nullptr;
            a.max_window = 0;
          }
          if (wanted("fp16_ours")) {
            void *kk = nullptr, *vv = nullptr;
            const std::size_t bytes = slots * s.dim * 2;
            CK(cudaMalloc(&kk, bytes));
            CK(cudaMalloc(&vv, bytes));
            fill_random(kk, bytes, 5, hblock, block_bytes);
            fill_random(vv, bytes, 6, hblock, block_bytes);
            tc::GpuFp16Cache fc{batch,
                                s.kv_heads,
                                s.dim,
                                ctx,
                                static_cast<std::uint16_t*>(kk),
                                static_cast<std::uint16_t*>(vv)};
            a.path = tc::AttentionPath::Auto;
            const double us = timer.median_us([&] { tc::attention_fp16(fc, a, ws); }, reps);
            rows.push_back(json_row("fp16_ours", s, ctx, batch, us, 2.0 * bytes, copy_gbs));
            CK(cudaFree(kk));
            CK(cudaFree(vv));
          }
          CK(cudaFree(dlen));
          CK(cudaFree(dq));
          CK(cudaFree(dout));
        }
      }
    }
    // Quantize-append: one decode token and a 4096-token prefill chunk, K side, 4 bits.
    for (const Shape& s : shapes) {
      if (!wanted("quantize_k4")) break;
      tq::CodecSpec k4{s.dim, 4.0, tq::CodecKind::Mse, tq::RotationKind::Hadamard, 1, false};
      tc::DeviceCodec dk(k4);
      for (int count : {1, 4096}) {
        const int batch = count == 1 ? 8 : 1;
        tc::GpuKvCacheStorage store(dk.layout(), dk.layout(), batch, s.kv_heads, 8192);
        std::vector<int> start(batch, 100);
        int* dstart = nullptr;
        void* x = nullptr;
        const std::size_t n = static_cast<std::size_t>(batch) * count * s.kv_heads * s.dim;
        CK(cudaMalloc(&dstart, batch * sizeof(int)));
        CK(cudaMalloc(&x, n * 2));
        CK(cudaMemcpy(dstart, start.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
        fill_random(x, n * 2, 7, hblock, block_bytes);
        const double us = timer.median_us(
            [&] {
              tc::quantize_append(dk, x, tc::InputType::F16, batch, count, s.kv_heads,
                                  store.cache().key, 8192, dstart);
            },
            reps);
        const double bytes = n * 2.0 + static_cast<double>(batch) * count * s.kv_heads *
                                           dk.layout().bytes_per_token();
        rows.push_back(json_row("quantize_k4", s, count, batch, us, bytes, copy_gbs));
        CK(cudaFree(dstart));
        CK(cudaFree(x));
      }
    }
    FILE* f = std::fopen(out_path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + out_path);
    std::fprintf(f, "{\"device\":\"%s\",\"sms\":%d,\"copy_gbs\":%.1f,\"flush\":\"%s\",\"rows\":[\n",
                 tc::device_name().c_str(), tc::device_sm_count(), copy_gbs,
                 read_flush ? "read" : "write");
    for (std::size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f, "%s%s\n", rows[i].c_str(), i + 1 < rows.size() ? "," : "");
    std::fprintf(f, "]}\n");
    std::fclose(f);
    CK(cudaFree(block));
    CK(cudaFree(hblock));
    CK(cudaFree(nblock));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
