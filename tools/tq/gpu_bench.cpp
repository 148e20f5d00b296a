// run_gpu_bench (gpu_bench.hpp). A decode row: one Session of `batch` sequences, each filled with
// `context` synthetic K/V tokens (Session::fill_synthetic: the values do not change the cost),
// three untimed steps (the eager step that sizes the workspace, the step that records the graph,
// one replay), then `steps` timed decode_batch calls (median). The same at a 16-token context
// gives the step's fixed part; the rest is attention (and the cache writes). The floor of a row
// is the bytes one step must read (weights once, every sequence's cache once) over the copy
// bandwidth measured in the same run.
#include "gpu_bench.hpp"

#include "turboquant/base/device.hpp"

#ifdef TQ_HAVE_CUDA
#include "turboquant/cuda/attention.hpp"
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace tq::cli {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median milliseconds of one decode_batch step at `context` tokens per sequence.
double time_decode_step(const Model& model, const KvScheme& scheme, int batch, std::size_t context,
                        int steps, double* weight_bytes, double* memory_in_use) {
  SessionOptions so;
  so.device = Device::Cuda;
  so.batch = batch;
  so.max_context = context + static_cast<std::size_t>(steps) + 8;
  Session session(model, scheme, so);
  for (int b = 0; b < batch; ++b) session.fill_synthetic(b, context, 17 + b);
  const int V = model.config().n_vocab;
  std::vector<TokenId> tokens(static_cast<std::size_t>(batch));
  for (int b = 0; b < batch; ++b) tokens[static_cast<std::size_t>(b)] = (b * 7919 + 13) % V;
  for (int s = 0; s < 3; ++s) session.decode_batch(tokens);
  std::vector<double> ms;
  for (int s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    session.decode_batch(tokens);  // returns after the logits are on the host
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  if (weight_bytes) *weight_bytes = static_cast<double>(session.device_weight_bytes());
#ifdef TQ_HAVE_CUDA
  if (memory_in_use) {
    const cuda::DeviceMemory m = cuda::device_memory();
    *memory_in_use = static_cast<double>(m.total - m.free);
  }
#endif
  return median(ms);
}

}  // namespace

nlohmann::json run_gpu_bench(const Model& model, const GpuBenchOptions& o) {
#ifndef TQ_HAVE_CUDA
  (void)model;
  (void)o;
  throw std::runtime_error(
      "--device cuda: this build of turboquant has no CUDA support (configure with nvcc on PATH "
      "or -DTQ_CUDA=ON)");
#else
  if (!cuda::device_available()) {
    throw std::runtime_error(
        "--device cuda: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  }
  const ModelShape shape = model.kv_shape();
  const double bandwidth = cuda::copy_bandwidth();
  nlohmann::json rows = nlohmann::json::array();
  double weights = 0.0;
  for (const KvScheme& scheme : o.schemes) {
    check_scheme_fits_layers(scheme, shape.layers);
    // Bytes per token in the long run (window tokens amortised away), for the budget column.
    const std::size_t long_context = std::size_t{1} << 22;
    const double per_token = static_cast<double>(kv_cache_size(shape, scheme, long_context).bytes) /
                             static_cast<double>(long_context);
    for (const int batch : o.batches) {
      double fixed_ms = -1.0;
      for (const std::size_t n : o.contexts) {
        nlohmann::json r;
        r["kind"] = "decode";
        r["kv"] = scheme.name;
        r["batch"] = batch;
        r["context"] = n;
        const double cache =
            static_cast<double>(kv_cache_size(shape, scheme, n + o.steps + 8).bytes) * batch;
        r["kv_bytes"] = static_cast<double>(kv_cache_size(shape, scheme, n).bytes) * batch;
        r["kv_bytes_per_token"] = per_token;
        const cuda::DeviceMemory free_now = cuda::device_memory();
        // Weights (known after the first row; the file size bounds them before) + caches + 2 GiB
        // for activations, workspaces and the CUDA context.
        const double need = cache + std::max(weights, 0.0) + 2.0 * kGiB;
        if (need > static_cast<double>(free_now.free)) {
          r["skipped"] = "needs " + std::to_string(need / kGiB) + " GiB, " +
                         std::to_string(static_cast<double>(free_now.free) / kGiB) + " GiB free";
          rows.push_back(r);
          if (!o.quiet) {
            std::fprintf(stderr, "%-22s batch %3d ctx %7zu: skipped (%s)\n", scheme.name.c_str(),
                         batch, n, r["skipped"].get<std::string>().c_str());
          }
          continue;
        }
        if (fixed_ms < 0) {
          fixed_ms = time_decode_step(model, scheme, batch, 16, o.steps, &weights, nullptr);
        }
        double in_use = 0.0;
        const double ms = time_decode_step(model, scheme, batch, n, o.steps, &weights, &in_use);
        const double floor_ms = 1e3 * (weights + static_cast<double>(r["kv_bytes"])) / bandwidth;
        r["ms_per_step"] = ms;
        r["tokens_per_second"] = 1e3 * batch / ms;
        r["fixed_ms"] = fixed_ms;
        r["attention_ms"] = std::max(0.0, ms - fixed_ms);
        r["attention_share"] = std::max(0.0, ms - fixed_ms) / ms;
        r["floor_ms"] = floor_ms;
        r["floor_fraction"] = floor_ms / ms;
        r["gpu_memory_in_use_bytes"] = in_use;
        r["tokens_in_budget"] =
            per_token > 0 ? std::max(0.0, (o.memory_budget_gib * kGiB - weights) / per_token) : 0.0;
        r["method"] =
            "synthetic cache fill, median of timed decode_batch steps (CUDA graph replays)";
        rows.push_back(r);
        if (!o.quiet) {
          std::fprintf(stderr,
                       "%-22s batch %3d ctx %7zu: %8.3f ms/step %9.1f tok/s, attention %4.1f%%, "
                       "floor %5.1f%%\n",
                       scheme.name.c_str(), batch, n, ms, 1e3 * batch / ms,
                       100 * std::max(0.0, ms - fixed_ms) / ms, 100 * floor_ms / ms);
        }
      }
    }
    for (const std::size_t n : o.prefill_contexts) {
      SessionOptions so;
      so.device = Device::Cuda;
      so.max_context = n + 1;
      so.prefill_chunk = 512;
      Session session(model, scheme, so);
      std::vector<TokenId> prompt(n);
      for (std::size_t i = 0; i < n; ++i) {
        prompt[i] = static_cast<TokenId>((i * 7919 + 13) %
                                         static_cast<std::size_t>(model.config().n_vocab));
      }
      const auto t0 = std::chrono::steady_clock::now();
      session.eval(prompt);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      nlohmann::json r;
      r["kind"] = "prefill";
      r["kv"] = scheme.name;
      r["context"] = n;
      r["seconds"] = s;
      r["prefill_tokens_per_second"] = static_cast<double>(n) / s;
      r["chunk"] = so.prefill_chunk;
      rows.push_back(r);
      if (!o.quiet) {
        std::fprintf(stderr, "%-22s prefill %7zu tokens: %.2f s (%.0f tok/s)\n",
                     scheme.name.c_str(), n, s, n / s);
      }
    }
  }
  nlohmann::json out;
  out["device"] = cuda::device_name();
  out["copy_bandwidth_bytes_per_s"] = bandwidth;
  out["weight_bytes_on_gpu"] = weights;
  out["memory_budget_gib"] = o.memory_budget_gib;
  out["steps"] = o.steps;
  out["rows"] = rows;
  return out;
#endif
}

}  // namespace tq::cli
