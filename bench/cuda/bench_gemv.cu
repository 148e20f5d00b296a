// tq_bench_gemv: the GPU runner's weight products (src/model/cuda/gpu_weights.cuh,
// gpu_matmul.cuh) on Llama-3.1-8B shapes. For Q4_0, Q8_0 and F16 weights it times the direct gemv
// at 1, 2, 4 and 8 tokens, cublasGemmEx on fp16 weights (already dequantized, the fp16 baseline) at
// 1..32 tokens, and MatmulEngine's cuBLAS path (dequantize + GEMM) at 16 and 32 tokens. Each
// timing is the median of --reps CUDA-event timings, with L2 flushed (a 512 MiB read) before each
// rep. Bandwidth is weight bytes / time, and is compared with a measured device-to-device copy
// (bytes read + written / time). A table goes to stderr, JSON to stdout or --json FILE.
// Weights are random (valid fp16 scales); results are not checked here (tests/model does that).
#include "model/cuda/gpu_matmul.cuh"
#include "model/cuda/gpu_weights.cuh"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

#define CHECK(call)                                                                        \
  do {                                                                                     \
    const cudaError_t e_ = (call);                                                         \
    if (e_ != cudaSuccess) {                                                               \
      throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(e_) + " (" + \
                               __FILE__ + ":" + std::to_string(__LINE__) + ")");           \
    }                                                                                      \
  } while (0)
#define CHECK_CUBLAS(call)                                                           \
  do {                                                                               \
    const cublasStatus_t s_ = (call);                                                \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                               \
      throw std::runtime_error(std::string(#call) + ": " + cublasGetStatusName(s_)); \
    }                                                                                \
  } while (0)

using tq::gguf::TensorType;

struct Rng {  // xorshift64*: fast enough to fill a gigabyte
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
};

// Random valid rows: random quants, fp16 scale 0.01 (0x211f); F16 values of magnitude ~2^-4.
tq::WeightMatrix random_matrix(TensorType t, int rows, int cols, std::uint64_t seed) {
  tq::WeightMatrix w;
  w.type = t;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = tq::gguf::row_bytes(t, static_cast<std::uint64_t>(cols));
  w.data.resize(w.row_bytes * static_cast<std::size_t>(rows));
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
  std::uint8_t* p = w.data.data();
  const std::size_t n = w.data.size();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t v = rng.next();
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<std::uint8_t>(rng.next());
  if (t == TensorType::kF16) {
    auto* h = reinterpret_cast<std::uint16_t*>(p);
    for (std::size_t k = 0; k < n / 2; ++k)
      h[k] = static_cast<std::uint16_t>((h[k] & 0x83ff) | 0x2c00);
  } else {
    const std::size_t bb = tq::gguf::block_bytes(t);
    for (std::size_t b = 0; b < n / bb; ++b) {
      p[b * bb] = 0x1f;
      p[b * bb + 1] = 0x21;
    }
  }
  return w;
}

__global__ void flush_kernel(const float4* buf, std::size_t n, float* sink) {
  float s = 0.0f;
  for (std::size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float4 v = buf[i];
    s += v.x + v.y + v.z + v.w;
  }
  if (s == 1234.5f) *sink = s;  // never true: keeps the loads
}

struct Timer {
  cudaStream_t stream;
  float4* flush_buf = nullptr;
  float* sink = nullptr;
  std::size_t flush_n = (std::size_t{512} << 20) / sizeof(float4);
  cudaEvent_t a, b;
  int reps;
  explicit Timer(cudaStream_t s, int r) : stream(s), reps(r) {
    CHECK(cudaMalloc(&flush_buf, flush_n * sizeof(float4)));
    CHECK(cudaMemset(flush_buf, 0, flush_n * sizeof(float4)));
    CHECK(cudaMalloc(&sink, sizeof(float)));
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaFree(flush_buf);
    cudaFree(sink);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Median microseconds of f() over reps, each after an L2 flush; one untimed warm-up.
  template <class F>
  double time_us(F&& f) {
    f();
    CHECK(cudaStreamSynchronize(stream));
    std::vector<float> ms;
    for (int i = 0; i < reps; ++i) {
      flush_kernel<<<264, 512, 0, stream>>>(flush_buf, flush_n, sink);
      CHECK(cudaGetLastError());
      CHECK(cudaEventRecord(a, stream));
      f();
      CHECK(cudaEventRecord(b, stream));
      CHECK(cudaEventSynchronize(b));
      float t = 0.0f;
      CHECK(cudaEventElapsedTime(&t, a, b));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return 1000.0 * ms[ms.size() / 2];
  }
};

struct ShapeCase {
  const char* name;
  int n, k;  // outputs × inputs
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  int reps = 20;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--quick") {
      quick = true;
    } else {
      std::cerr << "usage: tq_bench_gemv [--json FILE] [--reps N] [--quick]\n";
      return 2;
    }
  }
  if (reps < 1) {
    std::cerr << "--reps must be >= 1\n";
    return 2;
  }
  try {
    cudaStream_t stream;
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    Timer timer(stream, reps);
    cudaDeviceProp prop{};
    CHECK(cudaGetDeviceProperties(&prop, 0));

    // Device-to-device copy bandwidth (bytes read + written), 1 GiB.
    const std::size_t copy_bytes = std::size_t{1} << 30;
    void *src = nullptr, *dst = nullptr;
    CHECK(cudaMalloc(&src, copy_bytes));
    CHECK(cudaMalloc(&dst, copy_bytes));
    CHECK(cudaMemset(src, 1, copy_bytes));
    const double copy_us = timer.time_us(
        [&] { CHECK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, stream)); });
    const double copy_gbps = 2.0 * copy_bytes / (copy_us * 1e3);
    CHECK(cudaFree(src));
    CHECK(cudaFree(dst));
    std::fprintf(stderr, "%s: d2d copy %.0f GB/s (read + write)\n", prop.name, copy_gbps);

    std::vector<ShapeCase> shapes = {{"attn_q/o 4096x4096", 4096, 4096},
                                     {"attn_k/v 1024x4096", 1024, 4096},
                                     {"ffn_gate/up 28672x4096", 28672, 4096},
                                     {"ffn_down 4096x14336", 4096, 14336},
                                     {"output 128256x4096", 128256, 4096}};
    if (quick) shapes.resize(2);
    const TensorType types[] = {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kF16};
    const int gemv_rows[] = {1, 2, 4, 8};
    const int cublas_rows[] = {1, 2, 4, 8, 16, 32};
    const int engine_rows[] = {16, 32};

    cublasHandle_t handle;
    CHECK_CUBLAS(cublasCreate(&handle));
    CHECK_CUBLAS(cublasSetStream(handle, stream));
    tq::gpu::MatmulEngine engine(stream);

    std::ostringstream js;
    js << "{\"device\":\"" << prop.name << "\",\"copy_gbps\":" << copy_gbps << ",\"reps\":" << reps
       << ",\"results\":[";
    bool first = true;
    auto emit = [&](const char* kernel, const ShapeCase& sh, const char* type, int rows, double us,
                    double bytes) {
      const double gbps = bytes / (us * 1e3);
      std::fprintf(stderr, "  %-8s %-5s %-24s rows %2d  %9.2f us  %7.0f GB/s  %5.1f %%\n", kernel,
                   type, sh.name, rows, us, gbps, 100.0 * gbps / copy_gbps);
      js << (first ? "" : ",") << "{\"kernel\":\"" << kernel << "\",\"type\":\"" << type
         << "\",\"shape\":\"" << sh.name << "\",\"n\":" << sh.n << ",\"k\":" << sh.k
         << ",\"rows\":" << rows << ",\"us\":" << us << ",\"weight_bytes\":" << bytes
         << ",\"gbps\":" << gbps << ",\"pct_copy\":" << 100.0 * gbps / copy_gbps << "}";
      first = false;
    };

    for (const ShapeCase& sh : shapes) {
      const int max_rows = 32;
      float *x = nullptr, *y = nullptr;
      __half *xh = nullptr, *wh = nullptr;
      CHECK(cudaMalloc(&x, sizeof(float) * max_rows * sh.k));
      CHECK(cudaMalloc(&y, sizeof(float) * max_rows * sh.n));
      CHECK(cudaMalloc(&xh, sizeof(__half) * max_rows * sh.k));
      CHECK(cudaMalloc(&wh, sizeof(__half) * static_cast<std::size_t>(sh.n) * sh.k));
      CHECK(cudaMemset(x, 0, sizeof(float) * max_rows * sh.k));
      CHECK(cudaMemset(xh, 0, sizeof(__half) * max_rows * sh.k));
      engine.reserve(max_rows, sh.k);
      bool fp16_done = false;
      for (TensorType t : types) {
        const std::string tn = tq::gguf::tensor_type_name(t);
        tq::gpu::DeviceMatrix w(
            random_matrix(t, sh.n, sh.k, static_cast<std::uint64_t>(sh.n) + static_cast<int>(t)));
        const double bytes = static_cast<double>(w.bytes());
        for (int rows : gemv_rows) {
          const double us = timer.time_us(
              [&] { tq::gpu::gemv(w, x, rows, sh.k, nullptr, y, sh.n, false, stream); });
          emit("gemv", sh, tn.c_str(), rows, us, bytes);
        }
        for (int rows : engine_rows) {
          const double us =
              timer.time_us([&] { engine.matmul(w, x, rows, sh.k, nullptr, y, sh.n, false); });
          emit("engine", sh, tn.c_str(), rows, us, bytes);
        }
        if (!fp16_done) {  // the fp16 cuBLAS baseline: weights already fp16 (2 bytes each)
          tq::gpu::dequantize_half(w, 0, sh.n, wh, stream);
          CHECK(cudaStreamSynchronize(stream));
          const double hbytes = 2.0 * sh.n * static_cast<double>(sh.k);
          const float alpha = 1.0f, beta = 0.0f;
          for (int rows : cublas_rows) {
            const double us = timer.time_us([&] {
              CHECK_CUBLAS(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, sh.n, rows, sh.k, &alpha,
                                        wh, CUDA_R_16F, sh.k, xh, CUDA_R_16F, sh.k, &beta, y,
                                        CUDA_R_32F, sh.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            });
            emit("cublas", sh, "F16", rows, us, hbytes);
          }
          fp16_done = true;
        }
      }
      CHECK(cudaFree(x));
      CHECK(cudaFree(y));
      CHECK(cudaFree(xh));
      CHECK(cudaFree(wh));
    }
    js << "]}\n";
    cublasDestroy(handle);
    if (json_path.empty()) {
      std::cout << js.str();
    } else {
      std::ofstream(json_path) << js.str();
    }
    CHECK(cudaStreamDestroy(stream));
  } catch (const std::exception& e) {
    std::cerr << "tq_bench_gemv: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
