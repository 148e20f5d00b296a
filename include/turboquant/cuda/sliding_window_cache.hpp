// The GPU twin of tq::SlidingWindowCache (turboquant/cache/sliding_window_cache.hpp) for a batch
// of sequences: a sliding-window layer (Gemma 3's local layers) keeps each sequence's last
// window + max_append tokens exact as fp16 in a ring (token t in slot t mod ring), whatever the
// KV scheme of the global layers, and each query attends to its own position and the window − 1
// before it. Same rounding as the CPU cache (values stored as fp16, fp32 scores, max-subtracted
// softmax); the sums run in a different order, so results agree to float rounding, not bit for
// bit.
//
// Prefill (append / attend) takes host-known positions; the decode step (append_step /
// attend_step) reads each sequence's position from device memory, so a recorded CUDA graph
// replays every step. No CUDA type appears here; streams are `void*` holding a cudaStream_t.
#pragma once

#include "turboquant/cache/kv_cache.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tq::cuda {

class GpuSlidingWindowCache {
 public:
  // Throws std::invalid_argument for a non-positive window, max_append or batch, or a bad shape
  // (query heads not a multiple of KV heads, head dim not a multiple of 8 in 8..512), or a window
  // whose scores and partial sums exceed 48 KiB of shared memory (window + 16 · head_dim floats).
  GpuSlidingWindowCache(const LayerKvShape& shape, int window, int max_append, int batch);
  ~GpuSlidingWindowCache();
  GpuSlidingWindowCache(GpuSlidingWindowCache&& other) noexcept;
  GpuSlidingWindowCache& operator=(GpuSlidingWindowCache&& other) noexcept;
  GpuSlidingWindowCache(const GpuSlidingWindowCache&) = delete;
  GpuSlidingWindowCache& operator=(const GpuSlidingWindowCache&) = delete;

  const LayerKvShape& shape() const { return shape_; }
  int window() const { return window_; }
  int batch() const { return batch_; }
  std::size_t size(int seq) const;  // tokens sequence seq has appended since its clear()

  // Appends n tokens to sequence seq; k, v: device [n][kv_heads][head_dim] floats. Throws
  // std::invalid_argument when n > max_append or seq is out of range.
  void append(int seq, const float* k, const float* v, int n, void* stream = nullptr);
  // n queries of sequence seq at positions size − n + i (the tokens just appended):
  // q, out: device [n][q_heads][head_dim] floats.
  void attend(int seq, const float* q, int n, float* out, void* stream = nullptr) const;

  // Decode step: row b of k/v (device [batch][kv_heads][head_dim]) is the token at position
  // positions[b] (device ints) of sequence b; a negative position leaves sequence b untouched.
  // The host count is not changed: call advance() once the step is issued.
  void append_step(const float* k, const float* v, const int* positions, void* stream = nullptr);
  // Row b of q/out (device [batch][q_heads][head_dim]) attends at positions[b]; a sequence with
  // a negative position gets zeros.
  void attend_step(const float* q, const int* positions, float* out, void* stream = nullptr) const;
  void advance(const std::vector<bool>& active);

  void clear();
  void clear(int seq);

  // Bytes stored for the tokens a query can still see (min(size, window) per sequence, K and V,
  // fp16), as tq::kv_cache_size counts a sliding layer; capacity_bytes(): the rings allocated.
  std::size_t bytes() const;
  std::size_t capacity_bytes() const;

 private:
  void check_seq(int seq, const char* what) const;

  LayerKvShape shape_;
  int window_ = 0, ring_ = 0, batch_ = 0;
  std::uint16_t* keys_ = nullptr;    // device fp16 bits [batch][kv_heads][ring][head_dim]
  std::uint16_t* values_ = nullptr;  // likewise
  std::vector<std::size_t> held_;    // host: tokens per sequence
};

}  // namespace tq::cuda
