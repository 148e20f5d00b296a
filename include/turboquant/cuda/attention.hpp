// CUDA host API of TurboQuant: quantize-append into a GPU cache and attention over it.
// Everything here takes raw device pointers and shapes; no CUDA type appears in this header
// (streams are passed as `void*` holding a cudaStream_t, nullptr = default stream).
//
// GPU cache layout (docs/LAYOUT.md per token, token-major per (sequence, KV head)):
//   codes          [batch][kv_heads][capacity][code_bytes]
//   signs          [batch][kv_heads][capacity][sign_bytes]   (prod only)
//   norms          [batch][kv_heads][capacity]               fp16 bits
//   residual_norms [batch][kv_heads][capacity]               fp16 bits (prod only)
//   window K / V   [batch][kv_heads][window_capacity][head_dim] fp16, original (unrotated) domain
// Queries and outputs are fp32: q [batch][n_queries][q_heads][head_dim], out likewise. Query head
// h belongs to KV head h / (q_heads / kv_heads).
//
// Errors: invalid shapes or unsupported combinations throw std::invalid_argument naming the
// value; a failing CUDA call throws std::runtime_error naming the call, the CUDA error string
// and file:line.
#pragma once

#include "turboquant/codec/codec.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tq::cuda {

// True when the CUDA runtime sees at least one device (tests skip otherwise).
bool device_available();
// Name of device 0 and its multiprocessor count (for benchmark reports).
std::string device_name();
int device_sm_count();
// Free and total memory of the current device, in bytes (cudaMemGetInfo).
struct DeviceMemory {
  std::size_t free = 0, total = 0;
};
DeviceMemory device_memory();
// Device-to-device copy bandwidth in bytes per second (bytes read + written over the time of a
// cudaMemcpy of `bytes`, median of 5 after a warm-up): the ceiling byte floors are stated against.
double copy_bandwidth(std::size_t bytes = std::size_t{1} << 30);

// Device-resident constants of one codec: Π and Πᵀ (dense), the Hadamard signs, the QJL matrix S
// and Sᵀ (prod), centroids and thresholds of both segments. Built from the same tq::Codec the CPU
// uses, so codes and math agree bit for bit with the CPU reference.
class DeviceCodec {
 public:
  explicit DeviceCodec(const CodecSpec& spec);
  ~DeviceCodec();
  DeviceCodec(DeviceCodec&&) noexcept;
  DeviceCodec& operator=(DeviceCodec&&) noexcept;
  DeviceCodec(const DeviceCodec&) = delete;
  DeviceCodec& operator=(const DeviceCodec&) = delete;

  const CodecSpec& spec() const;
  const CodeLayout& layout() const;
  const Codec& host_codec() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// One side (K or V) of the compressed segment: device pointers in the layout above.
struct GpuCacheSide {
  std::uint8_t* codes = nullptr;
  std::uint8_t* signs = nullptr;  // prod only
  std::uint16_t* norms = nullptr;
  std::uint16_t* residual_norms = nullptr;  // prod only
  // Optional device int (0 = nothing dropped). A write at a position >= capacity is not made;
  // instead it raises the word to that position + 1 (atomicMax), so the host can tell that
  // tokens were lost (check_capacity) without a synchronization in the launch path.
  int* overflow = nullptr;
};

// A whole cache for one layer: compressed K and V plus the optional exact fp16 window.
struct GpuKvCache {
  int batch = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int capacity = 0;  // compressed tokens per (sequence, KV head)
  GpuCacheSide key, value;
  int window_capacity = 0;
  std::uint16_t* key_window = nullptr;  // fp16 bits, may be null when window_capacity == 0
  std::uint16_t* value_window = nullptr;
};

// Owning device allocation of a GpuKvCache for the given codecs (freed in the destructor).
class GpuKvCacheStorage {
 public:
  GpuKvCacheStorage(const CodeLayout& key, const CodeLayout& value, int batch, int kv_heads,
                    int capacity, int window_capacity = 0);
  ~GpuKvCacheStorage();
  GpuKvCacheStorage(const GpuKvCacheStorage&) = delete;
  GpuKvCacheStorage& operator=(const GpuKvCacheStorage&) = delete;
  // Both sides' `overflow` point at one zeroed device word of this allocation.
  const GpuKvCache& cache() const { return cache_; }
  std::size_t compressed_bytes() const { return compressed_bytes_; }

 private:
  GpuKvCache cache_;
  std::size_t compressed_bytes_ = 0;
  void* block_ = nullptr;
};

enum class InputType { F32, F16, BF16 };

// Reads a GpuCacheSide::overflow word after `stream`'s work (synchronizes it) and, when a write
// was dropped, clears the word and throws std::out_of_range naming the furthest position reached
// and the capacity. `who` starts the message. A null word checks nothing.
void check_capacity(int* overflow, int capacity, const std::string& who, void* stream = nullptr);

// Encodes `count` new tokens per sequence (rotate, bucket, pack, norms; prod: QJL signs) and
// writes them at positions start_positions[b] + t of `side`. x: device
// [batch][count][kv_heads][head_dim] of `type`. start_positions: device int[batch]. Tokens at
// positions >= capacity are not written; they raise side.overflow when it is set (see
// check_capacity), since the positions live on the device and the host cannot check them.
// Codes, signs and norms are bit-exact with tq::Codec::encode on the same float inputs (each
// packed 32-bit word is written by exactly one thread).
void quantize_append(const DeviceCodec& codec, const void* x, InputType type, int batch, int count,
                     int kv_heads, const GpuCacheSide& side, int capacity,
                     const int* start_positions, void* stream = nullptr);

// The same for the keys and the values in one launch (same head dim, shape and start positions;
// each side with its own codec): what a decode step uses, where launches cost more than work.
// step_window >= 0 (count 1): start_positions are the step's token positions (< 0: inactive) and
// the slot encoded is the one a cache with a step_window-token fp16 window compresses at that
// step: the position itself when step_window = 0, position − step_window once that is >= 0,
// none before.
void quantize_append_pair(const DeviceCodec& key_codec, const void* keys,
                          const GpuCacheSide& key_side, const DeviceCodec& value_codec,
                          const void* values, const GpuCacheSide& value_side, InputType type,
                          int batch, int count, int kv_heads, int capacity,
                          const int* start_positions, int step_window = -1, void* stream = nullptr);

// The decode step's tokens leaving a `window`-token fp16 ring, keys and values in one launch: for
// each sequence whose position p = positions[b] is >= window, the token at p − window, read from
// slot p mod window of key_ring / value_ring (fp16 bits, [batch][kv_heads][window][head_dim]),
// encoded at position p − window of its side. The codes equal quantize_append_pair's (step_window
// = window) on a copy of those rows; the ring is only read, so this must run before the step's
// new token overwrites that slot.
void quantize_ring_evicted_pair(const DeviceCodec& key_codec, const std::uint16_t* key_ring,
                                const GpuCacheSide& key_side, const DeviceCodec& value_codec,
                                const std::uint16_t* value_ring, const GpuCacheSide& value_side,
                                int batch, int kv_heads, int capacity, const int* positions,
                                int window, void* stream = nullptr);

// Plain fp16 cache for the baseline kernel: [batch][kv_heads][capacity][head_dim] fp16 bits.
struct GpuFp16Cache {
  int batch = 0, kv_heads = 0, head_dim = 0, capacity = 0;
  const std::uint16_t* keys = nullptr;
  const std::uint16_t* values = nullptr;
};

// Which kernel runs the compressed segment. Auto takes the tensor-core path when it covers the
// codecs (MSE keys and values with d = 64/128/256 and (K, V) bits one of the presets 4/4, 3.5/3.5,
// 4/3, 3/3, 2.5/2.5, 2/2; code arrays 16-byte aligned), the generic path otherwise.
enum class AttentionPath { Auto, TensorCore, Generic };

struct AttentionArgs {
  const float* q = nullptr;  // device [batch][n_queries][q_heads][head_dim]
  float* out = nullptr;      // device, same shape
  int batch = 0;
  int q_heads = 0;
  int n_queries = 1;  // > 1: multi-query (prefill chunk / speculative verification), causal
  // Compressed tokens per sequence, device int[batch]. With n_queries = n, query i of sequence b
  // sees the first lengths[b] − (n − 1 − i) compressed tokens (the chunk was appended first).
  const int* lengths = nullptr;
  int max_length = 0;  // host-side upper bound of lengths[] (sizes the split grid)
  // Exact window tokens per sequence, device int[batch] (null = none); decode only (n_queries 1).
  const int* window_lengths = nullptr;
  int max_window = 0;
  float scale = 0.0f;  // softmax scale; 0 ⇒ 1/√head_dim
  AttentionPath path = AttentionPath::Auto;
  int splits = 0;  // flash-decoding splits per (sequence, KV head); 0 ⇒ chosen from SM count
};

// Scratch space (partial softmax states of the splits, prepared queries), grown on demand.
class AttentionWorkspace {
 public:
  AttentionWorkspace();
  ~AttentionWorkspace();
  AttentionWorkspace(const AttentionWorkspace&) = delete;
  AttentionWorkspace& operator=(const AttentionWorkspace&) = delete;
  void* reserve(std::size_t bytes);  // device pointer of at least `bytes`
  // Device int[n] that is zero on return; kernels that use it leave it zero again.
  int* zeroed_counters(std::size_t n);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  int* counters_ = nullptr;
  std::size_t counter_n_ = 0;
};

// Attention of the queries over the compressed cache (+ exact window) of one layer.
void attention(const DeviceCodec& key_codec, const DeviceCodec& value_codec,
               const GpuKvCache& cache, const AttentionArgs& args, AttentionWorkspace& workspace,
               void* stream = nullptr);

// The same attention over a plain fp16 cache with the same tensor-core kernel (baseline, and
// for protected layers). args.window_lengths must be null.
void attention_fp16(const GpuFp16Cache& cache, const AttentionArgs& args,
                    AttentionWorkspace& workspace, void* stream = nullptr);

// The routes to the flash prefill kernel (attention_fp16 with path Auto and a long chunk;
// GpuLayerKvCache::attend of a long chunk with an empty window) are taken unless the environment
// sets TQ_CUDA_PREFILL=split, which keeps the split / multi-query kernels for every chunk (for A/B
// timing and as a fallback). Read on every call.
bool prefill_flash_routes_enabled();

// FlashAttention-2-style prefill over a plain fp16 cache (src/cuda/attention_prefill.cu): causal
// multi-query exactly as above (query i of sequence b sees the first lengths[b] − (n − 1 − i)
// tokens; none visible ⇒ 0), one CTA per 64 (query, group head) rows of one KV head, no split
// of the keys. d = 64/128/256; args.window_lengths must be null. attention_fp16 routes to it
// when args.path is Auto, n_queries >= kPrefillMinQueries and the grid fills the GPU
// (prefill_ctas >= SM count); path TensorCore keeps the split (decode) kernel for any n_queries.
// version: 1 = K by 32-bit shared loads, V by ldmatrix.x2.trans; 2 = both by ldmatrix.x4;
// 0 = the default (2). Numbered for the benchmark and the tests, same results either way.
void attention_prefill_fp16(const GpuFp16Cache& cache, const AttentionArgs& args,
                            void* stream = nullptr, int version = 0);
constexpr int kPrefillMinQueries = 32;
// CTAs of that kernel's grid for the shape.
int prefill_ctas(int batch, int kv_heads, int q_heads, int n_queries);

// Whether the tensor-core path covers this pair of codecs.
bool tensor_core_path_supports(const CodecSpec& key, const CodecSpec& value);

}  // namespace tq::cuda
