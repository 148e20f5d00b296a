// Storage side of LayerKvCache: formats per layer and side, segment growth, append (window
// eviction + encoding), decode and byte accounting. Attention lives in attention.cpp.
#include "turboquant/cache/kv_cache.hpp"

#include "block_int.hpp"
#include "turboquant/base/math.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace tq {
namespace {

const char* side_name(KvSide side) {
  return side == KvSide::Key ? "key" : "value";
}

}  // namespace

LayerKvCache::~LayerKvCache() = default;
LayerKvCache::LayerKvCache(LayerKvCache&&) noexcept = default;
LayerKvCache& LayerKvCache::operator=(LayerKvCache&&) noexcept = default;

LayerKvCache::LayerKvCache(const KvScheme& scheme, const LayerKvShape& shape)
    : scheme_(scheme), shape_(shape) {
  const auto bad = [](const std::string& what) {
    throw std::invalid_argument("kv cache: " + what);
  };
  if (shape.n_layers <= 0) bad("n_layers must be positive, got " + std::to_string(shape.n_layers));
  check_scheme_fits_layers(scheme, shape.n_layers);
  if (shape.layer < 0 || shape.layer >= shape.n_layers) {
    bad("layer " + std::to_string(shape.layer) + " is out of range [0, " +
        std::to_string(shape.n_layers) + ")");
  }
  if (shape.n_kv_heads <= 0)
    bad("n_kv_heads must be positive, got " + std::to_string(shape.n_kv_heads));
  if (shape.n_q_heads <= 0 || shape.n_q_heads % shape.n_kv_heads != 0) {
    bad("n_q_heads " + std::to_string(shape.n_q_heads) +
        " must be a positive multiple of n_kv_heads " + std::to_string(shape.n_kv_heads));
  }
  if (shape.head_dim <= 0) bad("head_dim must be positive, got " + std::to_string(shape.head_dim));
  if (scheme.window < 0) bad("window must be >= 0, got " + std::to_string(scheme.window));
  check_scheme_fits_shape(scheme, shape.n_layers, shape.n_kv_heads, shape.head_dim);

  const int d = shape.head_dim;
  protected_ = scheme.layer_is_protected(shape.layer, shape.n_layers);
  for (KvSide which : {KvSide::Key, KvSide::Value}) {
    Side& side = sides_[index(which)];
    side.spec = protected_ ? KvSideSpec{} : scheme.layer_side(which, shape.layer);
    const CodecSpec codec_spec = kv_codec_spec(scheme, which, shape.layer, d);
    switch (side.spec.format) {
      case KvFormat::Fp16:
        side.h_width = static_cast<std::size_t>(d);
        break;
      case KvFormat::Int8Block:
      case KvFormat::Int4Block:
      case KvFormat::Q4_1Block:
      case KvFormat::Q5_0Block:
      case KvFormat::Iq4NlBlock: {
        const blockint::Format f = blockint::format_of(side.spec.format);
        side.u8_width = blockint::row_code_bytes(f, d);
        side.h_width = blockint::row_halves(f, d);
        if (side.spec.rotated) {
          if (!is_power_of_two(d)) {
            // The unrotated spelling of the base name: without its "r" suffix.
            std::string plain = scheme.name.substr(0, scheme.name.find(':'));
            if (!plain.empty() && plain.back() == 'r') plain.pop_back();
            bad("head dim " + std::to_string(d) +
                " is not a power of two, which the Hadamard rotation of '" + scheme.name +
                "' needs; use the unrotated " + plain + " or a TurboQuant scheme with rot=haar");
          }
          side.rotation = std::make_unique<Rotation>(RotationKind::Hadamard, d, codec_spec.seed);
        }
        break;
      }
      case KvFormat::TurboQuant: {
        if (codec_spec.rotation == RotationKind::Hadamard && !is_power_of_two(d)) {
          bad("head dim " + std::to_string(d) +
              " is not a power of two, which the hadamard rotation of '" + scheme.name + "' (" +
              side_name(which) + "s) needs; add rot=haar to the scheme");
        }
        side.codec = std::make_unique<Codec>(codec_spec);
        side.codec_scalar = std::make_unique<Codec>(codec_spec);
        side.codec_scalar->set_simd(SimdLevel::Scalar);
        const CodeLayout& L = side.codec->layout();
        side.u8_width = L.code_bytes;
        side.u8b_width = L.sign_bytes;
        side.h_width = 1;
        side.h2_width = L.has_residual_norm ? 1 : 0;
        break;
      }
    }
    side.heads.resize(static_cast<std::size_t>(shape.n_kv_heads));
    side.centered =
        !protected_ && (which == KvSide::Key ? scheme.center_keys : scheme.center_values);
  }
  // A window only matters where something is compressed.
  const bool all_fp16 =
      sides_[0].spec.format == KvFormat::Fp16 && sides_[1].spec.format == KvFormat::Fp16;
  window_ = all_fp16 ? 0 : scheme.window;
  if (window_ > 0) {
    for (Side& side : sides_) {
      for (HeadStore& head : side.heads)
        head.window.assign(static_cast<std::size_t>(window_) * d, 0);
    }
  }
}

void LayerKvCache::grow(std::size_t tokens) {
  if (tokens <= capacity_) return;
  // ×1.5 steps from a floor of 64 tokens: amortised O(1) copies, no per-token reallocation.
  const std::size_t target = std::max({tokens, capacity_ + capacity_ / 2, std::size_t{64}});
  for (Side& side : sides_) {
    for (HeadStore& head : side.heads) {
      // reserve() first so the vector allocates exactly `target` tokens (resize alone may double).
      const auto fit = [target](auto& v, std::size_t width) {
        if (width == 0) return;
        v.reserve(target * width);
        v.resize(target * width);
      };
      fit(head.u8, side.u8_width);
      fit(head.u8b, side.u8b_width);
      fit(head.h, side.h_width);
      fit(head.h2, side.h2_width);
    }
  }
  capacity_ = target;
}

void LayerKvCache::reserve(std::size_t tokens) {
  // The window holds up to W tokens outside the compressed segment.
  grow(tokens > static_cast<std::size_t>(window_) ? tokens - window_ : 0);
}

void LayerKvCache::clear() {
  compressed_ = 0;
  total_ = 0;
  // A new sequence estimates its own μ.
  for (Side& side : sides_) {
    for (HeadStore& head : side.heads) head.mean.clear();
  }
}

ConstEncodedView LayerKvCache::encoded_view(const Side& side, const HeadStore& head) const {
  return ConstEncodedView(
      head.u8.empty() ? nullptr : head.u8.data(), head.u8b.empty() ? nullptr : head.u8b.data(),
      head.h.empty() ? nullptr : head.h.data(), head.h2.empty() ? nullptr : head.h2.data());
}

void LayerKvCache::encode_tokens(Side& side, HeadStore& head, const float* x, std::size_t first,
                                 std::size_t count) const {
  const int d = shape_.head_dim;
  switch (side.spec.format) {
    case KvFormat::Fp16: {
      half_bits* dst = head.h.data() + first * d;
      for (std::size_t i = 0; i < count * d; ++i) dst[i] = float_to_half(x[i]);
      break;
    }
    case KvFormat::Int8Block:
    case KvFormat::Int4Block:
    case KvFormat::Q4_1Block:
    case KvFormat::Q5_0Block:
    case KvFormat::Iq4NlBlock: {
      const blockint::Format f = blockint::format_of(side.spec.format);
      std::vector<float> rotated(side.rotation ? d : 0);
      for (std::size_t t = 0; t < count; ++t) {
        const float* src = x + t * d;
        if (side.rotation) {
          side.rotation->apply(src, rotated.data());
          src = rotated.data();
        }
        blockint::quantize(f, src, d, head.u8.data() + (first + t) * side.u8_width,
                           head.h.data() + (first + t) * side.h_width);
      }
      break;
    }
    case KvFormat::TurboQuant: {
      EncodedView out;
      out.codes = side.u8_width ? head.u8.data() + first * side.u8_width : nullptr;
      out.signs = side.u8b_width ? head.u8b.data() + first * side.u8b_width : nullptr;
      out.norms = head.h.data() + first;
      out.residual_norms = side.h2_width ? head.h2.data() + first : nullptr;
      side.codec->encode(x, count, out);
      break;
    }
  }
}

void LayerKvCache::append(const float* k, const float* v, std::size_t n_tokens) {
  if (n_tokens == 0) return;
  if (!k || !v) throw std::invalid_argument("kv cache append: null key or value pointer");
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  const std::size_t heads = static_cast<std::size_t>(shape_.n_kv_heads);
  const std::size_t W = static_cast<std::size_t>(window_);
  const std::size_t new_total = total_ + n_tokens;
  const std::size_t new_compressed = new_total > W ? new_total - W : 0;
  const std::size_t n_encode = new_compressed - compressed_;
  grow(new_compressed);

  // Tokens [compressed_, new_compressed) are encoded: those below total_ come out of the window
  // (their fp16 values), the rest straight from the input (rounded through fp16 when W > 0, as
  // if they had passed through the window). Encoding happens before the window is overwritten.
  const int jobs = 2 * static_cast<int>(heads);
#pragma omp parallel for schedule(dynamic, 1) if (n_encode * heads * d >= (1u << 16))
  for (int job = 0; job < jobs; ++job) {
    Side& side = sides_[job / static_cast<int>(heads)];
    const std::size_t h = static_cast<std::size_t>(job) % heads;
    const float* src = job < static_cast<int>(heads) ? k : v;
    HeadStore& head = side.heads[h];
    // Centering: μ from the first append's tokens of this head, rounded to fp16 (what is
    // counted as stored), then every input token is read as x − μ.
    if (side.centered && total_ == 0) {
      std::vector<double> sum(d, 0.0);
      for (std::size_t t = 0; t < n_tokens; ++t) {
        const float* x = src + (t * heads + h) * d;
        for (std::size_t j = 0; j < d; ++j) sum[j] += x[j];
      }
      head.mean.resize(d);
      for (std::size_t j = 0; j < d; ++j) {
        head.mean[j] = half_to_float(float_to_half(static_cast<float>(sum[j] / n_tokens)));
      }
    }
    const float* mu = side.centered ? head.mean.data() : nullptr;
    std::vector<float> centered_token(mu ? d : 0);
    // Input token t (absolute index) as the cache stores it: x − μ when centered.
    const auto input = [&](std::size_t t) {
      const float* x = src + ((t - total_) * heads + h) * d;
      if (!mu) return x;
      for (std::size_t j = 0; j < d; ++j) centered_token[j] = x[j] - mu[j];
      return static_cast<const float*>(centered_token.data());
    };
    if (n_encode > 0) {
      std::vector<float> batch(n_encode * d);
      for (std::size_t i = 0; i < n_encode; ++i) {
        const std::size_t t = compressed_ + i;
        float* dst = batch.data() + i * d;
        if (t < total_) {
          const half_bits* slot = head.window.data() + (t % W) * d;
          for (std::size_t j = 0; j < d; ++j) dst[j] = half_to_float(slot[j]);
        } else {
          const float* x = input(t);
          for (std::size_t j = 0; j < d; ++j)
            dst[j] = W ? half_to_float(float_to_half(x[j])) : x[j];
        }
      }
      encode_tokens(side, head, batch.data(), compressed_, n_encode);
    }
    for (std::size_t t = std::max(new_compressed, total_); t < new_total; ++t) {
      const float* x = input(t);
      half_bits* slot = head.window.data() + (t % W) * d;
      for (std::size_t j = 0; j < d; ++j) slot[j] = float_to_half(x[j]);
    }
  }
  compressed_ = new_compressed;
  total_ = new_total;
}

std::size_t LayerKvCache::bytes() const {
  const std::size_t heads = static_cast<std::size_t>(shape_.n_kv_heads);
  const std::size_t exact = window_size() * 2 * static_cast<std::size_t>(shape_.head_dim);
  std::size_t total = 0;
  for (const Side& side : sides_) {
    total += heads * (compressed_ * side.token_bytes() + exact);
    // The fp16 centering μ, once estimated.
    if (side.centered && total_ > 0) total += heads * 2 * static_cast<std::size_t>(shape_.head_dim);
  }
  return total;
}

std::size_t LayerKvCache::capacity_bytes() const {
  std::size_t total = 0;
  for (const Side& side : sides_) {
    for (const HeadStore& head : side.heads) {
      total += head.u8.capacity() + head.u8b.capacity() +
               2 * (head.h.capacity() + head.h2.capacity() + head.window.capacity());
    }
  }
  return total;
}

ConstEncodedView LayerKvCache::encoded(KvSide which, int kv_head) const {
  if (kv_head < 0 || kv_head >= shape_.n_kv_heads) {
    throw std::invalid_argument("kv cache encoded: kv head " + std::to_string(kv_head) +
                                " out of range [0, " + std::to_string(shape_.n_kv_heads) + ")");
  }
  const Side& side = sides_[index(which)];
  return encoded_view(side, side.heads[static_cast<std::size_t>(kv_head)]);
}

const float* LayerKvCache::mean(KvSide which, int kv_head) const {
  if (kv_head < 0 || kv_head >= shape_.n_kv_heads) {
    throw std::invalid_argument("kv cache mean: kv head " + std::to_string(kv_head) +
                                " out of range [0, " + std::to_string(shape_.n_kv_heads) + ")");
  }
  const HeadStore& head = sides_[index(which)].heads[static_cast<std::size_t>(kv_head)];
  return head.mean.empty() ? nullptr : head.mean.data();
}

std::vector<half_bits> LayerKvCache::window_tokens(KvSide which, int kv_head) const {
  if (kv_head < 0 || kv_head >= shape_.n_kv_heads) {
    throw std::invalid_argument("kv cache window_tokens: kv head " + std::to_string(kv_head) +
                                " out of range [0, " + std::to_string(shape_.n_kv_heads) + ")");
  }
  const HeadStore& head = sides_[index(which)].heads[static_cast<std::size_t>(kv_head)];
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  const std::size_t W = static_cast<std::size_t>(window_);
  std::vector<half_bits> out;
  out.reserve(window_size() * d);
  for (std::size_t t = compressed_; t < total_; ++t) {
    const half_bits* slot = head.window.data() + (t % W) * d;
    out.insert(out.end(), slot, slot + d);
  }
  return out;
}

void LayerKvCache::decode(KvSide which, int kv_head, std::size_t first, std::size_t count,
                          float* out) const {
  if (kv_head < 0 || kv_head >= shape_.n_kv_heads) {
    throw std::invalid_argument("kv cache decode: kv head " + std::to_string(kv_head) +
                                " out of range [0, " + std::to_string(shape_.n_kv_heads) + ")");
  }
  if (first > total_ || count > total_ - first) {
    throw std::invalid_argument("kv cache decode: tokens [" + std::to_string(first) + ", " +
                                std::to_string(first + count) + ") exceed the " +
                                std::to_string(total_) + " tokens held");
  }
  const Side& side = sides_[index(which)];
  const HeadStore& head = side.heads[static_cast<std::size_t>(kv_head)];
  const std::size_t d = static_cast<std::size_t>(shape_.head_dim);
  std::vector<float> rotated(d);
  const float* mu = head.mean.empty() ? nullptr : head.mean.data();
  for (std::size_t t = first; t < first + count; ++t) {
    float* x = out + (t - first) * d;
    if (t >= compressed_) {
      const half_bits* slot = head.window.data() + (t % static_cast<std::size_t>(window_)) * d;
      for (std::size_t j = 0; j < d; ++j) x[j] = half_to_float(slot[j]);
      if (mu) {
        for (std::size_t j = 0; j < d; ++j) x[j] += mu[j];
      }
      continue;
    }
    switch (side.spec.format) {
      case KvFormat::Fp16:
        for (std::size_t j = 0; j < d; ++j) x[j] = half_to_float(head.h[t * d + j]);
        break;
      case KvFormat::Int8Block:
      case KvFormat::Int4Block:
      case KvFormat::Q4_1Block:
      case KvFormat::Q5_0Block:
      case KvFormat::Iq4NlBlock: {
        float* dst = side.rotation ? rotated.data() : x;
        blockint::dequantize(blockint::format_of(side.spec.format),
                             head.u8.data() + t * side.u8_width, head.h.data() + t * side.h_width,
                             static_cast<int>(d), dst);
        if (side.rotation) side.rotation->apply_inverse(dst, x);
        break;
      }
      case KvFormat::TurboQuant:
        side.codec_scalar->decode(encoded_view(side, head).offset(t, side.codec->layout()), 1, x);
        break;
    }
    // The stored token is x − μ; attention's view of it is x.
    if (mu) {
      for (std::size_t j = 0; j < d; ++j) x[j] += mu[j];
    }
  }
}

}  // namespace tq
