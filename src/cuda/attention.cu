// Host side of the GPU attention: validation, the split plan, query preparation (rotate once,
// fold in the softmax scale and log2 e, QJL sketch for prod keys; generic path only, the
// tensor-core kernel prepares and merges in its single launch, window included up to
// kFusedWindowMax tokens), dispatch of the split kernel (tensor-core or generic) and the merge
// kernel that combines the splits, rotates back once (Πᵀ, plus Sᵀ of the sign accumulator for
// prod values) and folds in the exact fp16 window.
#include "attention_kernels.cuh"
#include "fwht.cuh"
#include "turboquant/base/math.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace tq::cuda {
namespace {

using detail::AccurateExp2;
using detail::fwht_row;
using detail::kNegBig;
using detail::kRowsPerChunk;
using detail::SoftmaxState;
using detail::SplitParams;

constexpr float kLog2e = 1.4426950408889634f;

struct RowShape {
  int batch, kv_heads, q_heads, group, n_queries, rows;
};

// Reductions over a block of at most 1024 threads (every thread gets the result).
__device__ float block_reduce(float v, bool is_max, float* scratch) {
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = is_max ? fmaxf(v, o) : v + o;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < nw; ++w) v = is_max ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

// Π q (Hadamard: H·(D∘q)/√d by a shared-memory FWHT; haar: dense Πᵀ columns), pre-scaled by
// scale·log2 e, and the QJL sketch √(π/2)/d · S Π q for prod keys.
__global__ void prepare_queries_kernel(const float* __restrict__ q, RowShape s, int dim,
                                       float scale_log2, const float* __restrict__ signs,
                                       const float* __restrict__ pi_t,
                                       const float* __restrict__ qjl_t, float qjl_scale,
                                       float* __restrict__ q_prep, float* __restrict__ q_sketch) {
  extern __shared__ float sh[];
  float* x = sh;
  const int r = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, j = threadIdx.x;
  const int i = r / s.group, qh = kvh * s.group + r % s.group;
  const float qj =
      q[((static_cast<long long>(b) * s.n_queries + i) * s.q_heads + qh) * dim + j] * scale_log2;
  float acc = qj;
  if (signs) {
    x[j] = qj * signs[j];
    __syncthreads();
    fwht_row(x, dim);
    acc = x[j] * rsqrtf(static_cast<float>(dim));
  } else if (pi_t) {
    x[j] = qj;
    __syncthreads();
    acc = 0.0f;
#pragma unroll 16
    for (int k = 0; k < dim; ++k) acc += pi_t[k * dim + j] * x[k];
  }
  const long long out = ((static_cast<long long>(b) * s.kv_heads + kvh) * s.rows + r) * dim + j;
  q_prep[out] = acc;
  if (qjl_t) {
    __syncthreads();
    x[j] = acc;
    __syncthreads();
    float sk = 0.0f;
#pragma unroll 16
    for (int k = 0; k < dim; ++k) sk += qjl_t[k * dim + j] * x[k];
    q_sketch[out] = sk * qjl_scale;
  }
}

struct MergeParams {
  RowShape s;
  int dim, splits;
  const float* part_o;
  const float* part_s;
  const float* part_ml;
  const float* signs;  // Hadamard D of the value codec (FWHT inverse); null: dense or identity
  const float* pi;     // Π row-major (haar; null with signs null: identity, fp16 cache)
  const float* qjl;    // S row-major (prod values)
  float qjl_scale;
  const float* q;  // original queries (window scores)
  float scale_log2;
  const __half* k_win;
  const __half* v_win;
  const int* window_lengths;
  int window_capacity;
  float* out;
};

// One CTA of D threads per (row, KV head, sequence): softmax-merge of the splits (weights
// computed once in shared memory, then an unrolled sum per coordinate), Πᵀ once, the exact
// window, normalisation.
__global__ void merge_kernel(const MergeParams p) {
  using State = SoftmaxState<AccurateExp2>;
  extern __shared__ float sh[];
  const int D = p.dim;
  float* z = sh;                // combined rotated accumulator
  float* zs = sh + D;           // combined sign accumulator (prod values)
  float* qo = sh + 2 * D;       // query, original domain, scaled
  float* scratch = sh + 3 * D;  // 32 floats for reductions
  float* fw = scratch + 32;     // split weights
  float* fl = fw + p.splits;    // split l
  float* sw = fl + p.splits;    // window scores
  const int r = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, j = threadIdx.x;
  const RowShape& s = p.s;
  const long long slot0 = ((static_cast<long long>(b) * s.kv_heads + kvh) * s.rows + r) * p.splits;
  float local_max = kNegBig;
  for (int k = j; k < p.splits; k += D) {
    fw[k] = p.part_ml[(slot0 + k) * 2];
    fl[k] = p.part_ml[(slot0 + k) * 2 + 1];
    local_max = fmaxf(local_max, fw[k]);
  }
  const float mmax = block_reduce(local_max, true, scratch);
  float local_l = 0.0f;
  for (int k = j; k < p.splits; k += D) {
    const float f = State::weight(fw[k], mmax);
    fw[k] = f;
    local_l += f * fl[k];
  }
  const float l = block_reduce(local_l, false, scratch);  // its barriers also publish fw[]
  float acc = 0.0f, accs = 0.0f;
  const float* po = p.part_o + slot0 * D + j;
#pragma unroll 8
  for (int k = 0; k < p.splits; ++k) acc += fw[k] * po[static_cast<long long>(k) * D];
  if (p.part_s) {
    const float* ps = p.part_s + slot0 * D + j;
#pragma unroll 8
    for (int k = 0; k < p.splits; ++k) accs += fw[k] * ps[static_cast<long long>(k) * D];
    zs[j] = accs;
    __syncthreads();
    float t = 0.0f;  // (Sᵀ zs)_j
#pragma unroll 16
    for (int k = 0; k < D; ++k) t += p.qjl[k * D + j] * zs[k];
    acc += p.qjl_scale * t;
  }
  if (p.signs) {
    z[j] = acc;
    __syncthreads();
    fwht_row(z, D);
    acc = z[j] * p.signs[j] * rsqrtf(static_cast<float>(D));
  } else if (p.pi) {
    z[j] = acc;
    __syncthreads();
    float t = 0.0f;  // (Πᵀ z)_j
#pragma unroll 16
    for (int k = 0; k < D; ++k) t += p.pi[k * D + j] * z[k];
    acc = t;
  }
  State st{mmax, l, {acc}};  // the splits' merged state, o rotated back
  const int i = r / s.group, qh = kvh * s.group + r % s.group;
  const long long qoff = ((static_cast<long long>(b) * s.n_queries + i) * s.q_heads + qh) * D;
  const int W = p.window_lengths ? p.window_lengths[b] : 0;
  if (W > 0) {
    qo[j] = p.q[qoff + j] * p.scale_log2;
    __syncthreads();
    const long long wbase = (static_cast<long long>(b) * s.kv_heads + kvh) * p.window_capacity;
    const int warp = j >> 5, lane = j & 31, nw = blockDim.x >> 5;
    for (int t = warp; t < W; t += nw) {
      const __half* k = p.k_win + (wbase + t) * D;
      float d = 0.0f;
      for (int c = lane; c < D; c += 32) d += __half2float(k[c]) * qo[c];
      for (int off = 16; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
      if (lane == 0) sw[t] = d;
    }
    __syncthreads();
    float m2 = st.m;
    for (int t = 0; t < W; ++t) m2 = fmaxf(m2, sw[t]);
    st.rescale(m2);
    for (int t = 0; t < W; ++t) st.add_token(sw[t], __half2float(p.v_win[(wbase + t) * D + j]));
  }
  p.out[qoff + j] = st.normalized();
}

// Diagnostics: with TQ_CUDA_TIMELINE=FILE set, every tensor-core call records per-CTA
// timestamps (SplitParams::timeline) and appends them to FILE as one record (u64 CTA count, then
// 8 u64 per CTA). It synchronises the stream after each call: for profiling runs only.
class CtaTimeline {
 public:
  explicit CtaTimeline(int ctas) : ctas_(ctas) {
    static const char* const env = std::getenv("TQ_CUDA_TIMELINE");  // read once per process
    path_ = env;
    if (path_ == nullptr) return;
    TQ_CUDA_CHECK(cudaMalloc(&words_, static_cast<std::size_t>(ctas) * 8 * sizeof(*words_)));
    TQ_CUDA_CHECK(cudaMemset(words_, 0, static_cast<std::size_t>(ctas) * 8 * sizeof(*words_)));
  }
  ~CtaTimeline() {
    if (words_) cudaFree(words_);
  }
  CtaTimeline(const CtaTimeline&) = delete;
  CtaTimeline& operator=(const CtaTimeline&) = delete;
  unsigned long long* device_words() const { return words_; }
  void append_to_file(cudaStream_t stream) const {
    if (words_ == nullptr) return;
    std::vector<unsigned long long> host(static_cast<std::size_t>(ctas_) * 8);
    TQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    TQ_CUDA_CHECK(
        cudaMemcpy(host.data(), words_, host.size() * sizeof(host[0]), cudaMemcpyDeviceToHost));
    std::FILE* f = std::fopen(path_, "ab");
    if (f == nullptr) throw std::runtime_error(std::string("cannot append to ") + path_);
    const unsigned long long n = static_cast<unsigned long long>(ctas_);
    std::fwrite(&n, sizeof(n), 1, f);
    std::fwrite(host.data(), sizeof(host[0]), host.size(), f);
    std::fclose(f);
  }

 private:
  int ctas_;
  const char* path_ = nullptr;
  unsigned long long* words_ = nullptr;
};

int sm_count_cached() {
  static const int sms = device_sm_count();
  return sms;
}

struct Plan {
  int splits, tokens_per_split, row_chunks;
};

// Splits per (sequence, KV head, row chunk): enough CTAs to fill the resident slots of one wave
// (a partial second wave would leave most SMs idle at the end), at least 128 tokens each, at most
// 512 (the fused merge keeps 8 × splits weights in shared memory).
Plan make_plan(const AttentionArgs& a, int kv_heads, int rows, int ctas_per_sm) {
  Plan plan{};
  plan.row_chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  const int max_len = std::max(a.max_length, 1);
  int want = a.splits;
  if (want <= 0) {
    const long long groups = static_cast<long long>(a.batch) * kv_heads * plan.row_chunks;
    const long long slots = static_cast<long long>(std::max(ctas_per_sm, 1)) * sm_count_cached();
    want = static_cast<int>(std::max<long long>(1, slots / groups));
  }
  want = std::min(want, 512);
  int tps = (max_len + want - 1) / want;
  tps = std::max(128, (tps + 63) / 64 * 64);
  plan.tokens_per_split = tps;
  plan.splits = (max_len + tps - 1) / tps;
  return plan;
}

void check_window(const GpuKvCache& cache, const AttentionArgs& a) {
  if (!cache.key_window || !cache.value_window || cache.window_capacity < a.max_window) {
    throw std::invalid_argument("attention: window_lengths given but the cache window holds " +
                                std::to_string(cache.window_capacity) + " tokens < max_window " +
                                std::to_string(a.max_window));
  }
}

void check_common(const AttentionArgs& a, int kv_heads, int dim) {
  if (!a.q || !a.out || !a.lengths) {
    throw std::invalid_argument("attention: q, out and lengths must be device pointers, got null");
  }
  if (a.batch <= 0 || a.q_heads <= 0 || a.n_queries <= 0) {
    throw std::invalid_argument("attention: batch " + std::to_string(a.batch) + ", q_heads " +
                                std::to_string(a.q_heads) + ", n_queries " +
                                std::to_string(a.n_queries) + " must be positive");
  }
  if (a.q_heads % kv_heads != 0 || a.q_heads / kv_heads > 64) {
    throw std::invalid_argument("attention: q_heads " + std::to_string(a.q_heads) +
                                " must be a multiple of kv_heads " + std::to_string(kv_heads));
  }
  if (dim != 64 && dim != 128 && dim != 256) {
    throw std::invalid_argument("attention: head dim " + std::to_string(dim) +
                                " unsupported; expected 64, 128 or 256");
  }
  if (a.max_length < 0 || a.max_window < 0) {
    throw std::invalid_argument("attention: max_length / max_window must be >= 0");
  }
  if (a.n_queries > 1 && a.window_lengths) {
    throw std::invalid_argument("attention: the exact window is supported for n_queries = 1 only");
  }
  if (a.max_window > 8192) {
    throw std::invalid_argument("attention: max_window " + std::to_string(a.max_window) +
                                " exceeds 8192");
  }
}

template <typename F>
void dispatch_dim(int dim, F&& f) {
  switch (dim) {
    case 64:
      f(std::integral_constant<int, 64>{});
      break;
    case 128:
      f(std::integral_constant<int, 128>{});
      break;
    default:
      f(std::integral_constant<int, 256>{});
      break;
  }
}

struct Buffers {
  float *q_prep, *q_sketch, *part_o, *part_s, *part_ml;
};

Buffers carve(AttentionWorkspace& ws, long long q_elems, long long part_elems, bool sketch_q,
              bool sketch_v, long long ml_elems) {
  auto round = [](long long n) { return (n + 63) / 64 * 64; };
  const long long total = round(q_elems) * (sketch_q ? 2 : 1) +
                          round(part_elems) * (sketch_v ? 2 : 1) + round(ml_elems);
  float* base = static_cast<float*>(ws.reserve(static_cast<std::size_t>(total) * sizeof(float)));
  Buffers bf{};
  bf.q_prep = base;
  base += round(q_elems);
  bf.q_sketch = sketch_q ? base : nullptr;
  if (sketch_q) base += round(q_elems);
  bf.part_o = base;
  base += round(part_elems);
  bf.part_s = sketch_v ? base : nullptr;
  if (sketch_v) base += round(part_elems);
  bf.part_ml = base;
  return bf;
}

// Everything one call computes on besides the cache: the rows of each KV head, the split plan,
// the workspace buffers (sketches only where a prod codec needs them) and the softmax scale.
struct CallPlan {
  RowShape rows;
  Plan plan;
  Buffers buffers;
  float scale_log2;
};

CallPlan plan_call(const AttentionArgs& a, int kv_heads, int dim, int ctas_per_sm, bool sketch_q,
                   bool sketch_v, AttentionWorkspace& ws) {
  CallPlan c{};
  c.rows = RowShape{a.batch, kv_heads, a.q_heads, a.q_heads / kv_heads, a.n_queries, 0};
  c.rows.rows = c.rows.group * a.n_queries;
  c.plan = make_plan(a, kv_heads, c.rows.rows, ctas_per_sm);
  const long long q_elems = static_cast<long long>(a.batch) * kv_heads * c.rows.rows * dim;
  c.buffers = carve(ws, q_elems, q_elems * c.plan.splits, sketch_q, sketch_v,
                    2LL * a.batch * kv_heads * c.rows.rows * c.plan.splits);
  const float scale = a.scale > 0.0f ? a.scale : 1.0f / std::sqrt(static_cast<float>(dim));
  c.scale_log2 = scale * kLog2e;
  return c;
}

// The split kernels' parameters that do not depend on what the cache holds: shapes, plan,
// buffers, queries and output (the last four are read by the tensor-core kernel only).
SplitParams split_params(const CallPlan& c, const AttentionArgs& a, int capacity) {
  SplitParams sp{};
  sp.q_prep = c.buffers.q_prep;
  sp.q_sketch = c.buffers.q_sketch;
  sp.rows = c.rows.rows;
  sp.group = c.rows.group;
  sp.n_queries = a.n_queries;
  sp.row_chunks = c.plan.row_chunks;
  sp.lengths = a.lengths;
  sp.capacity = capacity;
  sp.kv_heads = c.rows.kv_heads;
  sp.tokens_per_split = c.plan.tokens_per_split;
  sp.splits = c.plan.splits;
  sp.part_o = c.buffers.part_o;
  sp.part_s = c.buffers.part_s;
  sp.part_ml = c.buffers.part_ml;
  sp.q = a.q;
  sp.q_heads = a.q_heads;
  sp.scale_log2 = c.scale_log2;
  sp.out = a.out;
  return sp;
}

// The merge kernel over the splits' partials: the value codec's inverse rotation, and the
// window when the call has one.
void run_merge(const CallPlan& c, int dim, const DeviceCodec::Impl& vd, const AttentionArgs& a,
               const GpuKvCache& cache, cudaStream_t stream) {
  const Buffers& bf = c.buffers;
  MergeParams mp{};
  mp.s = c.rows;
  mp.dim = dim;
  mp.splits = c.plan.splits;
  mp.part_o = bf.part_o;
  mp.part_s = bf.part_s;
  mp.part_ml = bf.part_ml;
  mp.signs = vd.signs;
  mp.pi = vd.signs ? nullptr : vd.pi;
  mp.qjl = bf.part_s ? vd.qjl : nullptr;
  mp.qjl_scale = static_cast<float>(kSqrtHalfPi / dim);
  mp.q = a.q;
  mp.scale_log2 = c.scale_log2;
  mp.out = a.out;
  if (a.window_lengths) {  // check_window passed at the start of the call
    mp.k_win = reinterpret_cast<const __half*>(cache.key_window);
    mp.v_win = reinterpret_cast<const __half*>(cache.value_window);
    mp.window_lengths = a.window_lengths;
    mp.window_capacity = cache.window_capacity;
  }
  const int smem = (3 * dim + 32 + 2 * c.plan.splits + std::max(a.max_window, 1)) *
                   static_cast<int>(sizeof(float));
  if (smem > 96 * 1024) {
    throw std::invalid_argument("attention: " + std::to_string(c.plan.splits) + " splits and a " +
                                std::to_string(a.max_window) +
                                "-token window exceed shared memory");
  }
  static bool configured = false;
  if (!configured) {
    TQ_CUDA_CHECK(
        cudaFuncSetAttribute(merge_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024));
    configured = true;
  }
  merge_kernel<<<dim3(c.rows.rows, c.rows.kv_heads, c.rows.batch), dim, smem, stream>>>(mp);
  TQ_CUDA_CHECK(cudaGetLastError());
}

// Tensor-core code of one side: 10·hi_bits + lo_bits for MSE codecs whose layout is the plain
// one the kernel assumes (one segment, or hi = d/2 coordinates at lo + 1 bits), else −1.
int tc_code(const CodecSpec& s) {
  if (s.kind != CodecKind::Mse || (s.dim != 64 && s.dim != 128 && s.dim != 256)) return -1;
  const CodeLayout L = make_code_layout(s);
  if (L.lo_bits < 2 || L.lo_bits > 4) return -1;
  if (L.hi_count == 0) return 11 * L.lo_bits;
  if (L.hi_count != s.dim / 2 || L.hi_bits != L.lo_bits + 1) return -1;
  return 10 * L.hi_bits + L.lo_bits;
}

}  // namespace

bool tensor_core_path_supports(const CodecSpec& key, const CodecSpec& value) {
  if (key.dim != value.dim) return false;
  const int kc = tc_code(key), vc = tc_code(value);
  return kc > 0 && vc > 0 && detail::tensor_core_combo_supported(kc, vc);
}

void attention(const DeviceCodec& key_codec, const DeviceCodec& value_codec,
               const GpuKvCache& cache, const AttentionArgs& a, AttentionWorkspace& ws,
               void* stream_ptr) {
  const int D = cache.head_dim;
  if (key_codec.spec().dim != D || value_codec.spec().dim != D) {
    throw std::invalid_argument("attention: codec dims " + std::to_string(key_codec.spec().dim) +
                                "/" + std::to_string(value_codec.spec().dim) +
                                " differ from the cache head dim " + std::to_string(D));
  }
  check_common(a, cache.kv_heads, D);
  if (a.batch > cache.batch || a.max_length > cache.capacity) {
    throw std::invalid_argument("attention: batch " + std::to_string(a.batch) + " / max_length " +
                                std::to_string(a.max_length) + " exceed the cache (" +
                                std::to_string(cache.batch) + ", " +
                                std::to_string(cache.capacity) + ")");
  }
  if (a.window_lengths) check_window(cache, a);
  const bool tc_ok = tensor_core_path_supports(key_codec.spec(), value_codec.spec());
  if (a.path == AttentionPath::TensorCore && !tc_ok) {
    throw std::invalid_argument(
        "attention: the tensor-core path needs mse keys and values of 4/3.5/3/2.5/2 bits (pairs "
        "tq4, tq3.5, k4v3, tq3, tq2.5, tq2) with d = 64/128/256");
  }
  // cp.async moves code rows in 16/8/4-byte chunks: the arrays must be 16-byte aligned
  // (GpuKvCacheStorage's are 256-byte aligned).
  const bool aligned = reinterpret_cast<std::uintptr_t>(cache.key.codes) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(cache.value.codes) % 16 == 0;
  if (a.path == AttentionPath::TensorCore && tc_ok && !aligned) {
    throw std::invalid_argument(
        "attention: the tensor-core path needs 16-byte aligned code arrays");
  }
  const bool use_tc = tc_ok && aligned && a.path != AttentionPath::Generic;
  const auto& kd = key_codec.impl();
  const auto& vd = value_codec.impl();
  const CodeLayout& KL = key_codec.layout();
  const CodeLayout& VL = value_codec.layout();
  cudaStream_t stream = as_stream(stream_ptr);

  const int kcode = use_tc ? tc_code(key_codec.spec()) : 0;
  const int vcode = use_tc ? tc_code(value_codec.spec()) : 0;
  const int per_sm = use_tc ? detail::tensor_core_ctas_per_sm(D, kcode, vcode) : 4;
  const CallPlan call = plan_call(a, cache.kv_heads, D, per_sm, kd.prod, vd.prod, ws);
  const RowShape& rs = call.rows;
  const Plan& plan = call.plan;
  const Buffers& bf = call.buffers;

  if (!use_tc) {  // the tensor-core kernel prepares its own queries
    prepare_queries_kernel<<<dim3(rs.rows, cache.kv_heads, a.batch), D, 2 * D * sizeof(float),
                             stream>>>(a.q, rs, D, call.scale_log2, kd.signs, kd.pi_t,
                                       kd.prod ? kd.qjl_t : nullptr,
                                       static_cast<float>(kSqrtHalfPi / D), bf.q_prep, bf.q_sketch);
    TQ_CUDA_CHECK(cudaGetLastError());
  }

  SplitParams sp = split_params(call, a, cache.capacity);
  sp.k_data = cache.key.codes;
  sp.v_data = cache.value.codes;
  sp.k_norms = reinterpret_cast<const __half*>(cache.key.norms);
  sp.v_norms = reinterpret_cast<const __half*>(cache.value.norms);
  sp.k_signs = cache.key.signs;
  sp.v_signs = cache.value.signs;
  sp.k_rnorms = reinterpret_cast<const __half*>(cache.key.residual_norms);
  sp.v_rnorms = reinterpret_cast<const __half*>(cache.value.residual_norms);
  sp.k_cent_hi = kd.cent_hi;
  sp.k_cent_lo = kd.cent_lo;
  sp.v_cent_hi = vd.cent_hi;
  sp.v_cent_lo = vd.cent_lo;
  sp.k_layout = kernel_layout(KL);
  sp.v_layout = kernel_layout(VL);
  sp.k_prod = kd.prod;
  sp.v_prod = vd.prod;
  if (use_tc) {
    // One launch: query preparation, splits and (without a window) the merge.
    sp.rot_signs = kd.signs;
    sp.rot_pi_t = kd.signs ? nullptr : kd.pi_t;
    sp.out_signs = vd.signs;
    sp.out_pi = vd.signs ? nullptr : vd.pi;
    // Windows up to kFusedWindowMax tokens ride in the splits (each CTA folds ⌈W / splits⌉ ≤ d
    // of them into its partial: one launch per decode step); longer ones, or window arrays the
    // kernel cannot read in 16-byte loads, go through the merge kernel.
    bool fuse_window = false;
    if (a.window_lengths) {
      const int per_split = (a.max_window + plan.splits - 1) / plan.splits;
      fuse_window = a.max_window <= detail::kFusedWindowMax && per_split <= D &&
                    reinterpret_cast<std::uintptr_t>(cache.key_window) % 16 == 0;
    }
    sp.counters = a.window_lengths && !fuse_window
                      ? nullptr
                      : ws.zeroed_counters(static_cast<std::size_t>(a.batch) * cache.kv_heads *
                                           plan.row_chunks);
    if (fuse_window) {
      sp.k_win = reinterpret_cast<const __half*>(cache.key_window);
      sp.v_win = reinterpret_cast<const __half*>(cache.value_window);
      sp.window_lengths = a.window_lengths;
      sp.window_capacity = cache.window_capacity;
    }
    for (int b = 0; b < 5; ++b) sp.cent[b] = nullptr;
    sp.cent[KL.lo_bits] = kd.cent_lo;
    if (KL.hi_count) sp.cent[KL.hi_bits] = kd.cent_hi;
    sp.cent[VL.lo_bits] = vd.cent_lo;
    if (VL.hi_count) sp.cent[VL.hi_bits] = vd.cent_hi;
    CtaTimeline timeline(sp.splits * a.batch * cache.kv_heads * plan.row_chunks);
    sp.timeline = timeline.device_words();
    detail::launch_tensor_core_split(sp, a.batch, D, kcode, vcode, stream);
    timeline.append_to_file(stream);
    if (a.window_lengths && !fuse_window) run_merge(call, D, vd, a, cache, stream);
  } else {
    dispatch_dim(
        D, [&](auto d) { detail::launch_generic_split<decltype(d)::value>(sp, a.batch, stream); });
    run_merge(call, D, vd, a, cache, stream);
  }
}

void attention_fp16(const GpuFp16Cache& cache, const AttentionArgs& a, AttentionWorkspace& ws,
                    void* stream_ptr) {
  const int D = cache.head_dim;
  check_common(a, cache.kv_heads, D);
  if (a.window_lengths) {
    throw std::invalid_argument("attention_fp16: the fp16 cache has no separate window");
  }
  if (!cache.keys || !cache.values || a.batch > cache.batch || a.max_length > cache.capacity) {
    throw std::invalid_argument("attention_fp16: null cache or batch/max_length beyond the cache");
  }
  if (a.path == AttentionPath::Auto && a.n_queries >= kPrefillMinQueries &&
      prefill_flash_routes_enabled() &&
      prefill_ctas(a.batch, cache.kv_heads, a.q_heads, a.n_queries) >= sm_count_cached()) {
    attention_prefill_fp16(cache, a, stream_ptr);
    return;
  }
  cudaStream_t stream = as_stream(stream_ptr);
  const CallPlan call =
      plan_call(a, cache.kv_heads, D, detail::tensor_core_ctas_per_sm(D, 0, 0), false, false, ws);
  SplitParams sp = split_params(call, a, cache.capacity);
  sp.k_data = cache.keys;
  sp.v_data = cache.values;  // no rotation either way: rot_* and out_* stay null
  sp.counters =
      ws.zeroed_counters(static_cast<std::size_t>(a.batch) * cache.kv_heads * call.plan.row_chunks);
  detail::launch_tensor_core_split(sp, a.batch, D, 0, 0, stream);
}

}  // namespace tq::cuda
