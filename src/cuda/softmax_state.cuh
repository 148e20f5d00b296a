// The partial softmax state (m, l, o) that every attention kernel keeps, merges and normalises:
// the generic and tensor-core split kernels, the fused merge and the merge kernel, and the exact
// window folded into either. Not a public header.
//
// Scores are in the log2 domain (the prepared query carries scale · log2 e), so a token of score s
// weighs 2^s. Over a set of tokens the state holds
//   m = the largest score (kNegBig: no token yet),
//   l = Σ 2^(s − m),
//   o = Σ 2^(s − m) · v    (the N coordinates of the output that this thread owns),
// and the attention output is o / l. Two states over disjoint sets merge into the state of their
// union by moving both onto the larger maximum; n states whose common maximum is known first
// merge with one exp2 each (absorb). The exp2 flavour is a parameter: the tensor-core kernel uses
// the SFU's ex2.approx.ftz, the fp32 generic and merge kernels exp2f.
#pragma once

#include "ptx.cuh"

namespace tq::cuda::detail {

// "No token yet": finite, so that 2^(m_old − m_new) never turns into NaN.
constexpr float kNegBig = -1e30f;

struct FastExp2 {
  __device__ __forceinline__ static float eval(float x) { return ptx::ex2_approx_ftz(x); }
};
struct AccurateExp2 {
  __device__ __forceinline__ static float eval(float x) { return exp2f(x); }
};

// o / l, and 0 for a state with no token (l = 0).
__device__ __forceinline__ float softmax_normalize(float o, float l) {
  return l > 0.0f ? o / l : 0.0f;
}

template <class Exp2, int N = 1>
struct SoftmaxState {
  float m = kNegBig;
  float l = 0.0f;
  float o[N] = {};

  // 2^(m_from − m_to): the factor that moves a state (or a token's weight) of maximum m_from onto
  // the maximum m_to ≥ m_from.
  __device__ __forceinline__ static float weight(float m_from, float m_to) {
    return Exp2::eval(m_from - m_to);
  }

  // Moves this state onto the maximum m_new ≥ m (l and o scaled); returns the factor, for
  // accumulators that a caller keeps beside o.
  __device__ __forceinline__ float rescale(float m_new) {
    const float f = weight(m, m_new);
    m = m_new;
    l *= f;
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] *= f;
    return f;
  }

  // Adds the one-coordinate state (m_k, l_k, o_k) with m_k ≤ m: m is already the common maximum
  // of every state merged here.
  __device__ __forceinline__ void absorb(float m_k, float l_k, float o_k) {
    static_assert(N == 1, "scalar absorb of a one-coordinate state");
    const float f = weight(m_k, m);
    l += f * l_k;
    o[0] += f * o_k;
  }

  // Adds one token of score s ≤ m and value v.
  __device__ __forceinline__ void add_token(float s, float v) {
    absorb(s, 1.0f, v);
  }

  // This state ← the state of the union of both token sets.
  __device__ __forceinline__ void merge(const SoftmaxState& b) {
    const float m_new = fmaxf(m, b.m);
    const float fa = weight(m, m_new), fb = weight(b.m, m_new);
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] = o[i] * fa + b.o[i] * fb;
    l = l * fa + b.l * fb;
    m = m_new;
  }

  __device__ __forceinline__ float normalized(int i = 0) const {
    return softmax_normalize(o[i], l);
  }
};

}  // namespace tq::cuda::detail
