// IvfIndex: k-means coarse quantizer + one residual-coded FlatIndex per partition.
#include "turboquant/index/ivf_index.hpp"

#include "dot.hpp"
#include "index_file.hpp"
#include "kmeans.hpp"

#include <omp.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <utility>

namespace tq::index {
namespace {

inline constexpr char kIvfIndexMagic[9] = "TQVIVF01";
// The IVF version is its lists' flat-record version (2 records the rotation; 1 still loads).
inline constexpr std::uint32_t kIvfIndexVersion = kFlatIndexVersion;

double l2_sq(const float* a, const float* b, int d) {
  double s = 0.0;
  for (int j = 0; j < d; ++j) {
    const double t = static_cast<double>(a[j]) - b[j];
    s += t * t;
  }
  return s;
}

// Row-normalized copy for cosine (k-means and assignment work on unit vectors), else a copy.
std::vector<float> prepare(const float* x, std::size_t n, int d, Metric metric) {
  const auto du = static_cast<std::size_t>(d);
  std::vector<float> v(x, x + n * du);
  if (metric != Metric::Cosine) return v;
  for (std::size_t i = 0; i < n; ++i) {
    float* r = v.data() + i * du;
    const double nn = std::sqrt(dot(r, r, d));
    if (nn > 0.0) {
      for (int j = 0; j < d; ++j) r[j] = static_cast<float>(r[j] / nn);
    }
  }
  return v;
}

FlatIndexOptions list_options(const FlatIndexOptions& flat) {
  FlatIndexOptions o = flat;
  o.center = true;  // each list codes x − centroid
  o.threads = 1;    // IvfIndex parallelizes over queries
  return o;
}

}  // namespace

IvfIndex::IvfIndex(const IvfIndexOptions& options) : options_(options) {
  if (options_.nlist < 1) {
    throw std::invalid_argument("IvfIndex: nlist " + std::to_string(options_.nlist) +
                                " (expected >= 1)");
  }
  if (options_.kmeans_iters < 1) {
    throw std::invalid_argument("IvfIndex: kmeans_iters " + std::to_string(options_.kmeans_iters) +
                                " (expected >= 1)");
  }
  set_nprobe(options_.nprobe);
  FlatIndex probe(list_options(options_.flat));  // validates dim / bits / kind / fast scan
  (void)probe;
}

void IvfIndex::set_nprobe(int nprobe) {
  if (nprobe < 1 || nprobe > options_.nlist) {
    throw std::invalid_argument("IvfIndex: nprobe " + std::to_string(nprobe) + " (expected 1.." +
                                std::to_string(options_.nlist) + ")");
  }
  options_.nprobe = nprobe;
}

void IvfIndex::set_threads(int threads) {
  options_.flat.threads = threads;
}

std::size_t IvfIndex::bytes_per_vector() const {
  return FlatIndex(list_options(options_.flat)).bytes_per_vector();
}

void IvfIndex::train(const float* x, std::size_t n) {
  if (trained()) throw std::logic_error("IvfIndex::train: already trained");
  const int d = dim();
  const auto du = static_cast<std::size_t>(d);
  const auto k = static_cast<std::size_t>(options_.nlist);
  if (x == nullptr || n < k) {
    throw std::invalid_argument("IvfIndex::train: " + std::to_string(n) +
                                " training vectors (expected >= nlist = " + std::to_string(k) +
                                ")");
  }
  std::mt19937_64 rng(options_.flat.seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<std::size_t> rows(n);
  std::iota(rows.begin(), rows.end(), std::size_t{0});
  std::shuffle(rows.begin(), rows.end(), rng);
  rows.resize(std::min(n, std::max(options_.max_train, k)));
  std::vector<float> t(rows.size() * du);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::copy_n(x + rows[i] * du, du, t.data() + i * du);
  }
  t = prepare(t.data(), rows.size(), d, options_.flat.metric);
  centroids_ = kmeans(t.data(), rows.size(), d, k, options_.kmeans_iters, rng());
  lists_.clear();
  for (std::size_t j = 0; j < k; ++j) {
    lists_.emplace_back(list_options(options_.flat));
    lists_.back().set_mean(centroids_.data() + j * du);
  }
}

void IvfIndex::add(const float* x, std::size_t n, const std::int64_t* ids) {
  if (n == 0) return;
  if (!trained()) throw std::logic_error("IvfIndex::add: train() first");
  if (x == nullptr) throw std::invalid_argument("IvfIndex::add: null vectors for n > 0");
  const int d = dim();
  const auto du = static_cast<std::size_t>(d);
  std::vector<std::int64_t> id(n);
  for (std::size_t i = 0; i < n; ++i) {
    id[i] = ids ? ids[i] : next_id_ + static_cast<std::int64_t>(i);
    if (id[i] < 0) {
      throw std::invalid_argument("IvfIndex::add: id " + std::to_string(id[i]) +
                                  " is negative (expected >= 0)");
    }
    if (list_of_.count(id[i])) {
      throw std::invalid_argument("IvfIndex::add: id " + std::to_string(id[i]) +
                                  " is already in the index");
    }
  }
  {
    std::vector<std::int64_t> sorted = id;
    std::sort(sorted.begin(), sorted.end());
    const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end()) {
      throw std::invalid_argument("IvfIndex::add: id " + std::to_string(*dup) +
                                  " appears twice in the batch");
    }
  }
  const std::vector<float> v = prepare(x, n, d, options_.flat.metric);
  std::vector<int> assign(n);
  assign_nearest(v.data(), n, centroids_.data(), lists_.size(), d, assign.data());
  std::vector<std::vector<std::size_t>> members(lists_.size());
  for (std::size_t i = 0; i < n; ++i) members[static_cast<std::size_t>(assign[i])].push_back(i);
  for (std::size_t j = 0; j < lists_.size(); ++j) {
    if (members[j].empty()) continue;
    std::vector<float> rows(members[j].size() * du);
    std::vector<std::int64_t> rid(members[j].size());
    for (std::size_t q = 0; q < members[j].size(); ++q) {
      std::copy_n(x + members[j][q] * du, du, rows.data() + q * du);
      rid[q] = id[members[j][q]];
    }
    lists_[j].add(rows.data(), members[j].size(), rid.data());
    for (const std::int64_t r : rid) list_of_.emplace(r, static_cast<int>(j));
  }
  for (const std::int64_t r : id) next_id_ = std::max(next_id_, r + 1);
}

std::size_t IvfIndex::remove(const std::int64_t* ids, std::size_t n) {
  std::size_t removed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto it = list_of_.find(ids[i]);
    if (it == list_of_.end()) continue;
    removed += lists_[static_cast<std::size_t>(it->second)].remove(&ids[i], 1);
    list_of_.erase(it);
  }
  return removed;
}

std::vector<int> IvfIndex::probe_lists(const float* query) const {
  const int d = dim();
  const Metric metric = options_.flat.metric;
  std::vector<std::pair<double, int>> s(static_cast<std::size_t>(options_.nlist));
  for (int j = 0; j < options_.nlist; ++j) {
    const float* c = centroids_.data() + static_cast<std::size_t>(j) * d;
    // Lower is better: −q·c for inner product / cosine, ‖q − c‖² for L2.
    s[static_cast<std::size_t>(j)] = {metric == Metric::L2 ? l2_sq(query, c, d) : -dot(query, c, d),
                                      j};
  }
  const auto np = static_cast<std::size_t>(options_.nprobe);
  std::partial_sort(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(np), s.end());
  std::vector<int> out(np);
  for (std::size_t i = 0; i < np; ++i) out[i] = s[i].second;
  return out;
}

SearchResult IvfIndex::search(const float* queries, std::size_t n_queries, int k) const {
  if (k < 1 || k > 1000) {
    throw std::invalid_argument("IvfIndex::search: k " + std::to_string(k) + " (expected 1..1000)");
  }
  if (n_queries > 0 && queries == nullptr) {
    throw std::invalid_argument("IvfIndex::search: null queries for n_queries > 0");
  }
  if (!trained()) throw std::logic_error("IvfIndex::search: train() first");
  const int d = dim();
  const auto du = static_cast<std::size_t>(d);
  const auto ku = static_cast<std::size_t>(k);
  const bool lower_better = options_.flat.metric == Metric::L2;
  SearchResult res;
  res.n_queries = n_queries;
  res.k = k;
  res.distances.assign(n_queries * ku, lower_better ? std::numeric_limits<float>::infinity()
                                                    : -std::numeric_limits<float>::infinity());
  res.ids.assign(n_queries * ku, -1);
  const std::vector<float> q = prepare(queries, n_queries, d, options_.flat.metric);
  const int threads = options_.flat.threads > 0 ? options_.flat.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (std::ptrdiff_t qi = 0; qi < static_cast<std::ptrdiff_t>(n_queries); ++qi) {
    const auto qu = static_cast<std::size_t>(qi);
    const float* query = queries + qu * du;
    std::vector<std::pair<float, std::int64_t>> cand;
    for (const int j : probe_lists(q.data() + qu * du)) {
      const FlatIndex& list = lists_[static_cast<std::size_t>(j)];
      if (list.size() == 0) continue;
      const SearchResult r = list.search(query, 1, k);
      for (std::size_t i = 0; i < ku; ++i) {
        if (r.ids[i] >= 0) cand.emplace_back(r.distances[i], r.ids[i]);
      }
    }
    const std::size_t m = std::min(ku, cand.size());
    std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(m), cand.end(),
                      [&](const auto& a, const auto& b) {
                        if (a.first != b.first)
                          return lower_better ? a.first < b.first : a.first > b.first;
                        return a.second < b.second;
                      });
    for (std::size_t i = 0; i < m; ++i) {
      res.distances[qu * ku + i] = cand[i].first;
      res.ids[qu * ku + i] = cand[i].second;
    }
  }
  return res;
}

void IvfIndex::save(const std::string& path) const {
  if (!trained()) throw std::logic_error("IvfIndex::save: train() first");
  FileWriter w;
  w.put_u32(static_cast<std::uint32_t>(options_.nlist));
  w.put_u32(static_cast<std::uint32_t>(options_.nprobe));
  w.put_u32(static_cast<std::uint32_t>(options_.kmeans_iters));
  w.put_u64(options_.max_train);
  w.put_u64(static_cast<std::uint64_t>(next_id_));
  w.put_array(centroids_);
  for (const FlatIndex& list : lists_) list.write(w);
  w.write_file(path, kIvfIndexMagic, kIvfIndexVersion);
}

IvfIndex IvfIndex::load(const std::string& path) {
  FileReader r(path, kIvfIndexMagic, 1, kIvfIndexVersion);
  IvfIndexOptions o;
  o.nlist = static_cast<int>(r.get_u32());
  o.nprobe = static_cast<int>(r.get_u32());
  o.kmeans_iters = static_cast<int>(r.get_u32());
  o.max_train = r.get_u64();
  const auto next_id = static_cast<std::int64_t>(r.get_u64());
  if (o.nlist < 1 || o.nlist > (1 << 24)) r.fail("nlist " + std::to_string(o.nlist));
  std::vector<FlatIndex> lists;
  std::vector<float> centroids;
  // The centroid array's length needs dim, which the first list carries: read raw, check later.
  const std::uint64_t nc = r.peek_u64();
  const std::uint64_t nlu = static_cast<std::uint64_t>(o.nlist);
  if (nc % nlu != 0)
    r.fail("centroids: " + std::to_string(nc) + " floats for nlist " + std::to_string(o.nlist));
  r.get_array(centroids, nc, "centroids");
  for (int j = 0; j < o.nlist; ++j) lists.push_back(FlatIndex::read(r));
  r.finish();
  o.flat = lists.front().options();
  o.flat.threads = 0;
  if (nc != nlu * static_cast<std::uint64_t>(o.flat.dim)) {
    r.fail("centroids: " + std::to_string(nc) + " floats, expected nlist x dim = " +
           std::to_string(nlu * static_cast<std::uint64_t>(o.flat.dim)));
  }
  IvfIndex idx = [&] {
    try {
      return IvfIndex(o);
    } catch (const std::exception& e) {
      r.fail(std::string("bad index options: ") + e.what());
    }
  }();
  idx.centroids_ = std::move(centroids);
  idx.next_id_ = next_id;
  for (int j = 0; j < o.nlist; ++j) {
    const FlatIndexOptions& lo = lists[static_cast<std::size_t>(j)].options();
    if (lo.dim != o.flat.dim || lo.bits != o.flat.bits || lo.metric != o.flat.metric ||
        lo.seed != o.flat.seed || lo.rotation != o.flat.rotation || !lo.center) {
      r.fail("list " + std::to_string(j) + " options differ from list 0's");
    }
    for (const std::int64_t id : lists[static_cast<std::size_t>(j)].ids()) {
      if (!idx.list_of_.emplace(id, j).second) r.fail("duplicate id " + std::to_string(id));
    }
  }
  idx.lists_ = std::move(lists);
  return idx;
}

}  // namespace tq::index
