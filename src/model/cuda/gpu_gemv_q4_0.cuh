// The tensor-core Q4_0 gemv (gpu_gemv_q4_0.cu) behind gpu::gemv (gpu_gemv.cu), which validates
// the arguments and calls it for Q4_0 matrices. Private to tq_model; includable from host C++.
#pragma once

#include "gpu_weights.cuh"

#include <cuda_runtime.h>

namespace tq::gpu::detail {

// Opts every instantiation in to the shared memory it may use on the current device and returns
// that many bytes (pass it to gemv_q4_0). Once per device, outside any graph capture.
int prepare_gemv_q4_0();

// gpu::gemv for a Q4_0 matrix (arguments already checked), on a device of `sms` multiprocessors
// whose kernels were prepared with `smem_bytes`.
void gemv_q4_0(const DeviceMatrix& w, const float* x, int rows, int ldx, const float* bias,
               float* y, int ldy, bool accumulate, cudaStream_t s, int sms, int smem_bytes);

}  // namespace tq::gpu::detail
