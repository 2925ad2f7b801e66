// Temporary: the optimized entry points forward to the scalar references until each optimized kernel
// lands in its own file.
#include "backend/cpu/kernels.h"

namespace gptoss::cpu {

void rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps) {
  rms_norm_ref(x, w, y, n, d, eps);
}
void rope_yarn(float* x, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
               float attn_factor) {
  rope_yarn_ref(x, n, heads, head_dim, positions, inv_freq, attn_factor);
}
void kv_store(const PagedKv& kv, int g, const float* k, const float* v, int64_t n, const int32_t* positions,
              const int32_t* table) {
  kv_store_ref(kv, g, k, v, n, positions, table);
}
void attention_sinks_paged(const float* q, int64_t n_tokens, int heads, const PagedKv& kv, int g,
                           const AttnSeq* seqs, int n_seqs, const float* sinks, int window, float scale,
                           float* out) {
  attention_sinks_paged_ref(q, n_tokens, heads, kv, g, seqs, n_seqs, sinks, window, scale, out);
}
void router_topk_softmax(const float* logits, int64_t n, int E, int k, int32_t* idx, float* w) {
  router_topk_softmax_ref(logits, n, E, k, idx, w);
}
void f32_bf16w_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                   const Bf16Experts& gu, const Bf16Experts& down, float limit, float* out) {
  f32_bf16w_moe_ref(x, n, hidden, idx, w, k, gu, down, limit, out);
}

}  // namespace gptoss::cpu
