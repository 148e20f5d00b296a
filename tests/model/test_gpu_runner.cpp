// The GPU runner (SessionOptions::device = Cuda) against the CPU runner on the same model and
// tokens, over a multi-chunk prefill and teacher-forced decode steps:
// * Where both caches hold exact values (the fp16 cache; a TurboQuant scheme while its fp16
//   window still holds every token), the logits agree tightly (kMaxAbs / kMeanAbs / kTop1).
// * Where tokens are compressed, the two runs' codes come from K/V that differ by the GPU's fp16
//   matrix products, so a coordinate near a bucket threshold can land in the neighbouring bucket:
//   each device's run is a different draw of the same quantization noise. What must agree is
//   how far each is from its own fp16 run: mean KLD(fp16 ‖ scheme) per device within a factor
//   kKldRatio, and top-1 agreement with fp16 within kTop1Gap. (Bit-identical codes for identical
//   inputs are tests/cuda/test_gpu_layer_cache.cpp's job.)
// * Greedy decoding of the reference-fixture prompts with the fp16 cache gives the same tokens.
// * Batched decode (decode_batch: a CUDA graph per length bucket, positions on the device, some
//   sequences sitting steps out) matches one single-sequence GPU session per sequence, and the
//   recorded graph gives bit-identical logits to the same steps run eagerly (TQ_CUDA_GRAPHS=0).
// Models: SmolLM2-135M (models/, scripts/fetch_model.sh), a two-layer random model of the
// Llama-3.1-8B shape and a six-layer one of the Gemma 3 270M shape (tq::write_random_model). The
// measured numbers are printed. Skips without a GPU (and without the model for the SmolLM2 cases).
#include "batched_decode.hpp"
#include "turboquant/model/gguf.hpp"
#include "turboquant/model/model.hpp"
#include "turboquant/model/random_model.hpp"
#include "turboquant/model/tokenizer.hpp"

#ifdef TQ_HAVE_CUDA
#include "turboquant/cuda/attention.hpp"
#endif

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

// TQ_MODEL names another copy of the model (the GPU machine has no checkout at TQ_SOURCE_DIR).
const std::string kModelPath = std::getenv("TQ_MODEL") && *std::getenv("TQ_MODEL")
                                   ? std::getenv("TQ_MODEL")
                                   : TQ_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kFixturePath =
    std::getenv("TQ_FIXTURES") && *std::getenv("TQ_FIXTURES")
        ? std::string(std::getenv("TQ_FIXTURES")) + "/smollm2_reference_f32.json"
        : TQ_SOURCE_DIR "/tests/fixtures/smollm2_reference_f32.json";

// Tolerances of GPU vs CPU logits where both caches are exact. The GPU prefill multiplies
// fp16-rounded weights and activations on tensor cores (fp32 accumulation) where the CPU uses
// fp32; decode reads the GGUF blocks in fp32 on both; attention scores use fp16 products on the
// GPU. Measured on an H200 (SmolLM2, fp16 cache, 338 positions): max 0.061, mean 0.0074, top-1
// 1.0; Llama-3.1-8B shape (2 layers): max 0.0020, mean 0.00025.
constexpr double kMaxAbs = 0.15;
constexpr double kMeanAbs = 0.02;
constexpr double kTop1 = 0.99;
// Compressed caches: each device's mean KLD from its own fp16 run within this factor of the
// other's, and top-1 agreement with fp16 within kTop1Gap.
constexpr double kKldRatio = 1.5;
constexpr double kTop1Gap = 0.03;

bool gpu_visible() {
#ifdef TQ_HAVE_CUDA
  return tq::cuda::device_available();
#else
  return false;
#endif
}

#define REQUIRE_GPU() \
  if (!gpu_visible()) GTEST_SKIP() << "no CUDA device (or a build without CUDA)"

int argmax(const float* v, std::size_t n) {
  return static_cast<int>(std::max_element(v, v + n) - v);
}

struct Agreement {
  double max_abs = 0.0, sum_abs = 0.0;
  std::size_t values = 0, rows = 0, top1_same = 0;
  void add(const float* a, const float* b, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const double e = std::abs(static_cast<double>(a[i]) - b[i]);
      max_abs = std::max(max_abs, e);
      sum_abs += e;
    }
    values += n;
    rows += 1;
    top1_same += argmax(a, n) == argmax(b, n);
  }
  double mean_abs() const { return values ? sum_abs / values : 0.0; }
  double top1() const { return rows ? static_cast<double>(top1_same) / rows : 0.0; }
};

// The logits of every position of `prompt` (prefill in chunks of `chunk`) and of `decode_steps`
// teacher-forced decode steps fed `forced` (the CPU fp16 run's argmax), [positions][n_vocab].
struct Run {
  std::vector<float> logits;
  std::size_t kv_bytes = 0;
};

Run run_session(const tq::Model& model, const std::string& scheme, tq::Device device,
                const std::vector<tq::TokenId>& prompt, int chunk,
                const std::vector<tq::TokenId>& forced) {
  tq::SessionOptions options;
  options.prefill_chunk = chunk;
  options.max_context = prompt.size() + forced.size() + 1;
  options.device = device;
  tq::Session session(model, scheme, options);
  const std::size_t V = static_cast<std::size_t>(model.config().n_vocab);
  Run r;
  r.logits.assign((prompt.size() + forced.size()) * V, std::nanf(""));
  session.eval(prompt, r.logits.data());
  for (std::size_t s = 0; s < forced.size(); ++s) {
    const auto row = session.decode(forced[s]);
    std::copy(row.begin(), row.end(), r.logits.begin() + (prompt.size() + s) * V);
  }
  r.kv_bytes = session.kv_bytes().bytes;
  return r;
}

// Greedy tokens of a CPU fp16 run after `prompt`, the inputs every comparison forces.
std::vector<tq::TokenId> forced_tokens(const tq::Model& model,
                                       const std::vector<tq::TokenId>& prompt, int steps) {
  tq::SessionOptions options;
  options.max_context = prompt.size() + steps + 1;
  tq::Session session(model, "fp16", options);
  std::span<const float> logits = session.eval(prompt);
  std::vector<tq::TokenId> out;
  for (int s = 0; s < steps; ++s) {
    out.push_back(argmax(logits.data(), logits.size()));
    logits = session.decode(out.back());
  }
  return out;
}

Agreement agreement(const Run& a, const Run& b, std::size_t V) {
  Agreement agree;
  for (std::size_t p = 0; p * V < a.logits.size(); ++p)
    agree.add(&a.logits[p * V], &b.logits[p * V], V);
  return agree;
}

void expect_agreement(const Agreement& a, const std::string& what) {
  std::printf("[gpu vs cpu] %-34s max|d| %.4f  mean|d| %.5f  top-1 %.4f over %zu positions\n",
              what.c_str(), a.max_abs, a.mean_abs(), a.top1(), a.rows);
  EXPECT_LE(a.max_abs, kMaxAbs) << what;
  EXPECT_LE(a.mean_abs(), kMeanAbs) << what;
  EXPECT_GE(a.top1(), kTop1) << what;
}

// Mean KLD(p ‖ q) over positions, p and q given as logits, and the share of equal argmax.
struct Divergence {
  double kld = 0.0, top1 = 0.0;
};

Divergence divergence(const Run& p, const Run& q, std::size_t V) {
  Divergence d;
  const std::size_t rows = p.logits.size() / V;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* a = &p.logits[r * V];
    const float* b = &q.logits[r * V];
    const double ma = *std::max_element(a, a + V), mb = *std::max_element(b, b + V);
    double za = 0.0, zb = 0.0;
    for (std::size_t i = 0; i < V; ++i) {
      za += std::exp(a[i] - ma);
      zb += std::exp(b[i] - mb);
    }
    const double la = ma + std::log(za), lb = mb + std::log(zb);
    double kl = 0.0;
    for (std::size_t i = 0; i < V; ++i) {
      const double lpa = a[i] - la, lpb = b[i] - lb;
      kl += std::exp(lpa) * (lpa - lpb);
    }
    d.kld += kl;
    d.top1 += argmax(a, V) == argmax(b, V);
  }
  d.kld /= static_cast<double>(rows);
  d.top1 /= static_cast<double>(rows);
  return d;
}

// Exact caches: GPU and CPU logits agree tightly. Compressed caches: each device's distance from
// its own fp16 run agrees.
void compare_devices(const tq::Model& model, const std::vector<tq::TokenId>& prompt, int chunk,
                     int decode_steps, const std::vector<std::string>& exact,
                     const std::vector<std::string>& compressed, const std::string& label) {
  const std::size_t V = static_cast<std::size_t>(model.config().n_vocab);
  const std::vector<tq::TokenId> forced = forced_tokens(model, prompt, decode_steps);
  const Run cpu16 = run_session(model, "fp16", tq::Device::Cpu, prompt, chunk, forced);
  const Run gpu16 = run_session(model, "fp16", tq::Device::Cuda, prompt, chunk, forced);
  expect_agreement(agreement(gpu16, cpu16, V), label + " fp16");
  for (const std::string& scheme : exact) {
    const Run c = run_session(model, scheme, tq::Device::Cpu, prompt, chunk, forced);
    const Run g = run_session(model, scheme, tq::Device::Cuda, prompt, chunk, forced);
    expect_agreement(agreement(g, c, V), label + " " + scheme + " (all in window)");
    EXPECT_EQ(g.kv_bytes, c.kv_bytes) << scheme << ": byte accounting differs";
  }
  for (const std::string& scheme : compressed) {
    const Run c = run_session(model, scheme, tq::Device::Cpu, prompt, chunk, forced);
    const Run g = run_session(model, scheme, tq::Device::Cuda, prompt, chunk, forced);
    const Divergence dc = divergence(cpu16, c, V), dg = divergence(gpu16, g, V);
    const Agreement direct = agreement(g, c, V);
    std::printf(
        "[gpu vs cpu] %-34s KLD vs own fp16: cpu %.5f gpu %.5f; top-1 vs fp16: cpu %.4f "
        "gpu %.4f; direct max|d| %.3f top-1 %.4f\n",
        (label + " " + scheme).c_str(), dc.kld, dg.kld, dc.top1, dg.top1, direct.max_abs,
        direct.top1());
    EXPECT_LE(dg.kld, kKldRatio * dc.kld) << scheme;
    EXPECT_LE(dc.kld, kKldRatio * dg.kld) << scheme;
    EXPECT_LE(std::abs(dg.top1 - dc.top1), kTop1Gap) << scheme;
    EXPECT_EQ(g.kv_bytes, c.kv_bytes) << scheme << ": byte accounting differs";
  }
}

std::vector<tq::TokenId> prose_tokens(const tq::gguf::File& file) {
  const tq::Tokenizer tok = tq::Tokenizer::from_gguf(file);
  std::string text;
  for (int i = 0; i < 6; ++i) {
    text +=
        "The river rose through the night, and by morning the lower fields of the valley were "
        "under water. Farmers moved their animals to the hills, while the children watched from "
        "the bridge as the current carried branches, fences and once a whole haystack past the "
        "mill. ";
  }
  return tok.encode(text, true);
}

struct SmolFixture {
  std::unique_ptr<tq::Model> model;
  std::vector<tq::TokenId> prompt;
};

const SmolFixture& smol() {
  static const SmolFixture f = [] {
    SmolFixture s;
    if (!std::filesystem::exists(kModelPath)) return s;
    const auto file = tq::gguf::File::open(kModelPath);
    s.model = std::make_unique<tq::Model>(tq::Model::from_gguf(file));
    s.prompt = prose_tokens(file);
    return s;
  }();
  return f;
}

TEST(GpuRunner, SmolLM2LogitsMatchTheCpuRunner) {
  REQUIRE_GPU();
  if (!smol().model) {
    GTEST_SKIP() << "no SmolLM2 file at \"" << kModelPath
                 << "\" (TQ_MODEL; scripts/fetch_model.sh fetches it)";
  }
  const std::vector<tq::TokenId>& prompt = smol().prompt;
  ASSERT_GT(prompt.size(), 300u);  // several chunks, and past the 128-token window
  compare_devices(*smol().model, prompt, 96, 24, {},
                  {"tq4", "tq4:window=0", "tq3.5", "k4v3", "tq3:kcodec=prod,protect=1/1"},
                  "smollm2");
  // A prompt the default window still holds whole: TurboQuant's exact path (ring, fold-in).
  const std::vector<tq::TokenId> short_prompt(prompt.begin(), prompt.begin() + 90);
  compare_devices(*smol().model, short_prompt, 32, 20, {"tq4", "k4v3"}, {}, "smollm2 short");
}

TEST(GpuRunner, SmolLM2GreedyFixturePromptsMatchWithFp16Cache) {
  REQUIRE_GPU();
  if (!smol().model || !std::filesystem::exists(kFixturePath)) {
    GTEST_SKIP() << "model or fixture missing";
  }
  std::ifstream in(kFixturePath);
  const nlohmann::json fx = nlohmann::json::parse(in);
  const auto eos = fx["meta"]["eos_id"].get<tq::TokenId>();
  const tq::Model& model = *smol().model;
  const std::size_t V = static_cast<std::size_t>(model.config().n_vocab);
  tq::SessionOptions gpu_options;
  gpu_options.device = tq::Device::Cuda;
  gpu_options.max_context = 512;
  tq::Session cpu(model, "fp16");
  tq::Session gpu(model, "fp16", gpu_options);
  int prompts = 0;
  for (const auto& p : fx["prompts"]) {
    const auto ids = p["ids"].get<std::vector<tq::TokenId>>();
    cpu.reset();
    gpu.reset();
    auto lc = cpu.eval(ids);
    auto lg = gpu.eval(ids);
    std::vector<tq::TokenId> a, b;
    for (int s = 0; s < 32; ++s) {
      a.push_back(argmax(lc.data(), V));
      b.push_back(argmax(lg.data(), V));
      if (a.back() != b.back() || a.back() == eos) break;
      lc = cpu.decode(a.back());
      lg = gpu.decode(b.back());
    }
    EXPECT_EQ(a, b) << "prompt '" << p["name"].get<std::string>() << "'";
    ++prompts;
  }
  EXPECT_GT(prompts, 0);
}

TEST(GpuRunner, RandomLlama8BShapeMatchesTheCpuRunner) {
  REQUIRE_GPU();
  tq::RandomModelOptions o;
  o.shape = tq::find_random_model_shape("llama-3.1-8b");
  o.shape.layers = 2;
  o.weights = tq::gguf::TensorType::kQ4_0;
  o.seed = 7;
  const auto path = std::filesystem::temp_directory_path() /
                    ("tq_gpu_runner_llama8b_" + std::to_string(::getpid()) + ".gguf");
  tq::write_random_model(o, path);
  {
    const auto file = tq::gguf::File::open(path);
    const tq::Model model = tq::Model::from_gguf(file);
    std::vector<tq::TokenId> prompt;
    for (int i = 0; i < 200; ++i) prompt.push_back(static_cast<tq::TokenId>((i * 7919) % 5000));
    compare_devices(model, prompt, 64, 8, {}, {"tq4", "tq3.5"}, "llama-8b-shape");
  }
  std::filesystem::remove(path);
}

// Gemma 3's block on the GPU (QK-norm, sandwich norms, GeGLU, √n_embd embeddings, sliding-window
// layers in exact rings with their own RoPE base): a random model of the 270M shape with six
// layers (five sliding, one global), a prompt longer than the 512-token window, prefill chunks
// smaller than it. The vocabulary is cut to 4096 to keep the file small.
tq::RandomModelOptions gemma3_options() {
  tq::RandomModelOptions o;
  o.shape = tq::find_random_model_shape("gemma3-270m");
  o.shape.layers = 6;
  o.shape.vocab = 4096;
  o.weights = tq::gguf::TensorType::kQ8_0;
  o.seed = 5;
  return o;
}

TEST(GpuRunner, RandomGemma3ShapeMatchesTheCpuRunner) {
  REQUIRE_GPU();
  const auto path = std::filesystem::temp_directory_path() /
                    ("tq_gpu_runner_gemma3_" + std::to_string(::getpid()) + ".gguf");
  tq::write_random_model(gemma3_options(), path);
  {
    const auto file = tq::gguf::File::open(path);
    const tq::Model model = tq::Model::from_gguf(file);
    ASSERT_TRUE(model.config().is_sliding_layer(0));
    ASSERT_FALSE(model.config().is_sliding_layer(5));
    std::vector<tq::TokenId> prompt;
    for (int i = 0; i < 700; ++i) prompt.push_back(static_cast<tq::TokenId>((i * 7919) % 4000));
    compare_devices(model, prompt, 128, 24, {}, {"tq4", "tq3.5", "k4v3"}, "gemma3-shape");
  }
  std::filesystem::remove(path);
}

TEST(GpuRunner, Gemma3BatchedDecodeMatchesSingleSequences) {
  REQUIRE_GPU();
  const auto path = std::filesystem::temp_directory_path() /
                    ("tq_gpu_runner_gemma3b_" + std::to_string(::getpid()) + ".gguf");
  tq::write_random_model(gemma3_options(), path);
  {
    const auto file = tq::gguf::File::open(path);
    const tq::Model model = tq::Model::from_gguf(file);
    tq::SessionOptions options;
    options.device = tq::Device::Cuda;
    options.max_context = 700;
    options.prefill_chunk = 128;
    // The first sequence crosses the 512-token window during the 30 decode steps (the ring
    // overwrites its oldest slots inside the recorded graph).
    std::vector<std::vector<tq::TokenId>> prompts;
    for (const int length : {500, 120, 7}) {
      std::vector<tq::TokenId> p;
      for (int i = 0; i < length; ++i) p.push_back((i * 131 + length) % 4000);
      prompts.push_back(p);
    }
    for (const std::string scheme : {"fp16", "tq4"}) {
      const auto r =
          tq::testing::check_batched_decode(model, scheme, options, options, prompts, 30);
      std::printf("[batched vs single] gemma3 %-6s max|d| %.5f mean|d| %.6f top-1 %.4f over %zu\n",
                  scheme.c_str(), r.max_abs, r.mean_abs(), r.top1(), r.rows);
      EXPECT_TRUE(r.positions_ok) << scheme;
      EXPECT_GT(r.rows, 60u) << scheme;
      EXPECT_LE(r.mean_abs(), scheme == "fp16" ? 1e-3 : 2e-2) << scheme;
      EXPECT_GE(r.top1(), 0.97) << scheme;
    }
  }
  std::filesystem::remove(path);
}

// A random model of the SmolLM2 shape with `layers` layers (head dim 64, GQA group 3), written
// once per process.
const tq::Model& small_random_model() {
  static const std::unique_ptr<tq::Model> model = [] {
    tq::RandomModelOptions o;
    o.shape = tq::find_random_model_shape("smollm2-135m");
    o.shape.layers = 4;
    o.weights = tq::gguf::TensorType::kQ8_0;
    o.seed = 11;
    const auto path = std::filesystem::temp_directory_path() /
                      ("tq_gpu_runner_smol4_" + std::to_string(::getpid()) + ".gguf");
    tq::write_random_model(o, path);
    const auto file = tq::gguf::File::open(path);
    auto m = std::make_unique<tq::Model>(tq::Model::from_gguf(file));
    std::filesystem::remove(path);
    return m;
  }();
  return *model;
}

std::vector<std::vector<tq::TokenId>> batch_prompts(int n_vocab) {
  std::vector<std::vector<tq::TokenId>> prompts;
  for (const int length : {100, 150, 250, 7}) {
    std::vector<tq::TokenId> p;
    for (int i = 0; i < length; ++i) p.push_back((i * 131 + length) % n_vocab);
    prompts.push_back(p);
  }
  return prompts;
}

TEST(GpuRunner, BatchedDecodeMatchesSingleSequences) {
  REQUIRE_GPU();
  const tq::Model& model = small_random_model();
  tq::SessionOptions options;
  options.device = tq::Device::Cuda;
  options.max_context = 400;
  // 40 steps take the first sequence past the 128-token window during decode (evictions in the
  // recorded graph) and the third past the 256-token bucket (a second graph).
  for (const std::string scheme : {"fp16", "tq4", "tq4:window=0", "tq3:kcodec=prod", "k4v3"}) {
    const auto r = tq::testing::check_batched_decode(model, scheme, options, options,
                                                     batch_prompts(model.config().n_vocab), 40);
    std::printf("[batched vs single] %-18s max|d| %.5f mean|d| %.6f top-1 %.4f over %zu rows\n",
                scheme.c_str(), r.max_abs, r.mean_abs(), r.top1(), r.rows);
    EXPECT_TRUE(r.positions_ok) << scheme;
    EXPECT_GT(r.rows, 100u) << scheme;
    // Same kernels; the split plan of a batch differs from a single sequence's, so attention
    // sums in another order and a compressed cache may take a neighbouring bucket downstream.
    EXPECT_LE(r.mean_abs(), scheme == "fp16" ? 1e-3 : 2e-2) << scheme;
    EXPECT_GE(r.top1(), 0.97) << scheme;
  }
}

TEST(GpuRunner, RecordedDecodeStepEqualsEagerSteps) {
  REQUIRE_GPU();
  const tq::Model& model = small_random_model();
  const auto prompts = batch_prompts(model.config().n_vocab);
  for (const std::string scheme : {"fp16", "tq4", "tq3.5:window=16"}) {
    std::vector<std::vector<float>> runs;
    for (const char* graphs : {"1", "0"}) {
      ::setenv("TQ_CUDA_GRAPHS", graphs, 1);
      tq::SessionOptions options;
      options.device = tq::Device::Cuda;
      options.max_context = 400;
      options.batch = static_cast<int>(prompts.size());
      tq::Session session(model, scheme, options);
      for (int b = 0; b < options.batch; ++b) session.eval(b, prompts[static_cast<std::size_t>(b)]);
      std::vector<float> all;
      for (int s = 0; s < 30; ++s) {
        std::vector<tq::TokenId> tokens;
        for (int b = 0; b < options.batch; ++b) tokens.push_back((s * 5 + b) % 1000);
        if (s % 7 == 3) tokens[1] = tq::Session::kNoToken;
        const auto logits = session.decode_batch(tokens);
        for (int b = 0; b < options.batch; ++b) {
          if (tokens[static_cast<std::size_t>(b)] == tq::Session::kNoToken) continue;
          const auto row = logits.subspan(static_cast<std::size_t>(b) * model.config().n_vocab,
                                          model.config().n_vocab);
          all.insert(all.end(), row.begin(), row.end());
        }
      }
      runs.push_back(std::move(all));
    }
    ::unsetenv("TQ_CUDA_GRAPHS");
    ASSERT_EQ(runs[0].size(), runs[1].size());
    std::size_t differing = 0;
    for (std::size_t i = 0; i < runs[0].size(); ++i) differing += runs[0][i] != runs[1][i];
    EXPECT_EQ(differing, 0u) << scheme << ": graph replays differ from eager steps";
  }
}

}  // namespace
