// MXFP4 expert projections on the tensor cores (moe_mxfp4.cu); the router, bf16 experts and the
// weighted combine are in moe.cu.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "backend/backend.h"

namespace gptoss::cuda {

// Device scratch launch_moe_mxfp4 needs for `slots` token-slots.
size_t moe_mxfp4_scratch_bytes(int64_t slots, int64_t hidden, int64_t inter, int experts);

// h[slot, gate_up.rows / 2] = SwiGLU(gate_up_e(x[slot / k])), y[slot, hidden] = down_e(h[slot]) for each
// token-slot (token slot / k, expert idx[slot]); every pointer is device memory, scratch at least
// moe_mxfp4_scratch_bytes(slots, hidden, gate_up.rows / 2, gate_up.experts) bytes (16-byte aligned).
void launch_moe_mxfp4(const float* x, int64_t hidden, const int32_t* idx, int k, const ExpertWeights& gate_up,
                      const ExpertWeights& down, float swiglu_limit, float* h, float* y, int64_t slots, void* scratch,
                      cudaStream_t s);

// The same for few token-slots (decode at small batches): CUDA-core kernels with integer dot products
// (moe_mxfp4_small.cu), no scratch.
void launch_moe_mxfp4_small(const float* x, int k, const int32_t* idx, const ExpertWeights& gate_up,
                            const ExpertWeights& down, float swiglu_limit, float* h, float* y, int64_t slots,
                            cudaStream_t s);

}  // namespace gptoss::cuda
