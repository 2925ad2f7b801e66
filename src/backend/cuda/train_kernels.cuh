// Launchers of the LoRA trainer's CUDA kernels (backend/train_ops.h; the CPU reference is
// backend/cpu/grad_ops.h). Pointers are device memory unless a parameter says "host". Every kernel is
// deterministic: no atomics on results, fixed summation orders, so a training run repeats bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace gptoss::cuda {

// --- train_gemm.cu: C = alpha A op(W) (+ C), f32 arithmetic ----------------------------------------------
// The matrix W [rows, cols] of a product, in one of the formats the model keeps.
enum class WFormat {
  kBf16,            // bf16 (uint16_t), row-major: W(r, c) at w[r * cols + c] (the model's linears)
  kBf16InputMajor,  // bf16 stored transposed (the hub's bf16 experts): W(r, c) at w[c * rows + r]
  kMxfp4,           // MXFP4 (the hub's experts): code of W(r, c) in byte (r * cols + c) / 2 of w (low nibble
                    // first), e2m1 values {0, .5, 1, 1.5, 2, 3, 4, 6} and their negatives (code bit 3 =
                    // sign); scales [rows, cols / 32] e8m0: W(r, c) = e2m1 * 2^(scales[r * cols/32 + c/32] - 127)
  kF32,             // f32: W(r, c) at w[r * ld_r + c * ld_c]
};
struct GemmW {
  WFormat format = WFormat::kBf16;
  const void* w = nullptr;
  const uint8_t* scales = nullptr;  // kMxfp4
  int64_t rows = 0, cols = 0;
  int64_t ld_r = 0, ld_c = 0;  // kF32 only
};
// A [m, K] f32: A(i, k) at a[i * ld_m + k * ld_k].
struct GemmA {
  const float* a = nullptr;
  int64_t ld_m = 0, ld_k = 1;
};
// Optional grouping of the product's rows (the MoE: one group per expert). groups = 1 with null offsets:
// all m rows in one group. With offsets, group g owns product rows [offsets[g], offsets[g + 1]) and uses
// the g-th matrix of a stack of `groups` W matrices laid one after another (kBf16 / kBf16InputMajor:
// w + g * rows * cols elements; kMxfp4: w + g * rows * cols / 2 bytes, scales + g * rows * cols / 32; kF32 is
// never grouped). a_rows / c_rows (device [m], null: identity) map product row i to the A row it reads
// and the C row it writes.
struct GemmGroups {
  int groups = 1;
  const int32_t* offsets = nullptr;  // device [groups + 1], offsets[0] = 0, offsets[groups] = m
  int64_t max_rows = 0;              // host: the largest group's row count (sizes the grid); unused without offsets
  const int32_t* a_rows = nullptr;
  const int32_t* c_rows = nullptr;
};
// For each product row i (of group g) and n < N:
//   C(c_row(i), n) = alpha * sum_k A(a_row(i), k) op(W_g)(k, n)  (+ C(c_row(i), n) when accumulate)
// op(W) = W when !transposed (K = w.rows, N = w.cols), W^T when transposed (K = w.cols, N = w.rows).
// C row-major, leading dimension ldc. No two product rows write the same C row. An ungrouped product
// whose output tiles cannot fill the GPU and whose K is long is split over K into scratch partials that a
// second kernel sums in a fixed order (train_gemm_scratch_bytes: the bytes it needs, 0 when it does not split).
size_t train_gemm_scratch_bytes(int64_t m, const GemmW& w, bool transposed, const GemmGroups& g);
void launch_train_gemm(int64_t m, const GemmA& a, const GemmW& w, bool transposed, const GemmGroups& g, float alpha,
                       bool accumulate, float* c, int64_t ldc, void* scratch, cudaStream_t s);

// --- attention_grad.cu ------------------------------------------------------------------------------
// The backward of attention with sinks for one sequence of T tokens at positions 0 .. T-1 (the math of
// backend/cpu/attention_grad.cpp): q [T, heads, hd] and k [T, kv_heads, hd] after RoPE, v [T, kv_heads, hd],
// dout [T, heads, hd]; dq [T, heads, hd], dk and dv [T, kv_heads, hd] overwritten. window > 0: keys
// t - window < j <= t, else all j <= t. head_dim <= 128 and even. scratch: attention_backward_scratch_bytes.
size_t attention_backward_scratch_bytes(int64_t T, int heads);
void launch_attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads,
                               int head_dim, const float* sinks, int window, float scale, const float* dout, float* dq,
                               float* dk, float* dv, void* scratch, cudaStream_t s);

// --- train_elementwise.cu ---------------------------------------------------------------------------
void launch_zero(float* x, int64_t count, cudaStream_t s);
void launch_scatter_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst, cudaStream_t s);
void launch_rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                              float* dx, cudaStream_t s);
// Per row t with target[t] >= 0: row_loss[t] = logsumexp(logits[t]) - logits[t, target[t]] and, when dlogits,
// dlogits[t] = g * (softmax(logits[t]) - onehot(target[t])); rows with target < 0: row_loss 0, dlogits 0.
void launch_cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, float g,
                          float* row_loss, float* dlogits, cudaStream_t s);
void launch_rope_backward(float* dx, int64_t n, int heads, int head_dim, const int32_t* positions,
                          const float* inv_freq, float attn_factor, cudaStream_t s);

// --- train_moe.cu: the MoE's per-slot steps around the grouped products (slot s = t * k + j, expert idx[s]) -----
// g[s, :] += bias[idx[s], :] (bias bf16 [experts, width]).
void launch_slot_bias(float* g, int64_t slots, int64_t width, const int32_t* idx, const uint16_t* bias, cudaStream_t s);
// act[s, p] = the clamped SwiGLU of gate g[s, 2p] and up g[s, 2p + 1] (p < inter).
void launch_swiglu_slots(const float* g, int64_t slots, int64_t inter, float limit, float* act, cudaStream_t s);
// out[t, :] = sum_j w[t, j] (y[t * k + j, :] + bias[idx[t * k + j], :]) in slot order.
void launch_moe_combine(const float* y, const uint16_t* bias, const int32_t* idx, const float* w, int64_t n, int k,
                        int64_t hidden, float* out, cudaStream_t s);
// Per slot, given z[s] = D^T dout_t [inter] and g[s] [2 inter] (the gate_up output with bias):
// dw[s] = z[s] . act(g[s]) + b_down[idx[s]] . dout_t, and dg[s] [2 inter] = the SwiGLU's backward of
// w[s] z[s] (backend/cpu/moe_grad.cpp's math).
void launch_moe_slot_backward(const float* g, const float* z, const float* dout, const int32_t* idx, const float* w,
                              const uint16_t* down_bias, int64_t n, int k, int64_t inter, int64_t hidden, float limit,
                              float* dg, float* dw, cudaStream_t s);
// dh[t] = sum_j dhs[t * k + j] in slot order; d_logits[t] = 0 but for the selected experts:
// w_j (dw_j - sum_i w_i dw_i).
void launch_moe_token_backward(const float* dhs, const int32_t* idx, const float* w, const float* dw, int64_t n, int k,
                               int experts, int64_t hidden, float* dh, float* d_logits, cudaStream_t s);

}  // namespace gptoss::cuda
