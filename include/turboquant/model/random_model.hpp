// GGUF files with seeded random weights in the shapes of real models (`tq make-model`), so that
// speed and GPU-vs-CPU agreement can be tested at full size without downloading a model. The
// files carry the hyper-parameters the loader reads, a byte-level tokenizer of the shape's vocab
// size, `general.name = "random <shape> seed S"` and `turboquant.random_weights = true`.
#pragma once

#include "turboquant/model/gguf.hpp"
#include "turboquant/model/gguf_writer.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

// The metadata key that marks a file written by write_random_model.
inline constexpr const char* kRandomWeightsKey = "turboquant.random_weights";

// The hyper-parameters of one model shape (as in the published configs of the model).
struct RandomModelShape {
  std::string name;          // "llama-3.1-8b"
  std::string architecture;  // general.architecture: llama, qwen2 or gemma3
  int layers = 0;
  int embedding = 0;
  int feed_forward = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int vocab = 0;
  int context = 0;
  double rope_base = 10000.0;
  float rms_eps = 1e-5f;
  bool qkv_bias = false;         // Q/K/V biases (qwen2)
  bool tied_embeddings = false;  // no output.weight: the token embedding is the output matrix
  bool llama3_rope = false;      // rope_freqs.weight with Llama 3.1's frequency scaling
  bool add_bos = false;          // tokenizer.ggml.add_bos_token
  std::string pre_tokenizer;     // tokenizer.ggml.pre
  // gemma3 only: sliding-window layers (window, every pattern-th layer global) with their own
  // RoPE base; the architecture adds QK-norm and the post-attention / post-FFN norms.
  int sliding_window = 0;
  int sliding_window_pattern = 0;
  double rope_base_sliding = 10000.0;
};

// llama-3.1-8b, qwen2.5-7b, mistral-7b, smollm2-135m, gemma3-270m.
const std::vector<RandomModelShape>& random_model_shapes();
// The shape named `name`; throws std::invalid_argument listing the known names.
const RandomModelShape& find_random_model_shape(std::string_view name);
// Parses "q4_0|q8_0|f16|bf16|f32" (case-insensitive); throws std::invalid_argument otherwise.
gguf::TensorType parse_random_weight_type(std::string_view name);

struct RandomModelOptions {
  RandomModelShape shape;
  gguf::TensorType weights = gguf::TensorType::kQ4_0;  // the matrices; norms and biases are F32
  std::uint64_t seed = 0;
  int threads = 0;  // rows generated in parallel; 0: all cores. The bytes never depend on it.
};

// Declares the metadata and tensor directory of the model (no tensor data yet). Throws
// std::invalid_argument for a shape the runner could not load (e.g. a matrix row length that is
// not a multiple of the weight type's block size).
gguf::Writer random_model_layout(const RandomModelOptions& options);

// Writes the model to `path`, one tensor at a time (memory stays at a few blocks of rows).
// Throws std::runtime_error naming the path when it cannot be written.
void write_random_model(const RandomModelOptions& options, const std::filesystem::path& path,
                        const gguf::WriteProgress& progress = {});

// True when the file is marked as written by write_random_model.
bool has_random_weights(const gguf::File& file);

}  // namespace tq
