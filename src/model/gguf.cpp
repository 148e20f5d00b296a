// GGUF parsing: reads the file into memory it owns, validates the header, metadata and tensor
// directory, and hands out bounds-checked views of tensor data. Every count and length is checked
// against the bytes that remain before anything is allocated from it, so hostile files cannot
// trigger huge allocations, deep recursion or reads outside the buffer. The file is read with
// pread, not memory-mapped: a file truncated while it is loaded (or afterwards) is a short read
// and an error, where a mapping would kill the process with SIGBUS on the first missing page.
#include "turboquant/model/gguf.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <limits>
#include <sstream>
#include <system_error>

namespace tq::gguf {

namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr std::uint32_t kMaxDims = 4;         // ggml tensors have at most four dimensions
constexpr int kMaxArrayDepth = 8;             // nested arrays deeper than this are not used
// ggml keeps a tensor name in a 64-byte array with its terminating NUL; llama.cpp refuses longer.
constexpr std::size_t kMaxTensorName = 63;
// pread chunk: large enough that system-call overhead is nothing next to the copy.
constexpr std::size_t kReadChunk = std::size_t{64} << 20;

[[noreturn]] void fail(const std::string& message) {
  throw FormatError("GGUF: " + message);
}

// Cursor over the file bytes; every read checks the remaining length.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  std::size_t position() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T)) {
      fail(std::string("file truncated while reading ") + what + " at offset " +
           std::to_string(pos_) + " (need " + std::to_string(sizeof(T)) + " bytes, " +
           std::to_string(remaining()) + " left)");
    }
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* what) {
    const auto length = read<std::uint64_t>(what);
    if (length > remaining()) {
      fail(std::string("length of ") + what + " is " + std::to_string(length) +
           " bytes at offset " + std::to_string(pos_ - 8) + ", but only " +
           std::to_string(remaining()) + " bytes remain in the file");
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<std::size_t>(length));
    pos_ += static_cast<std::size_t>(length);
    return s;
  }

  // Rejects a count whose minimal encoding (count * min_bytes) cannot fit in what remains.
  void check_count(std::uint64_t count, std::size_t min_bytes, const std::string& what) const {
    if (min_bytes != 0 && count > remaining() / min_bytes) {
      fail(what + " is " + std::to_string(count) + ", but the " + std::to_string(remaining()) +
           " remaining bytes can hold at most " + std::to_string(remaining() / min_bytes));
    }
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

Value read_array(Reader& r, const char* what, const std::string& key, int depth);

template <typename T>
Value read_number(Reader& r, const char* what, const std::string& /*key*/, int /*depth*/) {
  Value v;
  v.data = r.read<T>(what);
  return v;
}

Value read_bool(Reader& r, const char* what, const std::string& key, int /*depth*/) {
  const auto b = r.read<std::uint8_t>(what);
  if (b > 1) {
    fail("metadata key " + printable_name(key) + ": bool value is " + std::to_string(b) +
         " (expected 0 or 1)");
  }
  Value v;
  v.data = b != 0;
  return v;
}

Value read_string_value(Reader& r, const char* what, const std::string& /*key*/, int /*depth*/) {
  Value v;
  v.data = r.read_string(what);
  return v;
}

// One row per GGUF value type, indexed by its number (the order of Value::data's alternatives):
// its name, what a truncation error calls one value, the fewest bytes one value occupies (to
// bound element counts before anything is allocated) and how to read one.
struct ValueTypeInfo {
  std::string_view name;
  const char* what;
  std::size_t min_bytes;
  Value (*read)(Reader& r, const char* what, const std::string& key, int depth);
};

constexpr ValueTypeInfo kValueTypes[] = {
    {"uint8", "uint8 value", 1, read_number<std::uint8_t>},
    {"int8", "int8 value", 1, read_number<std::int8_t>},
    {"uint16", "uint16 value", 2, read_number<std::uint16_t>},
    {"int16", "int16 value", 2, read_number<std::int16_t>},
    {"uint32", "uint32 value", 4, read_number<std::uint32_t>},
    {"int32", "int32 value", 4, read_number<std::int32_t>},
    {"float32", "float32 value", 4, read_number<float>},
    {"bool", "bool value", 1, read_bool},
    {"string", "string value", 8, read_string_value},  // the 8-byte length
    {"array", "array", 12, read_array},                // element type (4) and count (8)
    {"uint64", "uint64 value", 8, read_number<std::uint64_t>},
    {"int64", "int64 value", 8, read_number<std::int64_t>},
    {"float64", "float64 value", 8, read_number<double>},
};
constexpr std::uint32_t kValueTypeCount = std::size(kValueTypes);
static_assert(kValueTypeCount == std::variant_size_v<decltype(Value::data)>);
static_assert(kValueTypes[static_cast<std::uint32_t>(ValueType::kArray)].name == "array" &&
              kValueTypes[static_cast<std::uint32_t>(ValueType::kFloat64)].name == "float64");

// The value type numbered `raw`; fails naming `what` (e.g. "value type") when there is none.
const ValueTypeInfo& value_type_info(std::uint32_t raw, const std::string& key, const char* what) {
  if (raw >= kValueTypeCount) {
    fail("metadata key " + printable_name(key) + ": " + what + " " + std::to_string(raw) +
         " is not a GGUF value type (expected 0.." + std::to_string(kValueTypeCount - 1) + ")");
  }
  return kValueTypes[raw];
}

Value read_array(Reader& r, const char* /*what*/, const std::string& key, int depth) {
  if (depth >= kMaxArrayDepth) {
    fail("metadata key " + printable_name(key) + ": arrays nested deeper than " +
         std::to_string(kMaxArrayDepth));
  }
  const auto raw_type = r.read<std::uint32_t>("array element type");
  const ValueTypeInfo& element = value_type_info(raw_type, key, "array element type");
  const auto element_type = static_cast<ValueType>(raw_type);
  const auto count = r.read<std::uint64_t>("array length");
  r.check_count(count, element.min_bytes, "metadata key " + printable_name(key) + ": array length");
  Array array;
  array.element_type = element_type;
  array.items.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    array.items.push_back(element.read(r, element.what, key, depth + 1));
  }
  Value v;
  v.data = std::move(array);
  return v;
}

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) {
    fail(what + ": product of dimensions overflows 64 bits");
  }
  return a * b;
}

// Names and keys are identifiers: a control byte in one is corruption, and refusing it keeps
// terminal escapes out of everything that prints them (tq info).
void check_identifier(const std::string& text, const char* what) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      fail(std::string(what) + " " + printable_name(text) +
           " contains a control byte (expected printable text)");
    }
  }
}

}  // namespace

std::string printable_name(std::string_view text, std::size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  const std::size_t shown = std::min(text.size(), max_bytes);
  for (std::size_t i = 0; i < shown; ++i) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (u == '\\' || u == '\'') {
      out += '\\';
      out += static_cast<char>(u);
    } else if (u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += static_cast<char>(u);
    }
  }
  out += '\'';
  if (shown < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Storage: the file's bytes, owned (read with pread, or copied by from_bytes).

struct File::Storage {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  std::unique_ptr<std::uint8_t[]> owned;
};

File::File() = default;
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

std::size_t File::file_size() const {
  return storage_ ? storage_->size : 0;
}

void File::release_tensor_data() {
  for (TensorInfo& t : tensors_) t.data = nullptr;
  if (storage_) {
    storage_->owned.reset();
    storage_->data = nullptr;
  }
}

bool File::has_tensor_data() const {
  return storage_ && storage_->data != nullptr;
}

File File::open(const std::filesystem::path& path) {
  File file;
  file.storage_ = std::make_unique<Storage>();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(),
                            "cannot open GGUF file '" + path.string() + "'");
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    throw std::system_error(errno, std::generic_category(), "cannot stat '" + path.string() + "'");
  }
  if (!S_ISREG(st.st_mode)) {
    throw std::runtime_error("GGUF path '" + path.string() + "' is not a regular file");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  // Uninitialised: pread writes every byte, so zero-filling first would touch each page twice.
  file.storage_->owned = std::make_unique_for_overwrite<std::uint8_t[]>(size);
  std::size_t done = 0;
  while (done < size) {
    const std::size_t want = std::min(kReadChunk, size - done);
    const ssize_t got =
        ::pread(fd, file.storage_->owned.get() + done, want, static_cast<off_t>(done));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(
          errno, std::generic_category(),
          "cannot read '" + path.string() + "' at offset " + std::to_string(done));
    }
    if (got == 0) {
      throw FormatError("GGUF: file shrank while it was read: " + std::to_string(size) +
                        " bytes at open, only " + std::to_string(done) + " could be read [in '" +
                        path.string() + "']");
    }
    done += static_cast<std::size_t>(got);
  }
  file.storage_->data = file.storage_->owned.get();
  file.storage_->size = size;
  try {
    file.parse();
  } catch (const FormatError& e) {
    throw FormatError(std::string(e.what()) + " [in '" + path.string() + "']");
  }
  return file;
}

File File::from_bytes(std::span<const std::uint8_t> bytes) {
  File file;
  file.storage_ = std::make_unique<Storage>();
  file.storage_->owned = std::make_unique_for_overwrite<std::uint8_t[]>(bytes.size());
  if (!bytes.empty()) std::memcpy(file.storage_->owned.get(), bytes.data(), bytes.size());
  file.storage_->data = file.storage_->owned.get();
  file.storage_->size = bytes.size();
  file.parse();
  return file;
}

void File::parse() {
  Reader r(storage_->data, storage_->size);
  const auto magic = r.read<std::uint32_t>("magic");
  if (magic != kMagic) {
    char shown[5] = {};
    std::memcpy(shown, &magic, 4);
    for (char& c : shown) {
      if (c != 0 && (c < 32 || c > 126)) c = '?';
    }
    std::ostringstream msg;
    msg << "bad magic 0x" << std::hex << magic << " ('" << shown
        << "'), expected 0x46554747 ('GGUF')";
    fail(msg.str());
  }
  version_ = r.read<std::uint32_t>("version");
  if (version_ == 0x02000000u || version_ == 0x03000000u) {
    fail("version field reads " + std::to_string(version_) +
         ": this is a big-endian GGUF file (expected little-endian version 2 or 3)");
  }
  if (version_ != 2 && version_ != 3) {
    fail("unsupported version " + std::to_string(version_) + " (expected 2 or 3)");
  }
  const auto n_tensors = r.read<std::uint64_t>("tensor count");
  const auto n_kv = r.read<std::uint64_t>("metadata count");
  // Minimal encodings: key (8) + type (4) + 1-byte value; name (8) + n_dims (4) + type (4) + 8.
  r.check_count(n_kv, 13, "metadata key/value count");
  r.check_count(n_tensors, 24, "tensor count");

  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.read_string("metadata key");
    check_identifier(key, "metadata key");
    const auto raw_type = r.read<std::uint32_t>("metadata value type");
    const ValueTypeInfo& type = value_type_info(raw_type, key, "value type");
    Value value = type.read(r, type.what, key, 0);
    if (metadata_.contains(key)) fail("metadata key " + printable_name(key) + " appears twice");
    metadata_.emplace(std::move(key), std::move(value));
  }

  alignment_ = 32;
  if (const Value* a = find("general.alignment")) {
    const auto v = a->as_integer();
    if (!v || *v <= 0 || (*v & (*v - 1)) != 0 || *v > (1 << 20)) {
      fail("general.alignment is " + a->to_string() + " (expected a power of two up to 2^20)");
    }
    alignment_ = static_cast<std::uint64_t>(*v);
  }

  tensors_.reserve(static_cast<std::size_t>(n_tensors));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo info;
    info.name = r.read_string("tensor name");
    if (info.name.size() > kMaxTensorName) {
      fail("tensor name " + printable_name(info.name) + " is longer than " +
           std::to_string(kMaxTensorName) + " bytes");
    }
    check_identifier(info.name, "tensor name");
    const auto n_dims = r.read<std::uint32_t>("tensor dimension count");
    if (n_dims > kMaxDims) {
      fail("tensor " + printable_name(info.name) + " has " + std::to_string(n_dims) +
           " dimensions (expected at most " + std::to_string(kMaxDims) + ")");
    }
    info.n_elements = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = r.read<std::uint64_t>("tensor dimension");
      info.dims.push_back(dim);
      info.n_elements =
          checked_mul(info.n_elements, dim, "tensor " + printable_name(info.name) + "");
    }
    const auto raw_type = r.read<std::uint32_t>("tensor type");
    info.type = static_cast<TensorType>(raw_type);
    if (!is_supported(info.type)) {
      fail("tensor " + printable_name(info.name) + " has type " + tensor_type_name(info.type) +
           " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
    }
    info.offset = r.read<std::uint64_t>("tensor data offset");
    if (info.offset % alignment_ != 0) {
      fail("tensor " + printable_name(info.name) + " data offset " + std::to_string(info.offset) +
           " is not a multiple of the alignment " + std::to_string(alignment_));
    }
    if (info.row_length() % block_elements(info.type) != 0) {
      fail("tensor " + printable_name(info.name) + " row length " +
           std::to_string(info.row_length()) + " is not a multiple of the " +
           tensor_type_name(info.type) + " block size " +
           std::to_string(block_elements(info.type)));
    }
    const std::uint64_t n_blocks = info.n_elements / block_elements(info.type);
    info.n_bytes = checked_mul(n_blocks, block_bytes(info.type),
                               "tensor " + printable_name(info.name) + " bytes");
    if (tensor_index_.contains(info.name))
      fail("tensor name " + printable_name(info.name) + " appears twice");
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  const std::uint64_t header_end = r.position();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  const std::uint64_t size = storage_->size;
  if (!tensors_.empty() && data_offset_ > size) {
    fail("data section starts at offset " + std::to_string(data_offset_) +
         " but the file is only " + std::to_string(size) + " bytes");
  }
  const std::uint64_t data_size = data_offset_ <= size ? size - data_offset_ : 0;

  // Every tensor must lie inside the data section and tensors must not overlap.
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (auto& info : tensors_) {
    if (info.offset > data_size || info.n_bytes > data_size - info.offset) {
      fail("tensor " + printable_name(info.name) + " occupies bytes [" +
           std::to_string(info.offset) + ", " +
           (info.n_bytes > std::numeric_limits<std::uint64_t>::max() - info.offset
                ? std::string("overflow")
                : std::to_string(info.offset + info.n_bytes)) +
           ") of the data section, which has only " + std::to_string(data_size) + " bytes");
    }
    info.data = storage_->data + data_offset_ + info.offset;
    by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    // Empty tensors first at a shared offset: they end where the next one starts.
    return a->offset != b->offset ? a->offset < b->offset : a->n_bytes < b->n_bytes;
  });
  // Tensors tile the data section in offset order, each starting at the aligned end of the one
  // before: a gap means some tensor's type or shape claims fewer bytes than the writer stored
  // (a type changed to a smaller encoding would otherwise load misread weights).
  const auto aligned = [&](std::uint64_t x) {
    return (x + alignment_ - 1) / alignment_ * alignment_;
  };
  std::uint64_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* cur : by_offset) {
    if (prev != nullptr && prev->offset + prev->n_bytes > cur->offset) {
      fail("tensor " + printable_name(cur->name) + " at data offset " +
           std::to_string(cur->offset) + " overlaps tensor " + printable_name(prev->name) +
           " which ends at " + std::to_string(prev->offset + prev->n_bytes));
    }
    if (cur->offset != expected) {
      fail("tensor " + printable_name(cur->name) + " starts at data offset " +
           std::to_string(cur->offset) + ", expected " + std::to_string(expected) + " (" +
           (prev ? "the aligned end of tensor " + printable_name(prev->name) + ", " +
                       tensor_type_name(prev->type) + " " + std::to_string(prev->n_bytes) + " bytes"
                 : std::string("the start of the data section")) +
           "): a gap between tensors means a type or shape disagrees with the stored bytes");
    }
    expected = aligned(cur->offset + cur->n_bytes);
    prev = cur;
  }
  // After the last tensor only its alignment padding may follow (it may also be cut off).
  if (prev != nullptr && data_size > expected) {
    fail(std::to_string(data_size - expected) + " bytes follow the last tensor " +
         printable_name(prev->name) +
         " (expected at most its alignment padding): a type or shape "
         "disagrees with the stored bytes, or the file has trailing data");
  }
}

// ---------------------------------------------------------------------------------------------
// Metadata access.

bool File::has(std::string_view key) const {
  return metadata_.find(key) != metadata_.end();
}

const Value* File::find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const Value& File::get(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) fail("metadata key " + printable_name(key) + " is missing");
  return *v;
}

namespace {

using ValueVariant = decltype(Value::data);

// Index of T among the variant alternatives, which is also its GGUF ValueType number.
template <typename T, std::size_t I = 0>
constexpr ValueType value_type_of() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, ValueVariant>, T>) {
    return static_cast<ValueType>(I);
  } else {
    return value_type_of<T, I + 1>();
  }
}

template <typename T>
const T& typed(const Value& v, std::string_view key) {
  if (const T* p = std::get_if<T>(&v.data)) return *p;
  fail("metadata key " + printable_name(key) + " has type " +
       std::string(value_type_name(v.type())) + " (expected " +
       std::string(value_type_name(value_type_of<T>())) + ")");
}

template <typename T>
std::optional<T> find_typed(const File& f, std::string_view key) {
  const Value* v = f.find(key);
  if (v == nullptr) return std::nullopt;
  return typed<T>(*v, key);
}

template <typename T>
std::vector<T> typed_array(const File& f, std::string_view key) {
  const Array& a = f.get_array(key);
  if (a.element_type != value_type_of<T>()) {
    fail("metadata key " + printable_name(key) + " is an array of " +
         std::string(value_type_name(a.element_type)) + " (expected an array of " +
         std::string(value_type_name(value_type_of<T>())) + ")");
  }
  std::vector<T> out;
  out.reserve(a.items.size());
  for (const Value& item : a.items) out.push_back(std::get<T>(item.data));
  return out;
}

}  // namespace

std::uint32_t File::get_u32(std::string_view key) const {
  return typed<std::uint32_t>(get(key), key);
}
std::int32_t File::get_i32(std::string_view key) const {
  return typed<std::int32_t>(get(key), key);
}
std::uint64_t File::get_u64(std::string_view key) const {
  return typed<std::uint64_t>(get(key), key);
}
float File::get_f32(std::string_view key) const {
  return typed<float>(get(key), key);
}
bool File::get_bool(std::string_view key) const {
  return typed<bool>(get(key), key);
}
const std::string& File::get_string(std::string_view key) const {
  return typed<std::string>(get(key), key);
}
const Array& File::get_array(std::string_view key) const {
  return typed<Array>(get(key), key);
}

std::int64_t File::get_integer(std::string_view key) const {
  const Value& v = get(key);
  if (auto i = v.as_integer()) return *i;
  fail("metadata key " + printable_name(key) + " has type " +
       std::string(value_type_name(v.type())) + " (expected an integer)");
}

std::vector<std::string> File::get_string_array(std::string_view key) const {
  return typed_array<std::string>(*this, key);
}
std::vector<float> File::get_f32_array(std::string_view key) const {
  return typed_array<float>(*this, key);
}
std::vector<std::int32_t> File::get_i32_array(std::string_view key) const {
  return typed_array<std::int32_t>(*this, key);
}

std::optional<std::uint32_t> File::find_u32(std::string_view key) const {
  return find_typed<std::uint32_t>(*this, key);
}
std::optional<float> File::find_f32(std::string_view key) const {
  return find_typed<float>(*this, key);
}
std::optional<bool> File::find_bool(std::string_view key) const {
  return find_typed<bool>(*this, key);
}
std::optional<std::string> File::find_string(std::string_view key) const {
  return find_typed<std::string>(*this, key);
}
std::optional<std::int64_t> File::find_integer(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return get_integer(key);
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (t == nullptr) fail("tensor " + printable_name(name) + " is missing");
  return *t;
}

std::vector<float> File::dequantize(const TensorInfo& info) const {
  std::vector<float> out(static_cast<std::size_t>(info.n_elements));
  dequantize_rows(info, 0, info.n_rows(), out.data());
  return out;
}

void File::dequantize_rows(const TensorInfo& info, std::uint64_t row_begin, std::uint64_t row_count,
                           float* dst) const {
  const std::uint64_t rows = info.n_rows();
  if (row_begin > rows || row_count > rows - row_begin) {
    throw std::out_of_range("tensor " + printable_name(info.name) + ": rows [" +
                            std::to_string(row_begin) + ", " +
                            std::to_string(row_begin + row_count) + ") out of range (tensor has " +
                            std::to_string(rows) + " rows)");
  }
  if (row_count == 0) return;
  if (!info.data) {
    throw std::logic_error("tensor " + printable_name(info.name) +
                           ": the file's tensor data was released (File::release_tensor_data)");
  }
  const std::size_t stride = info.bytes_per_row();
  const std::size_t n = static_cast<std::size_t>(row_count * info.row_length());
  tq::gguf::dequantize(info.type, info.data + row_begin * stride, dst, n);
}

// ---------------------------------------------------------------------------------------------
// Value helpers.

std::string_view value_type_name(ValueType type) {
  const auto raw = static_cast<std::uint32_t>(type);
  return raw < kValueTypeCount ? kValueTypes[raw].name : "unknown";
}

std::optional<std::int64_t> Value::as_integer() const {
  return std::visit(
      [](const auto& x) -> std::optional<std::int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool> || std::is_floating_point_v<T> ||
                      !std::is_integral_v<T>) {
          return std::nullopt;
        } else if constexpr (std::is_same_v<T, std::uint64_t>) {
          if (x > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
            return std::nullopt;
          }
          return static_cast<std::int64_t>(x);
        } else {
          return static_cast<std::int64_t>(x);
        }
      },
      data);
}

std::optional<double> Value::as_number() const {
  return std::visit(
      [](const auto& x) -> std::optional<double> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool> || !std::is_arithmetic_v<T>) {
          return std::nullopt;
        } else {
          return static_cast<double>(x);
        }
      },
      data);
}

std::string Value::to_string(std::size_t max_items) const {
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          std::string s = x.size() > 80 ? x.substr(0, 77) + "..." : x;
          std::string out = "\"";
          for (char c : s) {
            const auto u = static_cast<unsigned char>(c);
            if (c == '\n') {
              out += "\\n";
            } else if (c == '"') {
              out += "\\\"";
            } else if (u < 0x20 || u == 0x7f) {  // no terminal escapes from a file's strings
              static constexpr char kHex[] = "0123456789abcdef";
              out += "\\x";
              out += kHex[u >> 4];
              out += kHex[u & 15];
            } else {
              out += c;
            }
          }
          return out + "\"";
        } else if constexpr (std::is_same_v<T, Array>) {
          std::string out = "[";
          for (std::size_t i = 0; i < x.items.size() && i < max_items; ++i) {
            if (i) out += ", ";
            out += x.items[i].to_string(max_items);
          }
          if (x.items.size() > max_items) {
            out += ", ... (" + std::to_string(x.items.size()) + " " +
                   std::string(value_type_name(x.element_type)) + ")";
          }
          return out + "]";
        } else if constexpr (std::is_floating_point_v<T>) {
          std::ostringstream os;
          os << x;
          return os.str();
        } else {
          return std::to_string(x);
        }
      },
      data);
}

}  // namespace tq::gguf
