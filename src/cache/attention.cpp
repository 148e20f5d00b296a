// Attention over a LayerKvCache as stored (docs/DESIGN.md §3): per (query, q head) it scores the
// compressed segment straight from its stored form — TurboQuant through Codec::score on a query
// rotated once, block formats block by block (rotated formats score Π·q against the rotated
// blocks), fp16 directly — plus exact dot products over the fp16 window; then a softmax and the
// weighted value sum, kept in the rotated domain until one Codec::finish / inverse rotation.
// Work items (query, q head) are independent and spread over OpenMP threads.
#include "turboquant/cache/kv_cache.hpp"

#include "block_int.hpp"
#include "exact_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tq {

void LayerKvCache::attend(const float* q, int n_q, std::size_t first_query_pos, float* out,
                          const AttentionOptions& options) const {
  if (n_q < 0) throw std::invalid_argument("attend: n_q must be >= 0, got " + std::to_string(n_q));
  if (n_q == 0) return;
  if (!q || !out) throw std::invalid_argument("attend: null query or output pointer");
  if (first_query_pos + static_cast<std::size_t>(n_q) > total_) {
    throw std::invalid_argument("attend: queries at positions [" + std::to_string(first_query_pos) +
                                ", " + std::to_string(first_query_pos + n_q) +
                                ") need that many tokens, but the cache holds " +
                                std::to_string(total_) + " (append the chunk before attending)");
  }
  SimdLevel level = options.simd;
  if (level == SimdLevel::Auto) level = cpu_has_avx2() ? SimdLevel::Avx2 : SimdLevel::Scalar;
  if (level == SimdLevel::Avx2 && !cpu_has_avx2()) {
    throw std::invalid_argument(
        "attend: AVX2 requested but this CPU does not support AVX2/FMA/F16C");
  }
  const bool fast = level == SimdLevel::Avx2;
  const exact::Kernels& exact_ops = fast ? exact::avx2_kernels() : exact::scalar_kernels();
  const blockint::Kernels& int_ops = fast ? blockint::avx2_kernels() : blockint::scalar_kernels();
  const int d = shape_.head_dim;
  const std::size_t ud = static_cast<std::size_t>(d);
  // Block formats: q8_0 / q4_0 through their (AVX2) kernels, the others through the scalar
  // reference kernels of any format.
  const auto block_dot = [&](KvFormat f, const float* qv, const HeadStore& head, std::size_t n,
                             float* dst) {
    if (f == KvFormat::Int8Block || f == KvFormat::Int4Block) {
      (f == KvFormat::Int8Block ? int_ops.int8_dot : int_ops.int4_dot)(qv, d, head.u8.data(),
                                                                       head.h.data(), n, dst);
    } else {
      blockint::dot(blockint::format_of(f), qv, d, head.u8.data(), head.h.data(), n, dst);
    }
  };
  const auto block_axpy = [&](KvFormat f, const float* w, const HeadStore& head, std::size_t n,
                              float* dst) {
    if (f == KvFormat::Int8Block || f == KvFormat::Int4Block) {
      (f == KvFormat::Int8Block ? int_ops.int8_axpy : int_ops.int4_axpy)(w, d, head.u8.data(),
                                                                         head.h.data(), n, dst);
    } else {
      blockint::axpy(blockint::format_of(f), w, d, head.u8.data(), head.h.data(), n, dst);
    }
  };
  const float scale =
      options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(d));
  const int n_heads = shape_.n_q_heads;
  const int group = n_heads / shape_.n_kv_heads;
  // One work item is (query, KV head): the whole GQA group of that KV head is scored and summed
  // together, so TurboQuant codes are looked up once per group (Codec::score_multi /
  // accumulate_multi) instead of once per query head.
  const int items = n_q * shape_.n_kv_heads;
  int threads = options.threads;
#ifdef _OPENMP
  if (threads <= 0) threads = omp_get_max_threads();
#else
  threads = 1;
#endif
  threads = std::max(1, std::min(threads, items));
  // Below ~0.1 ms of work a parallel region costs more than it saves (and on a loaded machine
  // a barrier can cost a scheduler time slice); an explicit thread count forces it.
  const double work =
      static_cast<double>(n_q) * n_heads * static_cast<double>(first_query_pos + n_q) * d;
  const bool parallel = threads > 1 && (options.threads > 1 || work >= 1 << 18);
  const Side& key_side = sides_[0];
  const Side& value_side = sides_[1];
  const Codec* key_codec = fast ? key_side.codec.get() : key_side.codec_scalar.get();
  const Codec* value_codec = fast ? value_side.codec.get() : value_side.codec_scalar.get();
  const std::size_t W = static_cast<std::size_t>(window_);

#pragma omp parallel num_threads(threads) if (parallel)
  {
    std::vector<float> scores, packed, qr(ud), acc(ud), tmp(ud);
    std::vector<float> sums(group);
    std::vector<PreparedQuery> prepared(group);
    std::vector<ValueAccumulator> accumulators;
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < items; ++item) {
      const int i = item / shape_.n_kv_heads;
      const std::size_t kvh = static_cast<std::size_t>(item % shape_.n_kv_heads);
      const int h0 = static_cast<int>(kvh) * group;
      auto query = [&](int g) { return q + (static_cast<std::size_t>(i) * n_heads + h0 + g) * ud; };
      auto output = [&](int g) {
        return out + (static_cast<std::size_t>(i) * n_heads + h0 + g) * ud;
      };
      const std::size_t visible = first_query_pos + static_cast<std::size_t>(i) + 1;
      const std::size_t nc = std::min(visible, compressed_);
      const std::size_t nw = visible - nc;
      // The window ring holds tokens [compressed_, total_); visible ones start at slot s0 and
      // wrap around at most once.
      const std::size_t s0 = W ? compressed_ % W : 0;
      const std::size_t piece1 = std::min(nw, W - s0);
      const std::size_t piece2 = nw - piece1;
      scores.resize(static_cast<std::size_t>(group) * visible);  // [group][visible]
      auto row = [&](int g) { return scores.data() + static_cast<std::size_t>(g) * visible; };

      // Scores.
      const HeadStore& kh = key_side.heads[kvh];
      if (nc > 0) {
        switch (key_side.spec.format) {
          case KvFormat::Fp16:
            for (int g = 0; g < group; ++g)
              exact_ops.fp16_dot(query(g), d, kh.h.data(), nc, row(g));
            break;
          case KvFormat::Int8Block:
          case KvFormat::Int4Block:
          case KvFormat::Q4_1Block:
          case KvFormat::Q5_0Block:
          case KvFormat::Iq4NlBlock:
            for (int g = 0; g < group; ++g) {
              const float* qs = query(g);
              if (key_side.rotation) {
                key_side.rotation->apply(qs, qr.data());
                qs = qr.data();
              }
              block_dot(key_side.spec.format, qs, kh, nc, row(g));
            }
            break;
          case KvFormat::TurboQuant: {
            for (int g = 0; g < group; ++g) prepared[g] = key_codec->prepare_query(query(g));
            packed.resize(static_cast<std::size_t>(group) * nc);
            key_codec->score_multi(prepared.data(), group, encoded_view(key_side, kh), nc,
                                   packed.data());
            for (int g = 0; g < group; ++g) {
              std::copy_n(packed.data() + static_cast<std::size_t>(g) * nc, nc, row(g));
            }
            break;
          }
        }
      }
      for (int g = 0; g < group; ++g) {
        if (piece1)
          exact_ops.fp16_dot(query(g), d, kh.window.data() + s0 * ud, piece1, row(g) + nc);
        if (piece2) exact_ops.fp16_dot(query(g), d, kh.window.data(), piece2, row(g) + nc + piece1);
        sums[g] = exact_ops.softmax_exp(row(g), visible, scale);
      }

      // Weighted values.
      const HeadStore& vh = value_side.heads[kvh];
      if (nc > 0 && value_side.spec.format == KvFormat::TurboQuant) {
        accumulators.assign(group, value_codec->make_accumulator());
        packed.resize(static_cast<std::size_t>(group) * nc);
        for (int g = 0; g < group; ++g) {
          std::copy_n(row(g), nc, packed.data() + static_cast<std::size_t>(g) * nc);
        }
        value_codec->accumulate_multi(packed.data(), group, encoded_view(value_side, vh), nc,
                                      accumulators.data());
      }
      for (int g = 0; g < group; ++g) {
        const float* p = row(g);
        std::fill(tmp.begin(), tmp.end(), 0.0f);
        if (nc > 0) {
          switch (value_side.spec.format) {
            case KvFormat::Fp16:
              exact_ops.fp16_axpy(p, d, vh.h.data(), nc, tmp.data());
              break;
            case KvFormat::Int8Block:
            case KvFormat::Int4Block:
            case KvFormat::Q4_1Block:
            case KvFormat::Q5_0Block:
            case KvFormat::Iq4NlBlock: {
              float* target = value_side.rotation ? acc.data() : tmp.data();
              std::fill(acc.begin(), acc.end(), 0.0f);
              block_axpy(value_side.spec.format, p, vh, nc, target);
              if (value_side.rotation) value_side.rotation->apply_inverse(acc.data(), tmp.data());
              break;
            }
            case KvFormat::TurboQuant:
              value_codec->finish(accumulators[g], tmp.data());
              break;
          }
        }
        if (piece1) exact_ops.fp16_axpy(p + nc, d, vh.window.data() + s0 * ud, piece1, tmp.data());
        if (piece2) exact_ops.fp16_axpy(p + nc + piece1, d, vh.window.data(), piece2, tmp.data());
        const float inv = 1.0f / sums[g];
        float* ov = output(g);
        for (int j = 0; j < d; ++j) ov[j] = tmp[j] * inv;
        // Centered values: Σ pₜ(vₜ − μ) + μ, exact since the weights sum to 1. Centered keys
        // need nothing: the shift q·μ is the same for every token of this query.
        if (!vh.mean.empty()) {
          for (int j = 0; j < d; ++j) ov[j] += vh.mean[static_cast<std::size_t>(j)];
        }
      }
    }
  }
}

void reference_attention(const LayerKvCache& cache, const float* q, int n_q,
                         std::size_t first_query_pos, float* out, float scale) {
  if (n_q <= 0) return;
  const LayerKvShape& s = cache.shape();
  if (first_query_pos + static_cast<std::size_t>(n_q) > cache.size()) {
    throw std::invalid_argument("reference_attention: queries up to position " +
                                std::to_string(first_query_pos + n_q - 1) +
                                " but the cache holds " + std::to_string(cache.size()) + " tokens");
  }
  const std::size_t d = static_cast<std::size_t>(s.head_dim);
  const std::size_t n = first_query_pos + static_cast<std::size_t>(n_q);
  const double sc = scale != 0.0f ? scale : 1.0 / std::sqrt(static_cast<double>(d));
  const int group = s.n_q_heads / s.n_kv_heads;
  std::vector<float> keys(n * d), values(n * d);
  std::vector<double> logits(n), acc(d);
  for (int kvh = 0; kvh < s.n_kv_heads; ++kvh) {
    cache.decode(KvSide::Key, kvh, 0, n, keys.data());
    cache.decode(KvSide::Value, kvh, 0, n, values.data());
    for (int i = 0; i < n_q; ++i) {
      const std::size_t visible = first_query_pos + static_cast<std::size_t>(i) + 1;
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        const float* qv = q + (static_cast<std::size_t>(i) * s.n_q_heads + h) * d;
        double max_logit = -INFINITY;
        for (std::size_t t = 0; t < visible; ++t) {
          double dot = 0.0;
          for (std::size_t j = 0; j < d; ++j) dot += static_cast<double>(qv[j]) * keys[t * d + j];
          logits[t] = sc * dot;
          max_logit = std::max(max_logit, logits[t]);
        }
        double sum = 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::size_t t = 0; t < visible; ++t) {
          const double w = std::exp(logits[t] - max_logit);
          sum += w;
          for (std::size_t j = 0; j < d; ++j) acc[j] += w * values[t * d + j];
        }
        float* ov = out + (static_cast<std::size_t>(i) * s.n_q_heads + h) * d;
        for (std::size_t j = 0; j < d; ++j) ov[j] = static_cast<float>(acc[j] / sum);
      }
    }
  }
}

}  // namespace tq
