// Temporary: the optimized entry points forward to the scalar references until each optimized kernel
// lands in its own file.
#include "backend/cpu/kernels.h"

namespace gptoss::cpu {

void attention_sinks_paged(const float* q, int64_t n_tokens, int heads, const PagedKv& kv, int g,
                           const AttnSeq* seqs, int n_seqs, const float* sinks, int window, float scale,
                           float* out) {
  attention_sinks_paged_ref(q, n_tokens, heads, kv, g, seqs, n_seqs, sinks, window, scale, out);
}
void f32_bf16w_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                   const Bf16Experts& gu, const Bf16Experts& down, float limit, float* out) {
  f32_bf16w_moe_ref(x, n, hidden, idx, w, k, gu, down, limit, out);
}

}  // namespace gptoss::cpu
