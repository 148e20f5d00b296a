// Reading and writing .fvecs / .npy vector files (vector_file.hpp).
#include "turboquant/index/vector_file.hpp"

#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace tq::index {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error("vector file " + path + ": " + why);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open for reading");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

VectorSet read_fvecs(const std::string& path) {
  const std::vector<char> b = read_all(path);
  VectorSet v;
  std::size_t pos = 0;
  while (pos < b.size()) {
    if (b.size() - pos < 4) fail(path, "truncated row header at byte " + std::to_string(pos));
    std::int32_t d;
    std::memcpy(&d, b.data() + pos, 4);
    if (d <= 0 || d > 65536) {
      fail(path, "row " + std::to_string(v.rows) + " has dimension " + std::to_string(d) +
                     " (expected 1..65536)");
    }
    if (v.rows == 0) v.dim = d;
    if (d != v.dim) {
      fail(path, "row " + std::to_string(v.rows) + " has dimension " + std::to_string(d) +
                     ", the first row " + std::to_string(v.dim));
    }
    pos += 4;
    const std::size_t bytes = static_cast<std::size_t>(d) * 4;
    if (b.size() - pos < bytes) fail(path, "row " + std::to_string(v.rows) + " is truncated");
    const std::size_t at = v.data.size();
    v.data.resize(at + d);
    std::memcpy(v.data.data() + at, b.data() + pos, bytes);
    pos += bytes;
    ++v.rows;
  }
  if (v.rows == 0) fail(path, "holds no vectors");
  return v;
}

// Value of 'key': ... in the npy header dict (a plain text scan; the header is a Python literal).
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) fail(path, "npy header lacks '" + key + "'");
  std::size_t p = header.find(':', k);
  if (p == std::string::npos) fail(path, "npy header is malformed");
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  std::size_t e = p;
  if (header[p] == '(') {
    e = header.find(')', p);
    if (e == std::string::npos) fail(path, "npy shape is malformed");
    return header.substr(p + 1, e - p - 1);
  }
  e = header.find_first_of(",}", p);
  return header.substr(p, e - p);
}

VectorSet read_npy(const std::string& path) {
  const std::vector<char> b = read_all(path);
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) fail(path, "not an npy file");
  const int major = static_cast<unsigned char>(b[6]);
  std::size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) fail(path, "truncated npy header");
    std::uint32_t len;
    std::memcpy(&len, b.data() + 8, 4);
    header_len = len;
    start = 12;
  } else {
    fail(path, "npy version " + std::to_string(major) + " (expected 1, 2 or 3)");
  }
  if (b.size() < start + header_len) fail(path, "truncated npy header");
  const std::string header(b.data() + start, header_len);
  const std::string descr = dict_value(header, "descr", path);
  if (descr != "'<f4'") fail(path, "dtype " + descr + " (expected '<f4', float32)");
  if (dict_value(header, "fortran_order", path) != "False") {
    fail(path, "is Fortran-ordered (expected C order)");
  }
  const std::string shape = dict_value(header, "shape", path);
  // "(rows, dim)" arrives as "rows, dim": split on commas, skipping the empty tail of "n,".
  std::vector<std::size_t> dims;
  std::size_t p = 0;
  while (p < shape.size()) {
    std::size_t e = shape.find(',', p);
    if (e == std::string::npos) e = shape.size();
    const std::string part = shape.substr(p, e - p);
    if (part.find_first_not_of(' ') != std::string::npos) {
      try {
        dims.push_back(std::stoull(part));
      } catch (const std::exception&) {
        fail(path, "shape (" + shape + ") is malformed");
      }
    }
    p = e + 1;
  }
  if (dims.size() != 2) fail(path, "shape (" + shape + ") is not 2-D (expected (rows, dim))");
  const std::size_t rows = dims[0], cols = dims[1];
  if (rows == 0 || cols == 0 || cols > 65536) {
    fail(path, "shape (" + shape + "): expected rows >= 1 and 1 <= dim <= 65536");
  }
  const std::size_t data_at = start + header_len;
  if (b.size() - data_at != rows * cols * 4) {
    fail(path, "holds " + std::to_string(b.size() - data_at) + " data bytes, shape (" + shape +
                   ") needs " + std::to_string(rows * cols * 4));
  }
  VectorSet v;
  v.rows = rows;
  v.dim = static_cast<int>(cols);
  v.data.resize(rows * cols);
  std::memcpy(v.data.data(), b.data() + data_at, rows * cols * 4);
  return v;
}

void write_npy(const std::string& path, const char* descr, const void* data, std::size_t bytes,
               std::size_t rows, std::size_t cols) {
  std::string header = "{'descr': '" + std::string(descr) +
                       "', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  // Pad so the data starts on a 64-byte boundary, ending the header with a newline.
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path, "cannot open for writing");
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(len), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!f) fail(path, "write failed");
}

}  // namespace

VectorSet read_vectors(const std::string& path) {
  if (ends_with(path, ".fvecs")) return read_fvecs(path);
  if (ends_with(path, ".npy")) return read_npy(path);
  fail(path, "unknown extension (expected .fvecs or .npy)");
}

void write_fvecs(const std::string& path, const VectorSet& v) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path, "cannot open for writing");
  const std::int32_t d = v.dim;
  for (std::size_t i = 0; i < v.rows; ++i) {
    f.write(reinterpret_cast<const char*>(&d), 4);
    f.write(reinterpret_cast<const char*>(v.data.data() + i * v.dim),
            static_cast<std::streamsize>(v.dim) * 4);
  }
  if (!f) fail(path, "write failed");
}

void write_npy_f32(const std::string& path, const float* data, std::size_t rows, std::size_t cols) {
  write_npy(path, "<f4", data, rows * cols * 4, rows, cols);
}

void write_npy_i64(const std::string& path, const std::int64_t* data, std::size_t rows,
                   std::size_t cols) {
  write_npy(path, "<i8", data, rows * cols * 8, rows, cols);
}

}  // namespace tq::index
