// .fvecs / .npy vector files: round trips and the errors of malformed files.
#include "turboquant/index/vector_file.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace tq::index {
namespace {

std::string temp(const std::string& name) {
  return std::string(TQ_BINARY_DIR) + "/test_vector_file_" + name;
}

std::string read_error(const std::string& p) {
  try {
    read_vectors(p);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

TEST(VectorFile, RoundTripsFvecsAndNpy) {
  VectorSet v;
  v.rows = 5;
  v.dim = 3;
  for (int i = 0; i < 15; ++i) v.data.push_back(0.5f * i - 2.0f);
  const std::string f = temp("a.fvecs"), n = temp("a.npy");
  write_fvecs(f, v);
  write_npy_f32(n, v.data.data(), v.rows, v.dim);
  for (const std::string& p : {f, n}) {
    const VectorSet back = read_vectors(p);
    EXPECT_EQ(back.rows, 5u) << p;
    EXPECT_EQ(back.dim, 3) << p;
    EXPECT_EQ(back.data, v.data) << p;
    std::remove(p.c_str());
  }
}

TEST(VectorFile, MalformedFilesAreClearErrors) {
  EXPECT_NE(read_error(temp("x.txt")).find("extension"), std::string::npos);
  EXPECT_NE(read_error(temp("missing.npy")).find("cannot open"), std::string::npos);
  const std::string p = temp("bad.fvecs");
  {
    std::ofstream o(p, std::ios::binary);
    const int d = 4;
    const float x[2] = {1, 2};
    o.write(reinterpret_cast<const char*>(&d), 4);
    o.write(reinterpret_cast<const char*>(x), 8);
  }
  EXPECT_NE(read_error(p).find("truncated"), std::string::npos);
  const std::string i64 = temp("ids.npy");
  const std::int64_t ids[2] = {1, 2};
  write_npy_i64(i64, ids, 1, 2);
  EXPECT_NE(read_error(i64).find("'<i8'"), std::string::npos);
  std::remove(p.c_str());
  std::remove(i64.c_str());
}

}  // namespace
}  // namespace tq::index
