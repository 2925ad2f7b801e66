#include "backend/cpu/bf16_amx.h"

#include <immintrin.h>

#include <cstring>


// GCC 12's AVX-512 headers trip -Wuninitialized on their own set-zero helpers (as in probes.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace gptoss::cpu::amx {

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void pack_step(const float* x32, uint16_t* dst,
                                                                             int row_dwords, int term_dwords) {
  // dword offsets of the 16 tile rows
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(row_dwords));
  __m512 lo = x32 ? _mm512_loadu_ps(x32) : _mm512_setzero_ps(), hi = x32 ? _mm512_loadu_ps(x32 + 16) : lo;
  const __m512i exp = _mm512_set1_epi32(0x7f800000);
  for (int s = 0; s < kSplits; ++s) {
    const __m512i h = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));  // words 0..31 = columns 0..31
    _mm512_i32scatter_epi32(dst + 2 * s * term_dwords, rows, h, 4);
    if (s + 1 == kSplits) break;
    // What is left of each column; an inf or NaN term carries the whole value (nothing is left).
    const __m512i hl = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16);
    const __m512i hh = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16);
    lo = _mm512_maskz_sub_ps(_mm512_cmpneq_epi32_mask(_mm512_and_si512(hl, exp), exp), lo, _mm512_castsi512_ps(hl));
    hi = _mm512_maskz_sub_ps(_mm512_cmpneq_epi32_mask(_mm512_and_si512(hh, exp), exp), hi, _mm512_castsi512_ps(hh));
  }
}

void pack_x(const float* x, int64_t n, int64_t ld, int64_t k_main, uint16_t* xp, int64_t i0, int64_t i1) {
  const int64_t steps = k_main / 32, n_pad = (n + kTokens - 1) / kTokens * kTokens;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t ks = i / n_pad, t = i % n_pad;
    pack_step(t < n ? x + t * ld + ks * 32 : nullptr,
              xp + ((t / kTokens) * steps + ks) * kSplits * 512 + (t % kTokens) * 2, kTokens, 16 * kTokens);
  }
}

__attribute__((target("amx-tile,amx-bf16"))) void bf16_rows(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0,
                                                          int64_t next_r0, const uint16_t* xp, int64_t n, float* out) {
  // Tiles 0-1: C (rows 0-15, 16-31); 2-3: A (the same rows); 4-6: B (the three splits). Every tile is 16
  // rows of 64 bytes.
  TileConfig cfg;
  for (int t = 0; t < 7; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  _tile_loadconfig(&cfg);
  const int64_t steps = k_main / 32, n_pad = (n + kTokens - 1) / kTokens * kTokens;
  const uint16_t* a0 = w + r0 * ld;
  const uint16_t* a1 = a0 + 16 * ld;
  const int64_t stride = ld * int64_t(sizeof(uint16_t));
  alignas(64) float c[2][16][16];
  for (int64_t tb = 0; tb < n_pad / kTokens; ++tb) {
    _tile_zero(0);
    _tile_zero(1);
    const uint16_t* b = xp + tb * steps * kSplits * 512;
    for (int64_t ks = 0; ks < steps; ++ks, b += kSplits * 512) {
      if (tb == 0 && next_r0 >= 0) {
        // The next row block's lines at this k step, into L2 while this block's first pass runs: 32 row
        // streams are more than the hardware prefetcher follows, and A tiles waited on DRAM.
        const uint16_t* nx = w + next_r0 * ld + ks * 32;
        for (int i = 0; i < kRows; ++i) _mm_prefetch(reinterpret_cast<const char*>(nx + i * ld), _MM_HINT_T1);
      }
      tile_step(a0 + ks * 32, a1 + ks * 32, stride, b, 512, 64);
    }
    _tile_stored(0, c[0], 64);
    _tile_stored(1, c[1], 64);
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 16; ++i) std::memcpy(out + (16 * h + i) * n_pad + tb * kTokens, c[h][i], sizeof(c[h][i]));
  }
  _tile_release();
}

}  // namespace gptoss::cpu::amx
