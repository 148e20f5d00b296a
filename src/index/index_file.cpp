// Reading and writing the index file container (index_file.hpp).
#include "index/index_file.hpp"

#include "turboquant/base/hash.hpp"

#include <fstream>
#include <iterator>

namespace tq::index {

void FileWriter::write_file(const std::string& path, const char* magic,
                            std::uint32_t version) const {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("index file " + path + ": cannot open for writing");
  const std::uint64_t len = bytes_.size();
  const std::uint64_t sum = fnv1a64(bytes_.data(), bytes_.size());
  f.write(magic, 8);
  f.write(reinterpret_cast<const char*>(&version), sizeof version);
  f.write(reinterpret_cast<const char*>(&len), sizeof len);
  f.write(reinterpret_cast<const char*>(bytes_.data()), static_cast<std::streamsize>(len));
  f.write(reinterpret_cast<const char*>(&sum), sizeof sum);
  if (!f) throw std::runtime_error("index file " + path + ": write failed");
}

FileReader::FileReader(const std::string& path, const char* magic, std::uint32_t oldest,
                       std::uint32_t newest)
    : path_(path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("index file " + path + ": cannot open for reading");
  std::vector<std::uint8_t> all((std::istreambuf_iterator<char>(f)),
                                std::istreambuf_iterator<char>());
  constexpr std::size_t head = 8 + 4 + 8;
  if (all.size() < head + 8) {
    fail("is " + std::to_string(all.size()) + " bytes, shorter than the " +
         std::to_string(head + 8) + "-byte header and checksum");
  }
  if (std::memcmp(all.data(), magic, 8) != 0) {
    fail("bad magic (expected '" + std::string(magic, 8) + "'): not a turboquant index");
  }
  std::uint32_t v;
  std::memcpy(&v, all.data() + 8, 4);
  if (v < oldest || v > newest) {
    fail("version " + std::to_string(v) + ", this build reads versions " + std::to_string(oldest) +
         " to " + std::to_string(newest));
  }
  version_ = v;
  std::uint64_t len;
  std::memcpy(&len, all.data() + 12, 8);
  if (len != all.size() - head - 8) {
    fail("payload length " + std::to_string(len) + " but the file holds " +
         std::to_string(all.size() - head - 8) + " payload bytes (truncated or corrupt)");
  }
  std::uint64_t sum;
  std::memcpy(&sum, all.data() + head + len, 8);
  if (sum != fnv1a64(all.data() + head, len)) fail("checksum mismatch (corrupt file)");
  payload_.assign(all.begin() + head, all.begin() + static_cast<std::ptrdiff_t>(head + len));
}

void FileReader::need(std::uint64_t n, const char* what) const {
  if (n > payload_.size() - pos_) {
    fail(std::string(what) + " needs " + std::to_string(n) + " bytes, only " +
         std::to_string(payload_.size() - pos_) + " left");
  }
}

void FileReader::finish() {
  if (pos_ != payload_.size()) {
    fail(std::to_string(payload_.size() - pos_) + " unread bytes after the last field");
  }
}

void FileReader::fail(const std::string& why) const {
  throw std::runtime_error("index file " + path_ + ": " + why);
}

}  // namespace tq::index
