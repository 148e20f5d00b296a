// Tests of the GGUF loader: every metadata value type, the typed getters, tensor directory and
// alignment, every class of malformed file (each must raise FormatError, never crash), a file
// truncated after it was opened, the model-level checks of a file (tensor set against
// block_count, embedding rows against the tokenizer, finite RoPE numbers), and the real default
// model when it is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

#include "test_gguf_writer.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/gguf_writer.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/random_model.hpp"

// Timing bounds are only asserted in optimized builds without sanitizers.
#if defined(__SANITIZE_ADDRESS__)
#define TQ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define TQ_SANITIZED 1
#endif
#endif
#ifndef TQ_SANITIZED
#define TQ_SANITIZED 0
#endif

namespace tq::gguf {
namespace {

using testing::GgufBuilder;
using testing::TensorSpec;

// A small valid file with a few keys and two F32 tensors.
GgufBuilder small_valid_builder() {
  GgufBuilder b;
  b.add_string("general.architecture", "llama");
  b.add<std::uint32_t>("llama.block_count", ValueType::kUint32, 2);
  b.add_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  b.add_tensor({"t0", {4, 2}, 0, testing::f32_bytes({1, 2, 3, 4, 5, 6, 7, 8}), {}});
  b.add_tensor({"t1", {3}, 0, testing::f32_bytes({-1, -2, -3}), {}});
  return b;
}

File parse(const std::vector<std::uint8_t>& bytes) {
  return File::from_bytes(bytes);
}

// Expects FormatError whose message contains `needle`.
void expect_format_error(const std::vector<std::uint8_t>& bytes, const std::string& needle) {
  try {
    parse(bytes);
    FAIL() << "expected FormatError containing '" << needle << "'";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

TEST(GgufMetadata, EveryValueTypeRoundTrips) {
  GgufBuilder b;
  b.add<std::uint8_t>("u8", ValueType::kUint8, 200);
  b.add<std::int8_t>("i8", ValueType::kInt8, -100);
  b.add<std::uint16_t>("u16", ValueType::kUint16, 60000);
  b.add<std::int16_t>("i16", ValueType::kInt16, -30000);
  b.add<std::uint32_t>("u32", ValueType::kUint32, 4000000000u);
  b.add<std::int32_t>("i32", ValueType::kInt32, -2000000000);
  b.add<float>("f32", ValueType::kFloat32, 1.5f);
  b.add<std::uint8_t>("bool", ValueType::kBool, 1);
  b.add_string("str", "h\xc3\xa9llo");
  b.add<std::uint64_t>("u64", ValueType::kUint64, 1ull << 40);
  b.add<std::int64_t>("i64", ValueType::kInt64, -(1ll << 40));
  b.add<double>("f64", ValueType::kFloat64, 2.25);
  b.add_string_array("strs", {"x", "", "yz"});
  b.add_array<float>("floats", ValueType::kFloat32, {0.5f, -1.0f});
  b.add_array<std::int32_t>("ints", ValueType::kInt32, {3, -4, 5});
  {  // array of arrays of uint8
    auto& w = b.begin_kv("nested", ValueType::kArray);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kArray));
    w.put<std::uint64_t>(2);
    for (int i = 0; i < 2; ++i) {
      w.put<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kUint8));
      w.put<std::uint64_t>(1);
      w.put<std::uint8_t>(static_cast<std::uint8_t>(7 + i));
    }
  }
  const File f = parse(b.build());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 16u);
  EXPECT_EQ(std::get<std::uint8_t>(f.get("u8").data), 200);
  EXPECT_EQ(std::get<std::int8_t>(f.get("i8").data), -100);
  EXPECT_EQ(std::get<std::uint16_t>(f.get("u16").data), 60000);
  EXPECT_EQ(std::get<std::int16_t>(f.get("i16").data), -30000);
  EXPECT_EQ(f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(f.get_i32("i32"), -2000000000);
  EXPECT_EQ(f.get_f32("f32"), 1.5f);
  EXPECT_TRUE(f.get_bool("bool"));
  EXPECT_EQ(f.get_string("str"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_u64("u64"), 1ull << 40);
  EXPECT_EQ(std::get<std::int64_t>(f.get("i64").data), -(1ll << 40));
  EXPECT_EQ(std::get<double>(f.get("f64").data), 2.25);
  EXPECT_EQ(f.get_string_array("strs"), (std::vector<std::string>{"x", "", "yz"}));
  EXPECT_EQ(f.get_f32_array("floats"), (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(f.get_i32_array("ints"), (std::vector<std::int32_t>{3, -4, 5}));
  const Array& nested = f.get_array("nested");
  ASSERT_EQ(nested.element_type, ValueType::kArray);
  ASSERT_EQ(nested.items.size(), 2u);
  EXPECT_EQ(std::get<std::uint8_t>(std::get<Array>(nested.items[1].data).items[0].data), 8);
  // Integer conversions accept any integer type.
  EXPECT_EQ(f.get_integer("u8"), 200);
  EXPECT_EQ(f.get_integer("i16"), -30000);
  EXPECT_EQ(f.get_integer("u64"), 1ll << 40);
  EXPECT_EQ(f.get("f64").as_number().value(), 2.25);
  EXPECT_FALSE(f.get("str").as_integer().has_value());
}

TEST(GgufMetadata, GettersThrowOnMissingOrWrongType) {
  GgufBuilder b;
  b.add<std::uint32_t>("n", ValueType::kUint32, 5);
  b.add_string("s", "text");
  b.add_array<float>("floats", ValueType::kFloat32, {1.0f});
  const File f = parse(b.build());
  EXPECT_THROW(f.get_u32("missing"), FormatError);
  try {
    f.get_string("n");
    FAIL();
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'n'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("uint32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expected string"), std::string::npos) << msg;
  }
  EXPECT_THROW(f.get_f32("n"), FormatError);
  EXPECT_THROW(f.get_u64("n"), FormatError);
  EXPECT_THROW(f.get_integer("s"), FormatError);
  EXPECT_THROW(f.get_string_array("floats"), FormatError);
  EXPECT_THROW(f.get_array("s"), FormatError);
  // Optional variants: nullopt when missing, throw when present with another type.
  EXPECT_FALSE(f.find_u32("missing").has_value());
  EXPECT_FALSE(f.find_string("missing").has_value());
  EXPECT_EQ(f.find_u32("n").value(), 5u);
  EXPECT_EQ(f.find_string("s").value(), "text");
  EXPECT_THROW(f.find_f32("n"), FormatError);
  EXPECT_THROW(f.find_bool("s"), FormatError);
  EXPECT_EQ(f.find(std::string_view("missing")), nullptr);
}

TEST(GgufTensors, DirectoryAndDataAreRead) {
  for (std::uint32_t version : {2u, 3u}) {
    GgufBuilder b = small_valid_builder();
    b.version = version;
    const File f = parse(b.build());
    EXPECT_EQ(f.version(), version);
    ASSERT_EQ(f.tensors().size(), 2u);
    const TensorInfo& t0 = f.tensor("t0");
    EXPECT_EQ(t0.dims, (std::vector<std::uint64_t>{4, 2}));
    EXPECT_EQ(t0.n_elements, 8u);
    EXPECT_EQ(t0.n_rows(), 2u);
    EXPECT_EQ(t0.n_bytes, 32u);
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_EQ(f.dequantize(t0), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
    std::vector<float> row(4);
    f.dequantize_rows(t0, 1, 1, row.data());
    EXPECT_EQ(row, (std::vector<float>{5, 6, 7, 8}));
    EXPECT_THROW(f.dequantize_rows(t0, 1, 2, row.data()), std::out_of_range);
    EXPECT_EQ(f.dequantize(f.tensor("t1")), (std::vector<float>{-1, -2, -3}));
    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    EXPECT_THROW(f.tensor("nope"), FormatError);
  }
}

TEST(GgufTensors, CustomAlignmentIsHonoured) {
  GgufBuilder b = small_valid_builder();
  b.alignment = 64;
  b.add<std::uint32_t>("general.alignment", ValueType::kUint32, 64);
  const File f = parse(b.build());
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensor("t1").offset, 64u);
  EXPECT_EQ(f.dequantize(f.tensor("t1")), (std::vector<float>{-1, -2, -3}));
}

TEST(GgufTensors, OpensFromDiskWithMmap) {
  const auto path = testing::write_temp_file("tq_test_small.gguf", small_valid_builder().build());
  const File f = File::open(path);
  EXPECT_EQ(f.dequantize(f.tensor("t0"))[7], 8.0f);
  std::filesystem::remove(path);
  EXPECT_THROW(File::open("/nonexistent/tq/model.gguf"), std::runtime_error);
}

// ---- malformed files -------------------------------------------------------------------------

TEST(GgufMalformed, BadMagic) {
  GgufBuilder b = small_valid_builder();
  b.magic = 0x4c4c4747;  // "GGLL"
  expect_format_error(b.build(), "bad magic");
  expect_format_error({}, "truncated");
}

TEST(GgufMalformed, UnsupportedVersion) {
  for (std::uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    GgufBuilder b = small_valid_builder();
    b.version = v;
    expect_format_error(b.build(), "unsupported version " + std::to_string(v));
  }
  GgufBuilder big_endian = small_valid_builder();
  big_endian.version = 0x03000000u;
  expect_format_error(big_endian.build(), "big-endian");
}

TEST(GgufMalformed, EveryTruncationIsRejected) {
  const auto bytes = small_valid_builder().build();
  // Bytes after the last tensor's data are padding: cutting them leaves a valid file.
  const File full = parse(bytes);
  std::size_t needed = 0;
  for (const auto& t : full.tensors()) {
    needed = std::max<std::size_t>(needed, full.data_offset() + t.offset + t.n_bytes);
  }
  ASSERT_LT(needed, bytes.size());
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    if (len < needed) {
      EXPECT_THROW(parse(cut), FormatError) << "prefix of " << len << " bytes";
    } else {
      EXPECT_NO_THROW(parse(cut)) << "prefix of " << len << " bytes";
    }
  }
}

TEST(GgufMalformed, AbsurdCounts) {
  {
    GgufBuilder b = small_valid_builder();
    b.tensor_count_override = 1ull << 60;
    expect_format_error(b.build(), "tensor count is 1152921504606846976");
  }
  {
    GgufBuilder b = small_valid_builder();
    b.kv_count_override = 1ull << 60;
    expect_format_error(b.build(), "metadata key/value count");
  }
  {
    GgufBuilder b;
    auto& w = b.begin_kv("arr", ValueType::kArray);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kUint64));
    w.put<std::uint64_t>(1ull << 60);
    expect_format_error(b.build(), "array length");
  }
  {  // string length larger than the file
    GgufBuilder b;
    auto& w = b.begin_kv("s", ValueType::kString);
    w.put<std::uint64_t>(1ull << 63);
    expect_format_error(b.build(), "length of string value");
  }
  {  // key length larger than the file
    GgufBuilder b;
    b.kv_count_override = 1;
    auto bytes = b.build();
    testing::ByteWriter w;
    w.put<std::uint64_t>(~0ull);
    bytes.insert(bytes.end(), w.bytes.begin(), w.bytes.end());
    bytes.resize(bytes.size() + 16, 0);
    expect_format_error(bytes, "length of metadata key");
  }
}

TEST(GgufMalformed, BadValues) {
  {
    GgufBuilder b;
    b.begin_kv("x", static_cast<ValueType>(13)).put<std::uint32_t>(0);
    expect_format_error(b.build(), "value type 13");
  }
  {
    GgufBuilder b;
    b.add<std::uint8_t>("flag", ValueType::kBool, 2);
    expect_format_error(b.build(), "bool value is 2");
  }
  {
    GgufBuilder b;
    auto& w = b.begin_kv("arr", ValueType::kArray);
    w.put<std::uint32_t>(77);
    w.put<std::uint64_t>(0);
    expect_format_error(b.build(), "array element type 77");
  }
  {  // arrays nested 100 deep: bounded recursion
    GgufBuilder b;
    auto& w = b.begin_kv("deep", ValueType::kArray);
    for (int i = 0; i < 100; ++i) {
      w.put<std::uint32_t>(static_cast<std::uint32_t>(ValueType::kArray));
      w.put<std::uint64_t>(1);
    }
    w.put<std::uint32_t>(0);
    w.put<std::uint64_t>(0);
    expect_format_error(b.build(), "nested deeper");
  }
  {
    GgufBuilder b = small_valid_builder();
    b.add<std::uint32_t>("llama.block_count", ValueType::kUint32, 3);
    expect_format_error(b.build(), "'llama.block_count' appears twice");
  }
  for (std::uint32_t align : {0u, 3u, 48u}) {
    GgufBuilder b = small_valid_builder();
    b.add<std::uint32_t>("general.alignment", ValueType::kUint32, align);
    expect_format_error(b.build(), "general.alignment is " + std::to_string(align));
  }
  {
    GgufBuilder b = small_valid_builder();
    b.add_string("general.alignment", "32");
    expect_format_error(b.build(), "general.alignment");
  }
}

TEST(GgufMalformed, BadTensorInfos) {
  auto one_tensor = [](TensorSpec t) {
    GgufBuilder b;
    b.add_tensor(std::move(t));
    return b.build();
  };
  const auto data = testing::f32_bytes(std::vector<float>(8, 1.0f));
  expect_format_error(one_tensor({"t", {8}, 99, data, {}}), "type type#99");
  expect_format_error(one_tensor({"t", {256}, 10, std::vector<std::uint8_t>(84), {}}),
                      "type Q2_K");  // known to ggml but not supported here
  expect_format_error(one_tensor({"t", {1ull << 40, 1ull << 40}, 0, data, {}}), "overflows");
  expect_format_error(one_tensor({"t", {1ull << 63}, 0, data, {}}), "overflows");  // bytes
  expect_format_error(one_tensor({"t", {2, 1, 1, 1, 4}, 0, data, {}}), "5 dimensions");
  expect_format_error(one_tensor({"t", {48}, 8, std::vector<std::uint8_t>(64), {}}),
                      "not a multiple of the Q8_0 block size 32");
  expect_format_error(one_tensor({"t", {8}, 0, data, 16}), "not a multiple of the alignment");
  expect_format_error(one_tensor({"t", {8}, 0, data, 1ull << 40}), "data section");
  expect_format_error(one_tensor({"t", {8}, 0, data, ~0ull - 31}), "data section");
  expect_format_error(one_tensor({"t", {1000}, 0, data, {}}), "data section");
  {  // two tensors sharing bytes
    GgufBuilder b;
    b.add_tensor({"a", {16}, 0, testing::f32_bytes(std::vector<float>(16)), {}});
    b.add_tensor({"b", {8}, 0, data, 32});
    expect_format_error(b.build(), "overlaps tensor 'a'");
  }
  {
    GgufBuilder b;
    b.add_tensor({"a", {8}, 0, data, {}});
    b.add_tensor({"a", {8}, 0, data, {}});
    expect_format_error(b.build(), "'a' appears twice");
  }
}

// A tensor whose type claims fewer bytes than were stored (F32 data relabelled F16) leaves a gap
// before the next tensor, or unexplained bytes after the last one: both are refused.
TEST(GgufMalformed, TypeOrShapeThatDisagreesWithTheStoredBytes) {
  const auto data = testing::f32_bytes(std::vector<float>(64, 1.0f));  // 256 bytes
  {
    GgufBuilder b;
    b.add_tensor({"a", {64}, 1, data, {}});  // F16: 128 bytes, but 256 stored
    b.add_tensor({"b", {64}, 0, data, {}});
    expect_format_error(b.build(), "tensor 'b' starts at data offset 256, expected 128");
  }
  {
    GgufBuilder b;
    b.add_tensor({"a", {64}, 0, data, {}});
    b.add_tensor({"b", {64}, 1, data, {}});
    expect_format_error(b.build(), "128 bytes follow the last tensor 'b'");
  }
  {  // the first tensor must start the data section
    GgufBuilder b;
    b.add_tensor({"a", {8}, 0, testing::f32_bytes(std::vector<float>(8)), 64});
    auto bytes = b.build();
    bytes.resize(bytes.size() + 64, 0);
    expect_format_error(bytes, "expected 0 (the start of the data section)");
  }
}

// Names reach messages escaped and cut: a 1 MiB tensor name full of terminal escapes must not.
TEST(GgufMalformed, NamesInMessagesAreEscapedAndCut) {
  EXPECT_EQ(printable_name("ab\x1b[2J\n'\\"), "'ab\\x1b[2J\\x0a\\'\\\\'");
  EXPECT_EQ(printable_name(std::string(100, 'x'), 4), "'xxxx'... (100 bytes)");
  std::string huge(1 << 20, 'n');
  for (std::size_t i = 0; i < huge.size(); i += 7) huge[i] = '\x1b';
  const auto check = [](const std::vector<std::uint8_t>& bytes) {
    try {
      parse(bytes);
      ADD_FAILURE() << "accepted";
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_LT(m.size(), 400u);
      for (const char c : m) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20) << m;
    }
  };
  {
    GgufBuilder b;
    b.add_tensor({huge, {8}, 0, testing::f32_bytes(std::vector<float>(8)), {}});
    check(b.build());
  }
  {
    GgufBuilder b;
    b.add_string(huge, "v");
    check(b.build());
  }
  {
    GgufBuilder b;
    b.add_tensor({std::string(64, 't'), {8}, 0, testing::f32_bytes(std::vector<float>(8)), {}});
    expect_format_error(b.build(), "is longer than 63 bytes");
  }
  {
    GgufBuilder b;
    b.add_string("key\x07", "v");
    expect_format_error(b.build(), "metadata key 'key\\x07' contains a control byte");
  }
  {  // string values are printed with control bytes escaped
    GgufBuilder b;
    b.add_string("s", "a\x1b[31mb");
    EXPECT_EQ(parse(b.build()).get("s").to_string(), "\"a\\x1b[31mb\"");
  }
}

// The file is read into memory at open: cutting it afterwards (another process rewriting the
// model) cannot kill the process with SIGBUS, as reading through a memory mapping did.
TEST(GgufTensors, TruncatedAfterOpenStillReads) {
  GgufBuilder b;
  b.add_tensor({"big", {4096}, 0, testing::f32_bytes(std::vector<float>(4096, 3.0f)), {}});
  const auto path = testing::write_temp_file("tq_test_truncated.gguf", b.build());
  const File f = File::open(path);
  std::filesystem::resize_file(path, 0);
  const auto values = f.dequantize(f.tensor("big"));
  EXPECT_EQ(values.front(), 3.0f);
  EXPECT_EQ(values.back(), 3.0f);
  std::filesystem::remove(path);
}

// Once a model holds its weights the file's bytes can go: metadata still reads, tensor reads
// are a clear error instead of a read of freed memory.
TEST(GgufTensors, ReleasedTensorDataIsAnErrorNotAFreedRead) {
  GgufBuilder b;
  b.add_string("general.name", "kept");
  b.add_tensor({"t", {32}, 0, testing::f32_bytes(std::vector<float>(32, 1.5f)), {}});
  File f = File::from_bytes(b.build());
  ASSERT_TRUE(f.has_tensor_data());
  EXPECT_EQ(f.dequantize(f.tensor("t"))[0], 1.5f);
  f.release_tensor_data();
  EXPECT_FALSE(f.has_tensor_data());
  EXPECT_EQ(f.get_string("general.name"), "kept");
  EXPECT_EQ(f.tensor("t").data, nullptr);
  try {
    f.dequantize(f.tensor("t"));
    FAIL() << "dequantize after release_tensor_data";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("released"), std::string::npos) << e.what();
  }
}

// ---- model-level checks of a file (Model::read_config / from_gguf) ----------------------------

// A two-layer random llama (smollm2 shape, shrunk) with zero weights, its metadata passed through
// `edit` (return false to drop a key) and `extra` tensors added.
std::vector<std::uint8_t> small_model(
    const std::function<bool(const std::string&, Value&)>& edit = {},
    const std::vector<std::string>& extra = {}) {
  RandomModelOptions o;
  o.shape = find_random_model_shape("smollm2-135m");
  o.shape.layers = 2;
  o.shape.embedding = 64;
  o.shape.feed_forward = 128;
  o.shape.heads = 2;
  o.shape.kv_heads = 1;
  o.shape.head_dim = 32;
  o.shape.vocab = 300;
  o.weights = TensorType::kF32;
  const Writer layout = random_model_layout(o);
  Writer w;
  for (const auto& [key, value] : layout.metadata()) {
    Value v = value;
    if (!edit || edit(key, v)) w.set(key, std::move(v));
  }
  for (TensorEntry t : layout.tensors()) {
    t.data.assign(t.n_bytes(), 0);
    w.add_tensor(std::move(t));
  }
  for (const auto& name : extra)
    w.add_tensor({name, {64}, TensorType::kF32, std::vector<std::uint8_t>(256)});
  return w.to_bytes();
}

std::string model_error(const std::vector<std::uint8_t>& bytes) {
  try {
    const File f = File::from_bytes(bytes);
    Model::from_gguf(f, 1);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::function<bool(const std::string&, Value&)> set_key(const std::string& key, Value value) {
  return [key, value](const std::string& k, Value& v) {
    if (k == key) v = value;
    return true;
  };
}

TEST(ModelFile, TheSmallModelLoads) {
  EXPECT_EQ(model_error(small_model()), "");
}

// block_count is checked against the tensors before anything is sized by it (a flipped bit made
// it 268,435,486 and the layer array was allocated first: std::bad_alloc, or minutes of work).
TEST(ModelFile, AbsurdBlockCountIsRefusedAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  const File f = File::from_bytes(small_model(set_key("llama.block_count", Value{268435486u})));
  try {
    Model::read_config(f);
    ADD_FAILURE() << "read_config accepted block_count 268435486";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("block_count = 268435486 needs at least 2415919374 "
                                         "tensors (9 per layer), the file has 20"),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  EXPECT_NE(model_error(small_model(set_key("llama.block_count", Value{3u})))
                .find("block_count = 3 needs at least 27 tensors"),
            std::string::npos);
}

// A block_count below the file's layers ran a truncated model; tensors nothing reads are refused.
TEST(ModelFile, UnusedTensorsAreNamed) {
  const std::string one = model_error(small_model(set_key("llama.block_count", Value{1u})));
  EXPECT_NE(one.find("the file has 9 tensors that llama with llama.block_count = 1 does not use: "
                     "'blk.1."),
            std::string::npos)
      << one;
  const std::string extra = model_error(small_model({}, {"blk.1.attn_q.bias", "mystery.weight"}));
  EXPECT_NE(extra.find("2 tensors that llama"), std::string::npos) << extra;
  EXPECT_NE(extra.find("'mystery.weight'"), std::string::npos) << extra;
}

TEST(ModelFile, EmbeddingRowsMatchTheTokenizer) {
  const std::string e = model_error(small_model([](const std::string& k, Value& v) {
    if (k == "tokenizer.ggml.tokens") std::get<Array>(v.data).items.pop_back();
    if (k == "tokenizer.ggml.scores" || k == "tokenizer.ggml.token_type") {
      std::get<Array>(v.data).items.pop_back();
    }
    return true;
  }));
  EXPECT_NE(e.find("'token_embd.weight' has 300 rows, the tokenizer (tokenizer.ggml.tokens) has "
                   "299 tokens"),
            std::string::npos)
      << e;
}

TEST(ModelFile, HyperParametersAreFinite) {
  for (const float bad : {std::numeric_limits<float>::infinity(), std::nanf(""), 1.0f}) {
    const std::string e = model_error(small_model(set_key("llama.rope.freq_base", Value{bad})));
    EXPECT_NE(e.find("rope.freq_base"), std::string::npos) << bad << ": " << e;
  }
  const std::string eps = model_error(small_model(set_key(
      "llama.attention.layer_norm_rms_epsilon", Value{std::numeric_limits<float>::infinity()})));
  EXPECT_NE(eps.find("layer_norm_rms_epsilon"), std::string::npos) << eps;
}

// Random byte flips in a valid file: the parser either accepts the file or throws FormatError;
// anything else (crash, other exception, huge allocation) fails the test.
TEST(GgufMalformed, RandomCorruptionNeverCrashes) {
  const auto bytes = small_valid_builder().build();
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto copy = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      copy[rng() % copy.size()] = static_cast<std::uint8_t>(rng());
    }
    try {
      const File f = parse(copy);
      for (const auto& t : f.tensors()) f.dequantize(t);
      ++accepted;
    } catch (const FormatError&) {
    }
  }
  EXPECT_LT(accepted, 3000);  // some corruptions must have been detected
}

// ---- the real default model -------------------------------------------------------------------

const char* kModelPath = TQ_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

TEST(GgufRealModel, SmolLM2MetadataAndTensors) {
  if (!std::filesystem::exists(kModelPath)) {
    GTEST_SKIP() << "model not found at " << kModelPath << " (run scripts/fetch_model.sh)";
  }
  const auto t0 = std::chrono::steady_clock::now();
  const File f = File::open(kModelPath);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count"), 9u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 3u);
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 576u);
  EXPECT_EQ(f.get_f32("llama.rope.freq_base"), 100000.0f);
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  ASSERT_EQ(f.tensors().size(), 272u);

  // Reference values computed with the `gguf` Python package's dequantizer.
  struct Expect {
    const char* name;
    TensorType type;
    double first, sum, abs_sum;
  };
  const Expect expects[] = {
      {"token_embd.weight", TensorType::kQ8_0, -0.10654449462890625, -15353.04449415207,
       2802153.619805813},
      {"blk.0.attn_norm.weight", TensorType::kF32, 0.01397705078125, 0.6129436492919922,
       15.815359115600586},
      {"blk.0.attn_q.weight", TensorType::kQ4_1, -0.0963134765625, 59.22322082519531,
       63395.39872741699},
      {"blk.29.ffn_down.weight", TensorType::kQ4_1, -0.2733154296875, 49.83570861816406,
       126250.91435241699},
  };
  for (const auto& e : expects) {
    const TensorInfo& t = f.tensor(e.name);
    EXPECT_EQ(t.type, e.type) << e.name;
    const auto values = f.dequantize(t);
    double sum = 0, abs_sum = 0;
    for (float v : values) sum += v, abs_sum += std::fabs(v);
    EXPECT_EQ(values[0], static_cast<float>(e.first)) << e.name;
    EXPECT_NEAR(sum, e.sum, 1e-6 * e.abs_sum) << e.name;
    EXPECT_NEAR(abs_sum, e.abs_sum, 1e-6 * e.abs_sum) << e.name;
  }

  // Dequantize every tensor (what the runner does at load time), timing only the dequantize calls.
  const double open_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::size_t total = 0;
  double dequant_s = 0;
  for (const auto& t : f.tensors()) {
    const auto t1 = std::chrono::steady_clock::now();
    const auto values = f.dequantize(t);
    dequant_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    for (float v : values) ASSERT_TRUE(std::isfinite(v)) << t.name;
    total += values.size();
  }
  std::printf("[ timing ] open + checks %.3f s; dequantize all %zu values %.3f s\n", open_s, total,
              dequant_s);
  EXPECT_EQ(total, 134515008u);
#if defined(NDEBUG) && !TQ_SANITIZED
  EXPECT_LT(dequant_s, 3.0);  // ~0.25 s measured on one core; generous for loaded CI machines
#endif
}

// The real 30-layer file with block_count patched to 1 and 29: refused, naming the extra layers.
TEST(GgufRealModel, BlockCountBelowTheFileIsRefused) {
  if (!std::filesystem::exists(kModelPath)) GTEST_SKIP() << "model not found at " << kModelPath;
  std::ifstream in(kModelPath, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  const std::string key = "llama.block_count";
  const auto it = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
  ASSERT_NE(it, bytes.end());
  const std::size_t value_at = static_cast<std::size_t>(it - bytes.begin()) + key.size() + 4;
  for (const std::uint32_t layers : {1u, 29u}) {
    std::memcpy(bytes.data() + value_at, &layers, 4);
    const File f = File::from_bytes(bytes);
    ASSERT_EQ(f.get_u32("llama.block_count"), layers);
    try {
      Model::read_config(f);
      ADD_FAILURE() << "block_count " << layers << " accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("block_count = " + std::to_string(layers) +
                                           " does not use: 'blk." + std::to_string(layers) + "."),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace tq::gguf
