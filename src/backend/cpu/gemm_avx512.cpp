// The AVX-512 GEMM register tile (see gemm_avx512.h). Compiled for the x86-64-v3 baseline like every
// other file; only the functions marked GPTOSS_AVX512 use AVX-512 (as in mxfp4_avx512.cpp).
#include "backend/cpu/gemm_avx512.h"

#include <immintrin.h>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define GPTOSS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace gptoss::cpu::avx512 {
namespace {

template <int M, bool kAccumulate>
GPTOSS_AVX512 void tile(const float* panel, const float* const* a, int64_t k0, int64_t K, float* c) {
  __m512 acc[M];
#pragma GCC unroll 12
  for (int m = 0; m < M; ++m) acc[m] = kAccumulate ? _mm512_loadu_ps(c + m * 16) : _mm512_setzero_ps();
  const float* ap[M];
#pragma GCC unroll 12
  for (int m = 0; m < M; ++m) ap[m] = a[m] + k0;
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b = _mm512_load_ps(panel + k * 16);
#pragma GCC unroll 12
    for (int m = 0; m < M; ++m) acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(ap[m][k]), b, acc[m]);
  }
#pragma GCC unroll 12
  for (int m = 0; m < M; ++m) _mm512_storeu_ps(c + m * 16, acc[m]);
}

template <int M>
void tile_m(bool accumulate, const float* panel, const float* const* a, int64_t k0, int64_t K, float* c) {
  if (accumulate)
    tile<M, true>(panel, a, k0, K, c);
  else
    tile<M, false>(panel, a, k0, K, c);
}

}  // namespace

void gemm_tile(int M, bool accumulate, const float* panel, const float* const* a, int64_t k0, int64_t K, float* c) {
  switch (M) {
    case 1: tile_m<1>(accumulate, panel, a, k0, K, c); break;
    case 2: tile_m<2>(accumulate, panel, a, k0, K, c); break;
    case 3: tile_m<3>(accumulate, panel, a, k0, K, c); break;
    case 4: tile_m<4>(accumulate, panel, a, k0, K, c); break;
    case 5: tile_m<5>(accumulate, panel, a, k0, K, c); break;
    case 6: tile_m<6>(accumulate, panel, a, k0, K, c); break;
    case 7: tile_m<7>(accumulate, panel, a, k0, K, c); break;
    case 8: tile_m<8>(accumulate, panel, a, k0, K, c); break;
    case 9: tile_m<9>(accumulate, panel, a, k0, K, c); break;
    case 10: tile_m<10>(accumulate, panel, a, k0, K, c); break;
    case 11: tile_m<11>(accumulate, panel, a, k0, K, c); break;
    default: tile_m<12>(accumulate, panel, a, k0, K, c); break;
  }
}

}  // namespace gptoss::cpu::avx512
