// GPU kernels against the CPU reference (tq::Codec) on fresh random inputs: quantize-append codes
// bit-exact with Codec::encode; attention (tensor-core and generic paths, fp16 baseline, window,
// multi-query) within 1e-3 relative error of a double-precision softmax attention over the
// CPU-decoded cache. Outputs are NaN-poisoned before every launch. Skips without a GPU.
#include "turboquant/cuda/attention.hpp"

#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "device_buffer.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace {

using tq::cuda::testing::DevBuf;
using tq::cuda::testing::poison;
using tq::cuda::testing::spec;

using tq::CodecKind;
using tq::CodecSpec;
namespace tc = tq::cuda;

std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
  tq::Xoshiro256 rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.gaussian()) * scale;
  return v;
}

// ---------------------------------------------------------------- quantize-append
struct QCase {
  CodecSpec s;
  tc::InputType type;
};

void check_quantize(const QCase& qc, std::uint64_t seed) {
  const int d = qc.s.dim, batch = 2, heads = 3, count = 37, cap = 50;
  const std::vector<int> start = {0, 11};
  tc::DeviceCodec dev(qc.s);
  const tq::Codec& cpu = dev.host_codec();
  const tq::CodeLayout& L = cpu.layout();
  tc::GpuKvCacheStorage store(L, L, batch, heads, cap);
  const tc::GpuCacheSide& side = store.cache().key;
  const std::size_t slots = static_cast<std::size_t>(batch) * heads * cap;
  poison(side.codes, slots * L.code_bytes);
  poison(side.norms, slots * 2);
  if (L.sign_bytes) poison(side.signs, slots * L.sign_bytes);
  if (L.has_residual_norm) poison(side.residual_norms, slots * 2);

  std::vector<float> x = gaussian(static_cast<std::size_t>(batch) * count * heads * d, seed, 3.0f);
  // Inputs in the requested type; the CPU encodes the same values widened to float.
  std::vector<std::uint16_t> x16(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (qc.type == tc::InputType::F16) {
      x16[i] = tq::float_to_half(x[i]);
      x[i] = tq::half_to_float(x16[i]);
    } else if (qc.type == tc::InputType::BF16) {
      std::uint32_t bits;
      std::memcpy(&bits, &x[i], 4);
      bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;  // round to nearest even
      x16[i] = static_cast<std::uint16_t>(bits >> 16);
      std::memcpy(&x[i], &bits, 4);
    }
  }
  const bool f32 = qc.type == tc::InputType::F32;
  DevBuf<char> dx(x.size() * (f32 ? 4 : 2));
  CK(cudaMemcpy(dx.p, f32 ? static_cast<const void*>(x.data()) : x16.data(),
                x.size() * (f32 ? 4 : 2), cudaMemcpyHostToDevice));
  DevBuf<int> dstart(batch);
  CK(cudaMemcpy(dstart.p, start.data(), batch * sizeof(int), cudaMemcpyHostToDevice));
  tc::quantize_append(dev, dx.p, qc.type, batch, count, heads, side, cap, dstart.p);
  CK(cudaDeviceSynchronize());

  std::vector<std::uint8_t> codes(slots * L.code_bytes), signs(slots * L.sign_bytes);
  std::vector<std::uint16_t> norms(slots), rnorms(slots);
  CK(cudaMemcpy(codes.data(), side.codes, codes.size(), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(norms.data(), side.norms, slots * 2, cudaMemcpyDeviceToHost));
  if (L.sign_bytes) CK(cudaMemcpy(signs.data(), side.signs, signs.size(), cudaMemcpyDeviceToHost));
  if (L.has_residual_norm)
    CK(cudaMemcpy(rnorms.data(), side.residual_norms, slots * 2, cudaMemcpyDeviceToHost));

  tq::EncodedBatch ref(L, 1);
  std::vector<float> token(d);
  int code_mismatch = 0, other_mismatch = 0;
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < count; ++t) {
      for (int h = 0; h < heads; ++h) {
        std::copy_n(&x[((static_cast<std::size_t>(b) * count + t) * heads + h) * d], d,
                    token.data());
        cpu.encode(token.data(), 1, ref.view());
        const std::size_t slot = (static_cast<std::size_t>(b) * heads + h) * cap + start[b] + t;
        const tq::ConstEncodedView r = ref.view();
        if (std::memcmp(r.codes, &codes[slot * L.code_bytes], L.code_bytes) != 0) ++code_mismatch;
        if (r.norms[0] != norms[slot]) ++other_mismatch;
        if (L.sign_bytes && std::memcmp(r.signs, &signs[slot * L.sign_bytes], L.sign_bytes) != 0)
          ++other_mismatch;
        if (L.has_residual_norm && r.residual_norms[0] != rnorms[slot]) ++other_mismatch;
      }
    }
  }
  EXPECT_EQ(code_mismatch, 0) << "d=" << d << " bits=" << qc.s.bits;
  EXPECT_EQ(other_mismatch, 0) << "d=" << d << " bits=" << qc.s.bits;
  // A slot before the first appended token of sequence 1 must be untouched (still poisoned).
  EXPECT_EQ(norms[(static_cast<std::size_t>(1) * heads) * cap + 0], 0xffffu);
}

TEST(CudaQuantize, BitExactWithCpuEncoder) {
  REQUIRE_GPU();
  std::uint64_t seed = 100;
  for (int d : {64, 128, 256}) {
    for (double bits : {2.0, 3.0, 4.0, 3.5, 2.5, 8.0}) {
      check_quantize({spec(d, bits, CodecKind::Mse, seed), tc::InputType::F32}, seed);
      ++seed;
    }
    for (double bits : {2.0, 4.0, 3.5}) {
      check_quantize({spec(d, bits, CodecKind::Prod, seed), tc::InputType::F32}, seed);
      ++seed;
    }
  }
  check_quantize({spec(128, 4, CodecKind::Mse, 7, tq::RotationKind::Haar), tc::InputType::F32}, 1);
  check_quantize({spec(96, 3, CodecKind::Prod, 8, tq::RotationKind::Haar), tc::InputType::F32}, 2);
  check_quantize(
      {spec(128, 3, CodecKind::Mse, 9, tq::RotationKind::Hadamard, true), tc::InputType::F32}, 3);
  check_quantize({spec(128, 4, CodecKind::Mse, 10), tc::InputType::F16}, 4);
  check_quantize({spec(128, 4, CodecKind::Mse, 11), tc::InputType::BF16}, 5);
}

// Tokens past the capacity are dropped and recorded in the storage's overflow word: positions
// 4 and 5 of a 4-token cache are not written (the next head's slots keep their poison), and
// check_capacity names the furthest one, once.
TEST(CudaQuantize, PastCapacityIsRecordedNotWritten) {
  REQUIRE_GPU();
  const int d = 64, heads = 2, cap = 4, count = 4;
  tc::DeviceCodec dev(spec(d, 4, CodecKind::Mse, 3));
  const tq::CodeLayout& L = dev.host_codec().layout();
  tc::GpuKvCacheStorage store(L, L, 1, heads, cap);
  const tc::GpuCacheSide& side = store.cache().key;
  ASSERT_NE(side.overflow, nullptr);
  EXPECT_EQ(side.overflow, store.cache().value.overflow);
  poison(side.norms, static_cast<std::size_t>(heads) * cap * 2);
  const std::vector<float> x = gaussian(static_cast<std::size_t>(count) * heads * d, 9);
  DevBuf<float> dx(x.size());
  CK(cudaMemcpy(dx.p, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  DevBuf<int> dstart(1);
  const int start = 2;
  CK(cudaMemcpy(dstart.p, &start, sizeof start, cudaMemcpyHostToDevice));
  EXPECT_NO_THROW(tc::check_capacity(side.overflow, cap, "fresh cache"));
  tc::quantize_append(dev, dx.p, tc::InputType::F32, 1, count, heads, side, cap, dstart.p);
  try {
    tc::check_capacity(side.overflow, cap, "test cache");
    FAIL() << "tokens at positions 4 and 5 of a 4-token cache were not reported";
  } catch (const std::out_of_range& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("test cache: tokens up to position 5"), std::string::npos) << m;
    EXPECT_NE(m.find("holds 4 tokens"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(tc::check_capacity(side.overflow, cap, "after the report"));
  std::vector<std::uint16_t> norms(static_cast<std::size_t>(heads) * cap);
  CK(cudaMemcpy(norms.data(), side.norms, norms.size() * 2, cudaMemcpyDeviceToHost));
  for (int h = 0; h < heads; ++h) {
    for (int t = 0; t < cap; ++t) {
      const bool written = t >= start;
      EXPECT_EQ(norms[static_cast<std::size_t>(h) * cap + t] != 0xffffu, written)
          << "head " << h << " slot " << t;
    }
  }
}

// ---------------------------------------------------------------- attention
struct ACase {
  CodecSpec k, v;
  int batch, kv_heads, group, n_queries;
  std::vector<int> lengths;
  std::vector<int> windows;  // empty = no window
  tc::AttentionPath path;
  bool fp16 = false;  // run the fp16 baseline kernel instead (k/v specs give only d)
};

// Sequences, KV heads, query heads per KV head and queries per sequence of a case.
struct Shape {
  int batch, kv_heads, group, n_queries;
};

// A case with mse keys and values of head dim d and one rotation: key codec seed `seed`, value
// codec seed `seed + 1`.
ACase mse_case(int d, double k_bits, double v_bits, std::uint64_t seed, Shape shape,
               std::vector<int> lengths, std::vector<int> windows, tc::AttentionPath path,
               tq::RotationKind rot = tq::RotationKind::Hadamard) {
  return {spec(d, k_bits, CodecKind::Mse, seed, rot),
          spec(d, v_bits, CodecKind::Mse, seed + 1, rot),
          shape.batch,
          shape.kv_heads,
          shape.group,
          shape.n_queries,
          std::move(lengths),
          std::move(windows),
          path};
}
ACase with_prod_keys(ACase c) {
  c.k.kind = CodecKind::Prod;
  return c;
}
ACase with_prod_values(ACase c) {
  c.v.kind = CodecKind::Prod;
  return c;
}

// out[b][i][qh][d] = softmax(q·k/√d) v in double over the decoded cache.
void check_attention(const ACase& c, std::uint64_t seed) {
  const int d = c.k.dim, batch = c.batch, H = c.kv_heads, G = c.group, nq = c.n_queries;
  const int qheads = H * G;
  int max_len = 0, max_win = 0;
  for (int l : c.lengths) max_len = std::max(max_len, l);
  for (int w : c.windows) max_win = std::max(max_win, w);
  const int cap = max_len, wcap = max_win;
  tc::DeviceCodec kdev(c.k), vdev(c.v);
  const tq::Codec& kc = kdev.host_codec();
  const tq::Codec& vc = vdev.host_codec();
  const tq::CodeLayout& KL = kc.layout();
  const tq::CodeLayout& VL = vc.layout();

  // Per (b, h): raw K/V, encoded on the CPU, decoded for the reference.
  const std::size_t per = static_cast<std::size_t>(cap) * d;
  std::vector<float> kdec(static_cast<std::size_t>(batch) * H * per), vdec(kdec.size());
  tc::GpuKvCacheStorage store(KL, VL, batch, H, std::max(cap, 1), wcap);
  const tc::GpuKvCache& cache = store.cache();
  std::vector<std::uint16_t> k16(kdec.size()), v16(kdec.size());
  std::vector<std::uint16_t> kw(static_cast<std::size_t>(batch) * H * wcap * d), vw(kw.size());
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < H; ++h) {
      const int n = c.lengths[b];
      const std::size_t slot0 = (static_cast<std::size_t>(b) * H + h) * cap;
      std::vector<float> kx = gaussian(static_cast<std::size_t>(n) * d, seed++, 1.0f);
      std::vector<float> vx = gaussian(static_cast<std::size_t>(n) * d, seed++, 1.0f);
      // Give keys a per-token scale so that scores spread a little.
      for (int t = 0; t < n; ++t)
        for (int j = 0; j < d; ++j)
          kx[static_cast<std::size_t>(t) * d + j] *= 1.0f + 0.5f * std::sin(0.37f * t);
      if (c.fp16) {
        for (std::size_t i = 0; i < kx.size(); ++i) {
          k16[slot0 * d + i] = tq::float_to_half(kx[i]);
          v16[slot0 * d + i] = tq::float_to_half(vx[i]);
          kdec[slot0 * d + i] = tq::half_to_float(k16[slot0 * d + i]);
          vdec[slot0 * d + i] = tq::half_to_float(v16[slot0 * d + i]);
        }
        continue;
      }
      if (n == 0) continue;
      tq::EncodedBatch ke(KL, n), ve(VL, n);
      kc.encode(kx.data(), n, ke.view());
      vc.encode(vx.data(), n, ve.view());
      kc.decode(ke.view(), n, &kdec[slot0 * d]);
      vc.decode(ve.view(), n, &vdec[slot0 * d]);
      auto up = [&](const tq::ConstEncodedView& e, const tc::GpuCacheSide& s,
                    const tq::CodeLayout& L) {
        if (L.code_bytes)
          CK(cudaMemcpy(s.codes + slot0 * L.code_bytes, e.codes, n * L.code_bytes,
                        cudaMemcpyHostToDevice));
        if (L.sign_bytes)
          CK(cudaMemcpy(s.signs + slot0 * L.sign_bytes, e.signs, n * L.sign_bytes,
                        cudaMemcpyHostToDevice));
        CK(cudaMemcpy(s.norms + slot0, e.norms, n * 2, cudaMemcpyHostToDevice));
        if (L.has_residual_norm)
          CK(cudaMemcpy(s.residual_norms + slot0, e.residual_norms, n * 2, cudaMemcpyHostToDevice));
      };
      up(ke.view(), cache.key, KL);
      up(ve.view(), cache.value, VL);
    }
  }
  if (!c.windows.empty()) {
    std::vector<float> wk = gaussian(kw.size(), seed++), wv = gaussian(kw.size(), seed++);
    for (std::size_t i = 0; i < kw.size(); ++i) {
      kw[i] = tq::float_to_half(wk[i]);
      vw[i] = tq::float_to_half(wv[i]);
    }
    CK(cudaMemcpy(cache.key_window, kw.data(), kw.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(cache.value_window, vw.data(), vw.size() * 2, cudaMemcpyHostToDevice));
  }
  DevBuf<std::uint16_t> dk16(k16.size()), dv16(v16.size());
  if (c.fp16) {
    CK(cudaMemcpy(dk16.p, k16.data(), k16.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv16.p, v16.data(), v16.size() * 2, cudaMemcpyHostToDevice));
  }
  const std::size_t qn = static_cast<std::size_t>(batch) * nq * qheads * d;
  std::vector<float> q = gaussian(qn, seed++, 1.0f);
  DevBuf<float> dq(qn), dout(qn);
  DevBuf<int> dlen(batch), dwin(batch);
  CK(cudaMemcpy(dq.p, q.data(), qn * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dlen.p, c.lengths.data(), batch * 4, cudaMemcpyHostToDevice));
  if (!c.windows.empty())
    CK(cudaMemcpy(dwin.p, c.windows.data(), batch * 4, cudaMemcpyHostToDevice));
  poison(dout.p, qn * 4);

  tc::AttentionArgs a;
  a.q = dq.p;
  a.out = dout.p;
  a.batch = batch;
  a.q_heads = qheads;
  a.n_queries = nq;
  a.lengths = dlen.p;
  a.max_length = max_len;
  a.window_lengths = c.windows.empty() ? nullptr : dwin.p;
  a.max_window = max_win;
  a.path = c.path;
  tc::AttentionWorkspace ws;
  // Twice with one workspace, output poisoned before each: the fused merge's arrival counters
  // must be left at zero by the first call.
  for (int rep = 0; rep < 2; ++rep) {
    poison(dout.p, qn * 4);
    if (c.fp16) {
      tc::GpuFp16Cache fc{batch, H, d, cap, dk16.p, dv16.p};
      tc::attention_fp16(fc, a, ws);
    } else {
      tc::attention(kdev, vdev, cache, a, ws);
    }
    CK(cudaDeviceSynchronize());
  }
  std::vector<float> out(qn);
  CK(cudaMemcpy(out.data(), dout.p, qn * 4, cudaMemcpyDeviceToHost));

  // Reference.
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  double err2 = 0.0, ref2 = 0.0;
  int nonfinite = 0;
  std::vector<double> s, o(d);
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < nq; ++i) {
      const int visible = c.lengths[b] - (nq - 1 - i);
      const int W = c.windows.empty() ? 0 : c.windows[b];
      for (int qh = 0; qh < qheads; ++qh) {
        const int h = qh / G;
        const float* qv = &q[((static_cast<std::size_t>(b) * nq + i) * qheads + qh) * d];
        const std::size_t slot0 = (static_cast<std::size_t>(b) * H + h) * cap;
        const std::size_t w0 = (static_cast<std::size_t>(b) * H + h) * wcap;
        s.assign(std::max(visible, 0) + W, 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int t = 0; t < static_cast<int>(s.size()); ++t) {
          double acc = 0.0;
          for (int j = 0; j < d; ++j) {
            const double kv = t < visible ? kdec[(slot0 + t) * d + j]
                                          : tq::half_to_float(kw[(w0 + t - visible) * d + j]);
            acc += qv[j] * kv;
          }
          s[t] = acc * scale;
          mx = std::max(mx, s[t]);
        }
        double l = 0.0;
        std::fill(o.begin(), o.end(), 0.0);
        for (int t = 0; t < static_cast<int>(s.size()); ++t) {
          const double w = std::exp(s[t] - mx);
          l += w;
          for (int j = 0; j < d; ++j) {
            o[j] += w * (t < visible ? vdec[(slot0 + t) * d + j]
                                     : tq::half_to_float(vw[(w0 + t - visible) * d + j]));
          }
        }
        const float* got = &out[((static_cast<std::size_t>(b) * nq + i) * qheads + qh) * d];
        for (int j = 0; j < d; ++j) {
          const double ref = l > 0 ? o[j] / l : 0.0;
          if (!std::isfinite(got[j])) ++nonfinite;
          err2 += (got[j] - ref) * (got[j] - ref);
          ref2 += ref * ref;
        }
      }
    }
  }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-300));
  EXPECT_EQ(nonfinite, 0);
  EXPECT_LT(rel, 1e-3) << "d=" << d << " kbits=" << c.k.bits << " vbits=" << c.v.bits << " G=" << G
                       << " len0=" << c.lengths[0] << " nq=" << nq;
  std::printf("[ rel err ] d=%d k=%s%.1f v=%s%.1f G=%d nq=%d len0=%d path=%s: %.2e\n", d,
              tq::to_string(c.k.kind).c_str(), c.k.bits, tq::to_string(c.v.kind).c_str(), c.v.bits,
              G, nq, c.lengths[0],
              c.fp16 ? "fp16" : (c.path == tc::AttentionPath::Generic ? "generic" : "auto"), rel);
}

constexpr tc::AttentionPath kTensorCore = tc::AttentionPath::TensorCore;
constexpr tc::AttentionPath kGeneric = tc::AttentionPath::Generic;
constexpr tc::AttentionPath kAuto = tc::AttentionPath::Auto;

TEST(CudaAttention, TensorCoreFourBitAcrossLengthsAndGroups) {
  REQUIRE_GPU();
  std::uint64_t seed = 1000;
  for (int G : {1, 4, 8}) {
    for (int len : {1, 7, 1000, 65537}) {
      const int kv_heads = len > 60000 ? 1 : 2;
      check_attention(mse_case(128, 4, 4, seed, {2, kv_heads, G, 1}, {len, std::max(1, len / 3)},
                               {}, kTensorCore),
                      seed);
      seed += 10;
    }
  }
  // Dense (haar) rotations: query preparation and inverse rotation by matrix inside the kernel.
  check_attention(
      mse_case(128, 4, 4, seed, {1, 2, 4, 1}, {5000}, {}, kTensorCore, tq::RotationKind::Haar),
      seed);
  seed += 10;
  for (int d : {64, 256}) {
    check_attention(mse_case(d, 4, 4, seed, {1, 2, 4, 1}, {3001}, {}, kTensorCore), seed);
    seed += 10;
  }
}

// The other tensor-core pairs (tq3.5, k4v3, tq3, tq2.5, tq2): bit streams that are not word
// aligned, two segments with their own codebooks, mixed key / value widths.
TEST(CudaAttention, TensorCoreFractionalAndLowBits) {
  REQUIRE_GPU();
  std::uint64_t seed = 5000;
  const std::pair<double, double> pairs[] = {{3.5, 3.5}, {4, 3}, {3, 3}, {2.5, 2.5}, {2, 2}};
  for (const auto& [kb, vb] : pairs) {
    ASSERT_TRUE(tc::tensor_core_path_supports(spec(128, kb, CodecKind::Mse, 1),
                                              spec(128, vb, CodecKind::Mse, 2)));
    for (int G : {1, 4, 8}) {
      for (int len : {1, 7, 1000, 65537}) {
        const int kv_heads = len > 60000 ? 1 : 2;
        check_attention(mse_case(128, kb, vb, seed, {2, kv_heads, G, 1},
                                 {len, std::max(1, len / 3)}, {}, kTensorCore),
                        seed);
        seed += 10;
      }
    }
    for (int d : {64, 256}) {
      check_attention(mse_case(d, kb, vb, seed, {1, 2, 4, 1}, {3001}, {}, kTensorCore), seed);
      seed += 10;
    }
  }
  // Haar rotations, the exact window (separate merge kernel: checks the value-dim mapping of
  // the partials) and multi-query on the split widths.
  check_attention(
      mse_case(128, 3.5, 3.5, 91, {1, 2, 4, 1}, {5000}, {}, kTensorCore, tq::RotationKind::Haar),
      93);
  check_attention(mse_case(128, 4, 3, 94, {2, 2, 4, 1}, {1000, 37}, {64, 5}, kTensorCore), 96);
  check_attention(mse_case(64, 2.5, 2.5, 97, {2, 3, 3, 5}, {2000, 9}, {}, kTensorCore), 99);
}

TEST(CudaAttention, GenericPathAllBitWidths) {
  REQUIRE_GPU();
  std::uint64_t seed = 2000;
  for (double bits : {2.0, 3.0, 4.0, 3.5, 2.5, 8.0}) {
    for (int len : {7, 1000}) {
      check_attention(
          mse_case(128, bits, bits, seed, {2, 2, 4, 1}, {len, len / 2 + 1}, {}, kGeneric), seed);
      seed += 10;
    }
  }
  // Mixed bits, prod keys / values, other head dims, long sequence and GQA 8.
  check_attention(with_prod_keys(mse_case(128, 4, 3, 1, {1, 2, 4, 1}, {1000}, {}, kGeneric)), 11);
  check_attention(with_prod_values(mse_case(128, 3, 4, 3, {1, 2, 8, 1}, {777}, {}, kGeneric)), 12);
  check_attention(mse_case(64, 3.5, 2.5, 5, {2, 3, 3, 1}, {1, 500}, {}, kGeneric), 13);
  check_attention(mse_case(256, 2, 3, 7, {1, 1, 1, 1}, {65537}, {}, kGeneric), 14);
  check_attention(mse_case(128, 3, 3, 9, {1, 1, 8, 1}, {65537}, {}, kAuto), 15);
}

TEST(CudaAttention, ExactWindowAndMultiQuery) {
  REQUIRE_GPU();
  check_attention(mse_case(128, 4, 4, 21, {2, 2, 4, 1}, {1000, 37}, {64, 5}, kAuto), 31);
  check_attention(mse_case(128, 3, 3, 23, {2, 2, 4, 1}, {0, 300}, {17, 0}, kAuto), 32);
  // The tensor-core kernel folds windows of up to 1024 tokens into its fused merge (d = 64 /
  // 128 / 256, GQA 1 and 8, a dense Π, the 1024 limit itself); 1500 tokens take the merge
  // kernel.
  struct WindowCase {
    int d, group;
    double bits;
    tq::RotationKind rot;
    std::vector<int> lengths, windows;
  };
  const WindowCase window_cases[] = {
      {128, 4, 4, tq::RotationKind::Hadamard, {20000, 3000}, {128, 128}},
      {64, 8, 3.5, tq::RotationKind::Hadamard, {5000, 1}, {128, 40}},
      {256, 1, 2.5, tq::RotationKind::Hadamard, {777, 4096}, {9, 128}},
      {128, 4, 3.5, tq::RotationKind::Haar, {3000}, {100}},
      {128, 4, 4, tq::RotationKind::Hadamard, {4000, 50}, {1024, 1000}},
      {128, 4, 4, tq::RotationKind::Hadamard, {4000, 50}, {1500, 3}},
  };
  std::uint64_t wseed = 300;
  for (const WindowCase& w : window_cases) {
    const Shape shape{static_cast<int>(w.lengths.size()), 2, w.group, 1};
    check_attention(
        mse_case(w.d, w.bits, w.bits, wseed, shape, w.lengths, w.windows, kTensorCore, w.rot),
        wseed + 2);
    wseed += 10;
  }
  // Multi-query (prefill chunk / speculative verification): 5 queries, causal over the last 5.
  check_attention(mse_case(128, 4, 4, 25, {2, 2, 4, 5}, {2000, 9}, {}, kTensorCore), 33);
  check_attention(mse_case(64, 3, 2, 27, {1, 3, 3, 3}, {700}, {}, kGeneric), 34);
}

TEST(CudaAttention, Fp16BaselineKernel) {
  REQUIRE_GPU();
  for (int d : {64, 128, 256}) {
    for (int G : {1, 4, 8}) {
      ACase c = mse_case(d, 4, 4, 1, {2, 2, G, 1}, {G == 8 ? 65537 : 1000, 7}, {}, kAuto);
      c.fp16 = true;
      check_attention(c, 40 + G + d);
    }
  }
}

TEST(CudaAttention, RejectsBadShapes) {
  REQUIRE_GPU();
  tc::DeviceCodec k(spec(128, 4, CodecKind::Mse, 1)), v(spec(128, 8, CodecKind::Mse, 2));
  tc::GpuKvCacheStorage store(k.layout(), v.layout(), 1, 2, 16);
  tc::AttentionWorkspace ws;
  DevBuf<float> q(3 * 128), o(3 * 128);
  DevBuf<int> len(1);
  tc::AttentionArgs a;
  a.q = q.p;
  a.out = o.p;
  a.batch = 1;
  a.q_heads = 3;  // not a multiple of kv_heads = 2
  a.lengths = len.p;
  EXPECT_THROW(tc::attention(k, v, store.cache(), a, ws), std::invalid_argument);
  a.q_heads = 2;
  a.path = tc::AttentionPath::TensorCore;  // 8-bit values are not on the tensor-core path
  EXPECT_THROW(tc::attention(k, v, store.cache(), a, ws), std::invalid_argument);
}

}  // namespace
