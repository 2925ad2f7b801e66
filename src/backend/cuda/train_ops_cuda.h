// The CUDA backend's TrainOps (backend/train_ops.h), on the backend's stream, and the training forward's
// MoE that keeps the experts' gate_up values (Backend::moe_keep_gate_up), which CudaBackend hands to it.
#pragma once

#include <memory>

#include <cuda_runtime.h>

#include "backend/op_profile.h"
#include "backend/train_ops.h"

namespace gptoss::cuda {

class CudaTrainOps : public TrainOps {
 public:
  virtual void moe_keep_gate_up(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out,
                                float* gate_up_out) = 0;
};

// backend: the CUDA backend whose memory the ops use (their scratch is allocated through it); profile: its
// op timings (Backend::set_profiling).
std::unique_ptr<CudaTrainOps> make_train_ops(Backend& backend, cudaStream_t stream, OpProfile& profile);

}  // namespace gptoss::cuda
