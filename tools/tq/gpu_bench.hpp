// `tq bench --device cuda`: end-to-end decode speed of the GPU runner against context and batch
// per KV scheme (caches filled synthetically to each context, real decode steps timed through
// the recorded CUDA graph), the attention share of a step, prefill tokens/s, GPU memory in use,
// and how many tokens each scheme fits in a memory budget; with the measured copy bandwidth and
// each row's byte floor (weights + cache read once per step).
#pragma once

#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/model/model.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <vector>

namespace tq::cli {

struct GpuBenchOptions {
  std::vector<KvScheme> schemes;
  std::vector<std::size_t> contexts;          // tokens each sequence holds before the timed steps
  std::vector<int> batches = {1};             // sequences decoded together
  std::vector<std::size_t> prefill_contexts;  // real prefills to time (tokens/s); may be empty
  int steps = 16;                             // timed decode steps per row
  double memory_budget_gib = 80.0;            // for the tokens-that-fit column
  bool quiet = false;
};

// Runs the benchmark on GPU 0; rows that do not fit in the device's free memory are reported as
// skipped with the bytes they would need. Returns the record (rows, device, bandwidth).
nlohmann::json run_gpu_bench(const Model& model, const GpuBenchOptions& options);

}  // namespace tq::cli
