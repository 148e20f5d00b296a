// FlatIndex: exhaustive nearest-neighbour search over TurboQuant codes (issue 15).
// Vectors are encoded with tq::Codec the moment they are added (data-oblivious: no training);
// a query is rotated once and scored against every code without decoding. Options:
//   centering        subtract a dataset mean μ before encoding (embeddings are not isotropic);
//                    IP and L2 distances add back the μ terms exactly, so only y = x − μ is coded
//   norm correction  the codec's per-vector norm rescale (CodecSpec::norm_correction)
//   fast scan        4-bit codes scored in blocks of 32 with quantized in-register tables
//   rerank           keep the exact float vectors and re-score the top `rerank` code candidates
// Metrics: inner product (higher is better), cosine (vectors and queries normalized, then IP),
// squared L2 (lower is better). Results are sorted best first; ids are the caller's int64 ids.
#pragma once

#include "turboquant/codec/codec.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tq::index {

class FileWriter;  // src/index/index_file.hpp
class FileReader;

enum class Metric { InnerProduct, Cosine, L2 };
Metric parse_metric(std::string_view name);  // "ip" | "cosine" | "l2"
std::string to_string(Metric metric);

struct FlatIndexOptions {
  int dim = 128;
  double bits = 4.0;
  CodecKind kind = CodecKind::Mse;
  std::uint64_t seed = 0;
  Metric metric = Metric::InnerProduct;
  bool center = false;           // subtract the mean of the first added batch (or set_mean)
  bool norm_correction = false;  // the codec's per-vector norm correction
  int rerank = 0;                // > 0: keep exact vectors, re-score this many top candidates
  int threads = 0;               // search threads; 0 = OpenMP default
  // Score with the 4-bit fast-scan kernel (fast_scan.hpp; mse codec at 4 bits only), then
  // re-score the best max(2k, rerank) candidates with the codec's float scores (or exactly).
  bool fast_scan = false;
  // The codec's rotation; unset = default_rotation(dim). The index's options() always hold the
  // resolved kind, and index files record it.
  std::optional<RotationKind> rotation;
};

// hadamard for d = 2^k, else overlap-hadamard: O(d log d) per vector where haar is a d×d
// product (bench/results/vector_search.md compares their recall and encode time).
RotationKind default_rotation(int dim);

struct SearchResult {
  std::size_t n_queries = 0;
  int k = 0;
  // n_queries × k, best first; rows with fewer than k hits are padded with id −1.
  std::vector<float> distances;
  std::vector<std::int64_t> ids;
};

class FlatIndex {
 public:
  explicit FlatIndex(const FlatIndexOptions& options);

  const FlatIndexOptions& options() const { return options_; }
  // Search threads (a search-time setting; 0 = OpenMP default).
  void set_threads(int threads) { options_.threads = threads; }
  const Codec& codec() const { return codec_; }
  std::size_t size() const { return ids_.size(); }
  int dim() const { return options_.dim; }
  // Bytes stored per vector: the codec's record (+ 4 for the exact squared norm used by L2,
  // + 4·dim for exact vectors when rerank is on), not counting the 8-byte id.
  std::size_t bytes_per_vector() const;
  const std::vector<float>& mean() const { return mean_; }
  const std::vector<std::int64_t>& ids() const { return ids_; }  // in storage order

  // Fixes the centering mean (only before the first add; needs options.center).
  void set_mean(const float* mean);
  // Adds n vectors (row-major n × dim). ids: n caller ids, or nullptr for 0, 1, 2, … in order
  // of addition. A duplicate id is an error.
  void add(const float* x, std::size_t n, const std::int64_t* ids = nullptr);
  // The same with the caller's row width checked: x holds rows of `dim` floats, and dim must be
  // the index's (a mismatch is std::invalid_argument naming both).
  void add(const std::vector<float>& x, int dim, const std::vector<std::int64_t>& ids = {});
  SearchResult search(const std::vector<float>& queries, int dim, int k) const;
  // Removes the listed ids; returns how many were present.
  std::size_t remove(const std::int64_t* ids, std::size_t n);
  // k nearest for each of n_queries queries (row-major n_queries × dim), 1 ≤ k ≤ 1000.
  SearchResult search(const float* queries, std::size_t n_queries, int k) const;

  void save(const std::string& path) const;
  static FlatIndex load(const std::string& path);
  // The index's fields into / out of an index file's payload (save/load; IvfIndex lists).
  void write(FileWriter& w) const;
  static FlatIndex read(FileReader& r);

 private:
  void search_one(const float* query, int k, float* dist, std::int64_t* ids,
                  std::vector<float>& scratch) const;
  ConstEncodedView view() const;
  void store_fast_scan(std::size_t first, std::size_t count);  // those slots' codes into blocks_

  FlatIndexOptions options_;
  Codec codec_;
  bool mean_fixed_ = false;
  std::vector<float> mean_;  // dim zeros when not centering
  // Token-major code records (the codec's separate arrays), swap-removed.
  std::vector<std::uint8_t> codes_, signs_;
  std::vector<half_bits> norms_, residual_norms_;
  std::vector<std::uint8_t> blocks_;  // fast-scan blocks of the codes (fast_scan only)
  std::vector<float> y_norm_sq_;      // exact ‖x − μ‖² (L2)
  std::vector<float> exact_;          // exact (normalized for cosine) vectors, rerank only
  std::vector<std::int64_t> ids_;
  std::unordered_map<std::int64_t, std::size_t> slot_of_;
  std::int64_t next_id_ = 0;
};

}  // namespace tq::index
