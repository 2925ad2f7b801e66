// CPU kernels of the gpt-oss forward pass: a plain scalar reference `<op>_ref` for every op, and an
// optimized version `<op>` (AVX2/FMA, split over ThreadPool::global(); the MXFP4 MoE's few-token dots
// also in AVX-512, chosen at run time: isa.h) with the same signature and contract. Tests compare the
// two (tests/backend/); the model calls the optimized ones.
//
// Conventions: activations are f32, row-major; bf16 is stored as uint16_t (upper half of an f32);
// n is the number of tokens (rows of activations). Outputs never alias inputs unless stated.
// The optimized kernels allocate nothing per call except thread-local scratch that is grown once.
// They call ThreadPool::global().parallel_for, so they must not be called from inside a
// parallel_for body (the pool runs one job at a time).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace gptoss::cpu {

// y[n, d] = x / sqrt(mean(x^2) + eps) * w.  x and y may be the same array.
void rms_norm(const float* x, const uint16_t* w_bf16, float* y, int64_t n, int64_t d, float eps);
void rms_norm_ref(const float* x, const uint16_t* w_bf16, float* y, int64_t n, int64_t d, float eps);

// y[n, out] = x[n, in] · W^T + bias.  W is [out, in] bf16 row-major (HF Linear layout); bias is bf16
// [out] or nullptr. Also the unembedding (lm_head: out = vocab, no bias).
void bf16w_matmul(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                  int64_t out);
void bf16w_matmul_ref(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                      int64_t out);

// In-place RoPE on x[n, heads, head_dim], half-split (rotate_half): for i < head_dim/2,
// angle = float(positions[t]) * inv_freq[i] (an f32 product, as torch computes it),
// c = f32(cos(double(angle))) * attn_factor, s = f32(sin(double(angle))) * attn_factor;
// (x1, x2) = (x[i], x[i + half]) -> (x1*c - x2*s, x2*c + x1*s).  head_dim must be even.
void rope_yarn(float* x, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
               float attn_factor);
void rope_yarn_ref(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                   const float* inv_freq, float attn_factor);

// Paged KV cache. The pool is one f32 array of blocks; a block holds `block_size` positions of K and V
// for the `layers_per_group` (Lg) layers of one layer group. K of (block b, group-layer g, slot s,
// kv head h) starts at pool + ((((b*Lg + g)*2 + 0)*block_size + s)*kv_heads + h)*head_dim; V uses 1
// instead of 0. Position p lives in logical block p / block_size (physical block_table[p / block_size]),
// slot p % block_size. A table entry may be -1 only for blocks the attention window never touches.
struct PagedKv {
  void* pool;  // elements of `dtype`
  int block_size;
  int layers_per_group;
  int kv_heads;
  int head_dim;
  KvDtype dtype = KvDtype::f32;
  // Element offset of the K (kind 0) or V (kind 1) row of kv head h at (physical block, slot) of layer g.
  int64_t offset(int64_t block, int g, int kind, int64_t slot, int h) const {
    return ((((block * layers_per_group + g) * 2 + kind) * block_size + slot) * kv_heads + h) * int64_t(head_dim);
  }
};

// Stores the K and V rows (k, v: [n, kv_heads, head_dim]) of n tokens of ONE sequence at `positions`
// through its block table.
void kv_store(const PagedKv& kv, int group_layer, const float* k, const float* v, int64_t n,
              const int32_t* positions, const int32_t* block_table);
void kv_store_ref(const PagedKv& kv, int group_layer, const float* k, const float* v, int64_t n,
                  const int32_t* positions, const int32_t* block_table);

// One sequence of a ragged batch: its tokens are rows [token_offset, token_offset + n_tokens) of q and
// out, at positions start_pos, start_pos + 1, ...
struct AttnSeq {
  int64_t token_offset;
  int64_t n_tokens;
  int32_t start_pos;
  const int32_t* block_table;
};

// out[t, h, :] = sum over keys p' of the sequence of softmax_p'(scale * q[t,h]·K[p']) V[p'], where the
// keys are causal (p' <= p, p = position of token t) and, if window > 0, within the window
// (p - window < p'; the current token counts). The per-head sink logit sinks[h] joins the softmax as an
// extra column that contributes no value. q and out are [n_tokens, heads, head_dim]; query head h uses
// kv head h / (heads / kv_heads). The K/V of the chunk itself must already be stored (kv_store first).
void attention_sinks_paged(const float* q, int64_t n_tokens, int heads, const PagedKv& kv, int group_layer,
                           const AttnSeq* seqs, int n_seqs, const float* sinks, int window, float scale,
                           float* out);
void attention_sinks_paged_ref(const float* q, int64_t n_tokens, int heads, const PagedKv& kv, int group_layer,
                               const AttnSeq* seqs, int n_seqs, const float* sinks, int window, float scale,
                               float* out);

// Router: per row of logits[n, E], the top k (ties -> lower index first, in descending order of value)
// into idx[n, k], then w[n, k] = softmax over those k values.
void router_topk_softmax(const float* logits, int64_t n, int E, int k, int32_t* idx, float* w);
void router_topk_softmax_ref(const float* logits, int64_t n, int E, int k, int32_t* idx, float* w);

// MXFP4 experts as the hub stores them: blocks [E, rows, cols/32, 16] u8 (byte j of a block holds
// element 2j in the low nibble and 2j+1 in the high nibble; fp4 e2m1), scales [E, rows, cols/32] u8
// e8m0 (2^(s-127); 255 = NaN), bias [E, rows] bf16. cols must be a multiple of 32.
// For gate_up, row r is output r: even r = gate, odd r = up.
struct Mxfp4Experts {
  const uint8_t* blocks;
  const uint8_t* scales;
  const uint16_t* bias;
  int64_t rows, cols;
  int experts;
};

// bf16 experts in the hub's bf16 layout: w [E, cols (in), rows (out)] (input-major!), bias [E, rows].
struct Bf16Experts {
  const uint16_t* w;
  const uint16_t* bias;
  int64_t rows, cols;
  int experts;
};

// Full MoE block: for each token t and each of its k experts e = idx[t*k+j] with weight w[t*k+j]:
// gu = GU[e] x_t + b (rows = 2I); gate = min(gu[even], limit); up = clamp(gu[odd], -limit, limit);
// h = (up + 1) * gate * sigmoid(1.702 * gate); out_t += w * (D[e] h + b_down[e]).  out [n, hidden] is
// overwritten. gate_up: rows = 2I, cols = hidden; down: rows = hidden, cols = I. With gate_up_out (for the
// trainer's backward), also gate_up_out[a, 0 .. 2I) = gu of token-slot a = t*k+j, exactly as the SwiGLU
// took it (f32, bias added).
void f32_mxfp4w_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                    const Mxfp4Experts& gate_up, const Mxfp4Experts& down, float swiglu_limit, float* out,
                    float* gate_up_out = nullptr);
void f32_mxfp4w_moe_ref(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                        const Mxfp4Experts& gate_up, const Mxfp4Experts& down, float swiglu_limit, float* out);
void f32_bf16w_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                   const Bf16Experts& gate_up, const Bf16Experts& down, float swiglu_limit, float* out,
                   float* gate_up_out = nullptr);
void f32_bf16w_moe_ref(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                       const Bf16Experts& gate_up, const Bf16Experts& down, float swiglu_limit, float* out);

// Dequantizes `rows` consecutive MXFP4 rows of `cols` elements (blocks/scales point at the first row)
// into out[rows, cols] f32. Exact (every fp4 value times a power of two is representable). The
// optimized version uses the same decoding as the MoE kernel, so the FP4 test exercises it.
void mxfp4_dequantize(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t cols, float* out);
void mxfp4_dequantize_ref(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t cols, float* out);

}  // namespace gptoss::cpu
