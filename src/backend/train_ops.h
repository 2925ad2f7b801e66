// The LoRA trainer's ops (`gptoss train`, train/backward.cpp): the backward of the model's ops, on the
// backend that ran the forward, so activations and gradients stay in its memory. Backend::train_ops()
// hands them out (null: the backend cannot train).
//
// Semantics: backend/cpu/grad_ops.h, the CPU reference (this interface's CPU implementation calls it).
// Pointers are backend memory unless a parameter says "host"; f32 row-major, n = tokens. "+=" ops
// accumulate into their output (the residual stream's gradient gathers several terms); the others
// overwrite theirs. Like the forward's ops they may run asynchronously (cross_entropy waits: it returns
// the loss).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "backend/backend.h"

namespace gptoss {

class OpProfile;

class TrainOps {
 public:
  virtual ~TrainOps() = default;

  // --- buffers ---------------------------------------------------------------------------------------
  virtual void zero(float* x, int64_t count) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // dst[rows[i], :] = src[i, :] for i < n_rows; rows in host memory (gather_rows' inverse).
  virtual void scatter_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) = 0;

  // --- dense -----------------------------------------------------------------------------------------
  // dx[n, in] += dy[n, out] W[out, in] (W bf16: the input gradient of matmul_bf16).
  virtual void matmul_bf16_backward_x(const float* dy, int64_t n, int64_t out, const uint16_t* w, int64_t in,
                                      float* dx) = 0;
  // dx[n, d] += the gradient of y = rms_norm(x) with w, given dy.
  virtual void rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                                 float* dx) = 0;
  // The mean cross-entropy of logits[n, vocab] against target (host, [n]) over the rows with target >= 0,
  // returned (0 when no row counts). dlogits (null: the loss alone) = grad_scale x its gradient.
  virtual double cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target,
                               double grad_scale, float* dlogits) = 0;

  // --- attention -------------------------------------------------------------------------------------
  // One sequence of T tokens at positions 0 .. T-1 (grad_ops.h attention_backward): dq, dk, dv overwritten.
  virtual void attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads,
                                  int head_dim, const float* sinks, int window, float scale, const float* dout,
                                  float* dq, float* dk, float* dv) = 0;
  // The transpose of rope (positions host [n]), in place on dx [n, heads, head_dim].
  virtual void rope_backward(float* dx, int64_t n, int heads, int head_dim, const int32_t* positions,
                             const float* inv_freq, float attn_factor) = 0;

  // --- MoE -------------------------------------------------------------------------------------------
  // grad_ops.h moe_backward: dh [n, hidden] and d_logits [n, experts] overwritten; gate_up_pre [n*k, gate_up.rows]
  // as Backend::moe_keep_gate_up kept it, or null (recomputed).
  virtual void moe_backward(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                            const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit,
                            const float* dout, float* dh, float* d_logits, const float* gate_up_pre) = 0;

  // --- LoRA ------------------------------------------------------------------------------------------
  // The term y[n, out] += s B (A x) of an adapted linear with input x [n, in], given dy [n, out]:
  // ga [r, in] += grad_scale dA, gb [out, r] += grad_scale dB, dx [n, in] += its input gradient (unscaled).
  // a [r, in], b [out, r] f32 (PEFT's lora_A / lora_B).
  virtual void lora_backward(const float* x, const float* dy, int64_t n, int64_t in, int64_t out, const float* a,
                             const float* b, int r, double s, double grad_scale, float* ga, float* gb, float* dx) = 0;
};

// The CPU backend's (backend/cpu/train_ops.cpp), timing its ops in the backend's profile.
std::unique_ptr<TrainOps> make_cpu_train_ops(OpProfile& profile);

}  // namespace gptoss
