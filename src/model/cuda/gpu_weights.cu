// DeviceMatrix (gpu_weights.cuh): upload of a WeightMatrix's GGUF bytes (Q4_0 rows regrouped into
// the device layout of gguf_blocks.cuh on the way), and the fp16
// dequantization of a row range that feeds cuBLAS in the prefill path (one thread per decode
// unit, gguf_blocks.cuh).
#include "gpu_weights.cuh"

#include "cuda/internal.cuh"
#include "gguf_blocks.cuh"

#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tq::gpu {

namespace detail {
void prepare_gemv_kernels();  // gpu_gemv.cu
}  // namespace detail

namespace {

// GGUF Q4_0 rows (18-byte blocks: fp16 d, 16 nibble bytes) in the device layout of
// gguf_blocks.cuh: per group of 8 blocks, nibble byte quad j of each block at 32j + 4·(block in
// group), the scales at 128; a last partial group padded with zero blocks.
std::vector<std::uint8_t> regroup_q4_0(const std::uint8_t* src, int rows, int cols) {
  const int blocks = cols / 32;
  const std::size_t in_row = static_cast<std::size_t>(blocks) * 18;
  const std::size_t out_row = blocks::q4_0_device_row_bytes(cols);
  std::vector<std::uint8_t> out(out_row * static_cast<std::size_t>(rows), 0);
  for (int r = 0; r < rows; ++r) {
    const std::uint8_t* in = src + static_cast<std::size_t>(r) * in_row;
    std::uint8_t* dst = out.data() + static_cast<std::size_t>(r) * out_row;
    for (int b = 0; b < blocks; ++b) {
      const std::uint8_t* blk = in + static_cast<std::size_t>(b) * 18;
      std::memcpy(dst + blocks::q4_0_scale_offset(b), blk, 2);
      for (int j = 0; j < 4; ++j)
        std::memcpy(dst + blocks::q4_0_quad_offset(b, j), blk + 2 + 4 * j, 4);
    }
  }
  return out;
}

}  // namespace

bool device_supported(gguf::TensorType type) {
  using gguf::TensorType;
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
    case TensorType::kQ4_0:
    case TensorType::kQ4_1:
    case TensorType::kQ5_0:
    case TensorType::kQ8_0:
    case TensorType::kQ4_K:
    case TensorType::kQ6_K:
      return true;
    default:
      return false;
  }
}

DeviceMatrix::DeviceMatrix(const WeightMatrix& w) {
  if (!device_supported(w.type)) {
    throw std::invalid_argument(
        "DeviceMatrix: tensor type " + gguf::tensor_type_name(w.type) +
        " has no GPU kernel (expected F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, "
        "Q4_K or Q6_K)");
  }
  if (w.rows < 0 || w.cols < 0) {
    throw std::invalid_argument("DeviceMatrix: bad shape " + std::to_string(w.rows) + "x" +
                                std::to_string(w.cols));
  }
  const std::size_t rb = gguf::row_bytes(w.type, static_cast<std::uint64_t>(w.cols));
  if (rb != w.row_bytes || w.data.size() != rb * static_cast<std::size_t>(w.rows)) {
    throw std::invalid_argument("DeviceMatrix: " + std::to_string(w.data.size()) + " bytes for a " +
                                std::to_string(w.rows) + "x" + std::to_string(w.cols) + " " +
                                gguf::tensor_type_name(w.type) + " matrix (expected " +
                                std::to_string(rb * static_cast<std::size_t>(w.rows)) + ")");
  }
  detail::prepare_gemv_kernels();  // outside any graph capture: the first upload comes first
  std::vector<std::uint8_t> regrouped;
  const std::uint8_t* src = w.data.data();
  std::size_t stride = rb;
  if (w.type == gguf::TensorType::kQ4_0) {
    regrouped = regroup_q4_0(w.data.data(), w.rows, w.cols);
    src = regrouped.data();
    stride = blocks::q4_0_device_row_bytes(w.cols);
  }
  const std::size_t total = stride * static_cast<std::size_t>(w.rows);
  if (total > 0) {
    TQ_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), total));
    try {
      TQ_CUDA_CHECK(cudaMemcpy(data_, src, total, cudaMemcpyHostToDevice));
    } catch (...) {
      cudaFree(data_);
      data_ = nullptr;
      throw;
    }
  }
  type_ = w.type;
  rows_ = w.rows;
  cols_ = w.cols;
  row_bytes_ = stride;
}

void DeviceMatrix::release() noexcept {
  if (data_) cudaFree(data_);  // no throw from a destructor; a failure here is a lost device
  data_ = nullptr;
}

DeviceMatrix::~DeviceMatrix() {
  release();
}

DeviceMatrix::DeviceMatrix(DeviceMatrix&& o) noexcept
    : type_(o.type_),
      rows_(std::exchange(o.rows_, 0)),
      cols_(std::exchange(o.cols_, 0)),
      row_bytes_(std::exchange(o.row_bytes_, 0)),
      data_(std::exchange(o.data_, nullptr)) {}

DeviceMatrix& DeviceMatrix::operator=(DeviceMatrix&& o) noexcept {
  if (this != &o) {
    release();
    type_ = o.type_;
    rows_ = std::exchange(o.rows_, 0);
    cols_ = std::exchange(o.cols_, 0);
    row_bytes_ = std::exchange(o.row_bytes_, 0);
    data_ = std::exchange(o.data_, nullptr);
  }
  return *this;
}

namespace {

// One thread per unit of the n rows: dst[row][col] = fp16(a·q + b).
template <class U>
__global__ void dequantize_half_kernel(const std::uint8_t* w, std::size_t row_bytes, int cols,
                                       long long total_units, __half* dst) {
  const long long id = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= total_units) return;
  const int units = cols / U::kElems;
  const long long r = id / units;
  const int u = static_cast<int>(id - r * units);
  float q[U::kGroups][U::kWidth], a[U::kGroups], b[U::kGroups];
  int col[U::kGroups];
  U::decode(w + static_cast<std::size_t>(r) * row_bytes, u, q, a, b, col);
  __half* out = dst + r * cols;
#pragma unroll
  for (int g = 0; g < U::kGroups; ++g) {
    if constexpr (U::kWidth % 4 == 0) {
      // Runs start at a multiple of 4 columns and rows hold a multiple of 4: 8-byte stores.
#pragma unroll
      for (int j = 0; j < U::kWidth; j += 4) {
        __half2 h[2];
#pragma unroll
        for (int t = 0; t < 2; ++t) {
          const float v0 = U::kScaled ? fmaf(a[g], q[g][j + 2 * t], b[g]) : q[g][j + 2 * t];
          const float v1 = U::kScaled ? fmaf(a[g], q[g][j + 2 * t + 1], b[g]) : q[g][j + 2 * t + 1];
          h[t] = __floats2half2_rn(v0, v1);
        }
        uint2 packed;
        packed.x = *reinterpret_cast<const unsigned*>(&h[0]);
        packed.y = *reinterpret_cast<const unsigned*>(&h[1]);
        *reinterpret_cast<uint2*>(out + col[g] + j) = packed;
      }
    } else {
#pragma unroll
      for (int j = 0; j < U::kWidth; ++j) {
        const float v = U::kScaled ? fmaf(a[g], q[g][j], b[g]) : q[g][j];
        out[col[g] + j] = __float2half_rn(v);
      }
    }
  }
}

}  // namespace

void dequantize_half(const DeviceMatrix& w, int r0, int n, __half* dst, cudaStream_t s) {
  if (r0 < 0 || n < 0 || r0 > w.rows() - n) {
    throw std::invalid_argument("dequantize_half: rows [" + std::to_string(r0) + ", " +
                                std::to_string(r0) + "+" + std::to_string(n) +
                                ") outside the matrix's " + std::to_string(w.rows()) + " rows");
  }
  if (n == 0 || w.cols() == 0) return;
  if (!dst) throw std::invalid_argument("dequantize_half: null destination");
  blocks::with_unit(w.type(), w.cols(), [&](auto unit) {
    using U = decltype(unit);
    const long long total = static_cast<long long>(n) * (w.cols() / U::kElems);
    constexpr int kThreads = 256;
    const long long grid = (total + kThreads - 1) / kThreads;
    dequantize_half_kernel<U><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(
        w.data() + static_cast<std::size_t>(r0) * w.row_bytes(), w.row_bytes(), w.cols(), total,
        dst);
    TQ_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace tq::gpu
