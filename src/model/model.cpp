// Model loading: reads the Llama-family hyper-parameters from GGUF metadata, checks that the file
// holds exactly the tensors those numbers name (every one present, none unused: a block_count
// that disagrees with the file is refused before anything is sized by it), each with the shape
// those numbers imply, that the embedding has one row per tokenizer token and that the RoPE
// numbers are finite, and loads the weights (Q/K/V and gate/up fused, see
// model.hpp): matrices whose type has an on-the-fly kernel keep their GGUF blocks (copied), the
// rest and the norms/biases are dequantized to fp32. Tensors are loaded in parallel, one per task.
#include "turboquant/model/model.hpp"

#include "qmatmul.hpp"
#include "turboquant/model/gguf.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <set>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tq {

namespace {

using gguf::FormatError;

struct ArchInfo {
  RopeOrdering rope;
  bool qkv_bias_required;
  bool gemma3 = false;  // the Gemma 3 block: QK-norm, sandwich norms, GeGLU, sliding windows
};

// Architectures this runner implements and how they differ; matches llama.cpp's choices
// (llama/mistral/smollm use the normal RoPE pairing, qwen2 NeoX with Q/K/V biases, gemma3 NeoX).
ArchInfo arch_info(const std::string& arch) {
  if (arch == "llama" || arch == "smollm" || arch == "mistral") {
    return {RopeOrdering::kNormal, false};
  }
  if (arch == "qwen2") return {RopeOrdering::kNeox, true};
  if (arch == "gemma3") return {RopeOrdering::kNeox, false, true};
  throw std::invalid_argument("unsupported model architecture '" + arch +
                              "' (expected llama, smollm, mistral, qwen2 or gemma3)");
}

int positive_int(const gguf::File& f, const std::string& key) {
  const std::int64_t v = f.get_integer(key);
  if (v <= 0 || v > (1 << 30)) {
    throw FormatError("metadata " + key + " = " + std::to_string(v) +
                      " is out of range (expected a positive count)");
  }
  return static_cast<int>(v);
}

std::string shape_string(const std::vector<std::uint64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

// Finds a tensor and checks its ggml shape (dims[0] contiguous). Missing → nullptr when optional.
const gguf::TensorInfo* checked_tensor(const gguf::File& f, const std::string& name,
                                       std::vector<std::uint64_t> dims, bool required = true) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    if (!required) return nullptr;
    throw FormatError("model tensor '" + name + "' is missing (expected shape " +
                      shape_string(dims) + ")");
  }
  // Trailing dimensions of 1 are equivalent.
  std::vector<std::uint64_t> got = t->dims;
  while (got.size() > dims.size() && got.back() == 1) got.pop_back();
  if (got != dims) {
    throw FormatError("model tensor '" + name + "' has shape " + shape_string(t->dims) +
                      ", expected " + shape_string(dims));
  }
  if (!gguf::is_supported(t->type)) {
    throw FormatError("model tensor '" + name + "' has unsupported type " +
                      gguf::tensor_type_name(t->type));
  }
  return t;
}

// The tensors a layer of this runner reads; a file has at least these per declared layer.
constexpr const char* kLayerTensors[] = {
    "attn_norm.weight", "attn_q.weight",   "attn_k.weight", "attn_v.weight",  "attn_output.weight",
    "ffn_norm.weight",  "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
constexpr const char* kLayerBiases[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias"};
constexpr const char* kGemma3LayerTensors[] = {"attn_q_norm.weight", "attn_k_norm.weight",
                                               "post_attention_norm.weight",
                                               "post_ffw_norm.weight"};

// Checks that the file holds exactly the tensors `c` names: every required one present and none
// the runner would not read. Counts are compared first, so an absurd block_count is refused
// without a per-layer loop (268 million layers cannot have their 9 tensors each in a file of 272).
void check_tensor_set(const gguf::File& f, const ModelConfig& c, bool bias_required) {
  const std::string p = c.architecture + ".";
  const std::uint64_t have = f.tensors().size();
  const std::uint64_t per_layer = std::size(kLayerTensors);
  if (static_cast<std::uint64_t>(c.n_layers) > have / per_layer) {
    throw FormatError(
        "metadata " + p + "block_count = " + std::to_string(c.n_layers) + " needs at least " +
        std::to_string(static_cast<std::uint64_t>(c.n_layers) * per_layer) + " tensors (" +
        std::to_string(per_layer) + " per layer), the file has " + std::to_string(have));
  }
  std::set<std::string, std::less<>> used;
  const auto require = [&](const std::string& name) {
    if (f.find_tensor(name) == nullptr) {
      throw FormatError("model tensor '" + name + "' is missing (" + p +
                        "block_count = " + std::to_string(c.n_layers) + ")");
    }
    used.insert(name);
  };
  const auto optional = [&](const std::string& name) {
    if (f.find_tensor(name) != nullptr) used.insert(name);
  };
  require("token_embd.weight");
  require("output_norm.weight");
  optional("output.weight");
  optional("rope_freqs.weight");
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* t : kLayerTensors) require(b + t);
    if (c.qk_norm) {
      for (const char* t : kGemma3LayerTensors) require(b + t);
    }
    if (c.qkv_bias) {
      for (const char* t : kLayerBiases) bias_required ? require(b + t) : optional(b + t);
    }
  }
  if (used.size() == have) return;
  std::string names;
  std::size_t unused = 0;
  for (const auto& t : f.tensors()) {
    if (used.contains(t.name)) continue;
    if (++unused <= 4) names += (unused > 1 ? ", " : "") + gguf::printable_name(t.name);
  }
  throw FormatError("the file has " + std::to_string(unused) + " tensor" +
                    (unused == 1 ? "" : "s") + " that " + c.architecture + " with " + p +
                    "block_count = " + std::to_string(c.n_layers) + " does not use: " + names +
                    (unused > 4 ? ", ..." : "") + " (wrong block_count, or another architecture?)");
}

// One unit of load work: copy `src`'s blocks to dst (raw) or dequantize them to floats there.
struct LoadTask {
  const gguf::TensorInfo* src;
  void* dst;
  bool raw;
};

// How a matrix fused from `parts` is stored: their common type when it has a kernel, else fp32.
gguf::TensorType storage_type(std::initializer_list<const gguf::TensorInfo*> parts, bool fp32) {
  const gguf::TensorType t = (*parts.begin())->type;
  if (fp32 || !qmm::has_kernel(t)) return gguf::TensorType::kF32;
  for (const auto* p : parts) {
    if (p->type != t) return gguf::TensorType::kF32;
  }
  return t;
}

bool env_fp32_weights() {
  const char* v = std::getenv("TQ_FP32_WEIGHTS");
  return v && *v && std::strcmp(v, "0") != 0;
}

}  // namespace

ModelConfig Model::read_config(const gguf::File& f) {
  ModelConfig c;
  c.architecture = f.get_string("general.architecture");
  const ArchInfo info = arch_info(c.architecture);
  const std::string p = c.architecture + ".";
  c.n_layers = positive_int(f, p + "block_count");
  c.n_embd = positive_int(f, p + "embedding_length");
  c.n_ff = positive_int(f, p + "feed_forward_length");
  c.n_heads = positive_int(f, p + "attention.head_count");
  c.n_kv_heads = f.has(p + "attention.head_count_kv")
                     ? positive_int(f, p + "attention.head_count_kv")
                     : c.n_heads;
  if (c.n_heads % c.n_kv_heads != 0) {
    throw FormatError("metadata " + p + "attention.head_count = " + std::to_string(c.n_heads) +
                      " is not a multiple of head_count_kv = " + std::to_string(c.n_kv_heads));
  }
  if (f.has(p + "attention.key_length")) {
    c.head_dim = positive_int(f, p + "attention.key_length");
  } else {
    if (c.n_embd % c.n_heads != 0) {
      throw FormatError("metadata " + p + "embedding_length = " + std::to_string(c.n_embd) +
                        " is not divisible by head_count = " + std::to_string(c.n_heads));
    }
    c.head_dim = c.n_embd / c.n_heads;
  }
  if (f.has(p + "attention.value_length") &&
      positive_int(f, p + "attention.value_length") != c.head_dim) {
    throw FormatError("metadata " + p + "attention.value_length differs from key_length " +
                      std::to_string(c.head_dim) + " (unsupported)");
  }
  c.context_length = f.has(p + "context_length") ? positive_int(f, p + "context_length") : 2048;
  c.rope_dim =
      f.has(p + "rope.dimension_count") ? positive_int(f, p + "rope.dimension_count") : c.head_dim;
  if (c.rope_dim > c.head_dim || c.rope_dim % 2 != 0) {
    throw FormatError("metadata " + p + "rope.dimension_count = " + std::to_string(c.rope_dim) +
                      " must be even and at most the head dim " + std::to_string(c.head_dim));
  }
  if (const auto* v = f.find(p + "rope.freq_base")) {
    c.rope_base = v->as_number().value_or(0.0);
    if (!(c.rope_base > 1.0) || !std::isfinite(c.rope_base)) {
      throw FormatError("metadata " + p + "rope.freq_base = " + v->to_string() +
                        " (expected a finite number > 1)");
    }
  }
  if (const auto* v = f.find(p + "attention.layer_norm_rms_epsilon")) {
    const double eps = v->as_number().value_or(-1.0);
    if (!(eps > 0.0 && eps < 1.0)) {
      throw FormatError("metadata " + p + "attention.layer_norm_rms_epsilon = " + v->to_string() +
                        " (expected a small positive number)");
    }
    c.rms_eps = static_cast<float>(eps);
  }
  if (const auto scaling = f.find_string(p + "rope.scaling.type"); scaling && *scaling != "none") {
    throw std::invalid_argument("metadata " + p + "rope.scaling.type = '" + *scaling +
                                "' is not supported (only unscaled RoPE)");
  }
  c.rope = info.rope;
  if (info.gemma3) {
    // Gemma 3 (as llama.cpp reads it): embeddings scaled by √n_embd, QK-norm, norms around both
    // sub-blocks, GeGLU, and 5 of every 6 layers sliding-window with RoPE base 10000.
    c.embedding_scale = std::sqrt(static_cast<float>(c.n_embd));
    c.qk_norm = true;
    c.sandwich_norms = true;
    c.ffn_activation = FfnActivation::kGeluTanh;
    c.sliding_window =
        f.has(p + "attention.sliding_window") ? positive_int(f, p + "attention.sliding_window") : 0;
    c.sliding_window_pattern = f.has(p + "attention.sliding_window_pattern")
                                   ? positive_int(f, p + "attention.sliding_window_pattern")
                                   : 6;
    if (const auto* v = f.find(p + "rope.freq_base_swa")) {
      c.rope_base_sliding = v->as_number().value_or(0.0);
      if (!(c.rope_base_sliding > 1.0) || !std::isfinite(c.rope_base_sliding)) {
        throw FormatError("metadata " + p + "rope.freq_base_swa = " + v->to_string() +
                          " (expected a finite number > 1)");
      }
    }
    if (f.has(p + "attention.query_pre_attn_scalar") &&
        positive_int(f, p + "attention.query_pre_attn_scalar") != c.head_dim) {
      throw std::invalid_argument("metadata " + p + "attention.query_pre_attn_scalar differs " +
                                  "from the head dim " + std::to_string(c.head_dim) +
                                  " (unsupported: attention scales by 1/sqrt(head dim))");
    }
  }
  const gguf::TensorInfo& embd = f.tensor("token_embd.weight");
  if (embd.dims.size() < 2 || embd.dims[0] != static_cast<std::uint64_t>(c.n_embd)) {
    throw FormatError("model tensor 'token_embd.weight' has shape " + shape_string(embd.dims) +
                      ", expected [" + std::to_string(c.n_embd) + ", n_vocab]");
  }
  if (embd.dims[1] > static_cast<std::uint64_t>(1 << 30)) {
    throw FormatError("model tensor 'token_embd.weight' has " + std::to_string(embd.dims[1]) +
                      " rows (expected a vocabulary of at most 2^30 tokens)");
  }
  c.n_vocab = static_cast<int>(embd.dims[1]);
  // The tokenizer (Tokenizer::from_gguf) has one id per entry of this array; an id without an
  // embedding row would read past the matrix, a row without an id is a file that was cut.
  if (f.has("tokenizer.ggml.tokens")) {
    const std::size_t tokens = f.get_array("tokenizer.ggml.tokens").items.size();
    if (tokens != static_cast<std::size_t>(c.n_vocab)) {
      throw FormatError("model tensor 'token_embd.weight' has " + std::to_string(c.n_vocab) +
                        " rows, the tokenizer (tokenizer.ggml.tokens) has " +
                        std::to_string(tokens) + " tokens (expected one row per token)");
    }
  }
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.qkv_bias = info.qkv_bias_required || f.find_tensor("blk.0.attn_q.bias") != nullptr;
  check_tensor_set(f, c, info.qkv_bias_required);
  return c;
}

ModelShape Model::kv_shape() const {
  return {.name = config_.architecture,
          .layers = config_.n_layers,
          .q_heads = config_.n_heads,
          .kv_heads = config_.n_kv_heads,
          .head_dim = config_.head_dim,
          .max_context = config_.context_length,
          .sliding_window = config_.sliding_window,
          .sliding_window_pattern = config_.sliding_window_pattern};
}

Model Model::load(const std::filesystem::path& path, int threads) {
  const gguf::File file = gguf::File::open(path);
  return from_gguf(file, threads);
}

Model Model::from_gguf(const gguf::File& f, int threads) {
  ModelOptions o;
  o.threads = threads;
  return from_gguf(f, o);
}

Model Model::from_gguf(const gguf::File& f, const ModelOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  int threads = options.threads;
  const bool fp32 = options.fp32_weights || env_fp32_weights();
  Model m;
  m.config_ = read_config(f);
  const ModelConfig& c = m.config_;
  using u64 = std::uint64_t;
  const u64 E = static_cast<u64>(c.n_embd), V = static_cast<u64>(c.n_vocab);
  const u64 Q = static_cast<u64>(c.q_dim()), KV = static_cast<u64>(c.kv_dim());
  const u64 F = static_cast<u64>(c.n_ff);
  const std::size_t qkv_rows = Q + 2 * KV;

  std::vector<LoadTask> tasks;
  auto add = [&](const gguf::TensorInfo* t, std::vector<float>& dst, std::size_t offset_floats) {
    if (t) tasks.push_back({t, dst.data() + offset_floats, false});
  };
  // A matrix of `rows` × `cols` fused from `parts` (stacked along rows, in order).
  auto add_matrix = [&](WeightMatrix& w, u64 rows, u64 cols,
                        std::initializer_list<const gguf::TensorInfo*> parts) {
    w = qmm::allocate_matrix(storage_type(parts, fp32), static_cast<int>(rows),
                             static_cast<int>(cols));
    std::size_t row = 0;
    for (const auto* p : parts) {
      tasks.push_back({p, w.data.data() + row * w.row_bytes, p->type == w.type});
      row += p->n_rows();
    }
  };

  add_matrix(m.token_embd_, V, E, {checked_tensor(f, "token_embd.weight", {E, V})});
  m.output_norm_.resize(E);
  add(checked_tensor(f, "output_norm.weight", {E}), m.output_norm_, 0);
  if (!c.tied_embeddings) {
    add_matrix(m.output_, V, E, {checked_tensor(f, "output.weight", {E, V})});
  }
  m.layers_.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& w = m.layers_[static_cast<std::size_t>(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    w.attn_norm.resize(E);
    add(checked_tensor(f, b + "attn_norm.weight", {E}), w.attn_norm, 0);
    add_matrix(w.wqkv, qkv_rows, E,
               {checked_tensor(f, b + "attn_q.weight", {E, Q}),
                checked_tensor(f, b + "attn_k.weight", {E, KV}),
                checked_tensor(f, b + "attn_v.weight", {E, KV})});
    if (c.qkv_bias) {
      // qwen2 requires all three; other architectures may carry them (missing ones are zero).
      const bool req = arch_info(c.architecture).qkv_bias_required;
      w.bqkv.assign(qkv_rows, 0.0f);
      add(checked_tensor(f, b + "attn_q.bias", {Q}, req), w.bqkv, 0);
      add(checked_tensor(f, b + "attn_k.bias", {KV}, req), w.bqkv, Q);
      add(checked_tensor(f, b + "attn_v.bias", {KV}, req), w.bqkv, Q + KV);
    }
    add_matrix(w.wo, E, Q, {checked_tensor(f, b + "attn_output.weight", {Q, E})});
    w.ffn_norm.resize(E);
    add(checked_tensor(f, b + "ffn_norm.weight", {E}), w.ffn_norm, 0);
    add_matrix(w.w_gate_up, 2 * F, E,
               {checked_tensor(f, b + "ffn_gate.weight", {E, F}),
                checked_tensor(f, b + "ffn_up.weight", {E, F})});
    add_matrix(w.w_down, E, F, {checked_tensor(f, b + "ffn_down.weight", {F, E})});
    if (c.qk_norm) {
      const u64 D = static_cast<u64>(c.head_dim);
      w.q_norm.resize(D);
      w.k_norm.resize(D);
      add(checked_tensor(f, b + "attn_q_norm.weight", {D}), w.q_norm, 0);
      add(checked_tensor(f, b + "attn_k_norm.weight", {D}), w.k_norm, 0);
    }
    if (c.sandwich_norms) {
      w.post_attn_norm.resize(E);
      w.post_ffn_norm.resize(E);
      add(checked_tensor(f, b + "post_attention_norm.weight", {E}), w.post_attn_norm, 0);
      add(checked_tensor(f, b + "post_ffw_norm.weight", {E}), w.post_ffn_norm, 0);
    }
  }

  // RoPE frequencies (Llama 3 style files carry per-pair divisors in rope_freqs.weight).
  const int half = c.rope_dim / 2;
  std::vector<float> freq_factors;
  if (const auto* rf = checked_tensor(f, "rope_freqs.weight", {static_cast<u64>(half)}, false)) {
    freq_factors = f.dequantize(*rf);
    for (std::size_t i = 0; i < freq_factors.size(); ++i) {
      if (!(freq_factors[i] > 0.0f) || !std::isfinite(freq_factors[i])) {
        throw FormatError("model tensor 'rope_freqs.weight' entry " + std::to_string(i) + " is " +
                          std::to_string(freq_factors[i]) + " (expected a finite divisor > 0)");
      }
    }
  }
  m.rope_inv_freq_.resize(static_cast<std::size_t>(half));
  m.rope_inv_freq_sliding_.resize(static_cast<std::size_t>(half));
  for (int i = 0; i < half; ++i) {
    double inv = std::pow(c.rope_base, -2.0 * i / c.rope_dim);
    if (!freq_factors.empty()) inv /= freq_factors[static_cast<std::size_t>(i)];
    m.rope_inv_freq_[static_cast<std::size_t>(i)] = inv;
    // The per-pair divisors belong to the global layers' long-context scaling.
    m.rope_inv_freq_sliding_[static_cast<std::size_t>(i)] =
        std::pow(c.rope_base_sliding, -2.0 * i / c.rope_dim);
  }

#ifdef _OPENMP
  if (threads <= 0) threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  // Largest tensors first so that the dynamic schedule balances well.
  std::sort(tasks.begin(), tasks.end(), [](const LoadTask& a, const LoadTask& b) {
    return a.src->n_elements > b.src->n_elements;
  });
  std::size_t file_bytes = 0;
  for (const auto& t : tasks) file_bytes += t.src->n_bytes;
  const int n_tasks = static_cast<int>(tasks.size());
  // An exception must not escape an OpenMP region: keep the first one and rethrow it after.
  std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int i = 0; i < n_tasks; ++i) {
    try {
      const LoadTask& task = tasks[static_cast<std::size_t>(i)];
      const gguf::TensorInfo& t = *task.src;
      if (task.raw) {
        std::memcpy(task.dst, t.data, t.n_bytes);
      } else {
        f.dequantize_rows(t, 0, t.n_rows(), static_cast<float*>(task.dst));
      }
    } catch (...) {
#pragma omp critical(tq_model_load_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);

  std::size_t floats = m.output_norm_.size();
  std::size_t fp32_bytes = 0, quant_bytes = 0;
  auto count = [&](const WeightMatrix& w) {
    (w.type == gguf::TensorType::kF32 ? fp32_bytes : quant_bytes) += w.bytes();
  };
  count(m.token_embd_);
  count(m.output_);
  for (const auto& w : m.layers_) {
    floats += w.attn_norm.size() + w.bqkv.size() + w.ffn_norm.size() + w.q_norm.size() +
              w.k_norm.size() + w.post_attn_norm.size() + w.post_ffn_norm.size();
    count(w.wqkv);
    count(w.wo);
    count(w.w_gate_up);
    count(w.w_down);
  }
  m.stats_.fp32_bytes = fp32_bytes + floats * sizeof(float);
  m.stats_.weight_bytes = m.stats_.fp32_bytes + quant_bytes;
  m.stats_.file_bytes = file_bytes;
  m.stats_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

}  // namespace tq
