// The cache of a sliding-window attention layer (Gemma 3's local layers): each query attends to
// its own position and the window − 1 before it, so the layer only ever needs its last `window`
// tokens. They are kept exact (fp16, like the fp16 cache: there is nothing worth compressing in
// a few hundred tokens) in a ring, whatever the KV scheme of the model's global layers.
#pragma once

#include "turboquant/base/half.hpp"
#include "turboquant/cache/kv_cache.hpp"

#include <cstddef>
#include <vector>

namespace tq {

class SlidingWindowCache {
 public:
  // window: tokens a query sees (itself included); max_append: most tokens one append() brings
  // (a prefill chunk), which the ring holds beyond the window so that every query of the chunk
  // still finds its own window. Throws std::invalid_argument for a non-positive size or shape.
  SlidingWindowCache(const LayerKvShape& shape, int window, int max_append);

  const LayerKvShape& shape() const { return shape_; }
  int window() const { return window_; }
  std::size_t size() const { return total_; }  // tokens appended since clear()

  // Appends n tokens; k, v: [n][kv_heads][head_dim] floats (stored rounded to fp16).
  void append(const float* k, const float* v, std::size_t n);
  void clear() { total_ = 0; }

  // Causal sliding-window attention of n_q queries at positions first_query_pos + i
  // (q: [n_q][q_heads][head_dim]) over the keys at positions (pos − window, pos]; out likewise.
  // The queries' positions must be among the tokens held and within the last max_append
  // appended; threads: OpenMP threads over (query, head) pairs.
  void attend(const float* q, int n_q, std::size_t first_query_pos, float* out,
              int threads = 1) const;

  // Bytes stored for the tokens a query can still see (min(size, window) tokens, K and V, fp16):
  // what the layer needs, as kv_cache_size counts it. capacity_bytes(): the ring as allocated.
  std::size_t bytes() const;
  std::size_t capacity_bytes() const;

 private:
  LayerKvShape shape_;
  int window_ = 0;
  int ring_ = 0;  // slots per head: window + max_append
  std::size_t total_ = 0;
  std::vector<half_bits> keys_, values_;  // [kv_head][ring][head_dim]
};

}  // namespace tq
