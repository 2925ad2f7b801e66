// AVX-512 MXFP4 dot products in group order (see mxfp4_avx512.h). This file is compiled for the
// build's x86-64-v3 baseline like every other; only the functions marked kAvx512 use AVX-512, so nothing
// in it (or in a header it includes) can leak AVX-512 code into paths that run on other CPUs.
//
// Cost per group of 4 blocks and token: 8 vpermps + 7 shifts (shared by the tokens of a pass) and
// 8 FMAs, the group's block scales applied with one FMA (vpermps spreads the scales of 16 blocks, built
// once, to the group's lanes). On a Zen 4 core that is ~4.3 cycles per block at one token, against ~6 for
// the AVX2 decode (byte shuffles to bf16, then to f32): the shift/shuffle ports are the limit for both.
#include "backend/cpu/mxfp4_avx512.h"

#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/prefetch.h"

// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_*() (a self-initialized
// variable), which -Wuninitialized reports at every inlined use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define GPTOSS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
// Helpers must be inlined into their caller (called, they pass zmm values through memory).
#define GPTOSS_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline

namespace gptoss::cpu::avx512 {

void permute_rows(const float* x, int64_t n, int64_t ld, int64_t cols, float* xq) {
  const int64_t pc = padded_cols(cols);
  for (int64_t t = 0; t < n; ++t) {
    float* dst = xq + t * pc;
    std::fill(dst + (cols / kGroup) * kGroup, dst + pc, 0.0f);
    for (int64_t c = 0; c < cols; ++c) dst[group_pos(c)] = x[t * ld + c];
  }
}

namespace {

// Most tokens per pass over a row: the decoded weights feed that many tokens' FMAs. On a Zen 4 core a pass
// of 2 or 3 cost ~0.95 ns per block and token, 1 ~1.3 ns and 4 ~1.2 ns, so 4 went as 2 + 2. On the
// 2026-12-02 Xeon VM one pass of 4 is the cheaper: one thread over rows in L2 took
// 1.36 / 1.94 / 2.45 ns a block at 1 / 2 / 3 tokens, and the MoE at 16 tokens (kernels_bench shapes, three
// alternating runs, best of 60 calls) 27.8 / 28.7 / 28.4 ms with passes of 4 against 30.2 / 29.4 / 29.7 with
// 2 + 2 (at 64 tokens 115.8 against 118.5). (Scaling the decoded weights instead of each token's group
// sums, which a stand-alone loop ran 20 % faster at 2-3 tokens, was no faster here.)
constexpr int kPassTokens = 4;
// Software prefetch distance of the rows' blocks. A core streams the experts' rows faster with it: Zen 4
// (2 threads), kernels_bench MoE at one token 18.3-21.0 GB/s (median 18.8) against 15.7-17.7 (16.4), six
// alternating runs each; 4 KB ahead was no better. The whole 20b model at batch 1 moves less than this
// VM's minute-to-minute noise: eight alternating pairs, 7.84 against 7.63 tok/s on average. (The same for
// the bf16 projections' rows, 1 KB ahead, did not help: 7.29 / 7.80 / 7.15 / 7.92 vs 7.59 / 8.39 / 7.68 / 7.98.)
constexpr int64_t kPrefetchBytes = 2048;
// Passes of 2+ tokens also read one byte of the page 4 KB ahead (a real load, bounded by the expert's end)
// once per page. On a VM whose host maps guest memory in 4 KiB pages every 4 KB of weights is a TLB miss, and
// neither the hardware prefetchers nor software prefetches cross it; the early load starts the page walk.
// kernels_bench MoE at 16 tokens (Zen 5, 2 threads, three alternating runs): 20.7-21.0 ms against 22.4-23.6;
// 8 KB ahead was slower (22.5-28 ms), and with one token (already ~the L2 speed) it cost time.
constexpr int64_t kTlbAhead = 4096;

// 5 and 6 tokens go as 3 + 2 and 3 + 3 rather than leave a one-token pass.
inline int pass_tokens(int remaining) {
  return remaining == 5 || remaining == 6 ? 3 : std::min(kPassTokens, remaining);
}

template <int P>
GPTOSS_AVX512_INLINE __m512 decode(__m512i z, __m512 table) {
  return _mm512_permutexvar_ps(_mm512_srli_epi32(z, 4 * P), table);
}

// s[t] = the group's products with token t, lane d holding block d / 4's part (unscaled). Positions
// alternate between two accumulators per token, so each waits for every other FMA.
template <int T>
GPTOSS_AVX512_INLINE void group_sums(__m512i z, const float* const* x, int64_t off, __m512 table, __m512* s) {
  asm("" : "+v"(z));  // keep the bytes in a register: folded into each shift, the 64-byte load repeats
  __m512 a0[T], a1[T];
  {
    const __m512 w0 = decode<0>(z, table), w1 = decode<1>(z, table);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      a0[t] = _mm512_mul_ps(w0, _mm512_loadu_ps(x[t] + off));
      a1[t] = _mm512_mul_ps(w1, _mm512_loadu_ps(x[t] + off + 16));
    }
  }
#define GPTOSS_POSITIONS(P)                                                               \
  {                                                                                       \
    const __m512 w0 = decode<P>(z, table), w1 = decode<P + 1>(z, table);                  \
    _Pragma("GCC unroll 4") for (int t = 0; t < T; ++t) {                                 \
      a0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[t] + off + 16 * P), a0[t]);           \
      a1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[t] + off + 16 * (P + 1)), a1[t]);     \
    }                                                                                     \
  }
  GPTOSS_POSITIONS(2)
  GPTOSS_POSITIONS(4)
  GPTOSS_POSITIONS(6)
#undef GPTOSS_POSITIONS
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) s[t] = _mm512_add_ps(a0[t], a1[t]);
}

// One group (blocks g*4 ..): its block scales from ss (lanes 4q ..), its products into tot[.][q % 2].
template <int T>
GPTOSS_AVX512_INLINE void group(int q, __m512i z, int64_t g, __m512 ss, const float* const* x, __m512 table,
                                __m512 (*tot)[2]) {
  __m512 s[T];
  group_sums<T>(z, x, g * kGroup, table, s);
  const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512 scale = _mm512_permutexvar_ps(_mm512_add_epi32(lanes, _mm512_set1_epi32(4 * q)), ss);
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) tot[t][q & 1] = _mm512_fmadd_ps(s[t], scale, tot[t][q & 1]);
}

// res[t] = row . x[t] for one row (nb blocks) and T tokens.
template <int T>
GPTOSS_AVX512 void dot_row(const uint8_t* blk, const uint8_t* sc, int64_t nb, const float* const* x, float* res,
                           const uint8_t* end) {
  const __m512 table = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                      -2.0f, -3.0f, -4.0f, -6.0f);
  __m512 tot[T][2];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) tot[t][0] = tot[t][1] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= nb; c += 16) {  // 16 blocks: one scale vector, four groups
    // The blocks 2 KB ahead into L1 and kPrefetchL2Bytes into L2 (prefetch.h; past the row's end: the next
    // row's, which follows it).
    const char* lines = reinterpret_cast<const char*>(blk + c * 16);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      _mm_prefetch(lines + kPrefetchBytes + 64 * j, _MM_HINT_T0);
      _mm_prefetch(lines + kPrefetchL2Bytes + 64 * j, _MM_HINT_T1);
    }
    if constexpr (T >= 2) {
      const uint8_t* page = blk + c * 16 + kTlbAhead;
      if ((reinterpret_cast<uintptr_t>(page) & 4095) < 256 && page < end)
        (void)*reinterpret_cast<const volatile uint8_t*>(page);
    }
    const __m512 ss = e8m0_scales16(sc + c, 16);
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) group<T>(q, _mm512_loadu_si512(blk + (c + 4 * q) * 16), c / 4 + q, ss, x, table, tot);
  }
  if (c < nb) {  // the last < 16 blocks; a partial group reads only its own bytes (masked load)
    const int n = int(nb - c);
    const __m512 ss = e8m0_scales16(sc + c, n);
    for (int q = 0; 4 * q < n; ++q) {
      const int m = std::min(4, n - 4 * q);
      const __m512i z = _mm512_maskz_loadu_epi32(__mmask16(m == 4 ? 0xffff : (1u << (4 * m)) - 1), blk + (c + 4 * q) * 16);
      group<T>(q, z, c / 4 + q, ss, x, table, tot);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) res[t] = _mm512_reduce_add_ps(_mm512_add_ps(tot[t][0], tot[t][1]));
}

// Lanes 0..15 of v[0..15] (v[r] = row r) transposed in place: afterwards v[d] lane r = old v[r] lane d.
GPTOSS_AVX512_INLINE void transpose16(__m512* v) {
  __m512 t[16];
  // 1: interleave pairs of rows (32-bit elements)
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  // 2: 64-bit pairs of pairs
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    const __m512d a0 = _mm512_castps_pd(t[4 * i]), a1 = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d b0 = _mm512_castps_pd(t[4 * i + 2]), b1 = _mm512_castps_pd(t[4 * i + 3]);
    v[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
    v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
    v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
    v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
  }
  // Now v[4i + j] holds, in each 128-bit lane L, element 4L + j of rows 4i .. 4i+3.
  // 3 and 4: 128-bit lanes across the four row quads.
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m512 q0 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0x44), q1 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0xee);
    const __m512 q2 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0x44),
                 q3 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0xee);
    // q0 lanes: (rows 0-3, L0), (rows 0-3, L1), (rows 4-7, L0), (rows 4-7, L1); q2 likewise for rows 8-15.
    t[j] = _mm512_shuffle_f32x4(q0, q2, 0x88);       // L0 of rows 0-3, 4-7, 8-11, 12-15
    t[4 + j] = _mm512_shuffle_f32x4(q0, q2, 0xdd);   // L1
    t[8 + j] = _mm512_shuffle_f32x4(q1, q3, 0x88);   // L2
    t[12 + j] = _mm512_shuffle_f32x4(q1, q3, 0xdd);  // L3
  }
#pragma GCC unroll 16
  for (int d = 0; d < 16; ++d) v[d] = t[d];  // t[4L + j] = element 4L + j of rows 0..15
}

}  // namespace

GPTOSS_AVX512 void mxfp4_pack_panel(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, int rows,
                                    int64_t g0, int64_t g1, float* panel) {
  const __m512 table = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                      -2.0f, -3.0f, -4.0f, -6.0f);
  const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t g = g0; g < g1; ++g) {
    const int m = int(std::min<int64_t>(4, nb - 4 * g));  // blocks of this group (the last may be partial)
    const __mmask16 bytes_mask = __mmask16(m == 4 ? 0xffff : (1u << (4 * m)) - 1);
    __m512i z[16];
    __m512 sc[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) {
      if (r < rows) {
        const int64_t row = r0 + r;
        z[r] = _mm512_maskz_loadu_epi32(bytes_mask, blocks + (row * nb + 4 * g) * 16);
        sc[r] = _mm512_permutexvar_ps(lanes, e8m0_scales16(scales + row * nb + 4 * g, m));
      } else {
        z[r] = _mm512_setzero_si512();
        sc[r] = _mm512_setzero_ps();
      }
    }
    float* dst = panel + (g - g0) * kGroup * 16;
#pragma GCC unroll 1
    for (int p = 0; p < 8; ++p) {  // elements 8d + p of the group: panel rows k = p*16 + d
      __m512 v[16];
#pragma GCC unroll 16
      for (int r = 0; r < 16; ++r)
        v[r] = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srlv_epi32(z[r], _mm512_set1_epi32(4 * p)), table), sc[r]);
      transpose16(v);
#pragma GCC unroll 16
      for (int d = 0; d < 16; ++d) _mm512_store_ps(dst + (p * 16 + d) * 16, v[d]);
    }
  }
}

GPTOSS_AVX512 void mxfp4_dot_rows(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0,
                                  int64_t rows, int64_t total_rows, const float* const* xq, int T, float* out) {
  const uint8_t* end = blocks + total_rows * nb * 16;
  float res[kPassTokens];
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* blk = blocks + (r0 + i) * nb * 16;
    const uint8_t* sc = scales + (r0 + i) * nb;
    for (int t = 0, pass = 0; t < T; t += pass) {
      pass = pass_tokens(T - t);
      switch (pass) {
        case 1: dot_row<1>(blk, sc, nb, xq + t, res, end); break;
        case 2: dot_row<2>(blk, sc, nb, xq + t, res, end); break;
        case 3: dot_row<3>(blk, sc, nb, xq + t, res, end); break;
        default: dot_row<4>(blk, sc, nb, xq + t, res, end); break;
      }
      for (int j = 0; j < pass; ++j) out[i * T + t + j] = res[j];
    }
  }
}

}  // namespace gptoss::cpu::avx512
