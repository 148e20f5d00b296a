// FlatIndex: recall and score error on Gaussian data against the codec's distortion
// prediction, centering algebra, remove, re-rank, save -> load identity, and the errors of bad
// arguments and bad files.
#include "turboquant/index/flat_index.hpp"

#include "index/index_file.hpp"
#include "thrown_message.hpp"
#include "turboquant/base/hash.hpp"
#include "turboquant/base/random.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace tq::index {
namespace {

using tq::tests::thrown_message;

std::vector<float> gaussian(std::size_t n, int d, std::uint64_t seed, float offset = 0.0f) {
  Xoshiro256 rng(seed);
  std::vector<float> v(n * static_cast<std::size_t>(d));
  for (float& x : v) x = static_cast<float>(rng.gaussian()) + offset;
  return v;
}

double dot(const float* a, const float* b, int d) {
  double s = 0.0;
  for (int i = 0; i < d; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Exact top-k ids (brute force; higher score first, or smaller L2).
std::vector<std::int64_t> exact_topk(const std::vector<float>& x, const float* q, int d, int k,
                                     Metric m) {
  const std::size_t n = x.size() / d;
  std::vector<double> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float* r = x.data() + i * d;
    if (m == Metric::L2) {
      double e = 0.0;
      for (int j = 0; j < d; ++j) e += (q[j] - r[j]) * static_cast<double>(q[j] - r[j]);
      s[i] = -e;
    } else if (m == Metric::Cosine) {
      s[i] = dot(q, r, d) / std::sqrt(dot(r, r, d));
    } else {
      s[i] = dot(q, r, d);
    }
  }
  std::vector<std::int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](std::int64_t a, std::int64_t b) { return s[a] > s[b]; });
  idx.resize(k);
  return idx;
}

// recall@k: fraction of the exact top-k found in the returned top-k.
double recall(const FlatIndex& index, const std::vector<float>& x, const std::vector<float>& q,
              int k) {
  const int d = index.dim();
  const std::size_t nq = q.size() / d;
  const SearchResult r = index.search(q.data(), nq, k);
  double hit = 0.0;
  for (std::size_t i = 0; i < nq; ++i) {
    const auto truth = exact_topk(x, q.data() + i * d, d, k, index.options().metric);
    const std::set<std::int64_t> t(truth.begin(), truth.end());
    for (int j = 0; j < k; ++j) hit += t.count(r.ids[i * k + j]);
  }
  return hit / (static_cast<double>(nq) * k);
}

TEST(FlatIndex, ScoreErrorMatchesCodecDistortion) {
  // For the mse codec x − x̂ has squared norm D·‖x‖² (D = d·MSE on unit vectors) spread over
  // the rotated coordinates, so ⟨q, x̂⟩ − ⟨q, x⟩ has variance ≈ D·‖q‖²‖x‖²/d.
  const int d = 128;
  for (double bits : {2.0, 3.0, 4.0}) {
    FlatIndexOptions o;
    o.dim = d;
    o.bits = bits;
    FlatIndex index(o);
    const auto x = gaussian(2000, d, 1);
    const auto q = gaussian(20, d, 2);
    index.add(x.data(), 2000);
    const SearchResult r = index.search(q.data(), 20, 50);
    double err2 = 0.0, pred2 = 0.0;
    for (int i = 0; i < 20; ++i) {
      for (int j = 0; j < 50; ++j) {
        const std::int64_t id = r.ids[i * 50 + j];
        const float* xi = x.data() + id * d;
        const float* qi = q.data() + i * d;
        const double e = r.distances[i * 50 + j] - dot(qi, xi, d);
        err2 += e * e;
        pred2 += index.codec().expected_unit_vector_mse() * dot(qi, qi, d) * dot(xi, xi, d) / d;
      }
    }
    const double ratio = std::sqrt(err2 / pred2);
    // The top hits are selected on x̂, which biases their error a little upward.
    EXPECT_GT(ratio, 0.7) << bits << " bits";
    EXPECT_LT(ratio, 1.5) << bits << " bits";
  }
}

TEST(FlatIndex, RecallOnGaussianDataFollowsBits) {
  const int d = 128;
  const auto x = gaussian(4000, d, 3);
  const auto q = gaussian(30, d, 4);
  double previous = 0.0;
  for (double bits : {2.0, 3.0, 4.0}) {
    FlatIndexOptions o;
    o.dim = d;
    o.bits = bits;
    FlatIndex index(o);
    index.add(x.data(), 4000);
    const double r10 = recall(index, x, q, 10);
    EXPECT_GT(r10, previous) << bits << " bits";
    previous = r10;
    if (bits == 4.0) EXPECT_GT(r10, 0.8);
  }
}

TEST(FlatIndex, RerankReachesExactRecall) {
  const int d = 64;
  const auto x = gaussian(3000, d, 5);
  const auto q = gaussian(20, d, 6);
  for (Metric m : {Metric::InnerProduct, Metric::Cosine, Metric::L2}) {
    FlatIndexOptions o;
    o.dim = d;
    o.bits = 4.0;
    o.metric = m;
    o.rerank = 200;
    FlatIndex index(o);
    index.add(x.data(), 3000);
    EXPECT_GE(recall(index, x, q, 10), 0.99) << to_string(m);
  }
}

TEST(FlatIndex, CenteringKeepsDistancesExact) {
  // Data far from the origin: with centering the IP and L2 distances must still be the real
  // ones (the μ terms added back), and the error shrinks to the codec's on x − μ.
  const int d = 64;
  const auto x = gaussian(1000, d, 7, 3.0f);
  const auto q = gaussian(10, d, 8, 1.0f);
  for (Metric m : {Metric::InnerProduct, Metric::L2}) {
    double err[2] = {0.0, 0.0};
    for (int c = 0; c < 2; ++c) {
      FlatIndexOptions o;
      o.dim = d;
      o.metric = m;
      o.center = c == 1;
      FlatIndex index(o);
      index.add(x.data(), 1000);
      const SearchResult r = index.search(q.data(), 10, 20);
      for (int i = 0; i < 10; ++i) {
        for (int j = 0; j < 20; ++j) {
          const float* xi = x.data() + r.ids[i * 20 + j] * d;
          const float* qi = q.data() + i * d;
          double exact = dot(qi, xi, d);
          if (m == Metric::L2) exact = dot(qi, qi, d) - 2 * exact + dot(xi, xi, d);
          err[c] += std::abs(r.distances[i * 20 + j] - exact) / std::abs(exact);
        }
      }
    }
    EXPECT_LT(err[1], 0.5 * err[0]) << to_string(m);
    EXPECT_LT(err[1] / 200, 0.02) << to_string(m);
  }
}

TEST(FlatIndex, RemovedIdsAreNeverReturned) {
  const int d = 32;
  const auto x = gaussian(500, d, 9);
  FlatIndexOptions o;
  o.dim = d;
  FlatIndex index(o);
  std::vector<std::int64_t> ids(500);
  for (int i = 0; i < 500; ++i) ids[i] = 1000 + 2 * i;
  index.add(x.data(), 500, ids.data());
  std::vector<std::int64_t> gone;
  for (int i = 0; i < 500; i += 3) gone.push_back(ids[i]);
  gone.push_back(7);  // not present
  EXPECT_EQ(index.remove(gone.data(), gone.size()), gone.size() - 1);
  EXPECT_EQ(index.size(), 500 - (gone.size() - 1));
  const std::set<std::int64_t> g(gone.begin(), gone.end());
  // Querying with the data itself: each kept vector finds itself first.
  const SearchResult r = index.search(x.data(), 500, 5);
  for (int i = 0; i < 500; ++i) {
    for (int j = 0; j < 5; ++j) EXPECT_EQ(g.count(r.ids[i * 5 + j]), 0u);
  }
  // Re-adding a removed id works; adding a present one is refused.
  index.add(x.data(), 1, &gone[0]);
  EXPECT_NE(thrown_message([&] { index.add(x.data(), 1, &gone[0]); }).find("already"),
            std::string::npos);
}

TEST(FlatIndex, SearchUsesThreadsConsistently) {
  const int d = 64;
  const auto x = gaussian(2000, d, 10);
  const auto q = gaussian(16, d, 11);
  FlatIndexOptions o;
  o.dim = d;
  o.threads = 1;
  FlatIndex one(o);
  o.threads = 2;
  FlatIndex two(o);
  one.add(x.data(), 2000);
  two.add(x.data(), 2000);
  const SearchResult a = one.search(q.data(), 16, 1000);
  const SearchResult b = two.search(q.data(), 16, 1000);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.distances, b.distances);
}

TEST(FlatIndex, FastScanKeepsTheCodecsRecall) {
  // The quantized tables only pick candidates; re-scored with the codec's float scores the
  // results should match the plain scan's nearly everywhere.
  const int d = 96;  // not a power of two: Haar rotation
  const auto x = gaussian(3000, d, 20);
  const auto q = gaussian(30, d, 21);
  for (Metric m : {Metric::InnerProduct, Metric::L2}) {
    FlatIndexOptions o;
    o.dim = d;
    o.metric = m;
    FlatIndex plain(o);
    o.fast_scan = true;
    FlatIndex fast(o), pieces(o);
    plain.add(x.data(), 3000);
    fast.add(x.data(), 3000);
    // Batches that start and end inside blocks of 32 write the same blocks as one add.
    for (std::size_t start = 0, n = 7; start < 3000; start += n, n = n * 3 % 97 + 1)
      pieces.add(x.data() + start * d, std::min<std::size_t>(n, 3000 - start));
    EXPECT_EQ(pieces.search(q.data(), 30, 10).ids, fast.search(q.data(), 30, 10).ids);
    // Remove some so the swap path of the blocks is exercised.
    std::vector<std::int64_t> gone;
    for (int i = 0; i < 3000; i += 7) gone.push_back(i);
    plain.remove(gone.data(), gone.size());
    fast.remove(gone.data(), gone.size());
    const SearchResult a = plain.search(q.data(), 30, 10);
    const SearchResult b = fast.search(q.data(), 30, 10);
    int same = 0;
    for (int i = 0; i < 30; ++i) {
      const std::set<std::int64_t> t(a.ids.begin() + i * 10, a.ids.begin() + i * 10 + 10);
      for (int j = 0; j < 10; ++j) same += t.count(b.ids[i * 10 + j]);
      for (int j = 0; j < 10; ++j)
        EXPECT_EQ(std::count(gone.begin(), gone.end(), b.ids[i * 10 + j]), 0);
    }
    EXPECT_GE(same, 290) << to_string(m);
    const std::string p = std::string(TQ_BINARY_DIR) + "/test_flat_index_fast.tqv";
    fast.save(p);
    const SearchResult c = FlatIndex::load(p).search(q.data(), 30, 10);
    EXPECT_EQ(b.ids, c.ids);
    EXPECT_EQ(b.distances, c.distances);
    std::remove(p.c_str());
  }
  FlatIndexOptions bad;
  bad.dim = 32;
  bad.bits = 3.0;
  bad.fast_scan = true;
  EXPECT_NE(thrown_message([&] { FlatIndex f(bad); }).find("4 bits"), std::string::npos);
}

std::string temp_path(const std::string& name) {
  return std::string(TQ_BINARY_DIR) + "/test_flat_index_" + name;
}

std::vector<char> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_all(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

std::string load_error(const std::string& p) {
  try {
    FlatIndex::load(p);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

TEST(FlatIndex, SaveLoadGivesIdenticalResults) {
  const int d = 48;
  const auto x = gaussian(800, d, 12);
  const auto q = gaussian(10, d, 13);
  for (const auto& [kind, rotation] :
       {std::pair{CodecKind::Mse, std::optional<RotationKind>{}},
        {CodecKind::Mse, std::optional<RotationKind>{RotationKind::Haar}},
        {CodecKind::Prod, std::optional<RotationKind>{}}}) {
    FlatIndexOptions o;
    o.dim = d;
    o.kind = kind;
    o.metric = Metric::L2;
    o.center = true;
    o.rerank = kind == CodecKind::Prod ? 50 : 0;
    o.rotation = rotation;
    FlatIndex index(o);
    EXPECT_EQ(*index.options().rotation, rotation.value_or(RotationKind::OverlapHadamard));
    index.add(x.data(), 800);
    const std::int64_t drop[] = {3, 99};
    index.remove(drop, 2);
    const std::string p = temp_path("save.tqv");
    index.save(p);
    const FlatIndex back = FlatIndex::load(p);
    EXPECT_EQ(back.size(), index.size());
    EXPECT_EQ(back.options().rotation, index.options().rotation);
    const SearchResult a = index.search(q.data(), 10, 20);
    const SearchResult b = back.search(q.data(), 10, 20);
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_EQ(a.distances, b.distances);
    std::remove(p.c_str());
  }
}

// A version-1 file (no rotation field: hadamard for d = 2^k, haar otherwise) still loads and
// answers as the index that wrote it. Made from a version-2 haar file by dropping the field.
TEST(FlatIndex, VersionOneFilesStillLoad) {
  const int d = 48;
  const auto x = gaussian(300, d, 31);
  const auto q = gaussian(5, d, 32);
  FlatIndexOptions o;
  o.dim = d;
  o.rotation = RotationKind::Haar;
  FlatIndex index(o);
  index.add(x.data(), 300);
  const std::string p = temp_path("v2.tqv");
  index.save(p);
  std::vector<char> f = read_all(p);
  constexpr std::size_t kHead = 8 + 4 + 8;
  constexpr std::size_t kRotationField = 4 + 8 + 4 + 8 + 4 + 4 + 4 + 4 + 4;  // after fast_scan
  f.erase(f.begin() + kHead + kRotationField, f.begin() + kHead + kRotationField + 4);
  const std::uint32_t v1 = 1;
  const std::uint64_t len = f.size() - kHead - 8;
  std::memcpy(f.data() + 8, &v1, 4);
  std::memcpy(f.data() + 12, &len, 8);
  const std::uint64_t sum = fnv1a64(reinterpret_cast<const std::uint8_t*>(f.data()) + kHead, len);
  std::memcpy(f.data() + kHead + len, &sum, 8);
  write_all(p, f);
  const FlatIndex back = FlatIndex::load(p);
  EXPECT_EQ(*back.options().rotation, RotationKind::Haar);
  EXPECT_EQ(back.search(q.data(), 5, 10).ids, index.search(q.data(), 5, 10).ids);
  std::remove(p.c_str());
}

TEST(FlatIndex, BadFilesAreClearErrors) {
  const int d = 32;
  const auto x = gaussian(100, d, 14);
  FlatIndexOptions o;
  o.dim = d;
  FlatIndex index(o);
  index.add(x.data(), 100);
  const std::string p = temp_path("good.tqv"), bad = temp_path("bad.tqv");
  index.save(p);
  const std::vector<char> good = read_all(p);

  EXPECT_NE(load_error(temp_path("missing.tqv")).find("cannot open"), std::string::npos);
  for (std::size_t cut : {std::size_t{0}, std::size_t{10}, good.size() / 2, good.size() - 1}) {
    write_all(bad, std::vector<char>(good.begin(), good.begin() + cut));
    const std::string e = load_error(bad);
    EXPECT_TRUE(e.find("shorter") != std::string::npos || e.find("truncated") != std::string::npos)
        << cut << ": " << e;
  }
  std::vector<char> flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  write_all(bad, flipped);
  EXPECT_NE(load_error(bad).find("checksum"), std::string::npos);
  std::vector<char> magic = good;
  magic[0] = 'X';
  write_all(bad, magic);
  EXPECT_NE(load_error(bad).find("magic"), std::string::npos);
  std::vector<char> version = good;
  version[8] = 9;
  write_all(bad, version);
  EXPECT_NE(load_error(bad).find("version 9"), std::string::npos);
  std::remove(p.c_str());
  std::remove(bad.c_str());
}

TEST(FlatIndex, BadArgumentsAreClearErrors) {
  FlatIndexOptions o;
  o.dim = 16;
  FlatIndex index(o);
  const auto x = gaussian(10, 16, 15);
  EXPECT_NE(thrown_message([&] { index.search(x.data(), 1, 5); }).find("empty"), std::string::npos);
  index.add(x, 16);
  EXPECT_NE(thrown_message([&] { index.search(x.data(), 1, 0); }).find("k = 0"), std::string::npos);
  EXPECT_NE(thrown_message([&] { index.search(x.data(), 1, -3); }).find("k = -3"),
            std::string::npos);
  EXPECT_NE(thrown_message([&] { index.search(x.data(), 1, 1001); }).find("k = 1001"),
            std::string::npos);
  EXPECT_NE(thrown_message([&] { index.add(x, 8); }).find("dimension 8"), std::string::npos);
  EXPECT_NE(thrown_message([&] { index.search(x, 20, 1); }).find("dimension 20"),
            std::string::npos);
  const std::vector<float> ragged(17, 0.0f);
  EXPECT_NE(thrown_message([&] { index.add(ragged, 16); }).find("whole rows"), std::string::npos);
  EXPECT_NE(thrown_message([] { parse_metric("dot"); }).find("'dot'"), std::string::npos);
  FlatIndexOptions tiny;
  tiny.dim = 1;
  EXPECT_NE(thrown_message([&] { FlatIndex t(tiny); }).find("dimension 1"), std::string::npos);
  // k larger than the index: padded with id -1.
  const SearchResult r = index.search(x.data(), 1, 12);
  EXPECT_EQ(r.ids[9] >= 0, true);
  EXPECT_EQ(r.ids[10], -1);
  EXPECT_EQ(r.ids[11], -1);
}

}  // namespace
}  // namespace tq::index
