// turboquant._core.FlatIndex / IvfIndex: vector search over TurboQuant codes (tq::index,
// include/turboquant/index/) on caller-owned DLPack arrays. add() takes float32 vectors [n, dim]
// and optional int64 ids [n]; search_into() writes the k best distances (float32) and ids (int64,
// −1 where fewer than k exist) of each query into [n_queries, k] arrays the caller allocated
// (python/turboquant/index.py allocates them with NumPy). Calls release the GIL; a per-index
// mutex serialises them, since adding while another thread searches is not safe in C++.
#include "array_args.hpp"
#include "bindings.hpp"

#include "turboquant/index/flat_index.hpp"
#include "turboquant/index/ivf_index.hpp"

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace tq::python {
namespace {

constexpr auto kF32 = nb::dtype<float>();
constexpr auto kI64 = nb::dtype<std::int64_t>();

index::FlatIndexOptions flat_options(int dim, double bits, const std::string& kind,
                                     std::uint64_t seed, const std::string& metric, bool center,
                                     bool norm_correction, int rerank, bool fast_scan,
                                     int threads) {
  if (dim <= 0) throw std::invalid_argument("dim must be >= 1, got " + std::to_string(dim));
  if (rerank < 0) {
    throw std::invalid_argument("rerank must be >= 0 (0: off), got " + std::to_string(rerank));
  }
  if (threads < 0) {
    throw std::invalid_argument("threads must be >= 0 (0: all), got " + std::to_string(threads));
  }
  index::FlatIndexOptions o;
  o.dim = dim;
  o.bits = bits;
  o.kind = parse_codec_kind(kind);
  o.seed = seed;
  o.metric = index::parse_metric(metric);
  o.center = center;
  o.norm_correction = norm_correction;
  o.rerank = rerank;
  o.fast_scan = fast_scan;
  o.threads = threads;
  return o;
}

// What both index kinds share: checked add / search / remove / save over one C++ index.
template <typename Index>
class PyIndex {
 public:
  explicit PyIndex(Index index) : index_(std::move(index)) {}

  void add(const InArray& x, const std::optional<InArray>& ids, const char* where) {
    const std::size_t n = check_array(x, where, "x", {kF32}, {"n", index_.dim()})[0];
    const std::int64_t* id = nullptr;
    if (ids) {
      check_array(*ids, where, "ids", {kI64}, {static_cast<std::int64_t>(n)});
      id = static_cast<const std::int64_t*>(ids->data());
    }
    const auto* xp = static_cast<const float*>(x.data());
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    index_.add(xp, n, id);
  }

  void search_into(const InArray& q, int k, const OutArray& distances, const OutArray& ids,
                   const char* where) {
    const std::size_t n = check_array(q, where, "queries", {kF32}, {"n", index_.dim()})[0];
    const auto nq = static_cast<std::int64_t>(n);
    check_array(distances, where, "distances", {kF32}, {nq, k});
    check_array(ids, where, "ids", {kI64}, {nq, k});
    const auto* qp = static_cast<const float*>(q.data());
    auto* dp = static_cast<float*>(distances.data());
    auto* ip = static_cast<std::int64_t*>(ids.data());
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    const index::SearchResult r = index_.search(qp, n, k);
    std::copy(r.distances.begin(), r.distances.end(), dp);
    std::copy(r.ids.begin(), r.ids.end(), ip);
  }

  std::size_t remove(const InArray& ids, const char* where) {
    const std::size_t n = check_array(ids, where, "ids", {kI64}, {"n"})[0];
    const auto* ip = static_cast<const std::int64_t*>(ids.data());
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return index_.remove(ip, n);
  }

  void save(const std::string& path) {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    index_.save(path);
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return index_.size();
  }

  Index& index() { return index_; }
  std::mutex& mutex() { return mutex_; }

 private:
  Index index_;
  std::mutex mutex_;
};

using PyFlat = PyIndex<index::FlatIndex>;
using PyIvf = PyIndex<index::IvfIndex>;

// A file that is not a sound index is bad input (ValueError in Python), not a runtime failure.
template <typename Index>
Index load_index(const std::string& path) {
  nb::gil_scoped_release release;
  try {
    return Index::load(path);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
}

// The flat (codec and scoring) options of either index kind.
const index::FlatIndexOptions& flat_of(const index::FlatIndex& i) {
  return i.options();
}
const index::FlatIndexOptions& flat_of(const index::IvfIndex& i) {
  return i.options().flat;
}

// The methods and properties both index classes share; `name` starts their error messages.
template <typename Index>
void bind_shared(nb::class_<PyIndex<Index>>& c, const std::string& name) {
  using Py = PyIndex<Index>;
  c.def_static(
       "load", [](const std::string& path) { return new Py(load_index<Index>(path)); },
       nb::arg("path"))
      .def(
          "add",
          [where = name + ".add"](Py& s, const InArray& x, const std::optional<InArray>& ids) {
            s.add(x, ids, where.c_str());
          },
          nb::arg("x"), nb::arg("ids") = nb::none())
      .def(
          "search_into",
          [where = name + ".search"](Py& s, const InArray& q, int k, const OutArray& d,
                                     const OutArray& i) {
            s.search_into(q, k, d, i, where.c_str());
          },
          nb::arg("queries"), nb::arg("k"), nb::arg("distances"), nb::arg("ids"))
      .def(
          "remove",
          [where = name + ".remove"](Py& s, const InArray& ids) {
            return s.remove(ids, where.c_str());
          },
          nb::arg("ids"))
      .def("save", &Py::save, nb::arg("path"))
      .def_prop_ro("size", &Py::size)
      .def_prop_ro("dim", [](Py& s) { return s.index().dim(); })
      .def_prop_ro("bytes_per_vector", [](Py& s) { return s.index().bytes_per_vector(); })
      .def_prop_ro("bits", [](Py& s) { return flat_of(s.index()).bits; })
      .def_prop_ro("metric", [](Py& s) { return index::to_string(flat_of(s.index()).metric); })
      .def_prop_rw(
          "threads", [](Py& s) { return flat_of(s.index()).threads; },
          [](Py& s, int threads) {
            if (threads < 0) {
              throw std::invalid_argument("threads must be >= 0 (0: all), got " +
                                          std::to_string(threads));
            }
            std::lock_guard<std::mutex> lock(s.mutex());
            s.index().set_threads(threads);
          });
}

}  // namespace

void bind_index(nb::module_& m) {
  nb::class_<PyFlat> flat(
      m, "FlatIndex",
      "tq::index::FlatIndex (include/turboquant/index/flat_index.hpp) on DLPack "
      "arrays; use turboquant.FlatIndex");
  flat.def(
      "__init__",
      [](PyFlat* self, int dim, double bits, const std::string& kind, std::uint64_t seed,
         const std::string& metric, bool center, bool norm_correction, int rerank, bool fast_scan,
         int threads) {
        new (self) PyFlat(index::FlatIndex(flat_options(
            dim, bits, kind, seed, metric, center, norm_correction, rerank, fast_scan, threads)));
      },
      nb::arg("dim"), nb::arg("bits"), nb::arg("kind"), nb::arg("seed"), nb::arg("metric"),
      nb::arg("center"), nb::arg("norm_correction"), nb::arg("rerank"), nb::arg("fast_scan"),
      nb::arg("threads"));
  bind_shared(flat, "FlatIndex");

  nb::class_<PyIvf> ivf(m, "IvfIndex",
                        "tq::index::IvfIndex (include/turboquant/index/ivf_index.hpp) on DLPack "
                        "arrays; use turboquant.IvfIndex");
  ivf.def(
         "__init__",
         [](PyIvf* self, int dim, int nlist, int nprobe, double bits, const std::string& kind,
            std::uint64_t seed, const std::string& metric, bool norm_correction, int rerank,
            bool fast_scan, int threads, int kmeans_iters, std::size_t max_train) {
           index::IvfIndexOptions o;
           o.flat = flat_options(dim, bits, kind, seed, metric, true, norm_correction, rerank,
                                 fast_scan, threads);
           o.nlist = nlist;
           o.nprobe = nprobe;
           o.kmeans_iters = kmeans_iters;
           o.max_train = max_train;
           new (self) PyIvf(index::IvfIndex(o));
         },
         nb::arg("dim"), nb::arg("nlist"), nb::arg("nprobe"), nb::arg("bits"), nb::arg("kind"),
         nb::arg("seed"), nb::arg("metric"), nb::arg("norm_correction"), nb::arg("rerank"),
         nb::arg("fast_scan"), nb::arg("threads"), nb::arg("kmeans_iters"), nb::arg("max_train"))
      .def(
          "train",
          [](PyIvf& s, const InArray& x) {
            const std::size_t n =
                check_array(x, "IvfIndex.train", "x", {kF32}, {"n", s.index().dim()})[0];
            const auto* xp = static_cast<const float*>(x.data());
            nb::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(s.mutex());
            s.index().train(xp, n);
          },
          nb::arg("x"))
      .def_prop_ro("nlist", [](PyIvf& s) { return s.index().nlist(); })
      .def_prop_ro("trained", [](PyIvf& s) { return s.index().trained(); })
      .def_prop_rw(
          "nprobe", [](PyIvf& s) { return s.index().options().nprobe; },
          [](PyIvf& s, int nprobe) {
            std::lock_guard<std::mutex> lock(s.mutex());
            s.index().set_nprobe(nprobe);
          });
  bind_shared(ivf, "IvfIndex");
}

}  // namespace tq::python
