// The FMA peak probe (see probes.h). Compiled for the x86-64-v3 baseline; the zmm version carries its own
// target attribute and runs only when cpu_isa() is AVX-512.
#include "backend/cpu/probes.h"

#include <immintrin.h>

#include "backend/cpu/isa.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace gptoss::cpu {
namespace {

// Ten chains in named registers (an array could live in memory, and equal starting values would let the
// compiler merge the chains). V is the vector type, set/fma/add/first its operations.
#define GPTOSS_FMA_CHAINS(V, set, fma, add, first)                                                          \
  const V m = set(0.999999f), c = set(1e-7f);                                                               \
  V a0 = set(seed), a1 = set(seed + 1), a2 = set(seed + 2), a3 = set(seed + 3), a4 = set(seed + 4),          \
    a5 = set(seed + 5), a6 = set(seed + 6), a7 = set(seed + 7), a8 = set(seed + 8), a9 = set(seed + 9);      \
  for (int64_t i = 0; i < iters; ++i) {                                                                     \
    a0 = fma(a0, m, c), a1 = fma(a1, m, c), a2 = fma(a2, m, c), a3 = fma(a3, m, c), a4 = fma(a4, m, c);    \
    a5 = fma(a5, m, c), a6 = fma(a6, m, c), a7 = fma(a7, m, c), a8 = fma(a8, m, c), a9 = fma(a9, m, c);    \
  }                                                                                                         \
  return first(add(add(add(add(a0, a1), add(a2, a3)), add(add(a4, a5), add(a6, a7))), add(a8, a9)));

float chains_ymm(int64_t iters, float seed) {
  GPTOSS_FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32)
}

__attribute__((target("avx512f"))) float chains_zmm(int64_t iters, float seed) {
  GPTOSS_FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32)
}

#undef GPTOSS_FMA_CHAINS

}  // namespace

float fma_chains(int64_t iters, float seed) {
  return cpu_isa() >= Isa::avx512 ? chains_zmm(iters, seed) : chains_ymm(iters, seed);
}

double fma_chain_step_flops() { return 10.0 * (cpu_isa() >= Isa::avx512 ? 16 : 8) * 2; }

}  // namespace gptoss::cpu
