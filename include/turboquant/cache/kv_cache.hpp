// The per-layer compressed KV cache (docs/DESIGN.md §3) and attention computed over what it stores.
// One LayerKvCache holds one layer's keys and values for all KV heads of one sequence, in the
// format the scheme gives that layer: fp16, a llama.cpp block format (q8_0, q4_0, q4_1, q5_0,
// iq4_nl: fp16 scale per 32 values, with or without the Hadamard rotation) or TurboQuant (tq::Codec
// per layer and K/V, seeds from tq::kv_codec_spec). Protected layers store fp16.
//
// Per KV head and side there are two segments:
//   compressed  tokens [0, compressed_size()): token-major arrays in the stored format, grown in
//               steps of ×1.5 (never per token);
//   window      tokens [compressed_size(), size()): the last W tokens kept exact in fp16 (a ring
//               of W slots); a token leaves the window by being encoded into the compressed
//               segment. With W > 0 a token is encoded from its fp16 value, with W = 0 from the
//               float it was appended as — either way the stored bytes do not depend on how the
//               tokens were split into append() calls.
// Attention reads the cache as stored: it scores keys straight from their codes (TurboQuant:
// the query is rotated once per head, values are summed in the rotated domain and rotated back
// once; block formats: dequantized block by block on the fly) plus exact dot products over the
// window, so decode never materialises the dequantized cache.
//
// Centering (scheme option center=k|v|kv): a side's tokens are stored as x − μ, one μ per KV
// head, estimated as the mean of the first append() (the first prefill chunk; for a one-token
// first append, that token) and frozen until clear(). μ is rounded to fp16 and counted in
// bytes(). Keys need no correction: q·(k − μ) = q·k − q·μ shifts every score of a query by the
// same constant, which softmax ignores. Values add μ back once per output: Σ pₜ(vₜ − μ) + μ =
// Σ pₜvₜ because Σ pₜ = 1. decode() returns x (μ added back), so reference_attention sees the
// uncentered tokens and checks the algebra. Protected layers are not centered.
#pragma once

#include "turboquant/base/half.hpp"
#include "turboquant/base/random.hpp"
#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/codec/codec.hpp"
#include "turboquant/codec/rotation.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tq {

struct LayerKvShape {
  int layer = 0;      // index of this layer in the model (picks seeds and protection)
  int n_layers = 1;   // layers in the model (protect=F/L counts from both ends)
  int n_q_heads = 1;  // query heads; a multiple of n_kv_heads (GQA group = n_q_heads / n_kv_heads)
  int n_kv_heads = 1;
  int head_dim = 128;
};

struct AttentionOptions {
  float scale = 0.0f;                // softmax scale; 0 means 1/√head_dim
  SimdLevel simd = SimdLevel::Auto;  // Scalar: reference kernels (and the codec's scalar level)
  int threads = 0;                   // 0: all OpenMP threads; 1: serial
};

class LayerKvCache {
 public:
  // Throws std::invalid_argument on a bad shape (non-positive sizes, layer out of range,
  // n_q_heads not a multiple of n_kv_heads) or a head dim the scheme's rotation cannot handle.
  LayerKvCache(const KvScheme& scheme, const LayerKvShape& shape);
  ~LayerKvCache();
  LayerKvCache(LayerKvCache&&) noexcept;
  LayerKvCache& operator=(LayerKvCache&&) noexcept;

  const LayerKvShape& shape() const { return shape_; }
  const KvScheme& scheme() const { return scheme_; }
  bool is_protected() const { return protected_; }
  // The format a side is stored in on this layer (fp16 on protected layers).
  const KvSideSpec& side_spec(KvSide side) const { return sides_[index(side)].spec; }
  // The TurboQuant codec of a side (the SIMD one), or nullptr if the side is not TurboQuant.
  const Codec* codec(KvSide side) const { return sides_[index(side)].codec.get(); }
  // Recent tokens kept exact: the scheme's window, or 0 where everything is fp16 anyway.
  int window() const { return window_; }

  std::size_t size() const { return total_; }                  // tokens held
  std::size_t compressed_size() const { return compressed_; }  // tokens in the compressed segment
  std::size_t window_size() const { return total_ - compressed_; }

  // Appends n_tokens tokens; k and v are [n_tokens][n_kv_heads][head_dim] floats.
  void append(const float* k, const float* v, std::size_t n_tokens);
  // Forgets all tokens, keeping the allocation.
  void clear();
  // Makes room for `tokens` tokens in total without further allocation.
  void reserve(std::size_t tokens);

  // Bytes of what is stored (tokens held, not capacity); equals the per-layer share of
  // tq::kv_cache_size for the same scheme and context.
  std::size_t bytes() const;
  // Bytes allocated for token storage (compressed segments at capacity plus the window rings).
  std::size_t capacity_bytes() const;

  // Tokens [first, first + count) of one KV head as attention sees them (decoded), count × d.
  void decode(KvSide side, int kv_head, std::size_t first, std::size_t count, float* out) const;
  // The stored arrays of one KV head's compressed segment (tokens [0, compressed_size())), in
  // the side's format: TurboQuant codes/signs/norms, fp16 values in `norms` (head_dim per
  // token), block formats their code bytes in `codes` and scales (q4_1: scale, minimum) in
  // `norms` (layout in src/cache/block_int.hpp). Valid until the next
  // append. The GPU cache's tests compare their bytes with it.
  ConstEncodedView encoded(KvSide side, int kv_head) const;
  // The centering mean μ of one KV head's side (head_dim floats, fp16-rounded), or nullptr when
  // the side is not centered or the cache is empty.
  const float* mean(KvSide side, int kv_head) const;
  // The exact window tokens of one KV head in token order, fp16 bits (window_size() × d).
  std::vector<half_bits> window_tokens(KvSide side, int kv_head) const;

  // Attention of n_q queries over the cache: q is [n_q][n_q_heads][head_dim], out likewise.
  // Query i sits at absolute position first_query_pos + i and sees cache tokens
  // [0, first_query_pos + i] (causal); q head h reads KV head h / (n_q_heads / n_kv_heads).
  // Requires first_query_pos + n_q <= size(): append the chunk first, then attend.
  void attend(const float* q, int n_q, std::size_t first_query_pos, float* out,
              const AttentionOptions& options = {}) const;

 private:
  // One KV head's storage for one side. Per token: `u8` bytes (int values or TurboQuant codes),
  // `u8b` bytes (TurboQuant prod signs), `h` halves (fp16 values, int scales or TurboQuant
  // norm), `h2` halves (TurboQuant prod residual norm). The vectors are sized to the capacity.
  struct HeadStore {
    std::vector<std::uint8_t> u8, u8b;
    std::vector<half_bits> h, h2;
    std::vector<half_bits> window;  // W × head_dim ring; token t lives in slot t mod W
    std::vector<float> mean;        // centering μ (fp16-rounded), empty until the first append
  };
  struct Side {
    KvSideSpec spec;
    std::unique_ptr<Codec> codec;         // TurboQuant, SimdLevel::Auto
    std::unique_ptr<Codec> codec_scalar;  // TurboQuant, SimdLevel::Scalar (reference path)
    std::unique_ptr<Rotation> rotation;   // rotated block formats
    std::size_t u8_width = 0, u8b_width = 0, h_width = 0, h2_width = 0;
    std::vector<HeadStore> heads;
    bool centered = false;  // center= names this side and the layer is not protected
    std::size_t token_bytes() const { return u8_width + u8b_width + 2 * (h_width + h2_width); }
  };
  static int index(KvSide side) { return side == KvSide::Key ? 0 : 1; }

  void grow(std::size_t compressed_tokens);
  // Encodes `count` tokens (contiguous count × d floats) of one head into compressed slots
  // [first, first + count).
  void encode_tokens(Side& side, HeadStore& head, const float* x, std::size_t first,
                     std::size_t count) const;
  ConstEncodedView encoded_view(const Side& side, const HeadStore& head) const;

  KvScheme scheme_;
  LayerKvShape shape_;
  bool protected_ = false;
  int window_ = 0;
  Side sides_[2];
  std::size_t capacity_ = 0;    // compressed-segment capacity in tokens
  std::size_t compressed_ = 0;  // tokens in the compressed segment
  std::size_t total_ = 0;       // tokens held
};

// Brute-force reference: decodes every visible token of the cache (LayerKvCache::decode) and
// computes softmax attention in double precision. Same arguments as LayerKvCache::attend.
void reference_attention(const LayerKvCache& cache, const float* q, int n_q,
                         std::size_t first_query_pos, float* out, float scale = 0.0f);

}  // namespace tq
