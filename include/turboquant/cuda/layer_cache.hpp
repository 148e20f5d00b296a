// One layer's KV cache on the GPU for a batch of sequences, built from a tq::KvScheme exactly as
// tq::LayerKvCache is: protected layers and the fp16 scheme store fp16 tokens; TurboQuant
// schemes store codes from the same kv_codec_spec seeds (bit-identical with the CPU cache for
// the same input floats) in the compressed segment, plus the last W tokens exact in an fp16 ring
// (token t in slot t mod W; a token leaves the ring by being encoded from its fp16 value, as on
// the CPU). Block int8/int4 schemes have no GPU kernels yet and are refused.
//
// Attention reads what the cache holds: one query per sequence (decode) through the fused
// tensor-core / generic kernels with the window folded in; several queries (a prefill chunk,
// causal) through the multi-query kernel when nothing is in the window, otherwise by decoding the
// compressed segment into fp16 scratch next to the window tokens and running the fp16 kernel.
//
// Prefill (append / attend) is host-driven: the per-sequence token counts live on the host and
// each call passes them to the kernels. The decode step (append_step / attend_step) reads the
// positions from device memory instead, so one recorded CUDA graph replays every step. No CUDA
// type appears here; streams are `void*` holding a cudaStream_t.
#pragma once

#include "turboquant/cache/kv_cache.hpp"
#include "turboquant/cache/kv_scheme.hpp"
#include "turboquant/cuda/attention.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tq::cuda {

// Device scratch shared by the layer caches of one model (one layer runs at a time): the fp16
// staging of tokens being encoded and the decoded fp16 copy a prefill chunk attends over.
class LayerCacheScratch {
 public:
  LayerCacheScratch();
  ~LayerCacheScratch();
  LayerCacheScratch(const LayerCacheScratch&) = delete;
  LayerCacheScratch& operator=(const LayerCacheScratch&) = delete;
  std::uint16_t* staging(std::size_t halves);  // grown on demand
  std::uint16_t* decoded(std::size_t halves);
  int* ints(int n);  // n device ints (lengths handed to the kernels); capturable once sized

 private:
  std::uint16_t* staging_ = nullptr;
  std::uint16_t* decoded_ = nullptr;
  int* ints_ = nullptr;
  std::size_t staging_n_ = 0, decoded_n_ = 0, ints_n_ = 0;
};

// The stored bytes of one KV head's compressed tokens, copied to the host (tests compare them
// with tq::LayerKvCache::encoded).
struct HostEncodedTokens {
  std::vector<std::uint8_t> codes, signs;      // [tokens][code_bytes], [tokens][sign_bytes]
  std::vector<std::uint16_t> norms, residual;  // fp16 bits; fp16 layers: [tokens][head_dim]
};

class GpuLayerKvCache {
 public:
  // capacity: most tokens any sequence reaches. Throws std::invalid_argument for a bad shape,
  // a scheme the GPU cannot store (block int) or a head dim the kernels do not cover.
  GpuLayerKvCache(const KvScheme& scheme, const LayerKvShape& shape, int batch, int capacity);
  ~GpuLayerKvCache();
  GpuLayerKvCache(GpuLayerKvCache&&) noexcept;
  GpuLayerKvCache& operator=(GpuLayerKvCache&&) noexcept;

  const LayerKvShape& shape() const { return shape_; }
  bool is_fp16() const { return fp16_; }
  int window() const { return window_; }  // 0 on fp16 layers, as on the CPU
  int batch() const { return batch_; }
  int capacity() const { return capacity_; }
  std::size_t size(int seq) const;             // tokens held by sequence seq
  std::size_t compressed_size(int seq) const;  // of which in the compressed segment

  // Appends n tokens to sequence seq; k, v: device fp32 [n][kv_heads][head_dim]. Throws when the
  // sequence would pass the capacity.
  void append(int seq, const float* k, const float* v, int n, LayerCacheScratch& scratch,
              void* stream);
  // Attention of the last n tokens' queries of sequence seq (q: device fp32
  // [n][q_heads][head_dim], query i at position size(seq) − n + i, causal) over what the cache
  // holds; out likewise. Append first, then attend.
  void attend(int seq, const float* q, int n, float* out, AttentionWorkspace& workspace,
              LayerCacheScratch& scratch, void* stream);
  // One decode step for the whole batch, capturable in a CUDA graph: sequence b appends its
  // token (k, v: device fp32 [batch][kv_heads][head_dim]) at device position positions[b]
  // (tokens it held before the step), or sits the step out when positions[b] < 0. A token at
  // a position >= capacity is not written: the device records it and check_capacity() throws.
  // The host mirror of the sizes is not touched; call advance() once the step is issued. It is
  // encode_evicted_step, then write_step, on one stream.
  void append_step(const float* k, const float* v, const int* positions, void* stream);
  // The two halves of append_step, for a caller that runs the first on a side stream (it reads
  // only the ring and the positions, not this step's keys and values, so it can overlap the
  // step's earlier work; write_step must wait for it). encode_evicted_step: layers with a window
  // encode the token that leaves it this step (position p − W, once p >= W) into the compressed
  // segment; a no-op where step_encodes_evicted() is false (fp16 layers, no window).
  // write_step: the step's token into the window ring (or the fp16 rows; with no window it is
  // encoded directly).
  bool step_encodes_evicted() const;
  void encode_evicted_step(const int* positions, void* stream);
  void write_step(const float* k, const float* v, const int* positions, void* stream);
  // Attention of one query per sequence (q: device [batch][q_heads][head_dim]) after
  // append_step with the same positions; sequences with positions[b] < 0 read nothing (their
  // output rows are unspecified). max_tokens: host bound of every sequence's tokens after the
  // step (it sizes the split plan: a graph recorded with one bound serves every step below it).
  // Capturable once the workspace has been sized by an uncaptured call with the same bound.
  void attend_step(const float* q, const int* positions, int max_tokens, float* out,
                   AttentionWorkspace& workspace, LayerCacheScratch& scratch, void* stream);
  // Throws std::out_of_range (and clears the record) when a step since the last check dropped a
  // token past the capacity. Synchronizes `stream`: call it where the caller waits anyway.
  void check_capacity(void* stream) const;
  // Adds one token to the host-side size of every sequence whose entry of `active` is true.
  void advance(const std::vector<bool>& active);
  void clear();
  void clear(int seq);

  // Exact bytes stored for the tokens held (same accounting as LayerKvCache::bytes()).
  std::size_t bytes() const;
  std::size_t capacity_bytes() const;  // device bytes allocated for tokens

  // For tests: the compressed tokens [0, compressed_size(seq)) of one head, and the exact
  // window tokens (fp16, in token order) of one head.
  HostEncodedTokens download(KvSide side, int seq, int kv_head) const;
  std::vector<std::uint16_t> download_window(KvSide side, int seq, int kv_head) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  LayerKvShape shape_;
  bool fp16_ = false;
  int window_ = 0;
  int batch_ = 0;
  int capacity_ = 0;
};

}  // namespace tq::cuda
