// Launchers of the CUDA ops (one .cu per group of ops). Pointers are device memory unless a
// parameter says "host". Semantics and layouts: backend/cpu/kernels.h (the reference).
// These first kernels favour clarity: a warp per output row / (token, head); they are checked op by
// op against the CPU backend (tests/backend_cuda) and are the baseline for the fast kernels.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "backend/backend.h"

namespace gptoss::cuda {

// Device copy of one sequence descriptor (block table pointer in device memory).
struct DevAttnSeq {
  int64_t token_offset;
  int64_t n_tokens;
  int32_t start_pos;
  const int32_t* block_table;
};

// Streaming multiprocessors of the current device (asked once).
int num_sms();

void launch_embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out, cudaStream_t s);
void launch_rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t s);
void launch_add(float* x, const float* y, int64_t count, cudaStream_t s);
void launch_gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst, cudaStream_t s);
// Several matrices with the same input (Backend::Linear: w, bias, y, out), 4 a launch.
void launch_matmul_bf16_multi(const float* x, int64_t n, int64_t in, const Backend::Linear* linears, int count,
                              cudaStream_t s);
// Prefill-sized matmuls on the tensor cores (matmul_bf16_tc.cu): n >= kMatmulTcMinTokens and in % 32 == 0.
// scratch: matmul_bf16_tc_scratch_bytes(n, in) bytes (the bf16 limbs of x), 16-byte aligned. Below 64 the
// CUDA-core kernels win (H200, 20b shape, tensor cores from 16 / 4 tokens: decode batch 16 660 vs 882 tok/s,
// pp32 1280 vs 1630; from 64: batch 64 2076 vs 1826).
constexpr int64_t kMatmulTcMinTokens = 64;
bool matmul_bf16_tc_applies(int64_t n, int64_t in);
size_t matmul_bf16_tc_scratch_bytes(int64_t n, int64_t in);
void launch_matmul_bf16_tc(const float* x, int64_t n, int64_t in, const Backend::Linear* linears, int count,
                           void* scratch, cudaStream_t s);
// Decode batches of 2 .. kSkinnyMaxTokens tokens with in % 64 == 0 and 1024+ output rows in all
// (matmul_bf16_skinny.cu; the backend asks it before the prefill kernel): tensor cores, every weight read
// once for all tokens. scratch: matmul_bf16_tc_scratch_bytes(n, in) bytes.
// At 64 tokens it beats the 64x64 tiles of matmul_bf16_tc.cu (H200, decode batch 64: 2330-2364 vs 2057 tok/s).
constexpr int64_t kSkinnyMaxTokens = 64;
bool matmul_bf16_skinny_applies(int64_t n, int64_t in, int64_t rows);
void launch_matmul_bf16_skinny(const float* x, int64_t n, int64_t in, const Backend::Linear* linears, int count,
                               void* scratch, cudaStream_t s);
// limbs[l * count + i] = bf16 limb l of x[i]: x = limb 0 + limb 1 + limb 2 to f32 precision.
void launch_limbs_bf16(const float* x, int64_t count, uint16_t* limbs, cudaStream_t s);
// x[n, d] += y, then out = rms_norm(x) with w.
void launch_add_rms_norm(float* x, const float* y, const uint16_t* w, float* out, int64_t n, int64_t d, float eps,
                         cudaStream_t s);
// rope on q and k in one launch (k may be null: q alone).
void launch_rope_qk(float* q, int q_heads, float* k, int kv_heads, int64_t n, int head_dim, const int32_t* positions,
                    const float* inv_freq, float attn_factor, cudaStream_t s);
void launch_kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                     const int32_t* positions, const int32_t* block_table, cudaStream_t s);
// kv_store for all tokens of a ragged batch (device positions [n], token -> sequence, descriptors).
void launch_kv_store_seqs(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                          const int32_t* positions, const int32_t* token_seq, const DevAttnSeq* seqs, cudaStream_t s);
// launch_rope_qk, then the rotated k and v stored as launch_kv_store_seqs does, in one launch.
void launch_rope_kv_store(float* q, int q_heads, float* k, const float* v, int kv_heads, int64_t n, int head_dim,
                          const int32_t* positions, const float* inv_freq, float attn_factor, const KvView& kv,
                          int group_layer, const int32_t* token_seq, const DevAttnSeq* seqs, cudaStream_t s);
// Device scratch launch_attention needs for n tokens (0: none).
size_t attention_scratch_bytes(int64_t n, int heads, int kv_heads, int head_dim);
void launch_attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer, const DevAttnSeq* seqs,
                      const int32_t* token_seq, const float* sinks, int window, float scale, float* out, float* scratch,
                      cudaStream_t s);
void launch_router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w, cudaStream_t s);
// Backend::add_rms_norm_router in one launch, for decode batches of 17 to 64 tokens (d % 8 == 0, 16-byte
// aligned router rows, at most 128 experts): counters [n] int32, zero (and zero again afterwards).
bool add_rms_norm_router_applies(int64_t n, int64_t d, int experts, const void* router_w);
void launch_add_rms_norm_router(float* x, const float* y, const uint16_t* norm_w, float* out, int64_t n, int64_t d,
                                float eps, const uint16_t* router_w, const uint16_t* router_b, float* logits,
                                int experts, int k, int32_t* idx, float* w, int32_t* counters, cudaStream_t s);
// What launch_moe ends with instead of writing out: x += the MoE's output, then h = rms_norm(x) with norm
// (only the add when norm is null).
struct MoeResidual {
  float* x;
  const uint16_t* norm;
  float* h;
  float eps;
};
// Bytes of tc_scratch launch_moe needs for n tokens (0 when it takes the CUDA-core kernels).
size_t moe_tc_scratch_bytes(int64_t n, int k, int64_t hidden, const ExpertWeights& gate_up);
// h_scratch: [n*k, gate_up.rows/2] f32, y_scratch: [n*k, hidden] f32, tc_scratch: moe_tc_scratch_bytes.
void launch_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* h_scratch,
                float* y_scratch, void* tc_scratch, float* out, const MoeResidual* residual, cudaStream_t s);

}  // namespace gptoss::cuda
