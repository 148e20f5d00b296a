// Scalar dequantization of the ggml tensor block formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) to float32, written from the published GGUF/ggml block layout
// description. These are the plain references; the runner calls them once at load time, so
// clarity wins over speed here.
#include <cstring>
#include <string>
#include <vector>

#include "turboquant/base/half.hpp"
#include "turboquant/model/gguf.hpp"

namespace tq::gguf {

namespace {

constexpr std::size_t kQK = 32;           // elements per block of the classic formats
constexpr std::size_t kQKK = 256;         // elements per super-block of the K-quant formats
constexpr std::size_t kKScaleBytes = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

// fp16 -> fp32 through a 256 KiB table built once: the bit-exact converter is branchy, and
// F16 tensors and every block scale go through here at load time.
const float* half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (std::uint32_t h = 0; h < 65536; ++h) t[h] = half_to_float(static_cast<half_bits>(h));
    return t;
  }();
  return table.data();
}

float load_half(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return half_table()[h];
}

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: sub-blocks 0..3 use
// the low six bits of bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 combine a nibble of
// bytes 8..11 with the top two bits of bytes 0..3 (scale) or 4..7 (min).
void k_scale_min(int j, const std::uint8_t* q, std::uint8_t& scale, std::uint8_t& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = static_cast<std::uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    min = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_0: fp16 d, 16 bytes of nibbles; element i (< 16) is the low nibble of byte i, element i + 16
// the high nibble; value = (q - 8) * d.
void dequant_q4_0(const std::uint8_t* b, float* y) {
  const float d = load_half(b);
  const std::uint8_t* qs = b + 2;
  for (std::size_t i = 0; i < kQK / 2; ++i) {
    y[i] = static_cast<float>((qs[i] & 0x0f) - 8) * d;
    y[i + kQK / 2] = static_cast<float>((qs[i] >> 4) - 8) * d;
  }
}

// Q4_1: fp16 d, fp16 m, nibbles as Q4_0; value = q * d + m.
void dequant_q4_1(const std::uint8_t* b, float* y) {
  const float d = load_half(b);
  const float m = load_half(b + 2);
  const std::uint8_t* qs = b + 4;
  for (std::size_t i = 0; i < kQK / 2; ++i) {
    y[i] = static_cast<float>(qs[i] & 0x0f) * d + m;
    y[i + kQK / 2] = static_cast<float>(qs[i] >> 4) * d + m;
  }
}

// Q5_0 / Q5_1: as Q4_x plus a little-endian 32-bit word whose bit i is the fifth bit of element i.
template <bool has_min>
void dequant_q5(const std::uint8_t* b, float* y) {
  const float d = load_half(b);
  const float m = has_min ? load_half(b + 2) : 0.0f;
  const std::uint8_t* p = b + (has_min ? 4 : 2);
  std::uint32_t qh;
  std::memcpy(&qh, p, 4);
  const std::uint8_t* qs = p + 4;
  const int offset = has_min ? 0 : 16;
  for (std::size_t i = 0; i < kQK / 2; ++i) {
    const int lo = (qs[i] & 0x0f) | static_cast<int>(((qh >> i) & 1u) << 4);
    const int hi = (qs[i] >> 4) | static_cast<int>(((qh >> (i + 16)) & 1u) << 4);
    y[i] = static_cast<float>(lo - offset) * d + m;
    y[i + kQK / 2] = static_cast<float>(hi - offset) * d + m;
  }
}

// Q8_0: fp16 d, 32 int8; value = q * d.
void dequant_q8_0(const std::uint8_t* b, float* y) {
  const float d = load_half(b);
  const auto* qs = reinterpret_cast<const std::int8_t*>(b + 2);
  for (std::size_t i = 0; i < kQK; ++i) y[i] = static_cast<float>(qs[i]) * d;
}

// Q4_K: fp16 d, fp16 dmin, 12 bytes scales, 128 bytes nibbles. Each 64-element chunk uses 32
// bytes: low nibbles are sub-block 2c, high nibbles sub-block 2c+1; value = d*sc*q - dmin*m.
void dequant_q4_k(const std::uint8_t* b, float* y) {
  const float d = load_half(b);
  const float dmin = load_half(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* qs = scales + kKScaleBytes;
  for (int chunk = 0; chunk < 4; ++chunk) {
    std::uint8_t sc0, m0, sc1, m1;
    k_scale_min(2 * chunk, scales, sc0, m0);
    k_scale_min(2 * chunk + 1, scales, sc1, m1);
    const float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
    for (int l = 0; l < 32; ++l) {
      y[l] = d0 * static_cast<float>(qs[l] & 0x0f) - min0;
      y[l + 32] = d1 * static_cast<float>(qs[l] >> 4) - min1;
    }
    qs += 32;
    y += 64;
  }
}

// Q5_K: as Q4_K with 32 extra bytes of high bits: for chunk c, bit 2c of qh[l] is the fifth bit of
// the low-nibble element l, bit 2c+1 that of the high-nibble element l.
void dequant_q5_k(const std::uint8_t* b, float* y) {
  const float d = load_half(b);
  const float dmin = load_half(b + 2);
  const std::uint8_t* scales = b + 4;
  const std::uint8_t* qh = scales + kKScaleBytes;
  const std::uint8_t* qs = qh + 32;
  for (int chunk = 0; chunk < 4; ++chunk) {
    std::uint8_t sc0, m0, sc1, m1;
    k_scale_min(2 * chunk, scales, sc0, m0);
    k_scale_min(2 * chunk + 1, scales, sc1, m1);
    const float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
    const std::uint8_t bit0 = static_cast<std::uint8_t>(1u << (2 * chunk));
    const std::uint8_t bit1 = static_cast<std::uint8_t>(1u << (2 * chunk + 1));
    for (int l = 0; l < 32; ++l) {
      const int lo = (qs[l] & 0x0f) + ((qh[l] & bit0) ? 16 : 0);
      const int hi = (qs[l] >> 4) + ((qh[l] & bit1) ? 16 : 0);
      y[l] = d0 * static_cast<float>(lo) - min0;
      y[l + 32] = d1 * static_cast<float>(hi) - min1;
    }
    qs += 32;
    y += 64;
  }
}

// Q6_K: 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 int8 scales (one per 16 elements),
// fp16 d. Each 128-element half uses 64 low bytes and 32 high bytes; value = d * sc * (q - 32).
void dequant_q6_k(const std::uint8_t* b, float* y) {
  const std::uint8_t* ql = b;
  const std::uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
  const float d = load_half(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// One row per tensor type ggml defines. Block geometry is given for the types this loader reads
// (is_supported), and for the block formats the function that dequantizes one block (F32, F16
// and BF16 are converted element-wise); the other types are listed so that error messages can
// name them. Block bytes of the block formats: Q4_0 18, Q4_1 20, Q5_0 22, Q5_1 24, Q8_0 34,
// Q4_K 144, Q5_K 176, Q6_K 210.
struct TensorTypeInfo {
  TensorType type;
  const char* name;
  bool supported;
  std::size_t block_elements;
  std::size_t block_bytes;
  void (*dequantize_block)(const std::uint8_t* block, float* out) = nullptr;
};

constexpr TensorTypeInfo kTensorTypes[] = {
    {TensorType::kF32, "F32", true, 1, 4},
    {TensorType::kF16, "F16", true, 1, 2},
    {TensorType::kQ4_0, "Q4_0", true, kQK, 2 + kQK / 2, dequant_q4_0},
    {TensorType::kQ4_1, "Q4_1", true, kQK, 4 + kQK / 2, dequant_q4_1},
    {TensorType::kQ5_0, "Q5_0", true, kQK, 2 + 4 + kQK / 2, dequant_q5<false>},
    {TensorType::kQ5_1, "Q5_1", true, kQK, 4 + 4 + kQK / 2, dequant_q5<true>},
    {TensorType::kQ8_0, "Q8_0", true, kQK, 2 + kQK, dequant_q8_0},
    {TensorType::kQ8_1, "Q8_1", false, 0, 0},
    {TensorType::kQ2_K, "Q2_K", false, 0, 0},
    {TensorType::kQ3_K, "Q3_K", false, 0, 0},
    {TensorType::kQ4_K, "Q4_K", true, kQKK, 4 + kKScaleBytes + kQKK / 2, dequant_q4_k},
    {TensorType::kQ5_K, "Q5_K", true, kQKK, 4 + kKScaleBytes + kQKK / 8 + kQKK / 2, dequant_q5_k},
    {TensorType::kQ6_K, "Q6_K", true, kQKK, kQKK / 2 + kQKK / 4 + kQKK / 16 + 2, dequant_q6_k},
    {TensorType::kQ8_K, "Q8_K", false, 0, 0},
    {TensorType::kBF16, "BF16", true, 1, 2},
};

// The row of a supported type, or nullptr.
const TensorTypeInfo* supported_info(TensorType type) {
  for (const TensorTypeInfo& info : kTensorTypes) {
    if (info.type == type) return info.supported ? &info : nullptr;
  }
  return nullptr;
}

// The row of a supported type; throws FormatError naming the type otherwise.
const TensorTypeInfo& supported_info_or_throw(TensorType type) {
  const TensorTypeInfo* info = supported_info(type);
  if (!info) throw FormatError("GGUF: tensor type " + tensor_type_name(type) + " is not supported");
  return *info;
}

}  // namespace

std::string tensor_type_name(TensorType type) {
  for (const TensorTypeInfo& info : kTensorTypes) {
    if (info.type == type) return info.name;
  }
  return "type#" + std::to_string(static_cast<std::uint32_t>(type));
}

bool is_supported(TensorType type) {
  return supported_info(type) != nullptr;
}

std::size_t block_elements(TensorType type) {
  const TensorTypeInfo* info = supported_info(type);
  return info ? info->block_elements : kQK;
}

std::size_t block_bytes(TensorType type) {
  return supported_info_or_throw(type).block_bytes;
}

std::size_t row_bytes(TensorType type, std::uint64_t n) {
  const std::size_t be = block_elements(type);
  if (n % be != 0) {
    throw FormatError("GGUF: row of " + std::to_string(n) + " elements is not a multiple of the " +
                      tensor_type_name(type) + " block size " + std::to_string(be));
  }
  return static_cast<std::size_t>(n / be) * block_bytes(type);
}

void dequantize(TensorType type, const void* src, float* dst, std::size_t n) {
  const TensorTypeInfo& info = supported_info_or_throw(type);
  const std::size_t be = info.block_elements;
  const std::size_t bb = info.block_bytes;
  if (n % be != 0) {
    throw std::invalid_argument("dequantize: " + std::to_string(n) +
                                " elements is not a multiple of the " + tensor_type_name(type) +
                                " block size " + std::to_string(be));
  }
  const auto* in = static_cast<const std::uint8_t*>(src);
  const std::size_t blocks = n / be;
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, in, n * sizeof(float));
      return;
    case TensorType::kF16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = load_half(in + 2 * i);
      return;
    case TensorType::kBF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      return;
    default:
      break;
  }
  for (std::size_t blk = 0; blk < blocks; ++blk) {
    info.dequantize_block(in + blk * bb, dst + blk * be);
  }
}

}  // namespace tq::gguf
