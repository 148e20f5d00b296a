// FlatIndex: add / remove / search / save / load over TurboQuant code records. The scoring is
// the codec's own score() (its SIMD kernels); this file owns the centering algebra, top-k
// selection, re-ranking and the file format (index_file.hpp).
#include "turboquant/index/flat_index.hpp"

#include "index/dot.hpp"
#include "index/index_file.hpp"
#include "turboquant/base/math.hpp"
#include "turboquant/codec/bitpack.hpp"
#include "turboquant/index/fast_scan.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <queue>
#include <stdexcept>
#include <utility>

#include <omp.h>

namespace tq::index {

Metric parse_metric(std::string_view name) {
  if (name == "ip") return Metric::InnerProduct;
  if (name == "cosine") return Metric::Cosine;
  if (name == "l2") return Metric::L2;
  throw std::invalid_argument("metric '" + std::string(name) + "': expected ip, cosine or l2");
}

std::string to_string(Metric metric) {
  switch (metric) {
    case Metric::InnerProduct:
      return "ip";
    case Metric::Cosine:
      return "cosine";
    case Metric::L2:
      return "l2";
  }
  return "?";
}

namespace {

constexpr int kMaxK = 1000;
// Scores are computed in chunks so the scratch stays in L2 whatever the index size.
constexpr std::size_t kChunk = 4096;

CodecSpec codec_spec(const FlatIndexOptions& o) {
  if (o.dim < 2) {
    throw std::invalid_argument("FlatIndex: dimension " + std::to_string(o.dim) +
                                " is too small (expected >= 2)");
  }
  if (o.rerank < 0) {
    throw std::invalid_argument("FlatIndex: rerank " + std::to_string(o.rerank) +
                                " is negative (expected >= 0)");
  }
  CodecSpec spec;
  spec.dim = o.dim;
  spec.bits = o.bits;
  spec.kind = o.kind;
  spec.seed = o.seed;
  spec.rotation = o.rotation.value_or(default_rotation(o.dim));
  spec.norm_correction = o.norm_correction;
  return spec;
}

// Min-heap of (score, slot) keeping the best `cap` (highest score).
using Hit = std::pair<float, std::size_t>;
using MinHeap = std::priority_queue<Hit, std::vector<Hit>, std::greater<Hit>>;

}  // namespace

RotationKind default_rotation(int dim) {
  return is_power_of_two(dim) ? RotationKind::Hadamard : RotationKind::OverlapHadamard;
}

FlatIndex::FlatIndex(const FlatIndexOptions& options)
    : options_(options), codec_(codec_spec(options)), mean_(options.dim, 0.0f) {
  options_.rotation = codec_.spec().rotation;
  const CodeLayout& L = codec_.layout();
  if (options.fast_scan && (options.kind != CodecKind::Mse || (L.hi_count > 0 && L.hi_bits != 4) ||
                            (L.lo_count() > 0 && L.lo_bits != 4))) {
    throw std::invalid_argument("FlatIndex: fast scan needs the mse codec at 4 bits, not " +
                                to_string(options.kind) + " at " + std::to_string(options.bits) +
                                " bits");
  }
}

void FlatIndex::store_fast_scan(std::size_t first, std::size_t count) {
  const CodeLayout& L = codec_.layout();
  const auto du = static_cast<std::size_t>(L.dim);
  const std::size_t end = first + count;
  std::vector<std::uint8_t> c(32 * du);
  auto unpack = [&](std::size_t slot, std::uint8_t* dst) {
    const std::uint8_t* rec = codes_.data() + slot * L.code_bytes;
    if (L.hi_count > 0) unpack_codes(rec, L.hi_count, L.hi_bits, dst);
    if (L.lo_count() > 0) unpack_codes(rec + L.hi_bytes, L.lo_count(), L.lo_bits, dst + L.hi_count);
  };
  // Whole blocks are written in one pass; the slots before the first and after the last block
  // boundary go one vector at a time into the bytes they share with their neighbours.
  std::size_t slot = first;
  for (; slot < end && (slot % 32 != 0 || end - slot < 32); ++slot) {
    unpack(slot, c.data());
    fast_scan_set(blocks_.data(), slot, L.dim, c.data());
  }
  const std::size_t bb = fast_scan_block_bytes(L.dim);
  for (; slot + 32 <= end; slot += 32) {
    for (std::size_t i = 0; i < 32; ++i) unpack(slot + i, c.data() + i * du);
    fast_scan_set_block(blocks_.data() + slot / 32 * bb, L.dim, c.data());
  }
  for (; slot < end; ++slot) {
    unpack(slot, c.data());
    fast_scan_set(blocks_.data(), slot, L.dim, c.data());
  }
}

std::size_t FlatIndex::bytes_per_vector() const {
  std::size_t b = codec_.layout().bytes_per_token();
  if (options_.metric == Metric::L2) b += 4;
  if (options_.rerank > 0) b += 4 * static_cast<std::size_t>(options_.dim);
  return b;
}

void FlatIndex::set_mean(const float* mean) {
  if (!options_.center) throw std::logic_error("FlatIndex::set_mean: centering is off");
  if (!ids_.empty()) throw std::logic_error("FlatIndex::set_mean: the index already has vectors");
  mean_.assign(mean, mean + options_.dim);
  mean_fixed_ = true;
}

ConstEncodedView FlatIndex::view() const {
  return ConstEncodedView(codes_.data(), signs_.empty() ? nullptr : signs_.data(), norms_.data(),
                          residual_norms_.empty() ? nullptr : residual_norms_.data());
}

void FlatIndex::add(const float* x, std::size_t n, const std::int64_t* ids) {
  if (n == 0) return;
  if (x == nullptr) throw std::invalid_argument("FlatIndex::add: null vectors for n > 0");
  const int d = options_.dim;
  const auto du = static_cast<std::size_t>(d);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t id = ids ? ids[i] : next_id_ + static_cast<std::int64_t>(i);
    if (id < 0) {
      throw std::invalid_argument("FlatIndex::add: id " + std::to_string(id) +
                                  " is negative (expected >= 0)");
    }
    if (slot_of_.count(id)) {
      throw std::invalid_argument("FlatIndex::add: id " + std::to_string(id) +
                                  " is already in the index");
    }
  }
  // Cosine works on unit vectors; IP / L2 on the raw ones.
  const bool cosine = options_.metric == Metric::Cosine;
  auto prepare_row = [&](const float* src, float* dst) {
    std::copy(src, src + du, dst);
    if (!cosine) return;
    const double nn = std::sqrt(dot(dst, dst, d));
    if (nn > 0.0) {
      for (std::size_t j = 0; j < du; ++j) dst[j] = static_cast<float>(dst[j] / nn);
    }
  };
  if (options_.center && !mean_fixed_) {
    std::vector<double> m(du, 0.0);
    std::vector<float> row(du);
    for (std::size_t i = 0; i < n; ++i) {
      prepare_row(x + i * du, row.data());
      for (std::size_t j = 0; j < du; ++j) m[j] += row[j];
    }
    for (std::size_t j = 0; j < du; ++j) mean_[j] = static_cast<float>(m[j] / n);
    mean_fixed_ = true;
  }
  const std::size_t first = ids_.size();
  const CodeLayout& L = codec_.layout();
  codes_.resize((first + n) * L.code_bytes);
  signs_.resize((first + n) * L.sign_bytes);
  norms_.resize(first + n);
  if (L.has_residual_norm) residual_norms_.resize(first + n);
  y_norm_sq_.resize(first + n);
  if (options_.rerank > 0) exact_.resize((first + n) * du);
  EncodedView all;
  all.codes = codes_.data();
  all.signs = L.sign_bytes ? signs_.data() : nullptr;
  all.norms = norms_.data();
  all.residual_norms = L.has_residual_norm ? residual_norms_.data() : nullptr;
  // Chunks of rows in parallel threads, each through a small buffer it reuses: prepare, keep the
  // exact copy (re-rank), subtract μ, ‖y‖², encode (the codec's own threading is nested, so off).
  constexpr std::size_t kAddChunk = 256;
  const auto chunks = static_cast<std::ptrdiff_t>((n + kAddChunk - 1) / kAddChunk);
#pragma omp parallel if (chunks > 1)
  {
    std::vector<float> y(std::min(n, kAddChunk) * du);
#pragma omp for schedule(static)
    for (std::ptrdiff_t c = 0; c < chunks; ++c) {
      const std::size_t r0 = static_cast<std::size_t>(c) * kAddChunk;
      const std::size_t m = std::min(kAddChunk, n - r0);
      for (std::size_t i = 0; i < m; ++i) {
        float* r = y.data() + i * du;
        prepare_row(x + (r0 + i) * du, r);
        if (options_.rerank > 0) std::copy(r, r + du, exact_.data() + (first + r0 + i) * du);
        for (std::size_t j = 0; j < du; ++j) r[j] -= mean_[j];
        y_norm_sq_[first + r0 + i] = static_cast<float>(dot(r, r, d));
      }
      codec_.encode_batch(y.data(), m, all.offset(first + r0, L));
    }
  }
  if (options_.fast_scan) {
    blocks_.resize((first + n + 31) / 32 * fast_scan_block_bytes(options_.dim), 0);
    store_fast_scan(first, n);
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t id = ids ? ids[i] : next_id_ + static_cast<std::int64_t>(i);
    slot_of_[id] = first + i;
    ids_.push_back(id);
  }
  if (!ids) next_id_ += static_cast<std::int64_t>(n);
  for (std::size_t i = 0; i < n && ids; ++i) next_id_ = std::max(next_id_, ids[i] + 1);
}

std::size_t FlatIndex::remove(const std::int64_t* ids, std::size_t n) {
  const CodeLayout& L = codec_.layout();
  const auto du = static_cast<std::size_t>(options_.dim);
  std::size_t removed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto it = slot_of_.find(ids[i]);
    if (it == slot_of_.end()) continue;
    const std::size_t slot = it->second;
    const std::size_t last = ids_.size() - 1;
    slot_of_.erase(it);
    // Swap the last record into the hole: O(record) per removal, order is not part of the API.
    if (slot != last) {
      std::memcpy(&codes_[slot * L.code_bytes], &codes_[last * L.code_bytes], L.code_bytes);
      if (L.sign_bytes) {
        std::memcpy(&signs_[slot * L.sign_bytes], &signs_[last * L.sign_bytes], L.sign_bytes);
      }
      norms_[slot] = norms_[last];
      if (L.has_residual_norm) residual_norms_[slot] = residual_norms_[last];
      y_norm_sq_[slot] = y_norm_sq_[last];
      if (!exact_.empty()) {
        std::memcpy(&exact_[slot * du], &exact_[last * du], du * sizeof(float));
      }
      ids_[slot] = ids_[last];
      slot_of_[ids_[slot]] = slot;
      if (options_.fast_scan) store_fast_scan(slot, 1);
    }
    if (options_.fast_scan) blocks_.resize((last + 31) / 32 * fast_scan_block_bytes(options_.dim));
    codes_.resize(last * L.code_bytes);
    signs_.resize(last * L.sign_bytes);
    norms_.resize(last);
    if (L.has_residual_norm) residual_norms_.resize(last);
    y_norm_sq_.resize(last);
    if (!exact_.empty()) exact_.resize(last * du);
    ids_.resize(last);
    ++removed;
  }
  return removed;
}

void FlatIndex::search_one(const float* query, int k, float* dist, std::int64_t* out_ids,
                           std::vector<float>& scratch) const {
  const int d = options_.dim;
  const auto du = static_cast<std::size_t>(d);
  const std::size_t n = ids_.size();
  std::vector<float> q(query, query + du);
  if (options_.metric == Metric::Cosine) {
    const double nn = std::sqrt(dot(q.data(), q.data(), d));
    if (nn > 0.0) {
      for (float& v : q) v = static_cast<float>(v / nn);
    }
  }
  // IP / cosine: ⟨q, x⟩ = ⟨q, μ⟩ + ⟨q, y⟩. L2: ‖q − x‖² = ‖q − μ‖² − 2⟨q − μ, y⟩ + ‖y‖².
  std::vector<float> qc = q;
  double q_mu = 0.0, qc_sq = 0.0;
  const bool l2 = options_.metric == Metric::L2;
  if (l2) {
    for (std::size_t j = 0; j < du; ++j) qc[j] -= mean_[j];
    qc_sq = dot(qc.data(), qc.data(), d);
  } else {
    q_mu = dot(q.data(), mean_.data(), d);
  }
  const PreparedQuery pq = codec_.prepare_query(qc.data());
  std::size_t cap = std::max<std::size_t>(k, options_.rerank > 0 ? options_.rerank : 0);
  if (options_.fast_scan) cap = std::max<std::size_t>(cap, 2 * static_cast<std::size_t>(k));
  MinHeap heap;
  scratch.resize(kChunk);
  const ConstEncodedView all = view();
  const CodeLayout& L = codec_.layout();
  auto offer = [&](float s, std::size_t slot) {
    if (heap.size() < cap) {
      heap.emplace(s, slot);
    } else if (s > heap.top().first) {
      heap.pop();
      heap.emplace(s, slot);
    }
  };
  if (options_.fast_scan) {
    // Table lut[j][c] = (Πq)_j · centroid_c of coordinate j's segment; a score is n · Σ_j.
    std::vector<float> lut(du * 16, 0.0f);
    for (int j = 0; j < d; ++j) {
      const std::vector<float>& cent =
          j < L.hi_count ? codec_.centroids_hi() : codec_.centroids_lo();
      for (std::size_t c = 0; c < cent.size() && c < 16; ++c)
        lut[j * 16 + c] = pq.rotated[j] * cent[c];
    }
    const QuantizedLut qlut = quantize_lut(lut.data(), d);
    const std::size_t bb = fast_scan_block_bytes(d);
    std::vector<std::uint16_t> sums(kChunk);
    for (std::size_t start = 0; start < n; start += kChunk) {
      const std::size_t m = std::min(kChunk, n - start);
      fast_scan(blocks_.data() + start / 32 * bb, (m + 31) / 32, qlut, sums.data());
      for (std::size_t t = 0; t < m; ++t) {
        const float ip = half_to_float(norms_[start + t]) * (qlut.bias + qlut.scale * sums[t]);
        offer(l2 ? 2.0f * ip - y_norm_sq_[start + t] : ip, start + t);
      }
    }
  } else {
    for (std::size_t start = 0; start < n; start += kChunk) {
      const std::size_t m = std::min(kChunk, n - start);
      codec_.score(pq, all.offset(start, L), m, scratch.data());
      for (std::size_t t = 0; t < m; ++t) {
        // Higher is better for the heap: L2 ranks by 2⟨q−μ, y⟩ − ‖y‖².
        offer(l2 ? 2.0f * scratch[t] - y_norm_sq_[start + t] : scratch[t], start + t);
      }
    }
  }
  std::vector<Hit> hits;
  hits.reserve(heap.size());
  while (!heap.empty()) {
    hits.push_back(heap.top());
    heap.pop();
  }
  if (options_.rerank > 0) {
    // Exact re-score of the candidates (exact_ holds x, normalized for cosine).
    for (Hit& h : hits) {
      const float* x = exact_.data() + h.second * du;
      if (l2) {
        double s = 0.0;
        for (std::size_t j = 0; j < du; ++j) {
          const double e = static_cast<double>(q[j]) - x[j];
          s += e * e;
        }
        h.first = static_cast<float>(-s);
      } else {
        h.first = static_cast<float>(dot(q.data(), x, d));
      }
    }
  } else {
    if (options_.fast_scan) {
      // Replace the quantized-table scores of the candidates by the codec's float scores.
      for (Hit& h : hits) {
        float s = 0.0f;
        codec_.score(pq, all.offset(h.second, L), 1, &s);
        h.first = l2 ? 2.0f * s - y_norm_sq_[h.second] : s;
      }
    }
    for (Hit& h : hits) {
      h.first = l2 ? static_cast<float>(h.first - qc_sq) : static_cast<float>(h.first + q_mu);
    }
  }
  std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (int i = 0; i < k; ++i) {
    if (static_cast<std::size_t>(i) < hits.size()) {
      // L2 distances are reported as ‖q − x‖² (positive); scores stay as they are.
      dist[i] = l2 ? -hits[i].first : hits[i].first;
      out_ids[i] = ids_[hits[i].second];
    } else {
      dist[i] = l2 ? INFINITY : -INFINITY;
      out_ids[i] = -1;
    }
  }
}

SearchResult FlatIndex::search(const float* queries, std::size_t n_queries, int k) const {
  if (k <= 0 || k > kMaxK) {
    throw std::invalid_argument("FlatIndex::search: k = " + std::to_string(k) +
                                " (expected 1 <= k <= " + std::to_string(kMaxK) + ")");
  }
  if (ids_.empty()) throw std::invalid_argument("FlatIndex::search: the index is empty");
  if (n_queries > 0 && queries == nullptr) {
    throw std::invalid_argument("FlatIndex::search: null queries for n_queries > 0");
  }
  SearchResult r;
  r.n_queries = n_queries;
  r.k = k;
  r.distances.resize(n_queries * static_cast<std::size_t>(k));
  r.ids.resize(n_queries * static_cast<std::size_t>(k));
  const int threads = options_.threads > 0 ? options_.threads : omp_get_max_threads();
  const auto du = static_cast<std::size_t>(options_.dim);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
    for (std::size_t i = 0; i < n_queries; ++i) {
      search_one(queries + i * du, k, r.distances.data() + i * k, r.ids.data() + i * k, scratch);
    }
  }
  return r;
}

namespace {
std::size_t checked_rows(std::size_t size, int dim, int expected, const char* what) {
  if (dim != expected) {
    throw std::invalid_argument(std::string(what) + ": vectors of dimension " +
                                std::to_string(dim) + ", the index has dimension " +
                                std::to_string(expected));
  }
  if (dim <= 0 || size % static_cast<std::size_t>(dim) != 0) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(size) +
                                " floats are not whole rows of " + std::to_string(dim));
  }
  return size / static_cast<std::size_t>(dim);
}
}  // namespace

void FlatIndex::add(const std::vector<float>& x, int dim, const std::vector<std::int64_t>& ids) {
  const std::size_t n = checked_rows(x.size(), dim, options_.dim, "FlatIndex::add");
  if (!ids.empty() && ids.size() != n) {
    throw std::invalid_argument("FlatIndex::add: " + std::to_string(ids.size()) + " ids for " +
                                std::to_string(n) + " vectors");
  }
  add(x.data(), n, ids.empty() ? nullptr : ids.data());
}

SearchResult FlatIndex::search(const std::vector<float>& queries, int dim, int k) const {
  const std::size_t n = checked_rows(queries.size(), dim, options_.dim, "FlatIndex::search");
  return search(queries.data(), n, k);
}

// ---- file format -------------------------------------------------------------------------

void FlatIndex::save(const std::string& path) const {
  FileWriter w;
  write(w);
  w.write_file(path, kFlatIndexMagic, kFlatIndexVersion);
}

FlatIndex FlatIndex::load(const std::string& path) {
  FileReader r(path, kFlatIndexMagic, 1, kFlatIndexVersion);
  FlatIndex idx = read(r);
  r.finish();
  return idx;
}

void FlatIndex::write(FileWriter& w) const {
  w.put_u32(static_cast<std::uint32_t>(options_.dim));
  w.put_f64(options_.bits);
  w.put_u32(options_.kind == CodecKind::Prod ? 1u : 0u);
  w.put_u64(options_.seed);
  w.put_u32(static_cast<std::uint32_t>(options_.metric));
  w.put_u32(options_.center ? 1u : 0u);
  w.put_u32(options_.norm_correction ? 1u : 0u);
  w.put_u32(static_cast<std::uint32_t>(options_.rerank));
  w.put_u32(options_.fast_scan ? 1u : 0u);
  w.put_u32(static_cast<std::uint32_t>(*options_.rotation));
  w.put_u32(mean_fixed_ ? 1u : 0u);
  w.put_u64(static_cast<std::uint64_t>(next_id_));
  w.put_u64(ids_.size());
  w.put_array(mean_);
  w.put_array(codes_);
  w.put_array(signs_);
  w.put_array(norms_);
  w.put_array(residual_norms_);
  w.put_array(y_norm_sq_);
  w.put_array(exact_);
  w.put_array(ids_);
}

FlatIndex FlatIndex::read(FileReader& r) {
  FlatIndexOptions o;
  o.dim = static_cast<int>(r.get_u32());
  o.bits = r.get_f64();
  const std::uint32_t kind = r.get_u32();
  if (kind > 1) r.fail("codec kind " + std::to_string(kind) + " (expected 0 or 1)");
  o.kind = kind ? CodecKind::Prod : CodecKind::Mse;
  o.seed = r.get_u64();
  const std::uint32_t metric = r.get_u32();
  if (metric > 2) r.fail("metric " + std::to_string(metric) + " (expected 0..2)");
  o.metric = static_cast<Metric>(metric);
  o.center = r.get_u32() != 0;
  o.norm_correction = r.get_u32() != 0;
  o.rerank = static_cast<int>(r.get_u32());
  o.fast_scan = r.get_u32() != 0;
  if (r.version() >= 2) {
    const std::uint32_t rot = r.get_u32();
    if (rot > 2) r.fail("rotation kind " + std::to_string(rot) + " (expected 0..2)");
    o.rotation = static_cast<RotationKind>(rot);
  } else {
    // Version 1 had no field: hadamard for d = 2^k, haar otherwise.
    o.rotation = is_power_of_two(o.dim) ? RotationKind::Hadamard : RotationKind::Haar;
  }
  FlatIndex idx = [&] {
    try {
      return FlatIndex(o);
    } catch (const std::exception& e) {
      r.fail(std::string("bad index options: ") + e.what());
    }
  }();
  idx.mean_fixed_ = r.get_u32() != 0;
  idx.next_id_ = static_cast<std::int64_t>(r.get_u64());
  const std::uint64_t n = r.get_u64();
  const CodeLayout& L = idx.codec_.layout();
  const auto du = static_cast<std::uint64_t>(o.dim);
  r.get_array(idx.mean_, du, "mean");
  r.get_array(idx.codes_, n * L.code_bytes, "codes");
  r.get_array(idx.signs_, n * L.sign_bytes, "signs");
  r.get_array(idx.norms_, n, "norms");
  r.get_array(idx.residual_norms_, L.has_residual_norm ? n : 0, "residual norms");
  r.get_array(idx.y_norm_sq_, n, "squared norms");
  r.get_array(idx.exact_, o.rerank > 0 ? n * du : 0, "exact vectors");
  r.get_array(idx.ids_, n, "ids");
  if (o.fast_scan) {
    idx.blocks_.assign((n + 31) / 32 * fast_scan_block_bytes(o.dim), 0);
    idx.store_fast_scan(0, n);
  }
  for (std::size_t i = 0; i < idx.ids_.size(); ++i) {
    if (!idx.slot_of_.emplace(idx.ids_[i], i).second) {
      r.fail("duplicate id " + std::to_string(idx.ids_[i]));
    }
  }
  return idx;
}

}  // namespace tq::index
