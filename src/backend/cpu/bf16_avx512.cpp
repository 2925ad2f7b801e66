// AVX-512 bf16 dot-product tiles (see bf16_avx512.h). Compiled for the x86-64-v3 baseline like every
// other file; only the functions marked GPTOSS_AVX512 use AVX-512 (as in mxfp4_avx512.cpp).
#include "backend/cpu/bf16_avx512.h"

#include <immintrin.h>

#include "backend/cpu/prefetch.h"

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define GPTOSS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define GPTOSS_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline

namespace gptoss::cpu::avx512 {
namespace {

template <int R, int T>
GPTOSS_AVX512 void tile(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0, const float* const* x,
                        float* out) {
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
  const uint16_t* wr[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) wr[i] = w + (r0 + i) * ld;
  const __m512i hi = _mm512_set1_epi32(int(0xffff0000u));
  for (int64_t k = 0; k < k_main; k += 32) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const char* line = reinterpret_cast<const char*>(wr[i] + k);
      _mm_prefetch(line + kBf16PrefetchBytes, _MM_HINT_T0);  // prefetch.h; into L2 the next tile's line
      _mm_prefetch(line + R * ld * int64_t(sizeof(uint16_t)), _MM_HINT_T1);
    }
    // The 64-byte line of 32 bf16 of each row: its even elements (a dword's low word, shifted up), then its
    // odd ones (the high word, masked); x holds the same 32 in that order.
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m512 wv[R];
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512i v = _mm512_loadu_si512(wr[i] + k);
        wv[i] = _mm512_castsi512_ps(h == 0 ? _mm512_slli_epi32(v, 16) : _mm512_and_si512(v, hi));
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(x[t] + k + 16 * h);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) out[i * T + t] = _mm512_reduce_add_ps(acc[i][t]);
}

template <int R>
void tile_tokens(int T, const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0, const float* const* x,
                 float* out) {
  switch (T) {
    case 1: tile<R, 1>(w, ld, k_main, r0, x, out); break;
    case 2: tile<R, 2>(w, ld, k_main, r0, x, out); break;
    case 3: tile<R, 3>(w, ld, k_main, r0, x, out); break;
    default: tile<R, 4>(w, ld, k_main, r0, x, out); break;
  }
}

}  // namespace

void bf16_dot_rows(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0, int rows, const float* const* x,
                   int T, float* out) {
  switch (rows) {
    case 1: tile_tokens<1>(T, w, ld, k_main, r0, x, out); break;
    case 2: tile_tokens<2>(T, w, ld, k_main, r0, x, out); break;
    case 3: tile_tokens<3>(T, w, ld, k_main, r0, x, out); break;
    case 4: tile_tokens<4>(T, w, ld, k_main, r0, x, out); break;
    case 5: tile_tokens<5>(T, w, ld, k_main, r0, x, out); break;
    default: tile_tokens<6>(T, w, ld, k_main, r0, x, out); break;
  }
}

}  // namespace gptoss::cpu::avx512
