// GGUF writing (gguf_writer.hpp): encodes the header, metadata and tensor directory exactly as
// src/model/gguf.cpp parses them (little-endian, u64 lengths, arrays as element type + count),
// then streams each tensor's bytes in blocks of rows, padding every tensor to the alignment.
#include "turboquant/model/gguf_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <type_traits>

namespace tq::gguf {

namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" as a little-endian uint32
constexpr std::uint32_t kVersion = 3;

[[noreturn]] void bad(const std::string& message) {
  throw std::invalid_argument("GGUF writer: " + message);
}

// Little-endian encoding into a byte vector (the header is small; tensor data never goes here).
class Bytes {
 public:
  template <typename T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    append(&v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<std::uint64_t>(s.size());
    append(s.data(), s.size());
  }
  void put_value(const Value& value) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, bool>) {
            put<std::uint8_t>(x ? 1 : 0);
          } else if constexpr (std::is_same_v<T, std::string>) {
            put_string(x);
          } else if constexpr (std::is_same_v<T, Array>) {
            put<std::uint32_t>(static_cast<std::uint32_t>(x.element_type));
            put<std::uint64_t>(x.items.size());
            for (const Value& item : x.items) put_value(item);
          } else {
            put<T>(x);
          }
        },
        value.data);
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  // resize + memcpy rather than insert: GCC 12 misreports small inserts as overflows.
  void append(const void* p, std::size_t n) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    if (n != 0) std::memcpy(bytes_.data() + at, p, n);
  }
  std::vector<std::uint8_t> bytes_;
};

// Arrays must be homogeneous (the file stores one element type per array), recursively.
void check_value(const std::string& key, const Value& value, int depth) {
  const auto* array = std::get_if<Array>(&value.data);
  if (array == nullptr) return;
  if (depth >= 8) bad("metadata key '" + key + "': arrays nested deeper than 8");
  if (static_cast<std::uint32_t>(array->element_type) >
      static_cast<std::uint32_t>(ValueType::kFloat64)) {
    bad("metadata key '" + key + "': array element type " +
        std::to_string(static_cast<std::uint32_t>(array->element_type)) +
        " is not a GGUF value type");
  }
  for (std::size_t i = 0; i < array->items.size(); ++i) {
    const Value& item = array->items[i];
    if (item.type() != array->element_type) {
      bad("metadata key '" + key + "': array item " + std::to_string(i) + " has type " +
          std::string(value_type_name(item.type())) + " (the array holds " +
          std::string(value_type_name(array->element_type)) + ")");
    }
    check_value(key, item, depth + 1);
  }
}

template <typename T>
Value array_of(ValueType type, const std::vector<T>& items) {
  Array a;
  a.element_type = type;
  a.items.reserve(items.size());
  for (const T& item : items) a.items.push_back(Value{item});
  return Value{std::move(a)};
}

std::uint64_t padded(std::uint64_t n, std::uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

}  // namespace

std::uint64_t TensorEntry::n_elements() const {
  std::uint64_t n = 1;
  for (std::uint64_t d : dims) n *= d;
  return n;
}

std::uint64_t TensorEntry::n_rows() const {
  std::uint64_t n = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
  return dims.empty() || dims[0] == 0 ? 0 : n;
}

std::uint64_t TensorEntry::bytes_per_row() const {
  return row_bytes(type, dims.empty() ? 1 : dims[0]);
}

void Writer::set(std::string key, Value value) {
  if (keys_.contains(key)) bad("metadata key '" + key + "' is set twice");
  check_value(key, value, 0);
  if (key == "general.alignment") {
    const auto a = value.as_integer();
    if (!a || *a <= 0 || (*a & (*a - 1)) != 0 || *a > (1 << 20)) {
      bad("general.alignment is " + value.to_string() +
          " (expected an integer power of two up to 2^20)");
    }
    if (!tensors_.empty()) bad("general.alignment must be set before any tensor is added");
    alignment_ = static_cast<std::uint64_t>(*a);
  }
  keys_.insert(key);
  metadata_.emplace_back(std::move(key), std::move(value));
}

void Writer::set_string_array(std::string key, const std::vector<std::string>& items) {
  set(std::move(key), array_of(ValueType::kString, items));
}
void Writer::set_f32_array(std::string key, const std::vector<float>& items) {
  set(std::move(key), array_of(ValueType::kFloat32, items));
}
void Writer::set_i32_array(std::string key, const std::vector<std::int32_t>& items) {
  set(std::move(key), array_of(ValueType::kInt32, items));
}

void Writer::add_tensor(TensorEntry entry) {
  const std::string& name = entry.name;
  if (tensor_names_.contains(name)) bad("tensor '" + name + "' is added twice");
  if (entry.dims.size() > 4) {
    bad("tensor '" + name + "' has " + std::to_string(entry.dims.size()) +
        " dimensions (expected at most 4)");
  }
  if (!is_supported(entry.type)) {
    bad("tensor '" + name + "' has type " + tensor_type_name(entry.type) +
        ", which the GGUF reader cannot load");
  }
  const std::uint64_t row = entry.dims.empty() ? 1 : entry.dims[0];
  if (row % block_elements(entry.type) != 0) {
    bad("tensor '" + name + "' row length " + std::to_string(row) + " is not a multiple of the " +
        tensor_type_name(entry.type) + " block size " + std::to_string(block_elements(entry.type)));
  }
  if (!entry.data.empty() && entry.data.size() != entry.n_bytes()) {
    bad("tensor '" + name + "' has " + std::to_string(entry.data.size()) + " bytes of data, " +
        "expected " + std::to_string(entry.n_bytes()));
  }
  tensor_names_.insert(name);
  tensors_.push_back(std::move(entry));
}

std::uint64_t Writer::file_size() const {
  std::uint64_t size = 0;
  emit([&](const std::uint8_t*, std::size_t n) { size += n; }, {}, {}, /*count_only=*/true);
  return size;
}

// The header and directory go through `sink` first, then every tensor's data and padding. With
// count_only the sink is told sizes only (its data pointer may be null): file_size.
void Writer::emit(const Sink& sink, const RowSource& source, const WriteProgress& progress,
                  bool count_only) const {
  Bytes header;
  header.put<std::uint32_t>(kMagic);
  header.put<std::uint32_t>(kVersion);
  header.put<std::uint64_t>(tensors_.size());
  header.put<std::uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    header.put_string(key);
    header.put<std::uint32_t>(static_cast<std::uint32_t>(value.type()));
    header.put_value(value);
  }
  std::uint64_t offset = 0, total = 0;
  for (const TensorEntry& t : tensors_) {
    header.put_string(t.name);
    header.put<std::uint32_t>(static_cast<std::uint32_t>(t.dims.size()));
    for (std::uint64_t d : t.dims) header.put<std::uint64_t>(d);
    header.put<std::uint32_t>(static_cast<std::uint32_t>(t.type));
    header.put<std::uint64_t>(offset);
    offset += padded(t.n_bytes(), alignment_);
    total += t.n_bytes();
  }
  const std::vector<std::uint8_t>& h = header.bytes();
  sink(h.data(), h.size());
  if (tensors_.empty()) return;
  const std::vector<std::uint8_t> zeros(alignment_, 0);
  sink(zeros.data(), padded(h.size(), alignment_) - h.size());

  std::vector<std::uint8_t> chunk;
  std::uint64_t done = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const TensorEntry& t = tensors_[i];
    const std::uint64_t bytes = t.n_bytes();
    if (!t.data.empty() || count_only) {
      sink(t.data.data(), bytes);  // count_only: a counting sink reads nothing
      done += bytes;
    } else if (bytes > 0) {
      if (!source) bad("tensor '" + t.name + "' has no data and no row source was given");
      const std::uint64_t stride = t.bytes_per_row();
      const std::uint64_t rows_per_chunk = std::max<std::uint64_t>(1, kChunkBytes / stride);
      for (std::uint64_t r = 0; r < t.n_rows(); r += rows_per_chunk) {
        const std::uint64_t n = std::min(rows_per_chunk, t.n_rows() - r);
        chunk.assign(static_cast<std::size_t>(n * stride), 0);
        source(i, r, n, chunk);
        sink(chunk.data(), chunk.size());
        done += chunk.size();
        if (progress && r + n < t.n_rows()) progress(i, tensors_.size(), done, total);
      }
    }
    sink(zeros.data(), padded(bytes, alignment_) - bytes);
    if (progress) progress(i, tensors_.size(), done, total);
  }
}

std::vector<std::uint8_t> Writer::to_bytes(const RowSource& source) const {
  std::vector<std::uint8_t> out;
  emit([&](const std::uint8_t* data, std::size_t n) { out.insert(out.end(), data, data + n); },
       source, {}, false);
  return out;
}

void Writer::write(const std::filesystem::path& path, const RowSource& source,
                   const WriteProgress& progress) const {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> file(std::fopen(tmp.c_str(), "wb"));
  if (!file) {
    throw std::system_error(errno, std::generic_category(),
                            "cannot write GGUF file '" + path.string() + "'");
  }
  std::setvbuf(file.get(), nullptr, _IOFBF, 1 << 20);
  try {
    emit(
        [&](const std::uint8_t* data, std::size_t n) {
          if (n != 0 && std::fwrite(data, 1, n, file.get()) != n) {
            throw std::system_error(errno, std::generic_category(),
                                    "writing GGUF file '" + path.string() + "' failed");
          }
        },
        source, progress, false);
    std::FILE* f = file.release();
    if (std::fclose(f) != 0) {
      throw std::system_error(errno, std::generic_category(),
                              "closing GGUF file '" + path.string() + "' failed");
    }
    std::filesystem::rename(tmp, path);
  } catch (...) {
    file.reset();
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

}  // namespace tq::gguf
