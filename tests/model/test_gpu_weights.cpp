// GPU weight matrices (src/model/cuda/gpu_weights.cuh, gpu_matmul.cuh) against the CPU references
// on fresh random GGUF rows of every device type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K,
// Q6_K):
// fp16 dequantization, the direct gemv at 1, 2, 5 and 8 tokens (tolerance 1e-5 of Σ|x·w|: fp32
// products and sums; Q4_0's tensor-core gemv rounds the activations to fp16 once, so 2^-11 of
// Σ|x·w| plus fp32 sums: 6e-4), with activations 16-byte aligned and not, MatmulEngine at 1 (gemv),
// 9 and 64 tokens (cuBLAS on fp16 weights and activations: 2e-3 of Σ|x·w|), over shapes that
// exercise one row per CTA with split warps, many rows per CTA, activation chunks, and the
// one-element loads of dense rows that are not 16-byte multiples; with leading dimensions, bias and
// accumulation, graph capture, and bad inputs. Outputs are poisoned (0xff = NaN) first. Skips
// without a CUDA device; compiles to nothing GPU-specific without CUDA.
#include <gtest/gtest.h>

#ifdef TQ_HAVE_CUDA

#include "random_blocks.hpp"
#include "random_inputs.hpp"
#include "reference_matmul.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/cuda/gpu_matmul.cuh"
#include "model/cuda/gpu_weights.cuh"
#include "model/qmatmul.hpp"
#include "turboquant/base/half.hpp"
#include "turboquant/cuda/attention.hpp"

namespace {

using tq::gguf::TensorType;
using tq::testing::random_blocks;
using tq::testing::random_normal_vector;

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

// Device buffer of T, freed at scope end.
template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  std::size_t n = 0;
  explicit DeviceBuffer(std::size_t count) : n(count) {
    if (cudaMalloc(reinterpret_cast<void**>(&p), std::max<std::size_t>(1, n) * sizeof(T)) !=
        cudaSuccess) {
      throw std::runtime_error("test: cudaMalloc failed");
    }
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& v) {
    if (cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) {
      throw std::runtime_error("test: upload failed");
    }
  }
  void poison() {
    if (cudaMemset(p, 0xff, n * sizeof(T)) != cudaSuccess) {
      throw std::runtime_error("test: cudaMemset failed");
    }
  }
  std::vector<T> download() const {
    std::vector<T> v(n);
    if (cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess) {
      throw std::runtime_error("test: download failed");
    }
    return v;
  }
};

struct TypeCase {
  TensorType type;
  const char* name;
};
const TypeCase kTypes[] = {
    {TensorType::kF32, "F32"},   {TensorType::kF16, "F16"},   {TensorType::kBF16, "BF16"},
    {TensorType::kQ4_0, "Q4_0"}, {TensorType::kQ4_1, "Q4_1"}, {TensorType::kQ5_0, "Q5_0"},
    {TensorType::kQ8_0, "Q8_0"}, {TensorType::kQ4_K, "Q4_K"}, {TensorType::kQ6_K, "Q6_K"}};

struct Shape {
  int rows, cols;
  const char* what;
};

// Shapes for a type: rows not a multiple of the 16 warps of a CTA; cols a multiple of the block.
std::vector<Shape> shapes_for(TensorType t) {
  std::vector<Shape> s = {{203, 512, "one row per CTA, split warps"},
                          {1000, 256, "several rows per CTA"},
                          {7, 6144, "few long rows (chunks at 8 tokens)"},
                          {3, 25600, "chunks at 1 token"}};
  if (t == TensorType::kF32) s.push_back({45, 30, "unaligned rows (narrow loads)"});
  if (t == TensorType::kF16) s.push_back({45, 36, "unaligned rows (narrow loads)"});
  if (t == TensorType::kBF16) s.push_back({45, 20, "unaligned rows (narrow loads)"});
  if (t == TensorType::kQ4_0) s.push_back({45, 160, "short rows (20 units: fewer than a warp)"});
  return s;
}

// A test matrix: the raw GGUF bytes as a WeightMatrix, its fp32 dequantization, and the upload.
struct TestMatrix {
  tq::WeightMatrix host;
  std::vector<float> deq;
  tq::gpu::DeviceMatrix dev;
  TestMatrix(TensorType t, int rows, int cols, unsigned seed) {
    const auto raw = random_blocks(t, rows, cols, seed);
    host = tq::qmm::make_matrix(t, rows, cols, raw.data());
    if (host.type != t) throw std::logic_error("test: the CPU side did not keep the type raw");
    deq.resize(static_cast<std::size_t>(rows) * cols);
    tq::gguf::dequantize(t, raw.data(), deq.data(), deq.size());
    dev = tq::gpu::DeviceMatrix(host);
  }
};

// Largest |got − want| / (Σ|terms| + 1e-6) over y [rows][n] (leading dimension ldy), where want
// = x·Wᵀ (+ bias) (+ y0) in double; NaN when an output was left unwritten.
double max_rel_error(const std::vector<float>& got, const std::vector<float>& w, int n, int cols,
                     const std::vector<float>& x, int rows, int ldx, const float* bias,
                     const float* y0, int ldy) {
  std::vector<double> want, mag;
  tq::testing::reference_matmul(w, n, cols, x.data(), rows, ldx, bias, y0, ldy, want, mag);
  return tq::testing::max_rel_error(got, want, mag, rows, n, ldy);
}

constexpr double kGemvTol = 1e-5;
constexpr double kGemvHalfTol = 6e-4;  // fp16 activations: ≤ 2^-11 = 4.9e-4 relative each
constexpr double kCublasTol = 2e-3;

double gemv_tol(TensorType t) {
  return t == TensorType::kQ4_0 ? kGemvHalfTol : kGemvTol;
}

class GpuWeights : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tq::cuda::device_available()) GTEST_SKIP() << "no CUDA device";
  }
};

// Runs one product (gemv directly, or through an engine) with poisoned / accumulated y and checks
// it against the double reference. Odd variants give x a leading dimension of a multiple of 4
// (16-byte aligned rows), even ones not.
void check_product(const TestMatrix& m, int rows, int variant, tq::gpu::MatmulEngine* engine,
                   double tol, const std::string& label, unsigned seed) {
  const int n = m.host.rows, cols = m.host.cols;
  const int ldx = cols + (variant % 2 ? 4 : 3), ldy = n + 5;
  const auto x = random_normal_vector(static_cast<std::size_t>(rows) * ldx, seed);
  const auto bias = random_normal_vector(n, seed + 1);
  const auto y0 = random_normal_vector(static_cast<std::size_t>(rows) * ldy, seed + 2);
  const bool use_bias = variant == 1 || variant == 3, acc = variant >= 2;
  DeviceBuffer<float> dx(x.size()), db(bias.size()), dy(y0.size());
  dx.upload(x);
  db.upload(bias);
  if (acc) {
    dy.upload(y0);
  } else {
    dy.poison();
  }
  if (engine) {
    engine->matmul(m.dev, dx.p, rows, ldx, use_bias ? db.p : nullptr, dy.p, ldy, acc);
    CUDA_OK(cudaStreamSynchronize(engine->stream()));
  } else {
    tq::gpu::gemv(m.dev, dx.p, rows, ldx, use_bias ? db.p : nullptr, dy.p, ldy, acc, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
  }
  const auto y = dy.download();
  const double err =
      max_rel_error(y, m.deq, n, cols, x, rows, ldx, use_bias ? bias.data() : nullptr,
                    acc ? y0.data() : nullptr, ldy);
  EXPECT_LE(err, tol) << label << " rows " << rows << " variant " << variant;
  // Padding between rows (ldy > n) must stay untouched unless accumulating it was never asked.
  if (!acc && rows > 0) {
    std::uint32_t bits;
    std::memcpy(&bits, &y[n], 4);
    EXPECT_EQ(bits, 0xffffffffu) << label << ": gemv wrote past the row end";
  }
}

TEST_F(GpuWeights, DequantizeHalfMatchesReference) {
  for (const TypeCase& tc : kTypes) {
    for (const Shape& sh : shapes_for(tc.type)) {
      if (sh.cols > 8192) continue;
      const TestMatrix m(tc.type, sh.rows, sh.cols, 101);
      const int r0 = sh.rows / 3, n = sh.rows - r0;
      DeviceBuffer<__half> out(static_cast<std::size_t>(n) * sh.cols);
      out.poison();
      tq::gpu::dequantize_half(m.dev, r0, n, out.p, nullptr);
      CUDA_OK(cudaDeviceSynchronize());
      const auto got = out.download();
      for (std::size_t i = 0; i < got.size(); ++i) {
        const float want = m.deq[static_cast<std::size_t>(r0) * sh.cols + i];
        std::uint16_t h;
        std::memcpy(&h, &got[i], 2);
        const float g = tq::half_to_float(h);
        // One fp16 rounding of the fp32 value (2^-11 relative), plus fp16's subnormal step.
        ASSERT_LE(std::fabs(g - want), std::fabs(want) * 4.9e-4f + 6e-8f)
            << tc.name << " " << sh.what << " at " << i << ": " << g << " vs " << want;
      }
    }
  }
}

TEST_F(GpuWeights, GemvMatchesReference) {
  for (const TypeCase& tc : kTypes) {
    for (const Shape& sh : shapes_for(tc.type)) {
      const TestMatrix m(tc.type, sh.rows, sh.cols, 202);
      for (int rows : {1, 2, 5, 8}) {
        for (int variant = 0; variant < 4; ++variant) {  // plain, bias, accumulate, both
          if (sh.cols > 8192 && variant != 3) continue;  // long rows: the full variant only
          check_product(m, rows, variant, nullptr, gemv_tol(tc.type),
                        std::string(tc.name) + " " + sh.what, 300 + rows * 10 + variant);
        }
      }
    }
  }
}

TEST_F(GpuWeights, MatmulEngineMatchesReference) {
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));
  {
    tq::gpu::MatmulEngine engine(stream);
    for (const TypeCase& tc : kTypes) {
      for (const Shape& sh : shapes_for(tc.type)) {
        if (sh.cols > 8192) continue;
        const TestMatrix m(tc.type, sh.rows, sh.cols, 404);
        for (int rows : {1, 9, 64}) {
          const double tol = rows <= tq::gpu::kGemvMaxRows ? gemv_tol(tc.type) : kCublasTol;
          for (int variant = 0; variant < 4; ++variant) {
            check_product(m, rows, variant, &engine, tol, std::string(tc.name) + " " + sh.what,
                          500 + rows * 10 + variant);
          }
        }
      }
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

// Reserved scratch smaller than the matrix: the cuBLAS path goes through several weight tiles.
TEST_F(GpuWeights, MatmulTilesTheWeights) {
  tq::gpu::MatmulEngine engine(nullptr);
  engine.reserve(64, 512, static_cast<std::size_t>(50) * 512);  // 50-row tiles of a 203-row matrix
  for (TensorType t : {TensorType::kQ4_K, TensorType::kQ8_0}) {
    const TestMatrix m(t, 203, 512, 606);
    for (int variant = 0; variant < 4; ++variant) {
      check_product(m, 64, variant, &engine, kCublasTol, "tiled " + tq::gguf::tensor_type_name(t),
                    700 + variant);
    }
  }
}

// A product captured in a CUDA graph after reserve(), replayed: the same result as the reference.
TEST_F(GpuWeights, ProductsCaptureInAGraph) {
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    tq::gpu::MatmulEngine engine(stream);
    engine.reserve(16, 512);
    const TestMatrix m(TensorType::kQ4_0, 203, 512, 808);
    for (int rows : {3, 16}) {
      const int n = 203, cols = 512;
      const auto x = random_normal_vector(static_cast<std::size_t>(rows) * cols, 809);
      DeviceBuffer<float> dx(x.size()), dy(static_cast<std::size_t>(rows) * n);
      dx.upload(x);
      dy.poison();
      cudaGraph_t graph;
      CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      engine.matmul(m.dev, dx.p, rows, cols, nullptr, dy.p, n, false);
      CUDA_OK(cudaStreamEndCapture(stream, &graph));
      cudaGraphExec_t exec;
      CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
      CUDA_OK(cudaGraphLaunch(exec, stream));
      CUDA_OK(cudaStreamSynchronize(stream));
      const double tol = rows <= tq::gpu::kGemvMaxRows ? kGemvHalfTol : kCublasTol;
      EXPECT_LE(max_rel_error(dy.download(), m.deq, n, cols, x, rows, cols, nullptr, nullptr, n),
                tol)
          << "graph rows " << rows;
      CUDA_OK(cudaGraphExecDestroy(exec));
      CUDA_OK(cudaGraphDestroy(graph));
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

TEST_F(GpuWeights, BadInputsThrow) {
  tq::WeightMatrix q5;
  q5.type = TensorType::kQ5_K;
  q5.rows = 2;
  q5.cols = 256;
  q5.row_bytes = tq::gguf::row_bytes(TensorType::kQ5_K, 256);
  q5.data.resize(q5.row_bytes * 2);
  try {
    tq::gpu::DeviceMatrix bad(q5);
    ADD_FAILURE() << "Q5_K accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Q5_K"), std::string::npos) << e.what();
  }
  tq::WeightMatrix short_data = tq::qmm::allocate_matrix(TensorType::kQ4_0, 4, 64);
  short_data.data.pop_back();
  EXPECT_THROW(tq::gpu::DeviceMatrix{short_data}, std::invalid_argument);

  const TestMatrix m(TensorType::kQ8_0, 40, 64, 909);
  DeviceBuffer<float> x(64 * 64), y(64 * 64);
  EXPECT_THROW(tq::gpu::gemv(m.dev, x.p, 0, 64, nullptr, y.p, 40, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(tq::gpu::gemv(m.dev, x.p, 9, 64, nullptr, y.p, 40, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(tq::gpu::gemv(m.dev, x.p, 1, 63, nullptr, y.p, 40, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(tq::gpu::gemv(m.dev, x.p, 1, 64, nullptr, y.p, 39, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(tq::gpu::gemv(m.dev, nullptr, 1, 64, nullptr, y.p, 40, false, nullptr),
               std::invalid_argument);
  DeviceBuffer<__half> h(40 * 64);
  EXPECT_THROW(tq::gpu::dequantize_half(m.dev, 30, 11, h.p, nullptr), std::invalid_argument);
  EXPECT_THROW(tq::gpu::dequantize_half(m.dev, -1, 2, h.p, nullptr), std::invalid_argument);
  tq::gpu::MatmulEngine engine(nullptr);
  EXPECT_THROW(engine.matmul(m.dev, x.p, 20, 64, nullptr, y.p, 39, false), std::invalid_argument);
  EXPECT_THROW(engine.matmul(m.dev, x.p, 20, 60, nullptr, y.p, 40, false), std::invalid_argument);
  EXPECT_THROW(engine.matmul(m.dev, x.p, -1, 64, nullptr, y.p, 40, false), std::invalid_argument);
  EXPECT_THROW(engine.reserve(-1, 64), std::invalid_argument);
}

// Q4_0's tensor-core gemv rounds activations to fp16: large ones (to 4e4, below fp16's 65504) and
// small ones (fp16 subnormals) keep the same relative bound.
TEST_F(GpuWeights, Q4_0GemvKeepsLargeAndSmallActivations) {
  const TestMatrix m(TensorType::kQ4_0, 300, 4096, 1201);
  for (float scale : {8000.0f, 1e-3f}) {
    auto x = random_normal_vector(static_cast<std::size_t>(2) * 4096, 1202);
    for (float& v : x) v *= scale;
    DeviceBuffer<float> dx(x.size()), dy(static_cast<std::size_t>(2) * 300);
    dx.upload(x);
    dy.poison();
    tq::gpu::gemv(m.dev, dx.p, 2, 4096, nullptr, dy.p, 300, false, nullptr);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_LE(max_rel_error(dy.download(), m.deq, 300, 4096, x, 2, 4096, nullptr, nullptr, 300),
              kGemvHalfTol)
        << "activations scaled by " << scale;
  }
}

// The comparison must notice one wrong output: perturb one gemv result by 1e-4 of its magnitude.
TEST_F(GpuWeights, ComparisonCatchesAWrongValue) {
  const TestMatrix m(TensorType::kQ4_K, 64, 512, 1001);
  const auto x = random_normal_vector(512, 1002);
  DeviceBuffer<float> dx(512), dy(64);
  dx.upload(x);
  dy.poison();
  tq::gpu::gemv(m.dev, dx.p, 1, 512, nullptr, dy.p, 64, false, nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  auto y = dy.download();
  ASSERT_LE(max_rel_error(y, m.deq, 64, 512, x, 1, 512, nullptr, nullptr, 64), kGemvTol);
  double mag = 0.0;
  for (int k = 0; k < 512; ++k) mag += std::fabs(m.deq[17 * 512 + k] * x[k]);
  y[17] += static_cast<float>(1e-4 * mag);
  EXPECT_GT(max_rel_error(y, m.deq, 64, 512, x, 1, 512, nullptr, nullptr, 64), kGemvTol);
}

TEST_F(GpuWeights, MoveTransfersOwnership) {
  TestMatrix m(TensorType::kQ6_K, 8, 256, 1101);
  const std::uint8_t* p = m.dev.data();
  tq::gpu::DeviceMatrix moved(std::move(m.dev));
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(moved.rows(), 8);
  EXPECT_EQ(moved.bytes(), m.host.bytes());
  EXPECT_EQ(m.dev.data(), nullptr);
  EXPECT_EQ(m.dev.rows(), 0);
}

}  // namespace

#endif  // TQ_HAVE_CUDA
