// IvfIndex: inverted-file search over TurboQuant codes (issue 15). A k-means coarse quantizer
// (nlist centroids, trained once by train()) partitions the vectors; each partition is a
// FlatIndex whose centering mean is its centroid, so a list codes the residual x − c with the
// same codec, fast scan and rerank options as FlatIndex, and scores add back the c terms exactly.
// A query scores the centroids (by the index metric), searches the best nprobe lists and merges
// their top k. nprobe = nlist scores every vector, as a FlatIndex does.
#pragma once

#include "turboquant/index/flat_index.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace tq::index {

struct IvfIndexOptions {
  FlatIndexOptions flat;          // codec and scoring options of every list (center is forced on)
  int nlist = 64;                 // number of partitions, >= 1
  int nprobe = 8;                 // lists searched per query, 1..nlist (a search-time setting)
  int kmeans_iters = 10;          // Lloyd iterations
  std::size_t max_train = 65536;  // train() uses at most this many (random) training rows
};

class IvfIndex {
 public:
  explicit IvfIndex(const IvfIndexOptions& options);

  const IvfIndexOptions& options() const { return options_; }
  int dim() const { return options_.flat.dim; }
  int nlist() const { return options_.nlist; }
  void set_nprobe(int nprobe);
  void set_threads(int threads);
  bool trained() const { return !centroids_.empty(); }
  std::size_t size() const { return list_of_.size(); }
  std::size_t list_size(int list) const { return lists_.at(static_cast<std::size_t>(list)).size(); }
  const std::vector<float>& centroids() const { return centroids_; }  // nlist × dim
  std::size_t bytes_per_vector() const;

  // k-means on n training rows (n >= nlist); only once, before add.
  void train(const float* x, std::size_t n);
  // Adds n rows to their nearest (L2) centroid's list; ids as FlatIndex::add.
  void add(const float* x, std::size_t n, const std::int64_t* ids = nullptr);
  std::size_t remove(const std::int64_t* ids, std::size_t n);
  SearchResult search(const float* queries, std::size_t n_queries, int k) const;

  void save(const std::string& path) const;
  static IvfIndex load(const std::string& path);

 private:
  std::vector<int> probe_lists(const float* query) const;

  IvfIndexOptions options_;
  std::vector<float> centroids_;
  std::vector<FlatIndex> lists_;
  std::unordered_map<std::int64_t, int> list_of_;
  std::int64_t next_id_ = 0;
};

}  // namespace tq::index
