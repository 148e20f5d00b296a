// turboquant._core.LayerKvCache: one layer's compressed KV cache of one sequence
// (tq::LayerKvCache, include/turboquant/cache/kv_cache.hpp) over caller-owned DLPack arrays.
// append() takes float32 keys and values [n, kv_heads, head_dim]; attend_into() writes the
// attention of n float32 queries [n, q_heads, head_dim] over what the cache holds into an output
// array the caller allocated (NumPy in python/turboquant/cache.py, torch in torch_ops.py), causal
// from the position the caller gives. Calls release the GIL; a per-cache mutex keeps two Python
// threads from appending to (or reading) one cache at the same time, which the C++ class does not
// guard against. Shape errors name the function, the argument, what was expected and what came.
#include "array_args.hpp"
#include "bindings.hpp"

#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cache/kv_scheme.hpp"

#include <nanobind/stl/string.h>

#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

namespace tq::python {
namespace {

constexpr auto kF32 = nb::dtype<float>();

KvSide parse_side(const std::string& side) {
  if (side == "k" || side == "key") return KvSide::Key;
  if (side == "v" || side == "value") return KvSide::Value;
  throw std::invalid_argument("side '" + side + "' is unknown; expected 'key' or 'value'");
}

std::string format_name(const KvScheme& scheme, const KvSideSpec& side) {
  if (side.format == KvFormat::Fp16) return "fp16";
  if (side.format == KvFormat::TurboQuant) return "turboquant";
  std::string base = scheme.name.substr(0, scheme.name.find(':'));
  if (side.rotated && !base.empty() && base.back() == 'r') base.pop_back();
  return base;
}

// The C++ cache plus the lock that serialises calls on it once the GIL is released.
class PyLayerKvCache {
 public:
  PyLayerKvCache(const std::string& scheme, int layer, int n_layers, int q_heads, int kv_heads,
                 int head_dim)
      : cache_(parse_kv_scheme(scheme),
               LayerKvShape{layer, n_layers, q_heads, kv_heads, head_dim}) {}

  const LayerKvCache& cache() const { return cache_; }

  void append(const InArray& k, const InArray& v) {
    const char* where = "LayerKvCache.append";
    const LayerKvShape& s = cache_.shape();
    const std::size_t n = check_array(k, where, "keys", {kF32}, {"n", s.n_kv_heads, s.head_dim})[0];
    const std::size_t nv =
        check_array(v, where, "values", {kF32}, {"n", s.n_kv_heads, s.head_dim})[0];
    if (n != nv) {
      throw std::invalid_argument(std::string(where) + ": keys hold " + std::to_string(n) +
                                  " tokens but values hold " + std::to_string(nv) +
                                  "; append the same tokens' keys and values together");
    }
    const auto* kp = static_cast<const float*>(k.data());
    const auto* vp = static_cast<const float*>(v.data());
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.append(kp, vp, n);
  }

  void attend_into(const InArray& q, const OutArray& out, std::int64_t first_position, float scale,
                   int threads) {
    const char* where = "LayerKvCache.attend";
    const LayerKvShape& s = cache_.shape();
    const std::size_t n =
        check_array(q, where, "queries", {kF32}, {"n", s.n_q_heads, s.head_dim})[0];
    check_array(out, where, "out", {kF32}, {static_cast<std::int64_t>(n), s.n_q_heads, s.head_dim});
    if (n == 0) throw std::invalid_argument(std::string(where) + ": needs at least 1 query, got 0");
    if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      throw std::invalid_argument(std::string(where) + ": " + std::to_string(n) +
                                  " queries are more than one call takes");
    }
    if (threads < 0) {
      throw std::invalid_argument(std::string(where) + ": threads must be >= 0 (0: all), got " +
                                  std::to_string(threads));
    }
    if (!(scale >= 0.0f) || scale == std::numeric_limits<float>::infinity()) {
      throw std::invalid_argument(std::string(where) + ": scale must be finite and >= 0 " +
                                  "(0: 1/sqrt(head_dim)), got " + std::to_string(scale));
    }
    const auto* qp = static_cast<const float*>(q.data());
    auto* op = static_cast<float*>(out.data());
    if (static_cast<const void*>(qp) == static_cast<const void*>(op)) {
      throw std::invalid_argument(std::string(where) + ": out must not be the queries' array");
    }
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t held = cache_.size();
    // Default (-1): the queries are the last n tokens the cache holds (append, then attend).
    if (first_position < 0) {
      if (first_position != -1) {
        throw std::invalid_argument(std::string(where) + ": first_position must be >= 0, got " +
                                    std::to_string(first_position));
      }
      if (n > held) {
        throw std::invalid_argument(std::string(where) + ": " + std::to_string(n) +
                                    " queries need as many tokens in the cache, which holds " +
                                    std::to_string(held) + " (append the chunk before attending)");
      }
      first_position = static_cast<std::int64_t>(held - n);
    }
    AttentionOptions options;
    options.scale = scale;
    options.threads = threads;
    cache_.attend(qp, static_cast<int>(n), static_cast<std::size_t>(first_position), op, options);
  }

  void decode_into(const std::string& side, int kv_head, std::size_t first, const OutArray& out) {
    const char* where = "LayerKvCache.decode";
    const LayerKvShape& s = cache_.shape();
    const std::size_t count = check_array(out, where, "out", {kF32}, {"n", s.head_dim})[0];
    const KvSide which = parse_side(side);
    auto* op = static_cast<float*>(out.data());
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.decode(which, kv_head, first, count, op);
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.clear();
  }

  void reserve(std::size_t tokens) {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.reserve(tokens);
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.size();
  }
  std::size_t compressed_size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.compressed_size();
  }
  std::size_t bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.bytes();
  }
  std::size_t capacity_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.capacity_bytes();
  }

 private:
  LayerKvCache cache_;
  std::mutex mutex_;
};

}  // namespace

void bind_cache(nb::module_& m) {
  nb::class_<PyLayerKvCache>(m, "LayerKvCache",
                             "tq::LayerKvCache (include/turboquant/cache/kv_cache.hpp) on DLPack "
                             "arrays; use turboquant.LayerKvCache")
      .def(nb::init<const std::string&, int, int, int, int, int>(), nb::arg("scheme"),
           nb::arg("layer"), nb::arg("n_layers"), nb::arg("q_heads"), nb::arg("kv_heads"),
           nb::arg("head_dim"))
      .def("append", &PyLayerKvCache::append, nb::arg("keys"), nb::arg("values"))
      .def("attend_into", &PyLayerKvCache::attend_into, nb::arg("queries"), nb::arg("out"),
           nb::arg("first_position") = -1, nb::arg("scale") = 0.0f, nb::arg("threads") = 0)
      .def("decode_into", &PyLayerKvCache::decode_into, nb::arg("side"), nb::arg("kv_head"),
           nb::arg("first"), nb::arg("out"))
      .def("clear", &PyLayerKvCache::clear)
      .def("reserve", &PyLayerKvCache::reserve, nb::arg("tokens"))
      .def_prop_ro("size", &PyLayerKvCache::size)
      .def_prop_ro("compressed_size", &PyLayerKvCache::compressed_size)
      .def_prop_ro("bytes", &PyLayerKvCache::bytes)
      .def_prop_ro("capacity_bytes", &PyLayerKvCache::capacity_bytes)
      .def_prop_ro("scheme", [](const PyLayerKvCache& c) { return c.cache().scheme().name; })
      .def_prop_ro("layer", [](const PyLayerKvCache& c) { return c.cache().shape().layer; })
      .def_prop_ro("n_layers", [](const PyLayerKvCache& c) { return c.cache().shape().n_layers; })
      .def_prop_ro("q_heads", [](const PyLayerKvCache& c) { return c.cache().shape().n_q_heads; })
      .def_prop_ro("kv_heads", [](const PyLayerKvCache& c) { return c.cache().shape().n_kv_heads; })
      .def_prop_ro("head_dim", [](const PyLayerKvCache& c) { return c.cache().shape().head_dim; })
      .def_prop_ro("window", [](const PyLayerKvCache& c) { return c.cache().window(); })
      .def_prop_ro("is_protected", [](const PyLayerKvCache& c) { return c.cache().is_protected(); })
      .def(
          "side_format",
          [](const PyLayerKvCache& c, const std::string& side) {
            const LayerKvCache& cache = c.cache();
            return format_name(cache.scheme(), cache.side_spec(parse_side(side)));
          },
          nb::arg("side"));
}

}  // namespace tq::python
