// Test helper: a tiny GGUF writer that builds files in memory, so the loader can be tested on
// every value type and on deliberately malformed variants without binary fixtures.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "turboquant/model/gguf.hpp"

namespace tq::gguf::testing {

// Little-endian byte sink with the GGUF primitive encodings.
struct ByteWriter {
  std::vector<std::uint8_t> bytes;

  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<std::uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void pad_to(std::size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
  }
};

struct TensorSpec {
  std::string name;
  std::vector<std::uint64_t> dims;
  std::uint32_t type = 0;
  std::vector<std::uint8_t> data;
  // When set, written instead of the computed offset (to build broken files).
  std::optional<std::uint64_t> offset_override;
};

// Builds a well-formed GGUF file from metadata entries and tensors; fields can be overridden to
// produce malformed files.
class GgufBuilder {
 public:
  std::uint32_t magic = 0x46554747;
  std::uint32_t version = 3;
  std::optional<std::uint64_t> tensor_count_override;
  std::optional<std::uint64_t> kv_count_override;
  std::uint64_t alignment = 32;  // used for layout; write general.alignment yourself if not 32

  // Adds a raw key/value: the caller writes the value type and value bytes.
  ByteWriter& begin_kv(const std::string& key, ValueType type) {
    ++n_kv_;
    kv_.put_string(key);
    kv_.put<std::uint32_t>(static_cast<std::uint32_t>(type));
    return kv_;
  }
  template <typename T>
  void add(const std::string& key, ValueType type, T value) {
    begin_kv(key, type).put<T>(value);
  }
  void add_string(const std::string& key, const std::string& value) {
    begin_kv(key, ValueType::kString).put_string(value);
  }
  void add_string_array(const std::string& key, const std::vector<std::string>& values) {
    ByteWriter& w = begin_kv(key, ValueType::kArray);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kString));
    w.put<std::uint64_t>(values.size());
    for (const auto& v : values) w.put_string(v);
  }
  template <typename T>
  void add_array(const std::string& key, ValueType element_type, const std::vector<T>& values) {
    ByteWriter& w = begin_kv(key, ValueType::kArray);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(element_type));
    w.put<std::uint64_t>(values.size());
    for (const auto& v : values) w.put<T>(v);
  }
  void add_tensor(TensorSpec t) { tensors_.push_back(std::move(t)); }

  std::vector<std::uint8_t> build() const {
    ByteWriter w;
    w.put<std::uint32_t>(magic);
    w.put<std::uint32_t>(version);
    w.put<std::uint64_t>(tensor_count_override.value_or(tensors_.size()));
    w.put<std::uint64_t>(kv_count_override.value_or(n_kv_));
    w.bytes.insert(w.bytes.end(), kv_.bytes.begin(), kv_.bytes.end());
    std::vector<std::uint64_t> offsets;
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      offsets.push_back(offset);
      offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      w.put_string(t.name);
      w.put<std::uint32_t>(static_cast<std::uint32_t>(t.dims.size()));
      for (auto d : t.dims) w.put<std::uint64_t>(d);
      w.put<std::uint32_t>(t.type);
      w.put<std::uint64_t>(t.offset_override.value_or(offsets[i]));
    }
    if (!tensors_.empty()) {
      w.pad_to(alignment);
      for (const auto& t : tensors_) {
        w.bytes.insert(w.bytes.end(), t.data.begin(), t.data.end());
        w.pad_to(alignment);
      }
    }
    return w.bytes;
  }

 private:
  ByteWriter kv_;
  std::uint64_t n_kv_ = 0;
  std::vector<TensorSpec> tensors_;
};

inline std::vector<std::uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<std::uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

inline std::filesystem::path write_temp_file(const std::string& name,
                                             const std::vector<std::uint8_t>& bytes) {
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace tq::gguf::testing
