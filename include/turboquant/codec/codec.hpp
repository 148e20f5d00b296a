// TurboQuant vector codecs behind one interface:
//   mse(b):  x -> (n = ‖x‖ as fp16, idx = bucket(Π x / n)); x̂ = n · Πᵀ c[idx]
//   prod(b): (b−1)-bit mse code + 1-bit QJL sign sketch s = sign(S r) of the residual r and its
//            norm γ (fp16); ⟨q, x̃⟩ = ⟨q, x̂_mse⟩ + √(π/2)/d · γ · ⟨S q, s⟩ is unbiased.
// Fractional bit widths (2.5, 3.5, 3.25 …) give the first hi_count rotated coordinates ⌈b⌉ bits
// and the rest ⌊b⌋ bits; after a random rotation the coordinates are exchangeable.
// All residual work happens in the rotated domain (S·Πᵀ is as Gaussian as S), so a query is
// rotated once and every token is scored from its codes without being decoded.
#pragma once

#include "turboquant/base/half.hpp"
#include "turboquant/base/simd.hpp"
#include "turboquant/codec/rotation.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

enum class CodecKind { Mse, Prod };
CodecKind parse_codec_kind(std::string_view name);  // "mse" | "prod"
std::string to_string(CodecKind kind);

struct CodecSpec {
  int dim = 128;
  double bits = 4.0;  // bits per coordinate spent on codes (prod: including the QJL bit)
  CodecKind kind = CodecKind::Mse;
  RotationKind rotation = RotationKind::Hadamard;
  std::uint64_t seed = 0;  // rotation seed; the QJL matrix seed is derived from it
  bool norm_correction = false;
};

// Byte layout of one encoded token (docs/LAYOUT.md). Codes of the hi segment come first, then the
// lo segment; each segment is padded to whole 32-bit words. Signs (prod) are a 1-bit segment.
struct CodeLayout {
  int dim = 0;
  int hi_count = 0;  // rotated coordinates [0, hi_count) use hi_bits
  int hi_bits = 0;   // 0 when there is no MSE part (prod at 1 bit)
  int lo_bits = 0;   // coordinates [hi_count, dim) use lo_bits
  std::size_t hi_bytes = 0;
  std::size_t lo_bytes = 0;
  std::size_t code_bytes = 0;  // hi_bytes + lo_bytes
  std::size_t sign_bytes = 0;  // prod: dim sign bits; mse: 0
  bool has_residual_norm = false;

  int lo_count() const { return dim - hi_count; }
  // Everything stored per token: codes, signs, fp16 norm and (prod) fp16 residual norm.
  std::size_t bytes_per_token() const {
    return code_bytes + sign_bytes + 2 + (has_residual_norm ? 2 : 0);
  }
  double bits_per_value() const { return 8.0 * static_cast<double>(bytes_per_token()) / dim; }
};

// Non-owning view of n encoded tokens stored as separate token-major arrays.
struct EncodedView {
  std::uint8_t* codes = nullptr;        // n × code_bytes
  std::uint8_t* signs = nullptr;        // n × sign_bytes (prod only)
  half_bits* norms = nullptr;           // n
  half_bits* residual_norms = nullptr;  // n (prod only)
  // View of the tokens from `first` on.
  EncodedView offset(std::size_t first, const CodeLayout& layout) const;
};
struct ConstEncodedView {
  const std::uint8_t* codes = nullptr;
  const std::uint8_t* signs = nullptr;
  const half_bits* norms = nullptr;
  const half_bits* residual_norms = nullptr;
  ConstEncodedView() = default;
  ConstEncodedView(const EncodedView& v)  // NOLINT: implicit by design
      : codes(v.codes), signs(v.signs), norms(v.norms), residual_norms(v.residual_norms) {}
  ConstEncodedView(const std::uint8_t* c, const std::uint8_t* s, const half_bits* n,
                   const half_bits* r)
      : codes(c), signs(s), norms(n), residual_norms(r) {}
  // View of the tokens from `first` on.
  ConstEncodedView offset(std::size_t first, const CodeLayout& layout) const;
};

// Owning storage for n encoded tokens.
class EncodedBatch {
 public:
  EncodedBatch() = default;
  EncodedBatch(const CodeLayout& layout, std::size_t count);
  std::size_t size() const { return count_; }
  EncodedView view();
  ConstEncodedView view() const;

 private:
  std::size_t count_ = 0;
  std::vector<std::uint8_t> codes_, signs_;
  std::vector<half_bits> norms_, residual_norms_;
};

// A query prepared once for scoring many tokens: Π·q, and for prod keys √(π/2)/d · S·Π·q.
struct PreparedQuery {
  std::vector<float> rotated;
  std::vector<float> sketch;  // prod only
};

// Weighted sum of values kept in the rotated (and, for prod, sketch) domain until finish().
struct ValueAccumulator {
  std::vector<float> rotated;
  std::vector<float> sketch;  // prod only
};

class Codec {
 public:
  explicit Codec(const CodecSpec& spec);
  ~Codec();
  Codec(Codec&&) noexcept;
  Codec& operator=(Codec&&) noexcept;

  const CodecSpec& spec() const { return spec_; }
  const CodeLayout& layout() const { return layout_; }
  const Rotation& rotation() const { return rotation_; }
  int dim() const { return spec_.dim; }
  // Centroids of the hi / lo segments (float, as the kernels use them); empty if no MSE part.
  const std::vector<float>& centroids_hi() const { return centroids_hi_; }
  const std::vector<float>& centroids_lo() const { return centroids_lo_; }
  // The QJL matrix S (dim × dim, row-major, i.i.d. N(0,1)); empty for mse.
  const std::vector<float>& qjl_matrix() const { return qjl_; }
  // Expected d·MSE of the MSE part on unit vectors (from the codebooks' exact integrals).
  double expected_unit_vector_mse() const;

  void set_simd(SimdLevel level);
  SimdLevel simd() const { return simd_; }  // the level actually used (never Auto)

  // x: count × dim row-major floats. Writes count token records into `out`. The rotation is
  // Rotation::apply (double accumulation), so the codes are the same whatever count is and
  // match the CUDA quantize kernel's.
  void encode(const float* x, std::size_t count, EncodedView out) const;
  // The same records for bulk loads (vector-search indexes): the rotation runs as one fp32 GEMM
  // per chunk (Rotation::apply_batch), many times faster for a dense Haar rotation; a code may
  // differ from encode()'s where a rotated coordinate lies within rounding of a threshold.
  void encode_batch(const float* x, std::size_t count, EncodedView out) const;
  // Records of vectors already rotated (rotated = Π·x, count × dim).
  void encode_rotated(const float* rotated, std::size_t count, EncodedView out) const;
  // Full reconstruction (for tests and the reference path): x̂, or x̃ for prod.
  void decode(ConstEncodedView in, std::size_t count, float* x) const;

  PreparedQuery prepare_query(const float* q) const;
  // scores[i·count + t] = estimated ⟨q_i, x_t⟩ for n_queries queries against `count` tokens,
  // straight from their codes. The queries of a GQA group share the tokens, so each code is
  // looked up once for all of them.
  void score_multi(const PreparedQuery* queries, int n_queries, ConstEncodedView in,
                   std::size_t count, float* scores) const;
  // One query: scores[t] = estimated ⟨q, x_t⟩.
  void score(const PreparedQuery& query, ConstEncodedView in, std::size_t count,
             float* scores) const {
    score_multi(&query, 1, in, count, scores);
  }

  ValueAccumulator make_accumulator() const;
  // accs[i] += Σ_t weights[i·count + t] · x̂_t for n_queries weight rows, in the rotated domain
  // (one code look-up per token for all rows).
  void accumulate_multi(const float* weights, int n_queries, ConstEncodedView in, std::size_t count,
                        ValueAccumulator* accs) const;
  // One weight row: acc += Σ_t weights[t] · x̂_t.
  void accumulate(const float* weights, ConstEncodedView in, std::size_t count,
                  ValueAccumulator& acc) const {
    accumulate_multi(weights, 1, in, count, &acc);
  }
  // out = Πᵀ(acc.rotated + √(π/2)/d · Sᵀ acc.sketch): the weighted sum in the original domain.
  void finish(const ValueAccumulator& acc, float* out) const;

 private:
  void check_output(EncodedView out, std::size_t count) const;
  void encode_chunks(const float* x, std::size_t count, EncodedView out, bool gemm_rotation) const;

  CodecSpec spec_;
  CodeLayout layout_;
  Rotation rotation_;
  std::vector<float> centroids_hi_, centroids_lo_;
  std::vector<float> thresholds_hi_, thresholds_lo_;
  std::vector<float> qjl_;
  std::vector<float> qjl_transposed_;  // Sᵀ, for column-wise S·r in encode
  SimdLevel simd_ = SimdLevel::Scalar;
};

// Validates a spec and derives its layout; throws std::invalid_argument naming the bad value.
CodeLayout make_code_layout(const CodecSpec& spec);

}  // namespace tq
