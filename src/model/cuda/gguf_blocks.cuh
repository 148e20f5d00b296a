// Device-side decoding of GGUF weight rows, in "units": the few elements one thread reads with a
// handful of loads. Each type's Unit says how many elements a unit holds (kElems), as kGroups runs
// of kWidth consecutive columns. load() does a unit's global loads into a small Raw (so that a
// thread can issue kUnroll units' loads before it needs any: the loads, not the arithmetic, set
// how many bytes are in flight), and unpack() turns a Raw into the small values q, and per run a
// scale a and offset b (weight = a·q + b; b only where kHasMin), plus each run's first column;
// decode() is both.
// The gemv (gpu_gemv.cu) dots q with the activations and applies a and b once per run; the fp16
// dequantizer (gpu_weights.cu) writes a·q + b. Layouts follow the scalar references in
// src/model/dequantize.cpp, except Q4_0's, which DeviceMatrix regroups on upload (below). Rows
// start at a multiple of row_bytes from a cudaMalloc base, so Q4_K (144-byte blocks), Q4_0's
// groups (144) and Q4_1 (20) are 16- / 4-byte aligned, the 22-, 34- and 210-byte blocks only
// 2-byte aligned (read in 2-byte pieces), and the dense types load 16 bytes at a time when
// the row length allows it (else their kNarrow unit of one element).
#pragma once

#include "turboquant/model/gguf.hpp"

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace tq::gpu::blocks {

// The types with a device decoder, as template tags.
enum class Kind { kF32, kF16, kBF16, kQ4_0, kQ4_1, kQ5_0, kQ8_0, kQ4_K, kQ6_K };

// 4 bytes from a 2-byte aligned address (the classic blocks are 18 / 34 / 210 bytes long, so
// their fields are only 2-byte aligned).
__device__ __forceinline__ std::uint32_t u32_a2(const std::uint8_t* p) {
  const auto* h = reinterpret_cast<const unsigned short*>(p);
  return static_cast<std::uint32_t>(__ldg(h)) | (static_cast<std::uint32_t>(__ldg(h + 1)) << 16);
}

// An unsigned integer v < 2^23 as a float without the (slow on Hopper) I2F conversion: put it in
// the mantissa of 2^23 and subtract 2^23 + offset, which is exact.
__device__ __forceinline__ float small_uint(std::uint32_t v, float offset) {
  return __uint_as_float(0x4B000000u | v) - (8388608.0f + offset);
}

template <Kind K, bool kNarrow = false>
struct Unit;

// The q / a / b / col outputs of unpack() for a unit type U.
#define TQ_UNIT_OUTPUTS \
  float(&q)[kGroups][kWidth], float(&a)[kGroups], float(&b)[kGroups], int(&col)[kGroups]

// decode() = unpack(load()), shared by every unit type.
template <class Self>
struct UnitBase {
  template <class Q, class A, class B, class C>
  __device__ __forceinline__ static void decode(const std::uint8_t* row, int u, Q& q, A& a, B& b,
                                                C& col) {
    Self::unpack(Self::load(row, u), u, q, a, b, col);
  }
};

// F32: four floats per 16-byte load (kNarrow: one float, for rows whose length is not a multiple
// of 4 and so are not 16-byte aligned).
template <bool kNarrow>
struct Unit<Kind::kF32, kNarrow> : UnitBase<Unit<Kind::kF32, kNarrow>> {
  static constexpr int kElems = kNarrow ? 1 : 4, kGroups = 1, kWidth = kElems;
  static constexpr int kUnroll = kNarrow ? 8 : 4;
  static constexpr bool kHasMin = false, kScaled = false;
  struct Raw {
    float v[kElems];
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    Raw r;
    if constexpr (kNarrow) {
      r.v[0] = __ldg(reinterpret_cast<const float*>(row) + u);
    } else {
      const float4 v = __ldg(reinterpret_cast<const float4*>(row) + u);
      r.v[0] = v.x, r.v[1] = v.y, r.v[2] = v.z, r.v[3] = v.w;
    }
    return r;
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
#pragma unroll
    for (int i = 0; i < kElems; ++i) q[0][i] = r.v[i];
    a[0] = 1.0f, b[0] = 0.0f, col[0] = u * kElems;
  }
};

// F16 / BF16: eight values per 16-byte load (kNarrow: one).
template <Kind K, bool kNarrow>
struct HalfUnit : UnitBase<HalfUnit<K, kNarrow>> {
  static constexpr int kElems = kNarrow ? 1 : 8, kGroups = 1, kWidth = kElems;
  static constexpr int kUnroll = kNarrow ? 8 : 4;
  static constexpr bool kHasMin = false, kScaled = false;
  struct Raw {
    std::uint32_t w[kNarrow ? 1 : 4];
  };
  __device__ __forceinline__ static float widen(unsigned short h) {
    if constexpr (K == Kind::kF16) {
      return __half2float(__ushort_as_half(h));
    } else {
      return __uint_as_float(static_cast<std::uint32_t>(h) << 16);
    }
  }
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    Raw r;
    if constexpr (kNarrow) {
      r.w[0] = __ldg(reinterpret_cast<const unsigned short*>(row) + u);
    } else {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(row) + u);
      r.w[0] = v.x, r.w[1] = v.y, r.w[2] = v.z, r.w[3] = v.w;
    }
    return r;
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
    if constexpr (kNarrow) {
      q[0][0] = widen(static_cast<unsigned short>(r.w[0]));
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        q[0][2 * i] = widen(static_cast<unsigned short>(r.w[i] & 0xffffu));
        q[0][2 * i + 1] = widen(static_cast<unsigned short>(r.w[i] >> 16));
      }
    }
    a[0] = 1.0f, b[0] = 0.0f, col[0] = u * kElems;
  }
};
template <bool kNarrow>
struct Unit<Kind::kF16, kNarrow> : HalfUnit<Kind::kF16, kNarrow> {};
template <bool kNarrow>
struct Unit<Kind::kBF16, kNarrow> : HalfUnit<Kind::kBF16, kNarrow> {};

// Q4_0 on the device (GGUF: 18-byte blocks of fp16 d and 16 nibble bytes; element i < 16 is the
// low nibble of byte i, i + 16 the high nibble; weight (q − 8)·d). DeviceMatrix regroups each row
// into groups of 8 blocks (256 columns, 144 bytes, padded with zero blocks to a whole group):
// bytes 32j..32j+31 hold nibble bytes 4j..4j+3 of the 8 blocks in turn (j = 0..3), bytes 128..143
// the 8 scales. Every field is then aligned, and the tensor-core gemv (gpu_gemv_q4_0.cu) gives
// each of a row's 4 lanes two 16-byte loads per group: byte quad j of every block, which is what
// its mma fragments take. Unit j of block b: nibble bytes 4j..4j+3 of b, i.e. columns 4j..4j+3
// (low nibbles) and 16 + 4j.. (high), one aligned 4-byte load plus the scale.
inline constexpr int kQ4_0GroupBlocks = 8;
inline constexpr int kQ4_0GroupBytes = 18 * kQ4_0GroupBlocks;
inline constexpr int kQ4_0ScaleOffset = 16 * kQ4_0GroupBlocks;
// Bytes of one device row of `cols` (a multiple of 32) columns.
inline std::size_t q4_0_device_row_bytes(int cols) {
  const int blocks = cols / 32;
  return static_cast<std::size_t>((blocks + kQ4_0GroupBlocks - 1) / kQ4_0GroupBlocks) *
         kQ4_0GroupBytes;
}
// Offset in a device row of nibble byte quad j (0..3) of block b, and of block b's scale.
__host__ __device__ __forceinline__ int q4_0_quad_offset(int b, int j) {
  return (b / kQ4_0GroupBlocks) * kQ4_0GroupBytes + 32 * j + 4 * (b % kQ4_0GroupBlocks);
}
__host__ __device__ __forceinline__ int q4_0_scale_offset(int b) {
  return (b / kQ4_0GroupBlocks) * kQ4_0GroupBytes + kQ4_0ScaleOffset + 2 * (b % kQ4_0GroupBlocks);
}

template <>
struct Unit<Kind::kQ4_0> : UnitBase<Unit<Kind::kQ4_0>> {
  static constexpr int kElems = 8, kGroups = 2, kWidth = 4, kUnroll = 16;
  static constexpr bool kHasMin = false, kScaled = true;
  struct Raw {
    unsigned short d;
    std::uint32_t w;
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    const int b = u >> 2;
    return {__ldg(reinterpret_cast<const unsigned short*>(row + q4_0_scale_offset(b))),
            __ldg(reinterpret_cast<const std::uint32_t*>(row + q4_0_quad_offset(b, u & 3)))};
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q[0][i] = small_uint((r.w >> (8 * i)) & 0xfu, 8.0f);
      q[1][i] = small_uint((r.w >> (8 * i + 4)) & 0xfu, 8.0f);
    }
    a[0] = a[1] = __half2float(__ushort_as_half(r.d)), b[0] = b[1] = 0.0f;
    col[0] = (u >> 2) * 32 + 4 * (u & 3), col[1] = col[0] + 16;
  }
};

// Q4_1 (20 bytes: fp16 d, fp16 m, nibbles as Q4_0; weight q·d + m). 20-byte blocks keep the
// fields 4-byte aligned.
template <>
struct Unit<Kind::kQ4_1> : UnitBase<Unit<Kind::kQ4_1>> {
  static constexpr int kElems = 8, kGroups = 2, kWidth = 4, kUnroll = 16;
  static constexpr bool kHasMin = true, kScaled = true;
  struct Raw {
    std::uint32_t dm, w;
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    const auto* p = reinterpret_cast<const std::uint32_t*>(row + (u >> 2) * 20);
    return {__ldg(p), __ldg(p + 1 + (u & 3))};
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q[0][i] = small_uint((r.w >> (8 * i)) & 0xfu, 0.0f);
      q[1][i] = small_uint((r.w >> (8 * i + 4)) & 0xfu, 0.0f);
    }
    a[0] = a[1] = __half2float(__ushort_as_half(static_cast<unsigned short>(r.dm & 0xffffu)));
    b[0] = b[1] = __half2float(__ushort_as_half(static_cast<unsigned short>(r.dm >> 16)));
    col[0] = (u >> 2) * 32 + 4 * (u & 3), col[1] = col[0] + 16;
  }
};

// Q5_0 (22 bytes: fp16 d, a 32-bit word of fifth bits, 16 nibble bytes as Q4_0's; weight
// (q − 16)·d, q = nibble | bit i of the word << 4 for element i). Unit j: nibble bytes 4j..4j+3,
// i.e. columns 4j..4j+3 (low nibbles) and 16 + 4j.. (high), with their four fifth bits each.
template <>
struct Unit<Kind::kQ5_0> : UnitBase<Unit<Kind::kQ5_0>> {
  static constexpr int kElems = 8, kGroups = 2, kWidth = 4, kUnroll = 16;
  static constexpr bool kHasMin = false, kScaled = true;
  struct Raw {
    unsigned short d;
    std::uint32_t qh, w;
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    const std::uint8_t* p = row + (u >> 2) * 22;
    return {__ldg(reinterpret_cast<const unsigned short*>(p)), u32_a2(p + 2),
            u32_a2(p + 6 + 4 * (u & 3))};
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
    const int c0 = 4 * (u & 3);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const std::uint32_t lo = ((r.w >> (8 * i)) & 0xfu) | (((r.qh >> (c0 + i)) & 1u) << 4);
      const std::uint32_t hi =
          ((r.w >> (8 * i + 4)) & 0xfu) | (((r.qh >> (16 + c0 + i)) & 1u) << 4);
      q[0][i] = small_uint(lo, 16.0f);
      q[1][i] = small_uint(hi, 16.0f);
    }
    a[0] = a[1] = __half2float(__ushort_as_half(r.d)), b[0] = b[1] = 0.0f;
    col[0] = (u >> 2) * 32 + c0, col[1] = col[0] + 16;
  }
};

// Q8_0 (34 bytes: fp16 d, 32 int8; weight q·d). Unit j: columns 8j..8j+7 of the block.
template <>
struct Unit<Kind::kQ8_0> : UnitBase<Unit<Kind::kQ8_0>> {
  static constexpr int kElems = 8, kGroups = 1, kWidth = 8, kUnroll = 8;
  static constexpr bool kHasMin = false, kScaled = true;
  struct Raw {
    unsigned short d;
    std::uint32_t w[2];
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    const std::uint8_t* p = row + (u >> 2) * 34;
    const int j = u & 3;
    return {__ldg(reinterpret_cast<const unsigned short*>(p)),
            {u32_a2(p + 2 + 8 * j), u32_a2(p + 6 + 8 * j)}};
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      // int8 s → s + 128 in [0, 255] by flipping the sign bit, then subtract 128.
      q[0][i] = small_uint(((r.w[i >> 2] >> (8 * (i & 3))) & 0xffu) ^ 0x80u, 128.0f);
    }
    a[0] = __half2float(__ushort_as_half(r.d)), b[0] = 0.0f;
    col[0] = (u >> 2) * 32 + 8 * (u & 3);
  }
};

// Q4_K (144 bytes: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales / mins, 128 bytes of
// nibbles; 64-element chunk c uses bytes 32c..32c+31: low nibbles are sub-block 2c, high nibbles
// 2c + 1; weight d·sc·q − dmin·m). Unit j (0..7) of a super-block: 16 nibble bytes 16j..16j+15
// (one aligned 16-byte load), chunk c = j/2, columns 64c + 16(j%2) + 0..15 (low) and + 32 (high).
template <>
struct Unit<Kind::kQ4_K> : UnitBase<Unit<Kind::kQ4_K>> {
  static constexpr int kElems = 32, kGroups = 2, kWidth = 16, kUnroll = 4;
  static constexpr bool kHasMin = true, kScaled = true;
  struct Raw {
    uint4 head, v;
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    const std::uint8_t* p = row + (u >> 3) * 144;
    return {__ldg(reinterpret_cast<const uint4*>(p)),
            __ldg(reinterpret_cast<const uint4*>(p + 16) + (u & 7))};
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
    const int sb = u >> 3, j = u & 7, c = j >> 1;
    const float d = __half2float(__ushort_as_half(static_cast<unsigned short>(r.head.x & 0xffffu)));
    const float dmin = __half2float(__ushort_as_half(static_cast<unsigned short>(r.head.x >> 16)));
    // Packed scales: bytes 0..11 after d / dmin, i.e. head.y, head.z, head.w.
    const std::uint32_t s03 = r.head.y, s47 = r.head.z, s811 = r.head.w;
    auto byte = [](std::uint32_t w, int i) { return (w >> (8 * i)) & 0xffu; };
    std::uint32_t sc[2], mn[2];
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const int s = 2 * c + t;  // sub-block 0..7
      if (s < 4) {
        sc[t] = byte(s03, s) & 63u;
        mn[t] = byte(s47, s) & 63u;
      } else {
        sc[t] = (byte(s811, s - 4) & 0x0fu) | ((byte(s03, s - 4) >> 6) << 4);
        mn[t] = (byte(s811, s - 4) >> 4) | ((byte(s47, s - 4) >> 6) << 4);
      }
    }
    const std::uint32_t w[4] = {r.v.x, r.v.y, r.v.z, r.v.w};
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const std::uint32_t by = (w[i >> 2] >> (8 * (i & 3))) & 0xffu;
      q[0][i] = small_uint(by & 0xfu, 0.0f);
      q[1][i] = small_uint(by >> 4, 0.0f);
    }
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      a[t] = d * static_cast<float>(sc[t]);
      b[t] = -(dmin * static_cast<float>(mn[t]));
    }
    col[0] = sb * 256 + 64 * c + 16 * (j & 1), col[1] = col[0] + 32;
  }
};

// Q6_K (210 bytes: 128 bytes low nibbles ql, 64 bytes 2-bit highs qh, 16 int8 scales, fp16 d).
// Half h (128 elements) uses ql[64h..], qh[32h..], scales[8h..]; for l < 32 its elements l, l+32,
// l+64, l+96 come from ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high nibbles with qh[l] bits
// 0-1, 2-3, 4-5, 6-7, scale index l/16 + 0, 2, 4, 6; weight d·sc·(q − 32). Unit j (0..15) of a
// super-block: h = j/8, l = 4(j%8)..+3, i.e. four runs of four columns.
template <>
struct Unit<Kind::kQ6_K> : UnitBase<Unit<Kind::kQ6_K>> {
  static constexpr int kElems = 16, kGroups = 4, kWidth = 4, kUnroll = 4;
  static constexpr bool kHasMin = false, kScaled = true;
  struct Raw {
    std::uint32_t lo, hi, hb;
    unsigned short d;
    signed char sc[4];
  };
  __device__ __forceinline__ static Raw load(const std::uint8_t* row, int u) {
    const int j = u & 15, h = j >> 3, l0 = 4 * (j & 7);
    const std::uint8_t* p = row + (u >> 4) * 210;
    const std::uint8_t* ql = p + 64 * h + l0;
    const auto* sc = reinterpret_cast<const signed char*>(p + 192 + 8 * h + l0 / 16);
    Raw r;
    r.lo = u32_a2(ql);
    r.hi = u32_a2(ql + 32);
    r.hb = u32_a2(p + 128 + 32 * h + l0);
    r.d = __ldg(reinterpret_cast<const unsigned short*>(p + 208));
#pragma unroll
    for (int g = 0; g < 4; ++g) r.sc[g] = __ldg(sc + 2 * g);
    return r;
  }
  __device__ __forceinline__ static void unpack(const Raw& r, int u, TQ_UNIT_OUTPUTS) {
    const int j = u & 15, h = j >> 3, l0 = 4 * (j & 7);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const std::uint32_t l = (r.lo >> (8 * i)) & 0xffu, m = (r.hi >> (8 * i)) & 0xffu;
      const std::uint32_t e = (r.hb >> (8 * i)) & 0xffu;
      q[0][i] = small_uint((l & 0xfu) | ((e & 3u) << 4), 32.0f);
      q[1][i] = small_uint((m & 0xfu) | (((e >> 2) & 3u) << 4), 32.0f);
      q[2][i] = small_uint((l >> 4) | (((e >> 4) & 3u) << 4), 32.0f);
      q[3][i] = small_uint((m >> 4) | (((e >> 6) & 3u) << 4), 32.0f);
    }
    const float d = __half2float(__ushort_as_half(r.d));
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      a[g] = d * static_cast<float>(r.sc[g]);
      b[g] = 0.0f;
      col[g] = (u >> 4) * 256 + 128 * h + 32 * g + l0;
    }
  }
};

#undef TQ_UNIT_OUTPUTS

// Host side: calls f(Unit<...>{}) with the decoder of `type` for rows of `cols` values (the dense
// types take their narrow unit when a row is not a whole number of 16-byte loads). Throws
// std::invalid_argument naming a type without a decoder.
template <class F>
void with_unit(gguf::TensorType type, int cols, F&& f) {
  using gguf::TensorType;
  switch (type) {
    case TensorType::kF32:
      if (cols % 4 == 0) return f(Unit<Kind::kF32>{});
      return f(Unit<Kind::kF32, true>{});
    case TensorType::kF16:
      if (cols % 8 == 0) return f(Unit<Kind::kF16>{});
      return f(Unit<Kind::kF16, true>{});
    case TensorType::kBF16:
      if (cols % 8 == 0) return f(Unit<Kind::kBF16>{});
      return f(Unit<Kind::kBF16, true>{});
    case TensorType::kQ4_0:
      return f(Unit<Kind::kQ4_0>{});
    case TensorType::kQ4_1:
      return f(Unit<Kind::kQ4_1>{});
    case TensorType::kQ5_0:
      return f(Unit<Kind::kQ5_0>{});
    case TensorType::kQ8_0:
      return f(Unit<Kind::kQ8_0>{});
    case TensorType::kQ4_K:
      return f(Unit<Kind::kQ4_K>{});
    case TensorType::kQ6_K:
      return f(Unit<Kind::kQ6_K>{});
    default:
      throw std::invalid_argument(
          "gpu weights: no device kernel for tensor type " + gguf::tensor_type_name(type) +
          " (expected F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K or Q6_K)");
  }
}

}  // namespace tq::gpu::blocks
