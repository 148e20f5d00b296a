// turboquant._core.Codec: tq::Codec over caller-owned arrays. Every method writes into arrays the
// caller allocated (the Python layer, python/turboquant/codec.py, allocates them with NumPy), so
// the same entry points later serve caches that come from torch's allocator. The encoded arrays
// are those of tq::EncodedView, token-major: codes [n, code_bytes] uint8, norms [n] fp16 bits
// (float16 or uint16), and for prod signs [n, sign_bytes] uint8 and residual_norms [n] fp16.
// Long calls release the GIL: they touch only the arrays, which the call keeps alive.
#include "array_args.hpp"
#include "bindings.hpp"

#include "turboquant/codec/codec.hpp"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace tq::python {
namespace {

constexpr auto kF32 = nb::dtype<float>();
constexpr auto kU8 = nb::dtype<std::uint8_t>();
constexpr auto kU16 = nb::dtype<std::uint16_t>();
constexpr nb::dlpack::dtype kF16{static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float), 16, 1};
// score_multi keeps [n_queries][count] partial sums; scoring queries in groups bounds that scratch.
constexpr int kQueryGroup = 16;

// The four token-major arrays of n encoded tokens, checked against the codec's layout.
template <typename Array, typename View>
View encoded_view(const Codec& codec, const char* where, const Array& codes,
                  const std::optional<Array>& signs, const Array& norms,
                  const std::optional<Array>& residual_norms, std::size_t& count) {
  const CodeLayout& L = codec.layout();
  const bool prod = codec.spec().kind == CodecKind::Prod;
  count =
      check_array(codes, where, "codes", {kU8}, {"n", static_cast<std::int64_t>(L.code_bytes)})[0];
  const auto n = static_cast<std::int64_t>(count);
  check_array(norms, where, "norms", {kF16, kU16}, {n});
  if (prod != signs.has_value() || prod != residual_norms.has_value()) {
    throw std::invalid_argument(std::string(where) + ": a " + to_string(codec.spec().kind) +
                                " codec " + (prod ? "needs" : "takes no") +
                                " signs and residual_norms (they are the prod codec's QJL part)");
  }
  View view;
  using Byte = std::remove_pointer_t<decltype(view.codes)>;
  using Half = std::remove_pointer_t<decltype(view.norms)>;
  view.codes = static_cast<Byte*>(codes.data());
  view.norms = static_cast<Half*>(norms.data());
  if (prod) {
    check_array(*signs, where, "signs", {kU8}, {n, static_cast<std::int64_t>(L.sign_bytes)});
    check_array(*residual_norms, where, "residual_norms", {kF16, kU16}, {n});
    view.signs = static_cast<Byte*>(signs->data());
    view.residual_norms = static_cast<Half*>(residual_norms->data());
  }
  return view;
}

Codec make_codec(int dim, double bits, const std::string& kind, const std::string& rotation,
                 std::uint64_t seed, bool norm_correction) {
  CodecSpec spec;
  spec.dim = dim;
  spec.bits = bits;
  spec.kind = parse_codec_kind(kind);
  spec.rotation = parse_rotation_kind(rotation);
  spec.seed = seed;
  spec.norm_correction = norm_correction;
  nb::gil_scoped_release release;  // codebooks and a Haar rotation take a while at large d
  return Codec(spec);
}

nb::dict layout_dict(const CodeLayout& L) {
  nb::dict d;
  d["dim"] = L.dim;
  d["hi_count"] = L.hi_count;
  d["hi_bits"] = L.hi_bits;
  d["lo_count"] = L.lo_count();
  d["lo_bits"] = L.lo_bits;
  d["hi_bytes"] = L.hi_bytes;
  d["lo_bytes"] = L.lo_bytes;
  d["code_bytes"] = L.code_bytes;
  d["sign_bytes"] = L.sign_bytes;
  d["has_residual_norm"] = L.has_residual_norm;
  d["bytes_per_token"] = L.bytes_per_token();
  d["bits_per_value"] = L.bits_per_value();
  return d;
}

void encode_into(const Codec& codec, const InArray& x, const OutArray& codes,
                 const std::optional<OutArray>& signs, const OutArray& norms,
                 const std::optional<OutArray>& residual_norms) {
  const char* where = "Codec.encode";
  const std::size_t n = check_array(x, where, "x", {kF32}, {"n", codec.dim()})[0];
  std::size_t count = 0;
  const EncodedView out =
      encoded_view<OutArray, EncodedView>(codec, where, codes, signs, norms, residual_norms, count);
  if (count != n) {
    throw std::invalid_argument(std::string(where) + ": x has " + std::to_string(n) +
                                " rows but the output arrays hold " + std::to_string(count));
  }
  nb::gil_scoped_release release;
  codec.encode(static_cast<const float*>(x.data()), n, out);
}

void decode_into(const Codec& codec, const InArray& codes, const std::optional<InArray>& signs,
                 const InArray& norms, const std::optional<InArray>& residual_norms,
                 const OutArray& out) {
  const char* where = "Codec.decode";
  std::size_t n = 0;
  const ConstEncodedView in =
      encoded_view<InArray, ConstEncodedView>(codec, where, codes, signs, norms, residual_norms, n);
  check_array(out, where, "out", {kF32}, {static_cast<std::int64_t>(n), codec.dim()});
  nb::gil_scoped_release release;
  codec.decode(in, n, static_cast<float*>(out.data()));
}

void prepare_query_into(const Codec& codec, const InArray& q, const OutArray& rotated,
                        const std::optional<OutArray>& sketch) {
  const char* where = "Codec.prepare_query";
  const int d = codec.dim();
  // One query may come as [dim]: the caller's array is read as it is, whatever its framework.
  const std::size_t m = q.ndim() == 1 ? (check_array(q, where, "q", {kF32}, {d}), 1)
                                      : check_array(q, where, "q", {kF32}, {"m", d})[0];
  const auto mm = static_cast<std::int64_t>(m);
  check_array(rotated, where, "rotated", {kF32}, {mm, d});
  const bool prod = codec.spec().kind == CodecKind::Prod;
  if (prod != sketch.has_value()) {
    throw std::invalid_argument(std::string(where) + ": the sketch output is " +
                                (prod ? "required for a prod codec" : "only for a prod codec"));
  }
  if (prod) check_array(*sketch, where, "sketch", {kF32}, {mm, d});
  const auto* qs = static_cast<const float*>(q.data());
  auto* rot = static_cast<float*>(rotated.data());
  float* sk = prod ? static_cast<float*>(sketch->data()) : nullptr;
  nb::gil_scoped_release release;
  for (std::size_t i = 0; i < m; ++i) {
    const PreparedQuery p = codec.prepare_query(qs + i * d);
    std::memcpy(rot + i * d, p.rotated.data(), sizeof(float) * d);
    if (prod) std::memcpy(sk + i * d, p.sketch.data(), sizeof(float) * d);
  }
}

void score_into(const Codec& codec, const InArray& rotated, const std::optional<InArray>& sketch,
                const InArray& codes, const std::optional<InArray>& signs, const InArray& norms,
                const std::optional<InArray>& residual_norms, const OutArray& out) {
  const char* where = "Codec.score";
  const int d = codec.dim();
  const std::size_t m = check_array(rotated, where, "prepared.rotated", {kF32}, {"m", d})[0];
  const auto mm = static_cast<std::int64_t>(m);
  const bool prod = codec.spec().kind == CodecKind::Prod;
  if (prod != sketch.has_value()) {
    throw std::invalid_argument(std::string(where) + ": a prepared query for a " +
                                to_string(codec.spec().kind) + " codec " +
                                (prod ? "needs" : "has no") + " sketch");
  }
  if (prod) check_array(*sketch, where, "prepared.sketch", {kF32}, {mm, d});
  std::size_t n = 0;
  const ConstEncodedView in =
      encoded_view<InArray, ConstEncodedView>(codec, where, codes, signs, norms, residual_norms, n);
  check_array(out, where, "out", {kF32}, {mm, static_cast<std::int64_t>(n)});
  const auto* rot = static_cast<const float*>(rotated.data());
  const float* sk = prod ? static_cast<const float*>(sketch->data()) : nullptr;
  auto* scores = static_cast<float*>(out.data());
  nb::gil_scoped_release release;
  std::vector<PreparedQuery> group;
  for (std::size_t first = 0; first < m; first += kQueryGroup) {
    const std::size_t g = std::min<std::size_t>(kQueryGroup, m - first);
    group.assign(g, PreparedQuery{});
    for (std::size_t i = 0; i < g; ++i) {
      const float* r = rot + (first + i) * d;
      group[i].rotated.assign(r, r + d);
      if (prod) group[i].sketch.assign(sk + (first + i) * d, sk + (first + i + 1) * d);
    }
    codec.score_multi(group.data(), static_cast<int>(g), in, n, scores + first * n);
  }
}

}  // namespace

void bind_codec(nb::module_& m) {
  nb::class_<Codec>(m, "Codec", "tq::Codec (include/turboquant/codec/codec.hpp) on DLPack arrays")
      .def(
          "__init__",
          [](Codec* self, int dim, double bits, const std::string& kind,
             const std::string& rotation, std::uint64_t seed, bool norm_correction) {
            new (self) Codec(make_codec(dim, bits, kind, rotation, seed, norm_correction));
          },
          nb::arg("dim"), nb::arg("bits"), nb::arg("kind") = "mse",
          nb::arg("rotation") = "hadamard", nb::arg("seed") = 0, nb::arg("norm_correction") = false)
      .def_prop_ro("dim", &Codec::dim)
      .def_prop_ro("bits", [](const Codec& c) { return c.spec().bits; })
      .def_prop_ro("kind", [](const Codec& c) { return to_string(c.spec().kind); })
      .def_prop_ro("rotation", [](const Codec& c) { return to_string(c.spec().rotation); })
      .def_prop_ro("seed", [](const Codec& c) { return c.spec().seed; })
      .def_prop_ro("norm_correction", [](const Codec& c) { return c.spec().norm_correction; })
      .def_prop_ro("simd",
                   [](const Codec& c) { return c.simd() == SimdLevel::Avx2 ? "avx2" : "scalar"; })
      .def_prop_ro("layout", [](const Codec& c) { return layout_dict(c.layout()); })
      .def("expected_unit_vector_mse", &Codec::expected_unit_vector_mse)
      .def("encode_into", &encode_into, nb::arg("x"), nb::arg("codes"), nb::arg("signs").none(),
           nb::arg("norms"), nb::arg("residual_norms").none())
      .def("decode_into", &decode_into, nb::arg("codes"), nb::arg("signs").none(), nb::arg("norms"),
           nb::arg("residual_norms").none(), nb::arg("out"))
      .def("prepare_query_into", &prepare_query_into, nb::arg("q"), nb::arg("rotated"),
           nb::arg("sketch").none())
      .def("score_into", &score_into, nb::arg("rotated"), nb::arg("sketch").none(),
           nb::arg("codes"), nb::arg("signs").none(), nb::arg("norms"),
           nb::arg("residual_norms").none(), nb::arg("out"));
}

}  // namespace tq::python
