// SlidingWindowCache (sliding_window_cache.hpp): a ring of fp16 K/V per KV head and a plain
// scalar attention over each query's window, fp32 with a max-subtracted softmax. The window is a
// few hundred tokens, so this is a small share of a step next to the global layers.
#include "turboquant/cache/sliding_window_cache.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tq {

SlidingWindowCache::SlidingWindowCache(const LayerKvShape& shape, int window, int max_append)
    : shape_(shape), window_(window) {
  if (window <= 0 || max_append <= 0) {
    throw std::invalid_argument("sliding-window cache: window " + std::to_string(window) +
                                " and max_append " + std::to_string(max_append) +
                                " must be positive");
  }
  if (shape.n_kv_heads <= 0 || shape.head_dim <= 0 || shape.n_q_heads <= 0 ||
      shape.n_q_heads % shape.n_kv_heads != 0) {
    throw std::invalid_argument("sliding-window cache: bad shape (" +
                                std::to_string(shape.n_q_heads) + " query heads, " +
                                std::to_string(shape.n_kv_heads) + " KV heads, head dim " +
                                std::to_string(shape.head_dim) + ")");
  }
  ring_ = window + max_append;
  const std::size_t n = static_cast<std::size_t>(shape.n_kv_heads) * ring_ * shape.head_dim;
  keys_.assign(n, 0);
  values_.assign(n, 0);
}

void SlidingWindowCache::append(const float* k, const float* v, std::size_t n) {
  const int H = shape_.n_kv_heads, d = shape_.head_dim;
  if (n > static_cast<std::size_t>(ring_ - window_)) {
    throw std::invalid_argument(
        "sliding-window cache: append of " + std::to_string(n) +
        " tokens, more than max_append = " + std::to_string(ring_ - window_));
  }
  for (std::size_t t = 0; t < n; ++t) {
    const std::size_t slot = (total_ + t) % static_cast<std::size_t>(ring_);
    for (int h = 0; h < H; ++h) {
      const std::size_t src = (t * H + h) * static_cast<std::size_t>(d);
      const std::size_t dst = (static_cast<std::size_t>(h) * ring_ + slot) * d;
      for (int j = 0; j < d; ++j) {
        keys_[dst + j] = float_to_half(k[src + j]);
        values_[dst + j] = float_to_half(v[src + j]);
      }
    }
  }
  total_ += n;
}

void SlidingWindowCache::attend(const float* q, int n_q, std::size_t first_query_pos, float* out,
                                int threads) const {
  const int H = shape_.n_kv_heads, QH = shape_.n_q_heads, d = shape_.head_dim;
  const int group = QH / H;
  if (n_q < 0 || first_query_pos + static_cast<std::size_t>(n_q) > total_) {
    throw std::invalid_argument("sliding-window cache: queries at " +
                                std::to_string(first_query_pos) + " + " + std::to_string(n_q) +
                                " past the " + std::to_string(total_) + " tokens held");
  }
  const auto window_start = [this](std::size_t pos) {
    return pos + 1 > static_cast<std::size_t>(window_) ? pos + 1 - window_ : std::size_t{0};
  };
  // The oldest token still in the ring; the first query's window must start at or after it.
  const std::size_t oldest = total_ > static_cast<std::size_t>(ring_) ? total_ - ring_ : 0;
  if (n_q > 0 && window_start(first_query_pos) < oldest) {
    throw std::invalid_argument(
        "sliding-window cache: the query at " + std::to_string(first_query_pos) + " needs token " +
        std::to_string(window_start(first_query_pos)) +
        ", which the ring no longer holds (oldest " + std::to_string(oldest) + ")");
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int pairs = n_q * QH;
  const std::size_t R = static_cast<std::size_t>(ring_);
#pragma omp parallel num_threads(std::max(1, threads)) if (pairs > 1)
  {
    std::vector<float> w(static_cast<std::size_t>(window_));  // one query's weights
#pragma omp for schedule(static)
    for (int pair = 0; pair < pairs; ++pair) {
      const int i = pair / QH, qh = pair % QH, h = qh / group;
      const std::size_t pos = first_query_pos + static_cast<std::size_t>(i);
      const std::size_t first = window_start(pos);
      const float* qr = q + (static_cast<std::size_t>(i) * QH + qh) * d;
      float* o = out + (static_cast<std::size_t>(i) * QH + qh) * d;
      const std::size_t head = static_cast<std::size_t>(h) * R;
      float m = -INFINITY;
      for (std::size_t p = first; p <= pos; ++p) {
        const half_bits* kr = &keys_[(head + p % R) * d];
        float s = 0.0f;
        for (int j = 0; j < d; ++j) s += qr[j] * half_to_float(kr[j]);
        w[p - first] = s * scale;
        m = std::max(m, w[p - first]);
      }
      float sum = 0.0f;
      for (std::size_t p = first; p <= pos; ++p) sum += (w[p - first] = std::exp(w[p - first] - m));
      std::fill(o, o + d, 0.0f);
      for (std::size_t p = first; p <= pos; ++p) {
        const half_bits* vr = &values_[(head + p % R) * d];
        const float a = w[p - first] / sum;
        for (int j = 0; j < d; ++j) o[j] += a * half_to_float(vr[j]);
      }
    }
  }
}

std::size_t SlidingWindowCache::bytes() const {
  const std::size_t held = std::min<std::size_t>(total_, static_cast<std::size_t>(window_));
  return 2 * held * static_cast<std::size_t>(shape_.n_kv_heads) * shape_.head_dim *
         sizeof(half_bits);
}

std::size_t SlidingWindowCache::capacity_bytes() const {
  return (keys_.size() + values_.size()) * sizeof(half_bits);
}

}  // namespace tq
