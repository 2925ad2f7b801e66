// The AVX-512 register tile of the packed outer-product GEMM (simd::gemm_panel, prefill), used when
// cpu_isa() is AVX-512 (see isa.h). Internal to the CPU kernels.
//
// A panel row (16 weight rows at one k) is exactly one zmm, so a tile of M tokens x 16 rows keeps M zmm
// accumulators and does, per k, one panel load and M FMAs that broadcast the token's activation straight
// from memory. With M = 12 the FMA pipes have 12 independent chains and the loads stay well below the
// load ports' rate. On cores with full-width 512-bit FMA units (Zen 5) that doubles the f32 FMAs per
// cycle of the AVX2 6 x 16 tile (2 ymm accumulators a token); on cores that split zmm ops into two
// halves (Zen 4) it is about even with it.
#pragma once

#include <cstdint>

namespace gptoss::cpu::avx512 {

inline constexpr int kGemmTileTokens = 12;

// c[m*16 + i] = (accumulate ? c[m*16 + i] : 0) + sum_{k < K} a[m][k0 + k] * panel[k*16 + i], for m < M
// (1..kGemmTileTokens) and i < 16. panel is 64-byte aligned. Needs AVX-512 (F): call only when
// cpu_isa() >= Isa::avx512.
void gemm_tile(int M, bool accumulate, const float* panel, const float* const* a, int64_t k0, int64_t K, float* c);

}  // namespace gptoss::cpu::avx512
