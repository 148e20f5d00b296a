// Float vector files for vector search: .fvecs (per row an int32 dimension then that many
// float32) and .npy (NumPy format 1.0/2.0/3.0, 2-D, C order, little-endian float32 '<f4' for
// vectors; int64 '<i8' is written for result ids). The type is chosen by the file extension.
// A malformed file is a std::runtime_error naming the file and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tq::index {

struct VectorSet {
  std::size_t rows = 0;
  int dim = 0;
  std::vector<float> data;  // rows × dim
};

VectorSet read_vectors(const std::string& path);
void write_fvecs(const std::string& path, const VectorSet& v);
void write_npy_f32(const std::string& path, const float* data, std::size_t rows, std::size_t cols);
void write_npy_i64(const std::string& path, const std::int64_t* data, std::size_t rows,
                   std::size_t cols);

}  // namespace tq::index
