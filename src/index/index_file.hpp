// The index file container: magic (8 bytes), u32 version, u64 payload length, payload,
// u64 FNV-1a checksum of the payload; all little-endian as the host writes it (x86).
// FileReader checks every length against the bytes left before reading, so a truncated or
// corrupted file is a std::runtime_error naming the file and what was wrong, never a crash.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace tq::index {

inline constexpr char kFlatIndexMagic[9] = "TQVFLAT1";
// Version 2 records the rotation kind; version 1 files (no field) implied hadamard for d = 2^k
// and haar otherwise, and still load.
inline constexpr std::uint32_t kFlatIndexVersion = 2;

class FileWriter {
 public:
  void put_u32(std::uint32_t v) { put_raw(&v, sizeof v); }
  void put_u64(std::uint64_t v) { put_raw(&v, sizeof v); }
  void put_f64(double v) { put_raw(&v, sizeof v); }
  template <class T>
  void put_array(const std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    put_u64(v.size());
    put_raw(v.data(), v.size() * sizeof(T));
  }
  void write_file(const std::string& path, const char* magic, std::uint32_t version) const;

 private:
  void put_raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<std::uint8_t> bytes_;
};

class FileReader {
 public:
  // Reads the whole file and checks magic, version (oldest..newest), length and checksum.
  FileReader(const std::string& path, const char* magic, std::uint32_t oldest,
             std::uint32_t newest);
  std::uint32_t version() const { return version_; }
  std::uint32_t get_u32() { return get<std::uint32_t>(); }
  std::uint64_t get_u64() { return get<std::uint64_t>(); }
  // The next u64 without consuming it (an array's length, to check before get_array).
  std::uint64_t peek_u64() {
    const std::uint64_t v = get_u64();
    pos_ -= sizeof v;
    return v;
  }
  double get_f64() { return get<double>(); }
  template <class T>
  void get_array(std::vector<T>& out, std::uint64_t expected, const char* what) {
    static_assert(std::is_trivially_copyable_v<T>);
    const std::uint64_t n = get_u64();
    if (n != expected) {
      fail(std::string(what) + " has " + std::to_string(n) + " entries, expected " +
           std::to_string(expected));
    }
    need(n * sizeof(T), what);
    out.resize(n);
    if (n) std::memcpy(out.data(), payload_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
  }
  // Every payload byte must have been read.
  void finish();
  [[noreturn]] void fail(const std::string& why) const;

 private:
  template <class T>
  T get() {
    need(sizeof(T), "header field");
    T v;
    std::memcpy(&v, payload_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  void need(std::uint64_t n, const char* what) const;

  std::string path_;
  std::vector<std::uint8_t> payload_;
  std::size_t pos_ = 0;
  std::uint32_t version_ = 0;
};

}  // namespace tq::index
