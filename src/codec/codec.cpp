// TurboQuant mse / prod / fractional-bit codecs (see include/turboquant/codec/codec.hpp).
#include "turboquant/codec/codec.hpp"

#include "codec_kernels.hpp"
#include "turboquant/base/math.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/codec/bitpack.hpp"
#include "turboquant/codec/codebook.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace tq {
namespace {

std::string format_bits(double bits) {
  std::ostringstream out;
  out << bits;
  return out.str();
}

std::vector<float> to_float(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

// Integer part of the MSE bits and the number of coordinates that get one more bit.
struct BitSplit {
  int lo_bits;
  int hi_count;
};

BitSplit split_bits(double mse_bits, int dim, const std::string& what) {
  const int lo = static_cast<int>(std::floor(mse_bits));
  const double frac = mse_bits - lo;
  const double hi_exact = frac * dim;
  const int hi_count = static_cast<int>(std::lround(hi_exact));
  if (std::fabs(hi_exact - hi_count) > 1e-9) {
    throw std::invalid_argument(what + ": " + format_bits(mse_bits) +
                                " bits cannot be split over d = " + std::to_string(dim) +
                                " coordinates; the fractional part times d must be an integer");
  }
  return {lo, hi_count};
}

// Whether a prepared query or an accumulator (rotated part, sketch part) was made for a codec of
// this spec: d rotated coordinates, and for prod a d-entry sketch as well.
bool fits_codec(const CodecSpec& spec, const std::vector<float>& rotated,
                const std::vector<float>& sketch) {
  const auto d = static_cast<std::size_t>(spec.dim);
  return rotated.size() == d && (spec.kind != CodecKind::Prod || sketch.size() == d);
}

bool use_avx2(SimdLevel level) {
  return level == SimdLevel::Avx2;
}

}  // namespace

CodecKind parse_codec_kind(std::string_view name) {
  if (name == "mse") return CodecKind::Mse;
  if (name == "prod") return CodecKind::Prod;
  throw std::invalid_argument("codec '" + std::string(name) +
                              "' is unknown; expected 'mse' or 'prod'");
}

std::string to_string(CodecKind kind) {
  return kind == CodecKind::Mse ? "mse" : "prod";
}

CodeLayout make_code_layout(const CodecSpec& spec) {
  if (spec.dim < 2 || spec.dim > 4096) {
    throw std::invalid_argument("codec: dimension " + std::to_string(spec.dim) +
                                " is invalid; expected 2 <= d <= 4096");
  }
  if (!std::isfinite(spec.bits)) throw std::invalid_argument("codec: bits must be finite");
  const double mse_bits = spec.kind == CodecKind::Prod ? spec.bits - 1.0 : spec.bits;
  if (spec.kind == CodecKind::Mse && (spec.bits < 1.0 || spec.bits > 8.0)) {
    throw std::invalid_argument("codec: mse bits " + format_bits(spec.bits) +
                                " out of range; expected 1 <= b <= 8");
  }
  if (spec.kind == CodecKind::Prod &&
      !(spec.bits == 1.0 || (spec.bits >= 2.0 && spec.bits <= 8.0))) {
    throw std::invalid_argument("codec: prod bits " + format_bits(spec.bits) +
                                " out of range; expected b = 1 or 2 <= b <= 8 (b−1 bits of mse "
                                "code plus the 1-bit QJL sketch)");
  }
  CodeLayout layout;
  layout.dim = spec.dim;
  if (mse_bits > 0.0) {
    const BitSplit split = split_bits(mse_bits, spec.dim, "codec");
    layout.lo_bits = split.lo_bits;
    layout.hi_count = split.hi_count;
    layout.hi_bits = split.hi_count > 0 ? split.lo_bits + 1 : split.lo_bits;
    if (split.hi_count == 0) layout.hi_count = 0;
    layout.hi_bytes = layout.hi_count > 0 ? packed_bytes(layout.hi_count, layout.hi_bits) : 0;
    layout.lo_bytes = layout.lo_count() > 0 ? packed_bytes(layout.lo_count(), layout.lo_bits) : 0;
    layout.code_bytes = layout.hi_bytes + layout.lo_bytes;
  }
  if (spec.kind == CodecKind::Prod) {
    layout.sign_bytes = packed_bytes(spec.dim, 1);
    layout.has_residual_norm = true;
  }
  return layout;
}

ConstEncodedView ConstEncodedView::offset(std::size_t first, const CodeLayout& layout) const {
  return ConstEncodedView(codes ? codes + first * layout.code_bytes : nullptr,
                          signs ? signs + first * layout.sign_bytes : nullptr,
                          norms ? norms + first : nullptr,
                          residual_norms ? residual_norms + first : nullptr);
}

EncodedView EncodedView::offset(std::size_t first, const CodeLayout& layout) const {
  return {codes ? codes + first * layout.code_bytes : nullptr,
          signs ? signs + first * layout.sign_bytes : nullptr, norms ? norms + first : nullptr,
          residual_norms ? residual_norms + first : nullptr};
}

EncodedBatch::EncodedBatch(const CodeLayout& layout, std::size_t count)
    : count_(count),
      codes_(layout.code_bytes * count),
      signs_(layout.sign_bytes * count),
      norms_(count),
      residual_norms_(layout.has_residual_norm ? count : 0) {}

EncodedView EncodedBatch::view() {
  return {codes_.empty() ? nullptr : codes_.data(), signs_.empty() ? nullptr : signs_.data(),
          norms_.data(), residual_norms_.empty() ? nullptr : residual_norms_.data()};
}

ConstEncodedView EncodedBatch::view() const {
  return ConstEncodedView(codes_.empty() ? nullptr : codes_.data(),
                          signs_.empty() ? nullptr : signs_.data(), norms_.data(),
                          residual_norms_.empty() ? nullptr : residual_norms_.data());
}

Codec::Codec(const CodecSpec& spec)
    : spec_(spec), layout_(make_code_layout(spec)), rotation_(spec.rotation, spec.dim, spec.seed) {
  if (layout_.code_bytes > 0) {
    if (layout_.lo_count() > 0) {
      const Codebook& lo = lloyd_max_codebook(spec.dim, layout_.lo_bits);
      centroids_lo_ = to_float(lo.centroids);
      thresholds_lo_ = to_float(lo.thresholds);
    }
    if (layout_.hi_count > 0) {
      const Codebook& hi = lloyd_max_codebook(spec.dim, layout_.hi_bits);
      centroids_hi_ = to_float(hi.centroids);
      thresholds_hi_ = to_float(hi.thresholds);
    }
  }
  if (spec.kind == CodecKind::Prod) {
    // S is independent of Π; its seed is derived from the rotation seed.
    Xoshiro256 rng(derive_seed(spec.seed, 0, KvSide::Key, SeedPurpose::QjlMatrix));
    qjl_.resize(static_cast<std::size_t>(spec.dim) * spec.dim);
    for (auto& v : qjl_) v = static_cast<float>(rng.gaussian());
    qjl_transposed_.resize(qjl_.size());
    for (int i = 0; i < spec.dim; ++i) {
      for (int j = 0; j < spec.dim; ++j) {
        qjl_transposed_[static_cast<std::size_t>(j) * spec.dim + i] =
            qjl_[static_cast<std::size_t>(i) * spec.dim + j];
      }
    }
  }
  set_simd(SimdLevel::Auto);
}

Codec::~Codec() = default;
Codec::Codec(Codec&&) noexcept = default;
Codec& Codec::operator=(Codec&&) noexcept = default;

void Codec::set_simd(SimdLevel level) {
  if (level == SimdLevel::Avx2 && !cpu_has_avx2()) {
    throw std::invalid_argument(
        "codec: AVX2 requested but this CPU does not support AVX2/FMA/F16C");
  }
  simd_ = level == SimdLevel::Auto ? (cpu_has_avx2() ? SimdLevel::Avx2 : SimdLevel::Scalar) : level;
}

double Codec::expected_unit_vector_mse() const {
  if (layout_.code_bytes == 0) return 1.0;
  double total = 0.0;
  if (layout_.hi_count > 0) {
    total += lloyd_max_codebook(spec_.dim, layout_.hi_bits).unit_vector_mse * layout_.hi_count;
  }
  if (layout_.lo_count() > 0) {
    total += lloyd_max_codebook(spec_.dim, layout_.lo_bits).unit_vector_mse * layout_.lo_count();
  }
  return total / spec_.dim;
}

void Codec::check_output(EncodedView out, std::size_t count) const {
  const CodeLayout& L = layout_;
  if (count > 0 && (!out.norms || (L.code_bytes && !out.codes) || (L.sign_bytes && !out.signs) ||
                    (L.has_residual_norm && !out.residual_norms))) {
    throw std::invalid_argument("codec encode: the output view lacks a buffer this codec writes");
  }
}

void Codec::encode(const float* x, std::size_t count, EncodedView out) const {
  encode_chunks(x, count, out, /*gemm_rotation=*/false);
}

void Codec::encode_batch(const float* x, std::size_t count, EncodedView out) const {
  encode_chunks(x, count, out, /*gemm_rotation=*/true);
}

void Codec::encode_chunks(const float* x, std::size_t count, EncodedView out,
                          bool gemm_rotation) const {
  check_output(out, count);
  const std::size_t d = static_cast<std::size_t>(spec_.dim);
  // Chunks keep the rotated block in cache for the tail that reads it right after.
  constexpr std::size_t kChunk = 256;
  const auto chunks = static_cast<std::ptrdiff_t>((count + kChunk - 1) / kChunk);
  // Bulk encodes with an O(d log d) rotation run chunks in parallel threads (every token's
  // codes are the same either way). A haar GEMM stays on one caller thread: BLAS threads it.
  const bool threaded = gemm_rotation && rotation_.kind() != RotationKind::Haar && chunks > 1;
#pragma omp parallel if (threaded)
  {
    std::vector<float> y(std::min(count, kChunk) * d);
#pragma omp for schedule(static)
    for (std::ptrdiff_t c = 0; c < chunks; ++c) {
      const std::size_t t0 = static_cast<std::size_t>(c) * kChunk;
      const std::size_t n = std::min(kChunk, count - t0);
      if (gemm_rotation) {
        rotation_.apply_batch(x + t0 * d, y.data(), n);
      } else {
        rotation_.apply(x + t0 * d, y.data(), n);
      }
      encode_rotated(y.data(), n, out.offset(t0, layout_));
    }
  }
}

void Codec::encode_rotated(const float* rotated, std::size_t count, EncodedView out) const {
  const int d = spec_.dim;
  const CodeLayout& L = layout_;
  check_output(out, count);
  std::vector<float> y(d), recon(d), residual(d), projected(d);
  std::vector<std::uint8_t> idx(d);
  const auto quantize = use_avx2(simd_) ? kernels::quantize_avx2 : kernels::quantize_scalar;
  for (std::size_t t = 0; t < count; ++t) {
    std::copy(rotated + t * d, rotated + (t + 1) * d, y.begin());
    double norm_sq = 0.0;
    for (int j = 0; j < d; ++j) norm_sq += static_cast<double>(y[j]) * y[j];
    const float norm = static_cast<float>(std::sqrt(norm_sq));
    const float inv = norm > 0.0f ? 1.0f / norm : 0.0f;
    for (int j = 0; j < d; ++j) y[j] *= inv;  // unit vector in the rotated domain

    float stored_norm = norm;
    std::fill(recon.begin(), recon.end(), 0.0f);
    if (L.code_bytes > 0) {
      if (L.hi_count > 0)
        quantize(y.data(), L.hi_count, thresholds_hi_.data(), L.hi_bits, idx.data());
      if (L.lo_count() > 0) {
        quantize(y.data() + L.hi_count, L.lo_count(), thresholds_lo_.data(), L.lo_bits,
                 idx.data() + L.hi_count);
      }
      std::uint8_t* codes = out.codes + t * L.code_bytes;
      if (L.hi_count > 0) pack_codes(idx.data(), L.hi_count, L.hi_bits, codes);
      if (L.lo_count() > 0)
        pack_codes(idx.data() + L.hi_count, L.lo_count(), L.lo_bits, codes + L.hi_bytes);
      double c_norm_sq = 0.0;
      for (int j = 0; j < d; ++j) {
        recon[j] = j < L.hi_count ? centroids_hi_[idx[j]] : centroids_lo_[idx[j]];
        c_norm_sq += static_cast<double>(recon[j]) * recon[j];
      }
      // Norm correction stores n/‖c[idx]‖ so that the reconstruction keeps the exact norm.
      if (spec_.norm_correction && c_norm_sq > 0.0) {
        stored_norm = static_cast<float>(norm / std::sqrt(c_norm_sq));
      }
    }
    const half_bits norm_half = float_to_half(stored_norm);
    out.norms[t] = norm_half;
    if (spec_.kind == CodecKind::Prod) {
      // Residual against what decode will reconstruct (fp16 norm included), rotated domain.
      const float decoded_norm = half_to_float(norm_half);
      double gamma_sq = 0.0;
      for (int j = 0; j < d; ++j) {
        residual[j] = norm * y[j] - decoded_norm * recon[j];
        gamma_sq += static_cast<double>(residual[j]) * residual[j];
      }
      out.residual_norms[t] = float_to_half(static_cast<float>(std::sqrt(gamma_sq)));
      std::uint8_t* signs = out.signs + t * L.sign_bytes;
      std::fill(signs, signs + L.sign_bytes, 0);
      // S·r as a sum of columns of S (rows of Sᵀ): contiguous axpys the compiler vectorises.
      std::fill(projected.begin(), projected.end(), 0.0f);
      for (int j = 0; j < d; ++j) {
        const float* column = &qjl_transposed_[static_cast<std::size_t>(j) * d];
        const float r = residual[j];
        for (int i = 0; i < d; ++i) projected[i] += column[i] * r;
      }
      for (int i = 0; i < d; ++i) {
        const float acc = projected[i];
        if (acc >= 0.0f) signs[i >> 3] |= static_cast<std::uint8_t>(1u << (i & 7));
      }
    }
  }
}

void Codec::decode(ConstEncodedView in, std::size_t count, float* x) const {
  const int d = spec_.dim;
  const CodeLayout& L = layout_;
  const float qjl_scale = static_cast<float>(kSqrtHalfPi / d);
  std::vector<float> rotated(d);
  for (std::size_t t = 0; t < count; ++t) {
    const float norm = half_to_float(in.norms[t]);
    std::fill(rotated.begin(), rotated.end(), 0.0f);
    if (L.code_bytes > 0) {
      const std::uint8_t* codes = in.codes + t * L.code_bytes;
      for (int j = 0; j < L.hi_count; ++j)
        rotated[j] = norm * centroids_hi_[read_code(codes, j, L.hi_bits)];
      for (int j = 0; j < L.lo_count(); ++j) {
        rotated[L.hi_count + j] = norm * centroids_lo_[read_code(codes + L.hi_bytes, j, L.lo_bits)];
      }
    }
    if (spec_.kind == CodecKind::Prod) {
      const float gamma = half_to_float(in.residual_norms[t]) * qjl_scale;
      const std::uint8_t* signs = in.signs + t * L.sign_bytes;
      for (int i = 0; i < d; ++i) {
        const float s = ((signs[i >> 3] >> (i & 7)) & 1u) ? gamma : -gamma;
        const float* row = &qjl_[static_cast<std::size_t>(i) * d];
        for (int j = 0; j < d; ++j) rotated[j] += s * row[j];  // Sᵀ s
      }
    }
    rotation_.apply_inverse(rotated.data(), x + t * d);
  }
}

PreparedQuery Codec::prepare_query(const float* q) const {
  const int d = spec_.dim;
  PreparedQuery prepared;
  prepared.rotated.resize(d);
  rotation_.apply(q, prepared.rotated.data());
  if (spec_.kind == CodecKind::Prod) {
    prepared.sketch.resize(d);
    const double scale = kSqrtHalfPi / d;
    for (int i = 0; i < d; ++i) {
      const float* row = &qjl_[static_cast<std::size_t>(i) * d];
      double acc = 0.0;
      for (int j = 0; j < d; ++j) acc += static_cast<double>(row[j]) * prepared.rotated[j];
      prepared.sketch[i] = static_cast<float>(acc * scale);
    }
  }
  return prepared;
}

void Codec::score_multi(const PreparedQuery* queries, int n_queries, ConstEncodedView in,
                        std::size_t count, float* scores) const {
  const CodeLayout& L = layout_;
  if (n_queries <= 0) return;
  // Per query, where its hi and its lo segment start: rows[i] and rows[n_queries + i].
  std::vector<const float*> rows(2 * static_cast<std::size_t>(n_queries));
  const float* const* hi = rows.data();
  const float* const* lo = rows.data() + n_queries;
  for (int i = 0; i < n_queries; ++i) {
    const PreparedQuery& query = queries[i];
    if (!fits_codec(spec_, query.rotated, query.sketch)) {
      throw std::invalid_argument("codec score: prepared query " + std::to_string(i) +
                                  " has dimension " + std::to_string(query.rotated.size()) +
                                  ", expected " + std::to_string(spec_.dim) +
                                  " (prepare it with this codec)");
    }
    rows[i] = query.rotated.data();
    rows[n_queries + i] = query.rotated.data() + L.hi_count;
  }
  if (count == 0) return;
  const bool fast = use_avx2(simd_);
  const auto dot = fast ? kernels::segment_dot_multi_avx2 : kernels::segment_dot_multi_scalar;
  const std::size_t total = static_cast<std::size_t>(n_queries) * count;
  std::fill(scores, scores + total, 0.0f);
  // Scratch: the partial sums of one segment, [n_queries][count], then the decoded norms.
  std::vector<float> scratch(total + count);
  float* partial = scratch.data();
  if (L.code_bytes > 0) {
    if (L.hi_count > 0) {
      dot(hi, n_queries, L.hi_count, L.hi_bits, centroids_hi_.data(), in.codes, L.code_bytes, count,
          partial, count);
      for (std::size_t k = 0; k < total; ++k) scores[k] += partial[k];
    }
    if (L.lo_count() > 0) {
      dot(lo, n_queries, L.lo_count(), L.lo_bits, centroids_lo_.data(), in.codes + L.hi_bytes,
          L.code_bytes, count, partial, count);
      for (std::size_t k = 0; k < total; ++k) scores[k] += partial[k];
    }
    float* norms = scratch.data() + total;
    for (std::size_t t = 0; t < count; ++t) norms[t] = half_to_float(in.norms[t]);
    for (int i = 0; i < n_queries; ++i) {
      float* row = scores + static_cast<std::size_t>(i) * count;
      for (std::size_t t = 0; t < count; ++t) row[t] *= norms[t];
    }
  }
  if (spec_.kind == CodecKind::Prod) {
    for (int i = 0; i < n_queries; ++i) {
      (fast ? kernels::sign_dot_avx2 : kernels::sign_dot_scalar)(
          queries[i].sketch.data(), spec_.dim, in.signs, L.sign_bytes, count, partial);
      float* row = scores + static_cast<std::size_t>(i) * count;
      for (std::size_t t = 0; t < count; ++t) {
        row[t] += half_to_float(in.residual_norms[t]) * partial[t];
      }
    }
  }
}

ValueAccumulator Codec::make_accumulator() const {
  ValueAccumulator acc;
  acc.rotated.assign(spec_.dim, 0.0f);
  if (spec_.kind == CodecKind::Prod) acc.sketch.assign(spec_.dim, 0.0f);
  return acc;
}

void Codec::accumulate_multi(const float* weights, int n_queries, ConstEncodedView in,
                             std::size_t count, ValueAccumulator* accs) const {
  const CodeLayout& L = layout_;
  if (n_queries <= 0) return;
  for (int i = 0; i < n_queries; ++i) {
    if (!fits_codec(spec_, accs[i].rotated, accs[i].sketch)) {
      throw std::invalid_argument("codec accumulate: accumulator " + std::to_string(i) +
                                  " has dimension " + std::to_string(accs[i].rotated.size()) +
                                  ", expected " + std::to_string(spec_.dim) +
                                  " (use make_accumulator())");
    }
  }
  if (count == 0) return;
  const auto axpy =
      use_avx2(simd_) ? kernels::segment_axpy_multi_avx2 : kernels::segment_axpy_multi_scalar;
  const std::size_t total = static_cast<std::size_t>(n_queries) * count;
  // Scratch: the weights times the token's norm (or residual norm), [n_queries][count], then the
  // decoded norms.
  std::vector<float> scratch(total + count);
  float* scaled = scratch.data();
  // Per weight row i: rows[i] its scaled weights, rows[n + i] / rows[2n + i] where its
  // accumulator's hi / lo segment starts.
  const std::size_t n = static_cast<std::size_t>(n_queries);
  std::vector<float*> rows(3 * n);
  for (std::size_t i = 0; i < n; ++i) {
    rows[i] = scaled + i * count;
    rows[n + i] = accs[i].rotated.data();
    rows[2 * n + i] = accs[i].rotated.data() + L.hi_count;
  }
  if (L.code_bytes > 0) {
    float* norms = scratch.data() + total;
    for (std::size_t t = 0; t < count; ++t) norms[t] = half_to_float(in.norms[t]);
    for (std::size_t k = 0; k < total; k += count) {
      for (std::size_t t = 0; t < count; ++t) scaled[k + t] = weights[k + t] * norms[t];
    }
    if (L.hi_count > 0) {
      axpy(rows.data(), n_queries, L.hi_count, L.hi_bits, centroids_hi_.data(), in.codes,
           L.code_bytes, count, rows.data() + n);
    }
    if (L.lo_count() > 0) {
      axpy(rows.data(), n_queries, L.lo_count(), L.lo_bits, centroids_lo_.data(),
           in.codes + L.hi_bytes, L.code_bytes, count, rows.data() + 2 * n);
    }
  }
  if (spec_.kind == CodecKind::Prod) {
    for (int i = 0; i < n_queries; ++i) {
      float* row = scaled + static_cast<std::size_t>(i) * count;
      for (std::size_t t = 0; t < count; ++t) {
        row[t] =
            weights[static_cast<std::size_t>(i) * count + t] * half_to_float(in.residual_norms[t]);
      }
      kernels::sign_axpy_scalar(row, spec_.dim, in.signs, L.sign_bytes, count,
                                accs[i].sketch.data());
    }
  }
}

void Codec::finish(const ValueAccumulator& acc, float* out) const {
  const int d = spec_.dim;
  std::vector<float> rotated(acc.rotated);
  if (spec_.kind == CodecKind::Prod) {
    const float scale = static_cast<float>(kSqrtHalfPi / d);
    for (int i = 0; i < d; ++i) {
      const float s = acc.sketch[i] * scale;
      const float* row = &qjl_[static_cast<std::size_t>(i) * d];
      for (int j = 0; j < d; ++j) rotated[j] += s * row[j];
    }
  }
  rotation_.apply_inverse(rotated.data(), out);
}

}  // namespace tq
