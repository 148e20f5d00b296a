// Writing GGUF files: metadata of every value type the reader (gguf.hpp) parses, a tensor
// directory laid out at general.alignment (32 unless the metadata says otherwise), and tensor data
// streamed to the file a block of rows at a time from a caller-supplied source, so that a file of
// several gigabytes is written without ever being held in memory.
#pragma once

#include "turboquant/model/gguf.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace tq::gguf {

// One tensor of the directory: name, ggml dims (dims[0] contiguous) and element type. `data`,
// when not empty, is the tensor's bytes; otherwise the writer asks its RowSource for them.
struct TensorEntry {
  std::string name;
  std::vector<std::uint64_t> dims;
  TensorType type = TensorType::kF32;
  std::vector<std::uint8_t> data;

  std::uint64_t n_elements() const;
  std::uint64_t n_rows() const;         // all dims but the first
  std::uint64_t bytes_per_row() const;  // row_bytes(type, dims[0])
  std::uint64_t n_bytes() const { return n_rows() * bytes_per_row(); }
};

// Fills `out` (row_count * bytes_per_row bytes) with rows [row_begin, row_begin + row_count) of
// tensor `index` (in the order the tensors were added), as raw GGUF blocks.
using RowSource = std::function<void(std::size_t index, std::uint64_t row_begin,
                                     std::uint64_t row_count, std::span<std::uint8_t> out)>;
// Told after every block of rows: tensor `index` of `count`, bytes of tensor data written so far
// and in all.
using WriteProgress = std::function<void(std::size_t index, std::size_t count,
                                         std::uint64_t bytes_done, std::uint64_t bytes_total)>;

class Writer {
 public:
  // Adds a metadata key. Throws std::invalid_argument for a duplicate key, an array whose items
  // are not all of its element type, or a general.alignment that is not an integer power of two
  // up to 2^20 (what the reader accepts).
  void set(std::string key, Value value);
  void set_u32(std::string key, std::uint32_t v) { set(std::move(key), Value{v}); }
  void set_i32(std::string key, std::int32_t v) { set(std::move(key), Value{v}); }
  void set_u64(std::string key, std::uint64_t v) { set(std::move(key), Value{v}); }
  void set_f32(std::string key, float v) { set(std::move(key), Value{v}); }
  void set_bool(std::string key, bool v) { set(std::move(key), Value{v}); }
  void set_string(std::string key, std::string v) { set(std::move(key), Value{std::move(v)}); }
  void set_string_array(std::string key, const std::vector<std::string>& items);
  void set_f32_array(std::string key, const std::vector<float>& items);
  void set_i32_array(std::string key, const std::vector<std::int32_t>& items);

  // Adds a tensor. Throws std::invalid_argument for a duplicate name, more than four dims, a type
  // the reader cannot load, a row length that is not a multiple of the type's block size, or
  // `data` of another size than the tensor's bytes (when given).
  void add_tensor(TensorEntry entry);

  // The data alignment (general.alignment, or 32).
  std::uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  // Bytes of the whole file (header, padding and data).
  std::uint64_t file_size() const;

  // Writes the file, asking `source` for every tensor added without data (a null source is only
  // allowed when all tensors carry data). The data is written to PATH.tmp, which is renamed to
  // `path` once complete (and removed on failure): a broken write never leaves a file that looks
  // finished. Throws std::runtime_error naming the path when it cannot be written.
  void write(const std::filesystem::path& path, const RowSource& source = {},
             const WriteProgress& progress = {}) const;
  // The same bytes in memory (tests, small files).
  std::vector<std::uint8_t> to_bytes(const RowSource& source = {}) const;

  // Rows handed to a RowSource at once are bounded to about this many bytes.
  static constexpr std::uint64_t kChunkBytes = std::uint64_t{32} << 20;

 private:
  using Sink = std::function<void(const std::uint8_t* data, std::size_t size)>;
  void emit(const Sink& sink, const RowSource& source, const WriteProgress& progress,
            bool count_only) const;

  std::vector<std::pair<std::string, Value>> metadata_;
  std::set<std::string, std::less<>> keys_;
  std::vector<TensorEntry> tensors_;
  std::set<std::string, std::less<>> tensor_names_;
  std::uint64_t alignment_ = 32;
};

}  // namespace tq::gguf
