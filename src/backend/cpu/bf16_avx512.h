// The AVX-512 version of the bf16 matmul for decode batches (2..kMaxTokens tokens), used by
// bf16w_matmul when cpu_isa() is AVX-512 (see isa.h). Internal to the CPU kernels.
//
// Dot-product tiles of R rows x T tokens: per 32 values of k, each of R rows of W is one 64-byte line whose
// dwords hold two bf16 (the even one shifted up and the odd one masked are f32), and R * T FMAs take x,
// permuted once per call so that each 32 has its even then its odd elements, straight from memory. W comes
// from DRAM for the first token group of a row block (prefetched: the line 2 KB on into L1, the same line
// of the next tile into L2) and from L1 for the others; x stays in L2. 24 zmm accumulators (6 rows x 4
// tokens) keep the FMA pipes fed where the AVX2 tiles run out of registers. Zen 4, lm_head 2880 -> 201088
// at 16 tokens: 6 x 4 tiles 103-105 ms, 4 x 6 106, 3 x 8 122, the AVX2 packed GEMM 163 (48 % of the FMA
// peak -> 75 %); at 4 tokens 46 vs 93 ms. On the 2026-12-02 Xeon VM (AVX-512 without AMX), the prefetches
// and the pair order: 2 / 4 / 16 / 64 tokens 51.5 / 53.4 / 138.7 / 443 -> 43 / 44-46 / 110-116 / 402-426 ms.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace gptoss::cpu::avx512 {

inline constexpr int kBf16MaxRows = 6;
inline constexpr int kBf16MaxTokens = 4;

// The pair order of the activations, per 32 columns: the 16 even ones, then the 16 odd ones (element i of a
// permuted block is column kBf16PairPerm[i]; simd::permute_rows applies it).
inline constexpr std::array<int, 32> kBf16PairPerm = [] {
  std::array<int, 32> p{};
  for (int j = 0; j < 16; ++j) p[std::size_t(j)] = 2 * j, p[std::size_t(16 + j)] = 2 * j + 1;
  return p;
}();

// out[i * T + t] = sum over k < k_main (a multiple of 32) of w[(r0 + i) * ld + k] * x[t][k], for
// i < rows (1..6) and t < T (1..4), x[t] in pair order (kBf16PairPerm). Needs AVX-512 (F, BW): call only
// when cpu_isa() >= Isa::avx512.
void bf16_dot_rows(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0, int rows, const float* const* x,
                   int T, float* out);

}  // namespace gptoss::cpu::avx512
