// Backward of the model's ops, for LoRA fine-tuning (`gptoss train`): the CPU backend's
// TrainOps (backend/train_ops.h) and the reference its CUDA kernels are tested against. The forward is the model's
// own (model/gpt_oss.cpp, through the backend ops); these functions take what it computed (captured per
// layer, see model/gpt_oss.h TrainCapture) and the gradient of the loss with respect to an op's output, and
// return the gradient with respect to its inputs. All f32, row-major; nothing here allocates backend memory.
//
// Conventions: "dx +=" functions accumulate into dx (the residual stream's gradient gathers several
// terms); the others overwrite their outputs. Shapes are [tokens, width] unless said otherwise.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace gptoss::cpu {

// --- dense (dense_grad.cpp) -------------------------------------------------------------------------
// dx[n, in] += dy[n, out] W[out, in] (W bf16, as the model's linears: y = x W^T + b).
void matmul_bf16_backward_x(const float* dy, int64_t n, int64_t out, const uint16_t* w, int64_t in, float* dx);
// y = x / sqrt(mean(x^2) + eps) * w (w bf16): dx[n, d] += the gradient through it of dy.
void rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                       float* dx);
// Mean cross-entropy of logits[n, vocab] against target[i] over the rows with target[i] >= 0 (others
// ignored); dlogits[n, vocab] = grad_scale x its gradient (0 on ignored rows; null: not formed). Returns the
// loss (0 when no row counts).
double cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, float* dlogits,
                     double grad_scale = 1.0);

// --- attention (attention_grad.cpp) -----------------------------------------------------------------
// One sequence of T tokens at positions 0 .. T-1, causal, window > 0: keys p - window < j <= p (as the
// model's sliding layers), 0: all j <= p. q [T, heads, hd] and k [T, kv_heads, hd] after RoPE, v
// [T, kv_heads, hd]; the query heads h*G .. h*G+G-1 share KV head h (G = heads / kv_heads). The per-head
// sink logit joins each softmax's denominator and carries no value (as the backend's attention op).
void attention_forward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads, int hd,
                       const float* sinks, int window, float scale, float* out);
// Given dout [T, heads, hd]: dq [T, heads, hd], dk and dv [T, kv_heads, hd] (overwritten). The sinks
// are not trained (no gradient for them).
void attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads, int hd,
                        const float* sinks, int window, float scale, const float* dout, float* dq, float* dk,
                        float* dv);
// The model's rotary embedding (backend op `rope`, half-split: x1 = x[i], x2 = x[i + hd/2] rotate by
// angle pos * inv_freq[i], cos and sin times attn_factor) is linear in x: this applies its transpose to
// the gradient dx [n, heads, hd] in place.
void rope_backward(float* dx, int64_t n, int heads, int hd, const int32_t* positions, const float* inv_freq,
                   float attn_factor);

// --- MoE (moe_grad.cpp) -----------------------------------------------------------------------------
// The MoE block out = sum_j w[t, j] * expert_{idx[t, j]}(h_t) with the clamped SwiGLU (backend op `moe`),
// where w = softmax over the k selected router logits (backend op `router_topk`). Given dout [n, hidden]:
// dh [n, hidden] (overwritten) through the experts, and d_logits [n, experts] (overwritten): the gradient
// of the router logits through the routing weights (0 for unselected experts; the selection itself is
// piecewise constant). The caller takes d_logits through the router linear. Experts MXFP4 or bf16.
// gate_up_pre [n * k, 2 * intermediate]: each token-slot's gate_up output with its bias, as the forward
// computed it (Backend::moe_keep_gate_up); null: recomputed from h.
void moe_backward(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                  const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, const float* dout,
                  float* dh, float* d_logits, const float* gate_up_pre = nullptr);

}  // namespace gptoss::cpu
