// The library GGUF writer (gguf_writer.hpp) against the reader: every metadata value type (and
// nested arrays) and every tensor byte survive write -> File::open / from_bytes; tensors are
// placed at general.alignment; rows come from the source in bounded chunks whatever the tensor
// size; bad keys, tensors and paths are refused with messages that name them, and a failed write
// leaves no file behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "turboquant/model/gguf.hpp"
#include "turboquant/model/gguf_writer.hpp"

namespace {

using tq::gguf::Array;
using tq::gguf::File;
using tq::gguf::TensorEntry;
using tq::gguf::TensorType;
using tq::gguf::Value;
using tq::gguf::ValueType;
using tq::gguf::Writer;

std::vector<std::uint8_t> random_bytes(std::size_t n, std::mt19937& rng) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

// Deep equality of two metadata values, types included.
bool same(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  if (const auto* x = std::get_if<Array>(&a.data)) {
    const auto& y = std::get<Array>(b.data);
    if (x->element_type != y.element_type || x->items.size() != y.items.size()) return false;
    for (std::size_t i = 0; i < x->items.size(); ++i) {
      if (!same(x->items[i], y.items[i])) return false;
    }
    return true;
  }
  if (const auto* x = std::get_if<float>(&a.data)) {  // bitwise, so NaN payloads count too
    return std::memcmp(x, &std::get<float>(b.data), 4) == 0;
  }
  if (const auto* x = std::get_if<double>(&a.data)) {
    return std::memcmp(x, &std::get<double>(b.data), 8) == 0;
  }
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Array>) {
          return false;  // handled above
        } else {
          return x == std::get<T>(b.data);
        }
      },
      a.data);
}

std::filesystem::path temp_path(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("tq_writer_" + std::to_string(::getpid()) + "_" + name);
}

Writer every_value_type(std::mt19937& rng) {
  Writer w;
  w.set("u8", Value{static_cast<std::uint8_t>(rng())});
  w.set("i8", Value{static_cast<std::int8_t>(rng())});
  w.set("u16", Value{static_cast<std::uint16_t>(rng())});
  w.set("i16", Value{static_cast<std::int16_t>(rng())});
  w.set_u32("u32", static_cast<std::uint32_t>(rng()));
  w.set_i32("i32", static_cast<std::int32_t>(rng()));
  w.set_f32("f32", std::uniform_real_distribution<float>(-1e6f, 1e6f)(rng));
  w.set_bool("bool.true", true);
  w.set_bool("bool.false", false);
  w.set_string("string", "h\xc3\xa9llo \"world\"\n");
  w.set_string("string.empty", "");
  w.set_u64("u64", (std::uint64_t{rng()} << 32) | rng());
  w.set("i64", Value{static_cast<std::int64_t>((std::uint64_t{rng()} << 32) | rng())});
  w.set("f64", Value{std::uniform_real_distribution<double>(-1e300, 1e300)(rng)});
  w.set_string_array("array.string", {"a", "", "ccc"});
  w.set_f32_array("array.f32", {1.5f, -2.25f});
  w.set_i32_array("array.i32", {-1, 0, 7});
  w.set_string_array("array.empty", {});
  Array inner_a{ValueType::kUint16, {Value{std::uint16_t{1}}, Value{std::uint16_t{2}}}};
  Array inner_b{ValueType::kUint16, {}};
  w.set("array.nested", Value{Array{ValueType::kArray, {Value{inner_a}, Value{inner_b}}}});
  return w;
}

TEST(GgufWriter, EveryValueTypeAndTensorRoundTrips) {
  std::random_device seed_source;
  const unsigned seed = seed_source();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  Writer w = every_value_type(rng);
  // Every loadable type, odd byte counts (the 1-row BF16, the 3-D Q4_0) included.
  w.add_tensor({"t.f32", {5, 3}, TensorType::kF32, random_bytes(60, rng)});
  w.add_tensor({"t.f16", {7}, TensorType::kF16, random_bytes(14, rng)});
  w.add_tensor({"t.bf16", {3, 1}, TensorType::kBF16, random_bytes(6, rng)});
  w.add_tensor({"t.q8_0", {64, 2}, TensorType::kQ8_0, random_bytes(4 * 34, rng)});
  w.add_tensor({"t.q4_0", {32, 2, 3}, TensorType::kQ4_0, random_bytes(6 * 18, rng)});
  w.add_tensor({"t.q4_k", {256}, TensorType::kQ4_K, random_bytes(144, rng)});
  w.add_tensor({"t.empty", {0}, TensorType::kF32, {}});

  const std::vector<std::uint8_t> bytes = w.to_bytes();
  EXPECT_EQ(bytes.size(), w.file_size());
  const auto path = temp_path("round_trip.gguf");
  w.write(path);
  EXPECT_EQ(std::filesystem::file_size(path), bytes.size());
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  const File f = File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.metadata().size(), w.metadata().size());
  for (const auto& [key, value] : w.metadata()) {
    const Value* got = f.find(key);
    ASSERT_NE(got, nullptr) << key;
    EXPECT_TRUE(same(*got, value))
        << key << ": wrote " << value.to_string() << ", read " << got->to_string();
  }
  ASSERT_EQ(f.tensors().size(), w.tensors().size());
  for (std::size_t i = 0; i < w.tensors().size(); ++i) {
    const TensorEntry& t = w.tensors()[i];
    const auto& info = f.tensors()[i];
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.dims, t.dims);
    EXPECT_EQ(info.type, t.type);
    EXPECT_EQ(info.offset % 32, 0u);
    ASSERT_EQ(info.n_bytes, t.data.size()) << t.name;
    EXPECT_TRUE(std::equal(t.data.begin(), t.data.end(), info.data)) << t.name;
  }
  // The in-memory bytes are the file's bytes.
  std::ifstream in(path, std::ios::binary);
  const std::vector<std::uint8_t> on_disk((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(on_disk, bytes);
  std::filesystem::remove(path);
}

// Rows from a source, at a larger alignment; a tensor above kChunkBytes arrives in several
// chunks that tile its rows exactly, and progress ends at the total.
TEST(GgufWriter, SourceRowsAreChunkedAndAligned) {
  Writer w;
  w.set_u32("general.alignment", 256);
  const std::uint64_t big_rows = Writer::kChunkBytes / 4096 * 2 + 3;  // > 2 chunks of 4 KiB rows
  w.add_tensor({"small", {32, 3}, TensorType::kQ8_0, {}});
  w.add_tensor({"big", {1024, big_rows}, TensorType::kF32, {}});
  // Byte k of row r of tensor i is a function of (i, r, k) only.
  auto byte_at = [](std::size_t i, std::uint64_t r, std::size_t k) {
    return static_cast<std::uint8_t>(i * 131 + r * 7 + k * 3);
  };
  std::vector<std::uint64_t> next_row(2, 0);
  int chunks = 0;
  const auto source = [&](std::size_t i, std::uint64_t begin, std::uint64_t count,
                          std::span<std::uint8_t> out) {
    EXPECT_EQ(begin, next_row[i]);  // in order, no gaps
    next_row[i] = begin + count;
    const std::size_t stride = w.tensors()[i].bytes_per_row();
    ASSERT_EQ(out.size(), count * stride);
    EXPECT_LE(out.size(), std::max<std::uint64_t>(Writer::kChunkBytes, stride));
    for (std::uint64_t r = 0; r < count; ++r) {
      for (std::size_t k = 0; k < stride; ++k) out[r * stride + k] = byte_at(i, begin + r, k);
    }
    ++chunks;
  };
  std::uint64_t last_done = 0, last_total = 0;
  const auto progress = [&](std::size_t, std::size_t count, std::uint64_t done,
                            std::uint64_t total) {
    EXPECT_EQ(count, 2u);
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  };
  const auto path = temp_path("chunks.gguf");
  w.write(path, source, progress);
  EXPECT_EQ(next_row[0], 3u);
  EXPECT_EQ(next_row[1], big_rows);
  EXPECT_GE(chunks, 4);  // the small tensor once, the big one at least three times
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, 3u * 34 + big_rows * 4096);
  const File f = File::open(path);
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& info = f.tensors()[i];
    EXPECT_EQ(info.offset % 256, 0u);
    const std::size_t stride = info.bytes_per_row();
    bool equal = true;
    for (std::uint64_t r = 0; r < info.n_rows() && equal; ++r) {
      for (std::size_t k = 0; k < stride; ++k) {
        if (info.data[r * stride + k] != byte_at(i, r, k)) {
          ADD_FAILURE() << info.name << " row " << r << " byte " << k;
          equal = false;
          break;
        }
      }
    }
  }
  std::filesystem::remove(path);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

TEST(GgufWriter, RefusesWhatTheReaderWouldNot) {
  Writer w;
  w.set_u32("k", 1);
  EXPECT_NE(message_of([&] { w.set_u32("k", 2); }).find("'k' is set twice"), std::string::npos);
  EXPECT_THROW(w.set_u32("general.alignment", 48), std::invalid_argument);
  EXPECT_THROW(w.set_string("general.alignment", "32"), std::invalid_argument);
  const Value mixed{Array{ValueType::kInt32, {Value{std::int32_t{1}}, Value{1.0f}}}};
  EXPECT_NE(message_of([&] { w.set("mixed", mixed); }).find("item 1 has type float32"),
            std::string::npos);
  w.add_tensor({"a", {32}, TensorType::kQ4_0, {}});
  EXPECT_NE(message_of([&] {
              w.add_tensor({"a", {32}, TensorType::kF32, {}});
            }).find("'a' is added twice"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              w.add_tensor({"b", {48}, TensorType::kQ8_0, {}});
            }).find("row length 48 is not a multiple of the Q8_0 block size 32"),
            std::string::npos);
  EXPECT_THROW(w.add_tensor({"c", {1, 1, 1, 1, 1}, TensorType::kF32, {}}), std::invalid_argument);
  EXPECT_THROW(w.add_tensor({"d", {32}, TensorType::kQ8_1, {}}), std::invalid_argument);
  EXPECT_NE(message_of([&] {
              w.add_tensor({"e", {4}, TensorType::kF32, {1, 2, 3}});
            }).find("3 bytes of data, expected 16"),
            std::string::npos);
  // Alignment moves tensor offsets, so it cannot change once a tensor is declared.
  EXPECT_THROW(w.set_u32("general.alignment", 64), std::invalid_argument);
  // "a" has no data and there is no source.
  EXPECT_THROW(w.to_bytes(), std::invalid_argument);

  const auto path = temp_path("failed.gguf");
  EXPECT_THROW(w.write(path), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  const std::string unwritable = message_of([&] { w.write("/nonexistent/dir/x.gguf"); });
  EXPECT_NE(unwritable.find("cannot write GGUF file '/nonexistent/dir/x.gguf'"), std::string::npos)
      << unwritable;
}

}  // namespace
