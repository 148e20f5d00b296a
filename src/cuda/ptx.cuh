// Every inline-PTX instruction the CUDA kernels use, one wrapper each: the fast exp2, the fp16
// tensor-core mma and the transposing ldmatrix, cp.async copies into shared memory, L2 prefetch,
// and the %globaltimer / %smid reads of the diagnostics timeline. (PRMT needs no asm: __byte_perm.)
// Not a public header.
#pragma once

#include <cstdint>

namespace tq::cuda::ptx {

// 2^x by the SFU (ex2.approx, denormals flushed): the softmax weights of the tensor-core kernel.
__device__ __forceinline__ float ex2_approx_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// c += A·B on one m16n8k16 tile: A row-major fp16 (4 registers of half2), B column-major fp16
// (2 registers), c fp32 (4 per thread, the mma accumulator fragment).
__device__ __forceinline__ void mma_m16n8k16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                             uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two transposed 8×8 fp16 matrices from shared memory (lanes 0–15 give the row addresses).
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t saddr, uint32_t& r0, uint32_t& r1) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(saddr));
}

// Asynchronous global → shared copies: 16 bytes bypass L1 (.cg), 8 and 4 bytes go through it
// (.ca, the only form for sizes below 16).
__device__ __forceinline__ void cp_async16(uint32_t saddr, const void* g) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(saddr), "l"(g));
}
__device__ __forceinline__ void cp_async8(uint32_t saddr, const void* g) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(saddr), "l"(g));
}
__device__ __forceinline__ void cp_async4(uint32_t saddr, const void* g) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(saddr), "l"(g));
}
// The copy of A = 16, 8 or 4 bytes.
template <int A>
__device__ __forceinline__ void cp_async_n(uint32_t saddr, const void* g) {
  if constexpr (A == 16) {
    cp_async16(saddr, g);
  } else if constexpr (A == 8) {
    cp_async8(saddr, g);
  } else {
    cp_async4(saddr, g);
  }
}
// Closes the thread's current group of copies.
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
// Waits until at most N of the thread's groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Asks L2 to fetch the line holding g (no register, no wait): streaming kernels run it a few
// steps ahead of their loads, which then hit L2.
__device__ __forceinline__ void prefetch_l2(const void* g) {
  asm volatile("prefetch.global.L2 [%0];\n" ::"l"(g));
}

// Nanoseconds of the GPU's global timer, and the SM this thread runs on (diagnostics).
__device__ __forceinline__ unsigned long long global_timer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned sm_id() {
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  return sm;
}

}  // namespace tq::cuda::ptx
