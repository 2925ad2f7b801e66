// The AVX-512 version of the bf16 matmul for decode batches (2..kMaxTokens tokens), used by
// bf16w_matmul when cpu_isa() is AVX-512 (see isa.h). Internal to the CPU kernels.
//
// Dot-product tiles of R rows x T tokens: per 16 values of k, R rows of W are decoded (bf16 -> f32: a
// zero-extension and a shift), and R * T FMAs take x straight from memory; W comes from DRAM for the
// first token group of a row block and from L1 for the others, x stays in L2. 24 zmm accumulators
// (6 rows x 4 tokens) keep the FMA pipes fed where the AVX2 tiles run out of registers; the activations
// are used in their natural order. Zen 4, lm_head 2880 -> 201088 at 16 tokens: 6 x 4 tiles 103-105 ms,
// 4 x 6 106, 3 x 8 122, the AVX2 packed GEMM 163 (48 % of the FMA peak -> 75 %); at 4 tokens 46 vs 93 ms.
#pragma once

#include <cstdint>

namespace gptoss::cpu::avx512 {

inline constexpr int kBf16MaxRows = 6;
inline constexpr int kBf16MaxTokens = 4;

// out[i * T + t] = sum over k < k_main (a multiple of 16) of w[(r0 + i) * ld + k] * x[t][k], for
// i < rows (1..6) and t < T (1..4). Needs AVX-512 (F, BW): call only when cpu_isa() >= Isa::avx512.
void bf16_dot_rows(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0, int rows, const float* const* x,
                   int T, float* out);

}  // namespace gptoss::cpu::avx512
