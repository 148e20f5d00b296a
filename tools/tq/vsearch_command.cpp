// `tq vsearch build|search|bench`: vector search over TurboQuant codes (tq::index::FlatIndex)
// on .fvecs / .npy files. build encodes a data set into one index file (progress on stderr);
// search writes the k nearest ids (and distances) of each query as .npy; bench builds in
// memory, brute-forces the exact ground truth and reports recall@1/10/100, queries/s at the
// given thread counts, bytes per vector and encode time. export writes one GGUF tensor
// (e.g. token_embd.weight) dequantized to float32 .npy, for scripts/vsearch_data.py.
#include "command_registry.hpp"
#include "turboquant/index/flat_index.hpp"
#include "turboquant/index/ivf_index.hpp"
#include "turboquant/index/vector_file.hpp"
#include "turboquant/model/gguf.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace tq::cli {
namespace {

using index::FlatIndex;
using index::FlatIndexOptions;
using index::IvfIndex;
using index::IvfIndexOptions;
using index::SearchResult;
using index::VectorSet;

struct IndexArgs {
  double bits = 4.0;
  std::string kind = "mse";
  std::string metric = "ip";
  std::string rotation;  // empty: the index's default for the dimension
  bool center = false, norm_correction = false, fast_scan = false;
  int rerank = 0;
  std::uint64_t seed = 0;
  int ivf = 0;                 // > 0: IvfIndex with this many lists (bench)
  std::vector<int> nprobe{8};  // lists probed (one bench row each)
};

struct VsearchOptions {
  IndexArgs index;
  std::string data, queries, out, index_path, distances_out, model, tensor = "token_embd.weight";
  int k = 10;
  std::vector<int> threads{1, 2};
  std::size_t batch = 16384;
  bool json = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

FlatIndexOptions index_options(const IndexArgs& a, int dim) {
  FlatIndexOptions o;
  o.dim = dim;
  o.bits = a.bits;
  o.kind = parse_codec_kind(a.kind);
  o.metric = index::parse_metric(a.metric);
  o.center = a.center;
  o.norm_correction = a.norm_correction;
  o.fast_scan = a.fast_scan;
  o.rerank = a.rerank;
  o.seed = a.seed;
  if (!a.rotation.empty()) o.rotation = parse_rotation_kind(a.rotation);
  return o;
}

// Adds the data in batches, printing progress to stderr for long builds.
FlatIndex build_index(const VsearchOptions& o, const VectorSet& data, double& encode_s) {
  FlatIndex idx(index_options(o.index, data.dim));
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t start = 0; start < data.rows; start += o.batch) {
    const std::size_t n = std::min(o.batch, data.rows - start);
    idx.add(data.data.data() + start * data.dim, n);
    if (data.rows > o.batch) {
      std::fprintf(stderr, "\rencoded %zu / %zu", start + n, data.rows);
    }
  }
  if (data.rows > o.batch) std::fprintf(stderr, "\n");
  encode_s = seconds_since(t0);
  return idx;
}

void run_build(const VsearchOptions& o) {
  const VectorSet data = index::read_vectors(o.data);
  double encode_s = 0.0;
  const FlatIndex idx = build_index(o, data, encode_s);
  idx.save(o.out);
  std::printf("indexed %zu vectors of dimension %d in %.3f s (%zu bytes/vector) -> %s\n", data.rows,
              data.dim, encode_s, idx.bytes_per_vector(), o.out.c_str());
}

void run_search(const VsearchOptions& o) {
  FlatIndex idx = FlatIndex::load(o.index_path);
  const VectorSet q = index::read_vectors(o.queries);
  const auto t0 = std::chrono::steady_clock::now();
  const SearchResult r = idx.search(q.data, q.dim, o.k);
  const double s = seconds_since(t0);
  index::write_npy_i64(o.out, r.ids.data(), r.n_queries, r.k);
  if (!o.distances_out.empty()) {
    index::write_npy_f32(o.distances_out, r.distances.data(), r.n_queries, r.k);
  }
  std::printf("%zu queries, k = %d, %.1f queries/s -> %s\n", q.rows, o.k, q.rows / s,
              o.out.c_str());
}

// Exact top-k ids by brute force (double-precision scores).
std::vector<std::int64_t> ground_truth(const VectorSet& x, const VectorSet& q, int k,
                                       index::Metric m) {
  const int d = x.dim;
  std::vector<double> xn(x.rows, 1.0);
  if (m == index::Metric::Cosine) {
    for (std::size_t i = 0; i < x.rows; ++i) {
      double s = 0.0;
      for (int j = 0; j < d; ++j) s += double(x.data[i * d + j]) * x.data[i * d + j];
      xn[i] = s > 0.0 ? std::sqrt(s) : 1.0;
    }
  }
  std::vector<std::int64_t> out(q.rows * static_cast<std::size_t>(k));
#pragma omp parallel for schedule(dynamic, 4)
  for (std::size_t i = 0; i < q.rows; ++i) {
    std::vector<double> s(x.rows);
    const float* qi = q.data.data() + i * d;
    for (std::size_t t = 0; t < x.rows; ++t) {
      const float* xt = x.data.data() + t * d;
      double v = 0.0;
      if (m == index::Metric::L2) {
        for (int j = 0; j < d; ++j) v -= (double(qi[j]) - xt[j]) * (double(qi[j]) - xt[j]);
      } else {
        for (int j = 0; j < d; ++j) v += double(qi[j]) * xt[j];
        v /= xn[t];
      }
      s[t] = v;
    }
    std::vector<std::int64_t> idx(x.rows);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](std::int64_t a, std::int64_t b) { return s[a] > s[b]; });
    std::copy(idx.begin(), idx.begin() + k, out.begin() + i * k);
  }
  return out;
}

double recall_at(const SearchResult& r, const std::vector<std::int64_t>& truth, int k_truth,
                 int at) {
  double hit = 0.0;
  for (std::size_t i = 0; i < r.n_queries; ++i) {
    const std::set<std::int64_t> t(truth.begin() + i * k_truth, truth.begin() + i * k_truth + at);
    for (int j = 0; j < at; ++j) hit += t.count(r.ids[i * r.k + j]);
  }
  return hit / (static_cast<double>(r.n_queries) * at);
}

// The fields every bench row carries: the data, the index's settings, its size and encode time.
nlohmann::json bench_row(const VsearchOptions& o, const VectorSet& data, const VectorSet& q,
                         bool center, RotationKind rotation, std::size_t bytes_per_vector,
                         double encode_s) {
  return {{"data", o.data},
          {"n", data.rows},
          {"dim", data.dim},
          {"queries", q.rows},
          {"bits", o.index.bits},
          {"kind", o.index.kind},
          {"metric", o.index.metric},
          {"center", center},
          {"norm_correction", o.index.norm_correction},
          {"fast_scan", o.index.fast_scan},
          {"rotation", to_string(rotation)},
          {"rerank", o.index.rerank},
          {"bytes_per_vector", bytes_per_vector},
          {"encode_s", encode_s},
          {"encode_s_per_million", encode_s * 1e6 / data.rows}};
}

// IVF bench: k-means on (a sample of) the data, add in batches; one JSON row per nprobe.
void run_bench_ivf(const VsearchOptions& o, const VectorSet& data, const VectorSet& q) {
  IvfIndexOptions io;
  io.flat = index_options(o.index, data.dim);
  io.nlist = o.index.ivf;
  io.nprobe = 1;
  IvfIndex idx(io);
  const auto t0 = std::chrono::steady_clock::now();
  idx.train(data.data.data(), data.rows);
  const double train_s = seconds_since(t0);
  for (std::size_t start = 0; start < data.rows; start += o.batch) {
    idx.add(data.data.data() + start * data.dim, std::min(o.batch, data.rows - start));
  }
  const double encode_s = seconds_since(t0);
  const int k = std::max(o.k, 100);
  const auto truth = ground_truth(data, q, 100, io.flat.metric);
  for (const int np : o.index.nprobe) {
    idx.set_nprobe(np);
    nlohmann::json row = bench_row(o, data, q, /*center=*/true,
                                   io.flat.rotation.value_or(index::default_rotation(data.dim)),
                                   idx.bytes_per_vector(), encode_s);
    row["nlist"] = o.index.ivf;
    row["nprobe"] = np;
    row["train_s"] = train_s;
    SearchResult r;
    for (int t : o.threads) {
      idx.set_threads(t);
      const auto t1 = std::chrono::steady_clock::now();
      r = idx.search(q.data.data(), q.rows, k);
      row["qps_" + std::to_string(t) + "t"] = q.rows / seconds_since(t1);
    }
    for (int at : {1, 10, 100}) row["recall@" + std::to_string(at)] = recall_at(r, truth, 100, at);
    std::printf("%s\n", row.dump().c_str());
  }
}

void run_bench(const VsearchOptions& o) {
  const VectorSet data = index::read_vectors(o.data);
  const VectorSet q = index::read_vectors(o.queries);
  if (q.dim != data.dim) {
    throw std::invalid_argument("vsearch bench: queries have dimension " + std::to_string(q.dim) +
                                ", data " + std::to_string(data.dim));
  }
  if (o.index.ivf > 0) {
    run_bench_ivf(o, data, q);
    return;
  }
  const int k = std::max(o.k, 100);
  double encode_s = 0.0;
  FlatIndex idx = build_index(o, data, encode_s);
  const auto truth = ground_truth(data, q, 100, idx.options().metric);
  nlohmann::json row = bench_row(o, data, q, o.index.center, *idx.options().rotation,
                                 idx.bytes_per_vector(), encode_s);
  SearchResult r;
  for (int t : o.threads) {
    idx.set_threads(t);
    const auto t0 = std::chrono::steady_clock::now();
    r = idx.search(q.data, q.dim, k);
    row["qps_" + std::to_string(t) + "t"] = q.rows / seconds_since(t0);
  }
  for (int at : {1, 10, 100}) row["recall@" + std::to_string(at)] = recall_at(r, truth, 100, at);
  if (o.json) {
    std::cout << row.dump(2) << "\n";
  } else {
    std::printf("%s\n", row.dump().c_str());
  }
}

void run_export(const VsearchOptions& o) {
  const gguf::File file = gguf::File::open(o.model);
  const gguf::TensorInfo& t = file.tensor(o.tensor);
  const std::vector<float> v = file.dequantize(t);
  index::write_npy_f32(o.out, v.data(), t.n_rows(), t.row_length());
  std::printf("%s: %llu x %llu float32 -> %s\n", o.tensor.c_str(),
              static_cast<unsigned long long>(t.n_rows()),
              static_cast<unsigned long long>(t.row_length()), o.out.c_str());
}

void add_index_args(CLI::App* cmd, IndexArgs& a) {
  cmd->add_option("--bits,-b", a.bits, "Bits per coordinate (codec)");
  cmd->add_option("--kind", a.kind, "Codec: mse | prod");
  cmd->add_option("--metric", a.metric, "ip | cosine | l2");
  cmd->add_flag("--center", a.center, "Subtract the data mean before encoding");
  cmd->add_flag("--norm-correction", a.norm_correction, "Per-vector norm correction");
  cmd->add_flag("--fast-scan", a.fast_scan, "4-bit AVX2 fast scan (mse, 4 bits)");
  cmd->add_option("--rerank", a.rerank, "Keep exact vectors, re-rank this many candidates")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--seed", a.seed, "Rotation seed");
  cmd->add_option("--rotation", a.rotation,
                  "haar | hadamard | overlap-hadamard (default: hadamard for d = 2^k, else "
                  "overlap-hadamard)");
}

const CommandRegistrar registrar([](CLI::App& root) {
  auto o = std::make_shared<VsearchOptions>();
  CLI::App* vs = root.add_subcommand("vsearch", "Vector search over TurboQuant codes");
  vs->require_subcommand(1);

  CLI::App* build = vs->add_subcommand("build", "Encode a .fvecs/.npy data set into an index");
  build->add_option("--data,-d", o->data, "Vectors (.fvecs or .npy float32)")->required();
  build->add_option("--out,-o", o->out, "Index file to write")->required();
  build->add_option("--batch", o->batch, "Vectors per add() call")->check(CLI::Range(1, 1 << 26));
  add_index_args(build, o->index);
  build->callback([o] { run_build(*o); });

  CLI::App* search = vs->add_subcommand("search", "k nearest neighbours of each query");
  search->add_option("--index,-i", o->index_path, "Index file")->required();
  search->add_option("--queries,-q", o->queries, "Queries (.fvecs or .npy)")->required();
  search->add_option("-k", o->k, "Neighbours per query (1..1000)");
  search->add_option("--out,-o", o->out, "Ids as .npy int64 (queries × k)")->required();
  search->add_option("--distances", o->distances_out, "Distances as .npy float32");
  search->callback([o] { run_search(*o); });

  CLI::App* bench = vs->add_subcommand("bench", "Recall, queries/s, bytes and encode time");
  bench->add_option("--data,-d", o->data, "Vectors (.fvecs or .npy)")->required();
  bench->add_option("--queries,-q", o->queries, "Queries (.fvecs or .npy)")->required();
  bench->add_option("--threads", o->threads, "Thread counts to time")->delimiter(',');
  bench->add_option("--batch", o->batch, "Vectors per add() call")->check(CLI::Range(1, 1 << 26));
  bench->add_flag("--json", o->json, "Print JSON");
  bench->add_option("--ivf", o->index.ivf, "IvfIndex with this many k-means lists (0 = flat)")
      ->check(CLI::Range(0, 1 << 20));
  bench->add_option("--nprobe", o->index.nprobe, "Lists probed per query (one row each)")
      ->delimiter(',');
  add_index_args(bench, o->index);
  bench->callback([o] { run_bench(*o); });

  CLI::App* exp = vs->add_subcommand("export", "Write a GGUF tensor dequantized as .npy float32");
  exp->add_option("--model,-m", o->model, "GGUF file")->required();
  exp->add_option("--tensor", o->tensor, "Tensor name (default token_embd.weight)");
  exp->add_option("--out,-o", o->out, "Output .npy (rows x row length)")->required();
  exp->callback([o] { run_export(*o); });
});

}  // namespace
}  // namespace tq::cli
