// GGUF model files: the header, the metadata key/values and the tensor directory of a file read
// into memory (pread, not mmap: a file that shrinks while it is read is an error, never SIGBUS),
// plus dequantization of the ggml block formats to float32.
//
// Every value read from the file is bounds-checked before use: a malformed or hostile file raises
// tq::gguf::FormatError naming the offending value and what was expected, and no allocation is
// sized from a count that the remaining bytes of the file could not possibly hold. Tensors must
// tile the data section exactly (each at the aligned end of the previous one, no gaps, overlaps or
// trailing bytes), so a type or shape that disagrees with the stored bytes is caught. Keys and
// tensor names hold no control bytes, tensor names at most 63 bytes (ggml's limit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tq::gguf {

// Raised for any structural problem in a GGUF file (and for type mismatches of metadata).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Metadata value types, numbered as in the GGUF specification.
enum class ValueType : std::uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view value_type_name(ValueType type);

// Tensor element types, numbered as in ggml. Only the types listed in is_supported() can be
// loaded; the others are named so that error messages can say what the file contains.
enum class TensorType : std::uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

// Name like "Q4_K"; "type#N" for numbers ggml does not define here.
std::string tensor_type_name(TensorType type);
// True for the types this loader parses and dequantizes.
bool is_supported(TensorType type);
// Elements per block (1 for F32/F16/BF16, 32 or 256 for quantized types).
std::size_t block_elements(TensorType type);
// Bytes per block. Throws FormatError for unsupported types.
std::size_t block_bytes(TensorType type);
// Bytes of a row of `n` elements; throws FormatError unless n is a multiple of the block size.
std::size_t row_bytes(TensorType type, std::uint64_t n);

// Dequantizes `n` consecutive elements (a multiple of block_elements(type)) from `src` to `dst`.
void dequantize(TensorType type, const void* src, float* dst, std::size_t n);

// `text` quoted for a message or a terminal: control and non-ASCII bytes as \xNN, quotes and
// backslashes escaped, and cut after max_bytes with the full length noted.
std::string printable_name(std::string_view text, std::size_t max_bytes = 64);

struct Value;

// A homogeneous metadata array. Items hold Values of `element_type` (arrays may nest).
struct Array {
  ValueType element_type = ValueType::kUint8;
  std::vector<Value> items;
};

struct Value {
  std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
               float, bool, std::string, Array, std::uint64_t, std::int64_t, double>
      data;

  ValueType type() const { return static_cast<ValueType>(data.index()); }
  // Any integer type converted to int64 (uint64 values above INT64_MAX throw); nullopt otherwise.
  std::optional<std::int64_t> as_integer() const;
  // Any integer or floating type converted to double; nullopt otherwise.
  std::optional<double> as_number() const;
  // Short human-readable rendering (arrays are abbreviated).
  std::string to_string(std::size_t max_items = 8) const;
};

struct TensorInfo {
  std::string name;
  std::vector<std::uint64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
  TensorType type = TensorType::kF32;
  std::uint64_t offset = 0;  // relative to the start of the data section
  std::uint64_t n_elements = 0;
  std::uint64_t n_bytes = 0;
  const std::uint8_t* data = nullptr;  // points into the File's own copy of the file

  std::uint64_t row_length() const { return dims.empty() ? 1 : dims[0]; }
  std::uint64_t n_rows() const { return row_length() == 0 ? 0 : n_elements / row_length(); }
  std::size_t bytes_per_row() const { return row_bytes(type, row_length()); }
};

class File {
 public:
  // Reads `path` into memory and parses it. Throws FormatError (malformed, or the file shrank
  // while it was read) or std::runtime_error (I/O).
  static File open(const std::filesystem::path& path);
  // Parses a copy of `bytes` (used by tests and the fuzzer).
  static File from_bytes(std::span<const std::uint8_t> bytes);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::size_t file_size() const;

  // Frees the file's bytes once a Model holds its own copy of the weights (the file is read into
  // memory, so otherwise a loaded model holds its weights twice). Metadata stays readable; every
  // TensorInfo::data becomes null and dequantize throws std::logic_error.
  void release_tensor_data();
  bool has_tensor_data() const;

  // Metadata, keyed by name (sorted for stable printing).
  const std::map<std::string, Value, std::less<>>& metadata() const { return metadata_; }
  bool has(std::string_view key) const;
  const Value* find(std::string_view key) const;  // nullptr when missing
  const Value& get(std::string_view key) const;   // throws FormatError when missing

  // Strict typed getters: throw FormatError naming the key when it is missing or has another type.
  std::uint32_t get_u32(std::string_view key) const;
  std::int32_t get_i32(std::string_view key) const;
  std::uint64_t get_u64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const Array& get_array(std::string_view key) const;
  // Any integer type that fits in int64 (files disagree on u32 vs u64 vs i32 for counts).
  std::int64_t get_integer(std::string_view key) const;
  // Typed array getters: throw unless the array's element type matches.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<std::int32_t> get_i32_array(std::string_view key) const;

  // Optional variants: nullopt when missing; still throw when present with another type.
  std::optional<std::uint32_t> find_u32(std::string_view key) const;
  std::optional<float> find_f32(std::string_view key) const;
  std::optional<bool> find_bool(std::string_view key) const;
  std::optional<std::string> find_string(std::string_view key) const;
  std::optional<std::int64_t> find_integer(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr when missing
  const TensorInfo& tensor(std::string_view name) const;       // throws FormatError when missing

  // Dequantizes the whole tensor, or rows [row_begin, row_begin + row_count) of it, to float32.
  // `dst` must hold row_count * row_length() floats.
  std::vector<float> dequantize(const TensorInfo& info) const;
  void dequantize_rows(const TensorInfo& info, std::uint64_t row_begin, std::uint64_t row_count,
                       float* dst) const;

 private:
  File();
  void parse();

  struct Storage;
  std::unique_ptr<Storage> storage_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, Value, std::less<>> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace tq::gguf
