// dequantize_to_half against the CPU reference on fresh random inputs: random vectors are
// quantize-appended on the GPU, the GPU codes are downloaded and decoded by tq::Codec::decode,
// and the GPU's fp16 output must be the fp16 rounding of that float result:
//   |gpu − cpu| <= 2^-10 · |cpu| + 2^-24    (half an fp16 ulp relative is 2^-11; 2^-24 is the
//                                           smallest fp16 subnormal, for values near zero)
// and, since the kernel repeats the CPU's float operations in order, bit-equal to
// float_to_half(cpu). Outputs are poisoned (0xff) first; rows past `count` must stay poisoned.
// Every codec quantize_append encodes is covered. Skips without a GPU.
#include "turboquant/cuda/dequantize.hpp"

#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "device_buffer.hpp"

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace {

using tq::cuda::testing::DevBuf;
using tq::cuda::testing::poison;
using tq::cuda::testing::spec;

using tq::CodecKind;
using tq::CodecSpec;
using tq::RotationKind;
namespace tc = tq::cuda;

std::string describe(const CodecSpec& s) {
  std::ostringstream o;
  o << tq::to_string(s.kind) << " d=" << s.dim << " bits=" << s.bits
    << " rot=" << tq::to_string(s.rotation) << " nc=" << s.norm_correction;
  return o.str();
}

struct Shape {
  int batch = 2, kv_heads = 3, capacity = 40, first = 5, count = 29, out_capacity = 33;
  int out_offset = 0;  // halves between the allocation and `out` (1: not 16-byte aligned)
  bool own_stream = false;
};

// Encodes random tokens into every slot of a GPU cache side, decodes [first, first + count) on
// the GPU and on the CPU (from the downloaded codes) and compares.
void check_dequantize(const CodecSpec& s, std::uint64_t seed, const Shape& sh = {}) {
  SCOPED_TRACE(describe(s));
  const int d = s.dim, B = sh.batch, H = sh.kv_heads, cap = sh.capacity;
  tc::DeviceCodec dev(s);
  const tq::Codec& cpu = dev.host_codec();
  const tq::CodeLayout& L = cpu.layout();
  tc::GpuKvCacheStorage store(L, L, B, H, cap);
  const tc::GpuCacheSide& side = store.cache().value;

  // x [batch][cap][kv_heads][d], each token with its own scale so the norms spread.
  tq::Xoshiro256 rng(seed);
  std::vector<float> x(static_cast<std::size_t>(B) * cap * H * d);
  for (std::size_t i = 0; i < x.size(); i += d) {
    const float scale = 0.25f + 4.0f * static_cast<float>(rng.uniform());
    for (int j = 0; j < d; ++j) x[i + j] = static_cast<float>(rng.gaussian()) * scale;
  }
  DevBuf<float> dx(x.size());
  CK(cudaMemcpy(dx.p, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  const std::vector<int> start(B, 0);
  DevBuf<int> dstart(B);
  CK(cudaMemcpy(dstart.p, start.data(), B * sizeof(int), cudaMemcpyHostToDevice));
  tc::quantize_append(dev, dx.p, tc::InputType::F32, B, cap, H, side, cap, dstart.p);
  CK(cudaDeviceSynchronize());

  const std::size_t slots = static_cast<std::size_t>(B) * H * cap;
  std::vector<std::uint8_t> codes(slots * L.code_bytes), signs(slots * L.sign_bytes);
  std::vector<std::uint16_t> norms(slots), rnorms(slots);
  if (L.code_bytes) CK(cudaMemcpy(codes.data(), side.codes, codes.size(), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(norms.data(), side.norms, slots * 2, cudaMemcpyDeviceToHost));
  if (L.sign_bytes) CK(cudaMemcpy(signs.data(), side.signs, signs.size(), cudaMemcpyDeviceToHost));
  if (L.has_residual_norm)
    CK(cudaMemcpy(rnorms.data(), side.residual_norms, slots * 2, cudaMemcpyDeviceToHost));

  const std::size_t out_elems = static_cast<std::size_t>(B) * H * sh.out_capacity * d;
  DevBuf<std::uint16_t> dout(out_elems + sh.out_offset);
  poison(dout.p, (out_elems + sh.out_offset) * 2);
  cudaStream_t stream = nullptr;
  if (sh.own_stream) CK(cudaStreamCreate(&stream));
  tc::dequantize_to_half(dev, side, B, H, cap, sh.first, sh.count, dout.p + sh.out_offset,
                         sh.out_capacity, stream);
  CK(cudaStreamSynchronize(stream));
  if (stream) CK(cudaStreamDestroy(stream));
  std::vector<std::uint16_t> out(out_elems + sh.out_offset);
  CK(cudaMemcpy(out.data(), dout.p, out.size() * 2, cudaMemcpyDeviceToHost));
  for (int i = 0; i < sh.out_offset; ++i) EXPECT_EQ(out[i], 0xffffu) << "before out";

  std::vector<float> ref(static_cast<std::size_t>(sh.count) * d);
  int beyond_tol = 0, not_bit_equal = 0, untouched_wrong = 0;
  double worst = 0.0, ref_abs_sum = 0.0;
  for (int bh = 0; bh < B * H; ++bh) {
    const std::size_t slot0 = static_cast<std::size_t>(bh) * cap + sh.first;
    const tq::ConstEncodedView in(L.code_bytes ? &codes[slot0 * L.code_bytes] : nullptr,
                                  L.sign_bytes ? &signs[slot0 * L.sign_bytes] : nullptr,
                                  &norms[slot0], L.has_residual_norm ? &rnorms[slot0] : nullptr);
    cpu.decode(in, sh.count, ref.data());
    const std::uint16_t* row0 =
        &out[sh.out_offset + static_cast<std::size_t>(bh) * sh.out_capacity * d];
    for (int t = 0; t < sh.out_capacity; ++t) {
      for (int j = 0; j < d; ++j) {
        const std::uint16_t g = row0[static_cast<std::size_t>(t) * d + j];
        if (t >= sh.count) {
          untouched_wrong += g != 0xffffu;
          continue;
        }
        const float c = ref[static_cast<std::size_t>(t) * d + j];
        const float gv = tq::half_to_float(g);
        const double err = std::fabs(static_cast<double>(gv) - c);
        const double tol =
            std::ldexp(std::fabs(static_cast<double>(c)), -10) + std::ldexp(1.0, -24);
        ref_abs_sum += std::fabs(c);
        worst = std::max(worst, err / tol);
        beyond_tol += !(err <= tol);  // NaN (poison left in place) counts as beyond
        not_bit_equal += g != tq::float_to_half(c);
      }
    }
  }
  EXPECT_EQ(beyond_tol, 0) << "worst error / tolerance " << worst;
  EXPECT_EQ(not_bit_equal, 0);
  EXPECT_EQ(untouched_wrong, 0) << "rows past count were written";
  EXPECT_GT(ref_abs_sum, 0.0) << "the reference decoded to zeros: the test would prove nothing";
}

const double kBits[] = {4.0, 3.5, 3.0, 2.5, 2.0};

TEST(CudaDequantize, MseHadamardMatchesCpuDecode) {
  REQUIRE_GPU();
  std::uint64_t seed = 1000;
  for (int d : {64, 128, 256})
    for (double bits : kBits)
      for (bool nc : {false, true}) {
        check_dequantize(spec(d, bits, CodecKind::Mse, seed, RotationKind::Hadamard, nc), seed);
        ++seed;
      }
}

TEST(CudaDequantize, ProdHadamardMatchesCpuDecode) {
  REQUIRE_GPU();
  std::uint64_t seed = 2000;
  for (int d : {64, 128, 256})
    for (double bits : kBits)
      for (bool nc : {false, true}) {
        check_dequantize(spec(d, bits, CodecKind::Prod, seed, RotationKind::Hadamard, nc), seed);
        ++seed;
      }
}

TEST(CudaDequantize, HaarMatchesCpuDecode) {
  REQUIRE_GPU();
  std::uint64_t seed = 3000;
  for (int d : {64, 128, 256})
    for (double bits : kBits)
      for (CodecKind kind : {CodecKind::Mse, CodecKind::Prod}) {
        const bool nc = seed % 2 == 1;  // both settings across the grid
        check_dequantize(spec(d, bits, kind, seed, RotationKind::Haar, nc), seed);
        ++seed;
      }
}

// Dimensions other than 64/128/256 the encoder takes (haar d = 96, 160, 224; hadamard d = 32),
// prod at 1 bit (no MSE part, only the QJL term), 8-bit mse.
TEST(CudaDequantize, OtherDimensionsAndWidths) {
  REQUIRE_GPU();
  check_dequantize(spec(32, 4, CodecKind::Mse, 1), 1);
  check_dequantize(spec(32, 3, CodecKind::Prod, 2), 2);
  check_dequantize(spec(96, 3, CodecKind::Prod, 3, RotationKind::Haar), 3);
  check_dequantize(spec(96, 2.5, CodecKind::Mse, 4, RotationKind::Haar, true), 4);
  check_dequantize(spec(160, 4, CodecKind::Mse, 5, RotationKind::Haar), 5);
  check_dequantize(spec(224, 3.5, CodecKind::Prod, 6, RotationKind::Haar), 6);
  check_dequantize(spec(128, 1, CodecKind::Prod, 7), 7);
  check_dequantize(spec(128, 1, CodecKind::Prod, 8, RotationKind::Haar), 8);
  check_dequantize(spec(128, 8, CodecKind::Mse, 9), 9);
}

// Shapes: one sequence and head, the whole cache from token 0, a single token at the end, an
// output that is not 16-byte aligned (2-byte stores), a stream of its own, many tokens.
TEST(CudaDequantize, Shapes) {
  REQUIRE_GPU();
  Shape one;
  one.batch = 1;
  one.kv_heads = 1;
  check_dequantize(spec(128, 4, CodecKind::Mse, 11), 11, one);
  Shape whole;
  whole.first = 0;
  whole.count = whole.capacity;
  whole.out_capacity = whole.capacity;
  check_dequantize(spec(128, 3.5, CodecKind::Prod, 12), 12, whole);
  Shape last;
  last.first = last.capacity - 1;
  last.count = 1;
  check_dequantize(spec(64, 2.5, CodecKind::Mse, 13), 13, last);
  Shape odd;
  odd.out_offset = 1;
  for (int d : {64, 128, 256}) check_dequantize(spec(d, 4, CodecKind::Mse, 14 + d), 14, odd);
  check_dequantize(spec(96, 3, CodecKind::Mse, 15, RotationKind::Haar), 15, odd);
  Shape streamed;
  streamed.own_stream = true;
  check_dequantize(spec(256, 4, CodecKind::Prod, 16), 16, streamed);
  Shape many;
  many.batch = 3;
  many.kv_heads = 2;
  many.capacity = 1000;
  many.first = 17;
  many.count = 977;
  many.out_capacity = 990;
  check_dequantize(spec(128, 4, CodecKind::Mse, 17), 17, many);
  check_dequantize(spec(128, 3, CodecKind::Prod, 18), 18, many);
}

TEST(CudaDequantize, ZeroCountWritesNothing) {
  REQUIRE_GPU();
  tc::DeviceCodec dev(spec(128, 4, CodecKind::Mse, 1));
  tc::GpuKvCacheStorage store(dev.layout(), dev.layout(), 1, 1, 8);
  DevBuf<std::uint16_t> out(8 * 128);
  poison(out.p, 8 * 128 * 2);
  tc::dequantize_to_half(dev, store.cache().key, 1, 1, 8, 8, 0, out.p, 8);
  // Null pointers are not read when there is nothing to decode.
  tc::dequantize_to_half(dev, tc::GpuCacheSide{}, 1, 1, 8, 0, 0, nullptr, 0);
  CK(cudaDeviceSynchronize());
  std::vector<std::uint16_t> host(8 * 128);
  CK(cudaMemcpy(host.data(), out.p, host.size() * 2, cudaMemcpyDeviceToHost));
  for (std::uint16_t h : host) ASSERT_EQ(h, 0xffffu);
}

TEST(CudaDequantize, RejectsBadInputs) {
  REQUIRE_GPU();
  tc::DeviceCodec mse(spec(128, 4, CodecKind::Mse, 1)), prod(spec(128, 3, CodecKind::Prod, 2));
  tc::GpuKvCacheStorage store(mse.layout(), prod.layout(), 2, 3, 16);
  const tc::GpuCacheSide k = store.cache().key, v = store.cache().value;
  DevBuf<std::uint16_t> out(2 * 3 * 16 * 128 + 8);
  std::uint16_t* o = out.p;
  auto call = [&](const tc::DeviceCodec& c, const tc::GpuCacheSide& s, int batch, int heads,
                  int cap, int first, int count, std::uint16_t* dst, int out_cap) {
    tc::dequantize_to_half(c, s, batch, heads, cap, first, count, dst, out_cap);
  };
  EXPECT_NO_THROW(call(mse, k, 2, 3, 16, 4, 12, o, 12));
  EXPECT_NO_THROW(call(prod, v, 2, 3, 16, 0, 16, o, 16));
  EXPECT_THROW(call(mse, k, 0, 3, 16, 0, 4, o, 4), std::invalid_argument);   // batch
  EXPECT_THROW(call(mse, k, 2, 0, 16, 0, 4, o, 4), std::invalid_argument);   // kv_heads
  EXPECT_THROW(call(mse, k, 2, 3, 16, 0, -1, o, 4), std::invalid_argument);  // count < 0
  EXPECT_THROW(call(mse, k, 2, 3, 16, -1, 4, o, 4), std::invalid_argument);  // first < 0
  EXPECT_THROW(call(mse, k, 2, 3, 16, 13, 4, o, 4), std::invalid_argument);  // past capacity
  EXPECT_THROW(call(mse, k, 2, 3, 16, 0, 5, o, 4), std::invalid_argument);   // > out_capacity
  EXPECT_THROW(call(mse, k, 2, 3, 16, 0, 4, nullptr, 4), std::invalid_argument);
  tc::GpuCacheSide bad = k;
  bad.norms = nullptr;
  EXPECT_THROW(call(mse, bad, 2, 3, 16, 0, 4, o, 4), std::invalid_argument);
  bad = k;
  bad.codes = nullptr;
  EXPECT_THROW(call(mse, bad, 2, 3, 16, 0, 4, o, 4), std::invalid_argument);
  bad = k;
  bad.codes += 2;  // codes are read as 32-bit words
  EXPECT_THROW(call(mse, bad, 2, 3, 16, 0, 4, o, 4), std::invalid_argument);
  EXPECT_THROW(call(mse, k, 2, 3, 16, 0, 4,
                    reinterpret_cast<std::uint16_t*>(reinterpret_cast<char*>(o) + 1), 4),
               std::invalid_argument);  // out not 2-byte aligned
  bad = v;
  bad.signs = nullptr;
  EXPECT_THROW(call(prod, bad, 2, 3, 16, 0, 4, o, 4), std::invalid_argument);
  bad = v;
  bad.residual_norms = nullptr;
  EXPECT_THROW(call(prod, bad, 2, 3, 16, 0, 4, o, 4), std::invalid_argument);
  // A head dim the kernel does not take (haar allows any d >= 2; the kernel wants 32 | d <= 256).
  tc::DeviceCodec odd(spec(48, 4, CodecKind::Mse, 3, RotationKind::Haar));
  tc::GpuKvCacheStorage odd_store(odd.layout(), odd.layout(), 1, 1, 4);
  EXPECT_THROW(call(odd, odd_store.cache().key, 1, 1, 4, 0, 4, o, 4), std::invalid_argument);
  CK(cudaDeviceSynchronize());
}

}  // namespace
