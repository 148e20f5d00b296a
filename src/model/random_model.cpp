// Random-weight models (random_model.hpp): the shape table, the tensor directory the loader
// (model.cpp) expects, a byte-level tokenizer, and the seeded weights. Every row of every tensor
// draws from its own generator, seeded from (seed, tensor index, row), so the bytes are the same
// for any thread count and any chunking of the rows.
//
// Scales: inputs of every matrix are RMS-normalised (norm weights are 1) or O(1), so a matrix with
// std 1/sqrt(fan_in) keeps O(1) outputs; the two residual branches per layer (attn_output,
// ffn_down) are further scaled by 1/sqrt(2 * layers), so the residual stream stays O(1) however
// many layers are stacked. A tied embedding doubles as the output matrix and therefore also has
// std 1/sqrt(embedding): logits of std ~1 either way.
#include "turboquant/model/random_model.hpp"

#include "turboquant/base/random.hpp"
#include "turboquant/model/gguf_quantize.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tq {

namespace {

using gguf::TensorType;

// How one tensor's values are made.
enum class Fill { kGaussian, kOnes, kConstant, kRopeFactors };

struct TensorPlan {
  Fill fill = Fill::kGaussian;
  float std = 0.0f;  // kGaussian: the spread; kConstant: the value
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// GPT-2's byte-level alphabet: bytes that are printable Latin-1 stand for themselves, the other 68
// take the code points from U+0100 up, in byte order. Encoded as UTF-8.
std::string byte_token_text(int byte) {
  int next = 256;
  int cp = -1;
  for (int b = 0; b <= byte; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    cp = printable ? b : next++;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {  // every code point here is below U+0800: two bytes
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return s;
}

// Llama 3.1's RoPE frequency scaling (factor 8, low/high frequency factors 1 and 4, original
// context 8192), as the per-pair divisors a GGUF file stores in rope_freqs.weight: wavelengths
// shorter than 8192/4 are kept, longer than 8192 divided by 8, and those between interpolated.
std::vector<float> llama3_rope_factors(double base, int rope_dim) {
  constexpr double kFactor = 8.0, kLow = 1.0, kHigh = 4.0, kOriginal = 8192.0;
  constexpr double kTwoPi = 6.283185307179586476925;
  std::vector<float> factors(static_cast<std::size_t>(rope_dim / 2));
  for (int i = 0; i < rope_dim / 2; ++i) {
    const double freq = std::pow(base, -2.0 * i / rope_dim);
    const double wavelength = kTwoPi / freq;
    double divisor = 1.0;
    if (wavelength > kOriginal / kLow) {
      divisor = kFactor;
    } else if (wavelength >= kOriginal / kHigh) {
      const double smooth = (kOriginal / wavelength - kLow) / (kHigh - kLow);
      divisor = 1.0 / ((1.0 - smooth) / kFactor + smooth);
    }
    factors[static_cast<std::size_t>(i)] = static_cast<float>(divisor);
  }
  return factors;
}

// The seed of one row's generator.
std::uint64_t row_seed(std::uint64_t seed, std::size_t tensor, std::uint64_t row) {
  std::uint64_t state = seed ^ 0x72616e646f6d6d64ull;  // "randommd"
  std::uint64_t h = splitmix64(state);
  state = h ^ static_cast<std::uint64_t>(tensor);
  h = splitmix64(state);
  state = h ^ row;
  return splitmix64(state);
}

std::uint32_t file_type(TensorType t) {
  switch (t) {  // llama.cpp's general.file_type numbers
    case TensorType::kF32:
      return 0;
    case TensorType::kF16:
      return 1;
    case TensorType::kQ4_0:
      return 2;
    case TensorType::kQ8_0:
      return 7;
    case TensorType::kBF16:
      return 32;
    default:
      return 0;
  }
}

void check_shape(const RandomModelShape& s) {
  auto positive = [&](int v, const char* what) {
    if (v <= 0) {
      throw std::invalid_argument("random model shape '" + s.name + "': " + what + " is " +
                                  std::to_string(v) + " (expected a positive number)");
    }
  };
  positive(s.layers, "layers");
  positive(s.embedding, "embedding");
  positive(s.feed_forward, "feed_forward");
  positive(s.heads, "heads");
  positive(s.kv_heads, "kv_heads");
  positive(s.head_dim, "head_dim");
  positive(s.context, "context");
  if (s.heads % s.kv_heads != 0) {
    throw std::invalid_argument("random model shape '" + s.name + "': heads " +
                                std::to_string(s.heads) + " is not a multiple of kv_heads " +
                                std::to_string(s.kv_heads));
  }
  if (s.head_dim % 2 != 0) {
    throw std::invalid_argument("random model shape '" + s.name + "': head_dim " +
                                std::to_string(s.head_dim) + " is odd (RoPE needs pairs)");
  }
  if (s.vocab < 258) {
    throw std::invalid_argument("random model shape '" + s.name + "': vocab " +
                                std::to_string(s.vocab) +
                                " is below 258 (256 byte tokens, BOS and EOS)");
  }
}

// The writer with metadata and directory, and how each tensor is filled (same order).
struct Layout {
  gguf::Writer writer;
  std::vector<TensorPlan> plans;
  std::vector<float> rope_factors;
};

Layout make_layout(const RandomModelOptions& o) {
  const RandomModelShape& s = o.shape;
  check_shape(s);
  if (!gguf::can_quantize(o.weights)) {
    throw std::invalid_argument("random model weights: type " + gguf::tensor_type_name(o.weights) +
                                " is not written (expected Q4_0, Q8_0, F16, BF16 or F32)");
  }
  Layout l;
  gguf::Writer& w = l.writer;
  const std::string a = s.architecture + ".";
  w.set_string("general.architecture", s.architecture);
  w.set_string("general.type", "model");
  w.set_string("general.name", "random " + s.name + " seed " + std::to_string(o.seed));
  w.set_u32("general.alignment", 32);
  w.set_u32("general.file_type", file_type(o.weights));
  if (gguf::block_elements(o.weights) > 1) w.set_u32("general.quantization_version", 2);
  w.set_bool(kRandomWeightsKey, true);
  w.set_string("turboquant.random_shape", s.name);
  w.set_u64("turboquant.random_seed", o.seed);
  const auto u32 = [](int v) { return static_cast<std::uint32_t>(v); };
  w.set_u32(a + "block_count", u32(s.layers));
  w.set_u32(a + "context_length", u32(s.context));
  w.set_u32(a + "embedding_length", u32(s.embedding));
  w.set_u32(a + "feed_forward_length", u32(s.feed_forward));
  w.set_u32(a + "attention.head_count", u32(s.heads));
  w.set_u32(a + "attention.head_count_kv", u32(s.kv_heads));
  w.set_u32(a + "attention.key_length", u32(s.head_dim));
  w.set_u32(a + "attention.value_length", u32(s.head_dim));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", s.rms_eps);
  w.set_u32(a + "rope.dimension_count", u32(s.head_dim));
  w.set_f32(a + "rope.freq_base", static_cast<float>(s.rope_base));
  w.set_u32(a + "vocab_size", u32(s.vocab));
  const bool gemma3 = s.architecture == "gemma3";
  if (gemma3) {
    w.set_u32(a + "attention.sliding_window", u32(s.sliding_window));
    w.set_u32(a + "attention.sliding_window_pattern", u32(s.sliding_window_pattern));
    w.set_f32(a + "rope.freq_base_swa", static_cast<float>(s.rope_base_sliding));
  }

  // Tokenizer: the 256 byte tokens (ids 0..255), BOS 256, EOS 257, then filler tokens up to the
  // vocab size. No merges: text encodes byte by byte, which every byte-level BPE loader accepts.
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  tokens.reserve(static_cast<std::size_t>(s.vocab));
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(byte_token_text(b));
    types.push_back(1);  // normal
  }
  tokens.emplace_back("<|begin_of_text|>");
  tokens.emplace_back("<|end_of_text|>");
  types.insert(types.end(), {3, 3});  // control
  for (int i = 258; i < s.vocab; ++i) {
    tokens.push_back("<|filler_" + std::to_string(i) + "|>");
    types.push_back(1);
  }
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", s.pre_tokenizer);
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_string_array("tokenizer.ggml.merges", {});
  w.set_u32("tokenizer.ggml.bos_token_id", 256);
  w.set_u32("tokenizer.ggml.eos_token_id", 257);
  w.set_bool("tokenizer.ggml.add_bos_token", s.add_bos);
  w.set_bool("tokenizer.ggml.add_space_prefix", false);

  using u64 = std::uint64_t;
  const u64 E = u64(s.embedding), V = u64(s.vocab), F = u64(s.feed_forward);
  const u64 Q = u64(s.heads) * u64(s.head_dim), KV = u64(s.kv_heads) * u64(s.head_dim);
  const float residual = 1.0f / std::sqrt(2.0f * static_cast<float>(s.layers));
  auto inv_sqrt = [](u64 n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
  auto add = [&](std::string name, std::vector<u64> dims, TensorType type, TensorPlan plan) {
    w.add_tensor({std::move(name), std::move(dims), type, {}});
    l.plans.push_back(plan);
  };
  const TensorType wt = o.weights, f32 = TensorType::kF32;
  const TensorPlan ones{Fill::kOnes, 0.0f};
  add("token_embd.weight", {E, V}, wt, {Fill::kGaussian, s.tied_embeddings ? inv_sqrt(E) : 1.0f});
  add("output_norm.weight", {E}, f32, ones);
  if (!s.tied_embeddings) add("output.weight", {E, V}, wt, {Fill::kGaussian, inv_sqrt(E)});
  if (s.llama3_rope) {
    l.rope_factors = llama3_rope_factors(s.rope_base, s.head_dim);
    add("rope_freqs.weight", {u64(s.head_dim / 2)}, f32, {Fill::kRopeFactors, 0.0f});
  }
  for (int layer = 0; layer < s.layers; ++layer) {
    const std::string b = "blk." + std::to_string(layer) + ".";
    add(b + "attn_norm.weight", {E}, f32, ones);
    add(b + "attn_q.weight", {E, Q}, wt, {Fill::kGaussian, inv_sqrt(E)});
    add(b + "attn_k.weight", {E, KV}, wt, {Fill::kGaussian, inv_sqrt(E)});
    add(b + "attn_v.weight", {E, KV}, wt, {Fill::kGaussian, inv_sqrt(E)});
    if (s.qkv_bias) {
      // Biases of the size of a projection's own spread, so that they matter.
      add(b + "attn_q.bias", {Q}, f32, {Fill::kGaussian, 0.5f});
      add(b + "attn_k.bias", {KV}, f32, {Fill::kGaussian, 0.5f});
      add(b + "attn_v.bias", {KV}, f32, {Fill::kGaussian, 0.5f});
    }
    add(b + "attn_output.weight", {Q, E}, wt, {Fill::kGaussian, inv_sqrt(Q) * residual});
    add(b + "ffn_norm.weight", {E}, f32, ones);
    add(b + "ffn_gate.weight", {E, F}, wt, {Fill::kGaussian, inv_sqrt(E)});
    add(b + "ffn_up.weight", {E, F}, wt, {Fill::kGaussian, inv_sqrt(E)});
    add(b + "ffn_down.weight", {F, E}, wt, {Fill::kGaussian, inv_sqrt(F) * residual});
    if (gemma3) {
      // QK-norm weights of 1 keep the heads' RMS at 1; the sandwich norms then scale each
      // branch back to O(1), so the residual scale above is what keeps the stream bounded.
      add(b + "attn_q_norm.weight", {u64(s.head_dim)}, f32, ones);
      add(b + "attn_k_norm.weight", {u64(s.head_dim)}, f32, ones);
      add(b + "post_attention_norm.weight", {E}, f32, {Fill::kConstant, residual});
      add(b + "post_ffw_norm.weight", {E}, f32, {Fill::kConstant, residual});
    }
  }
  return l;
}

}  // namespace

const std::vector<RandomModelShape>& random_model_shapes() {
  // From the models' published configurations (config.json / their GGUF conversions).
  static const std::vector<RandomModelShape> shapes = [] {
    std::vector<RandomModelShape> v;
    RandomModelShape llama{.name = "llama-3.1-8b",
                           .architecture = "llama",
                           .layers = 32,
                           .embedding = 4096,
                           .feed_forward = 14336,
                           .heads = 32,
                           .kv_heads = 8,
                           .head_dim = 128,
                           .vocab = 128256,
                           .context = 131072,
                           .rope_base = 500000.0,
                           .rms_eps = 1e-5f,
                           .qkv_bias = false,
                           .tied_embeddings = false,
                           .llama3_rope = true,
                           .add_bos = true,
                           .pre_tokenizer = "llama-bpe"};
    RandomModelShape qwen{.name = "qwen2.5-7b",
                          .architecture = "qwen2",
                          .layers = 28,
                          .embedding = 3584,
                          .feed_forward = 18944,
                          .heads = 28,
                          .kv_heads = 4,
                          .head_dim = 128,
                          .vocab = 152064,
                          .context = 32768,
                          .rope_base = 1000000.0,
                          .rms_eps = 1e-6f,
                          .qkv_bias = true,
                          .tied_embeddings = false,
                          .llama3_rope = false,
                          .add_bos = false,
                          .pre_tokenizer = "qwen2"};
    // Mistral 7B v0.3 (its GGUF files use the llama architecture).
    RandomModelShape mistral{.name = "mistral-7b",
                             .architecture = "llama",
                             .layers = 32,
                             .embedding = 4096,
                             .feed_forward = 14336,
                             .heads = 32,
                             .kv_heads = 8,
                             .head_dim = 128,
                             .vocab = 32768,
                             .context = 32768,
                             .rope_base = 1000000.0,
                             .rms_eps = 1e-5f,
                             .qkv_bias = false,
                             .tied_embeddings = false,
                             .llama3_rope = false,
                             .add_bos = true,
                             .pre_tokenizer = "default"};
    RandomModelShape smollm{.name = "smollm2-135m",
                            .architecture = "llama",
                            .layers = 30,
                            .embedding = 576,
                            .feed_forward = 1536,
                            .heads = 9,
                            .kv_heads = 3,
                            .head_dim = 64,
                            .vocab = 49152,
                            .context = 8192,
                            .rope_base = 100000.0,
                            .rms_eps = 1e-5f,
                            .qkv_bias = false,
                            .tied_embeddings = true,
                            .llama3_rope = false,
                            .add_bos = false,
                            .pre_tokenizer = "smollm"};
    // Gemma 3 270M (its GGUF conversion: 5 of every 6 layers see the last 512 tokens).
    RandomModelShape gemma3{.name = "gemma3-270m",
                            .architecture = "gemma3",
                            .layers = 18,
                            .embedding = 640,
                            .feed_forward = 2048,
                            .heads = 4,
                            .kv_heads = 1,
                            .head_dim = 256,
                            .vocab = 262144,
                            .context = 32768,
                            .rope_base = 1000000.0,
                            .rms_eps = 1e-6f,
                            .qkv_bias = false,
                            .tied_embeddings = true,
                            .llama3_rope = false,
                            .add_bos = true,
                            .pre_tokenizer = "default",
                            .sliding_window = 512,
                            .sliding_window_pattern = 6,
                            .rope_base_sliding = 10000.0};
    v = {llama, qwen, mistral, smollm, gemma3};
    return v;
  }();
  return shapes;
}

const RandomModelShape& find_random_model_shape(std::string_view name) {
  const std::string key = lower(name);
  for (const auto& s : random_model_shapes()) {
    if (s.name == key) return s;
  }
  std::string known;
  for (const auto& s : random_model_shapes()) known += (known.empty() ? "" : ", ") + s.name;
  throw std::invalid_argument("unknown model shape '" + std::string(name) + "' (expected one of " +
                              known + ")");
}

gguf::TensorType parse_random_weight_type(std::string_view name) {
  const std::string key = lower(name);
  if (key == "q4_0") return TensorType::kQ4_0;
  if (key == "q8_0") return TensorType::kQ8_0;
  if (key == "f16") return TensorType::kF16;
  if (key == "bf16") return TensorType::kBF16;
  if (key == "f32") return TensorType::kF32;
  throw std::invalid_argument("unknown weights type '" + std::string(name) +
                              "' (expected q4_0, q8_0, f16, bf16 or f32)");
}

gguf::Writer random_model_layout(const RandomModelOptions& options) {
  return make_layout(options).writer;
}

void write_random_model(const RandomModelOptions& options, const std::filesystem::path& path,
                        const gguf::WriteProgress& progress) {
  const Layout layout = make_layout(options);
  int threads = options.threads;
#ifdef _OPENMP
  if (threads <= 0) threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  const auto source = [&](std::size_t index, std::uint64_t row_begin, std::uint64_t row_count,
                          std::span<std::uint8_t> out) {
    const gguf::TensorEntry& t = layout.writer.tensors()[index];
    const TensorPlan& plan = layout.plans[index];
    const std::size_t n = static_cast<std::size_t>(t.dims[0]);
    const std::size_t stride = static_cast<std::size_t>(t.bytes_per_row());
    const auto rows = static_cast<std::int64_t>(row_count);
#pragma omp parallel num_threads(threads)
    {
      std::vector<float> row(n);
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::uint64_t global_row = row_begin + static_cast<std::uint64_t>(r);
        switch (plan.fill) {
          case Fill::kOnes:
            std::fill(row.begin(), row.end(), 1.0f);
            break;
          case Fill::kConstant:
            std::fill(row.begin(), row.end(), plan.std);
            break;
          case Fill::kRopeFactors:
            std::copy(layout.rope_factors.begin(), layout.rope_factors.end(), row.begin());
            break;
          case Fill::kGaussian: {
            Xoshiro256 rng(row_seed(options.seed, index, global_row));
            for (float& x : row) x = static_cast<float>(rng.gaussian()) * plan.std;
            break;
          }
        }
        gguf::quantize(t.type, row.data(), out.data() + static_cast<std::size_t>(r) * stride, n);
      }
    }
  };
  layout.writer.write(path, source, progress);
}

bool has_random_weights(const gguf::File& file) {
  const gguf::Value* v = file.find(kRandomWeightsKey);
  const bool* b = v ? std::get_if<bool>(&v->data) : nullptr;
  return b != nullptr && *b;
}

}  // namespace tq
