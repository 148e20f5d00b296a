// Parameters and launchers shared by the attention sources: the split (flash-decoding) kernels
// write partial softmax states (m, l, o; softmax_state.cuh) per (sequence, KV head, row, split);
// the merge kernel combines them, rotates back once and folds in the exact window.
// A "row" is one (query position, query head of the GQA group) pair of a KV head:
// row r = i·G + h_in_group for query i; rows are processed in chunks of kRowsPerChunk (the mma
// N dimension). Scores are kept in the log2 domain: the prepared query carries
// scale·log2(e), so softmax weights are exp2(s − m).
#pragma once

#include "internal.cuh"
#include "softmax_state.cuh"

namespace tq::cuda::detail {

constexpr int kRowsPerChunk = 8;
// Longest exact window the tensor-core kernel folds into its splits (with at most d tokens per
// split); longer windows go through the separate merge kernel.
constexpr int kFusedWindowMax = 1024;

struct SplitParams {
  // compressed (or fp16) segment of one side each
  const void* k_data;  // codes (tq) or fp16 keys
  const void* v_data;
  const __half* k_norms;
  const __half* v_norms;
  const unsigned char* k_signs;
  const unsigned char* v_signs;
  const __half* k_rnorms;
  const __half* v_rnorms;
  // codebooks (generic path: both segments)
  const float* k_cent_hi;
  const float* k_cent_lo;
  const float* v_cent_hi;
  const float* v_cent_lo;
  // tensor-core path: centroids by bit width (cent[2], cent[3], cent[4]; the Lloyd-Max
  // codebook depends only on (d, bits), so K and V share them)
  const float* cent[5];
  KernelCodeLayout k_layout, v_layout;
  bool k_prod, v_prod;
  // queries, prepared: [batch][kv_heads][rows][D] (rotated, scaled) and sketch (prod keys)
  const float* q_prep;
  const float* q_sketch;
  int rows;   // rows per KV head = G · n_queries
  int group;  // G
  int n_queries;
  int row_chunks;
  const int* lengths;
  int capacity;
  int kv_heads;
  int tokens_per_split;
  int splits;
  // outputs: partial o [batch][kv_heads][rows][splits][D], sketch acc likewise (prod values),
  // m and l [batch][kv_heads][rows][splits][2]
  float* part_o;
  float* part_s;
  float* part_ml;
  // Tensor-core path only: the query preparation and the merge run inside the split kernel.
  const float* q;  // original queries [batch][n_queries][q_heads][D]
  int q_heads;
  float scale_log2;        // softmax scale · log2 e
  const float* rot_signs;  // key codec's Hadamard signs, or null
  const float* rot_pi_t;   // key codec's dense Πᵀ (haar), or null; both null: no rotation
  const float* out_signs;  // value codec's Hadamard signs (inverse FWHT), or null
  const float* out_pi;     // value codec's dense Π (haar), or null; both null: no rotation
  float* out;              // [batch][n_queries][q_heads][D]
  // Arrival counters [batch][kv_heads][row_chunks], zero between calls (the last CTA of each
  // group resets its own). Null: no fused merge, the host runs the merge kernel (windows longer
  // than kFusedWindowMax).
  int* counters;
  // Exact fp16 window folded into the splits' partials (decode only), or window_lengths null.
  const __half* k_win;  // [batch][kv_heads][window_capacity][D]
  const __half* v_win;
  const int* window_lengths;
  int window_capacity;
  // Diagnostics (TQ_CUDA_TIMELINE, see attention.cu): per CTA 8 words — %globaltimer at entry,
  // loop start, loop end, partials written, arrival counted, kernel end, then %smid. Else null.
  unsigned long long* timeline;
};

// Tensor-core split kernel. kc / vc: key / value codes as 10·hi_bits + lo_bits (44 = 4-bit,
// 43 = 3.5-bit, 33 = 3-bit, 32 = 2.5-bit, 22 = 2-bit MSE); 0 / 0 = fp16 K/V (baseline).
bool tensor_core_combo_supported(int kc, int vc);
void launch_tensor_core_split(const SplitParams& p, int batch, int dim, int kc, int vc,
                              cudaStream_t stream);
// Resident CTAs per SM of the tensor-core kernel (occupancy query, cached).
int tensor_core_ctas_per_sm(int dim, int kc, int vc);
// Generic split kernel: any bits, mse or prod, fp32 math.
template <int D>
void launch_generic_split(const SplitParams& p, int batch, cudaStream_t stream);

}  // namespace tq::cuda::detail
