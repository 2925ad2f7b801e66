#include "backend/cpu/mxfp4_vnni.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/mxfp4_avx512.h"
#include "backend/cpu/prefetch.h"

// GCC 12's AVX-512 headers trip -Wuninitialized on their own set-zero helpers (as in mxfp4_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace gptoss::cpu::avx512 {

void pack_vnni(const float* x, int64_t cols, bool group_order, VnniGroup* xl) {
  const int64_t groups = vnni_groups(cols);
  std::memset(static_cast<void*>(xl), 0, size_t(groups) * sizeof(VnniGroup));
  for (int64_t b = 0; b < cols / 32; ++b) {
    float v[32], m = 0.0f;
    for (int i = 0; i < 32; ++i) {
      const int64_t c = b * 32 + i;
      v[i] = x[group_order ? group_pos(c) : c];
      m = std::max(m, std::fabs(v[i]));
    }
    // 8350000 leaves room for the rounding of the largest |x| (8355711 = 0x7f7f7f is the top of three limbs).
    const float s = m > 0.0f && std::isfinite(m) ? m / 8350000.0f : 1.0f;
    VnniGroup& g = xl[b / 4];
    const int bb = int(b % 4);
    int32_t q[32];
    for (int i = 0; i < 32; ++i) q[i] = std::isfinite(m) ? int32_t(std::lrintf(v[i] / s)) : 0;
    for (int j = 0; j < 16; ++j)
      for (int par = 0; par < 2; ++par) {
        int32_t r = q[2 * j + par];
        for (int l = 0; l < 3; ++l) {
          const int32_t lo = l < 2 ? ((r + 128) & 255) - 128 : r;
          g.limb[l][par][16 * bb + j] = int8_t(lo);
          r = (r - lo) / 256;
        }
      }
    for (int lane = 0; lane < 4; ++lane) {
      int32_t sum = 0;
      for (int j = 4 * lane; j < 4 * lane + 4; ++j) sum += q[2 * j] + q[2 * j + 1];
      g.corr[4 * bb + lane] = -12 * sum;
      // A block with inf or NaN: its scale carries the NaN into the dot product (the f32 kernels give NaN too).
      g.scale[4 * bb + lane] = std::isfinite(m) ? s * 0.5f : NAN;
    }
  }
}

namespace {

// Software prefetch of the row's lines into L1, 1 KB ahead (into L2: kPrefetchL2Bytes, prefetch.h). With
// the L2 one, 512 B, 1 KB and 2 KB ahead into L1 streamed alike.
constexpr int kPrefetchL1 = 1024;

#define GPTOSS_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#define GPTOSS_VNNI_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi"), always_inline)) inline

// Adds group g's 16 lane sums times their scales (`sw`: the weights' block scales spread to the lanes) into
// tot. z holds the group's 64 code bytes. vpermb reads the low 6 bits of each index, so the 16-entry table,
// repeated 4 times, decodes a byte's low nibble without a mask, and (after a 16-bit shift) its high one.
// The limbs are folded highest first, ((l2 sum << 8) + l1 sum) << 8 + l0 sum, so the shifts and the
// correction ride on the accumulator: 6 vpdpbusd, 2 shifts and an add.
GPTOSS_VNNI_INLINE void dot_group(const uint8_t* blk, int64_t g, __m512i z, __m512 sw, const VnniGroup& x,
                                  __m512& tot) {
  // Past the row's end these are the next row's lines, which follow it in memory.
  _mm_prefetch(reinterpret_cast<const char*>(blk + g * 64) + kPrefetchL1, _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(blk + g * 64) + kPrefetchL2Bytes, _MM_HINT_T1);
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  const __m512i even = _mm512_permutexvar_epi8(z, table);
  const __m512i odd = _mm512_permutexvar_epi8(_mm512_srli_epi16(z, 4), table);
  __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), even, _mm512_load_si512(x.limb[2][0]));
  s = _mm512_dpbusd_epi32(s, odd, _mm512_load_si512(x.limb[2][1]));
  s = _mm512_dpbusd_epi32(_mm512_slli_epi32(s, 8), even, _mm512_load_si512(x.limb[1][0]));
  s = _mm512_dpbusd_epi32(s, odd, _mm512_load_si512(x.limb[1][1]));
  s = _mm512_add_epi32(_mm512_slli_epi32(s, 8), _mm512_load_si512(x.corr));
  s = _mm512_dpbusd_epi32(s, even, _mm512_load_si512(x.limb[0][0]));
  s = _mm512_dpbusd_epi32(s, odd, _mm512_load_si512(x.limb[0][1]));
  // |sum| <= 8 * 12 * 2^23 per lane: the int32 sum is exact, its conversion rounds like an f32 sum.
  tot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(sw, _mm512_load_ps(x.scale)), tot);
}

// The dot product of one row (nb blocks) with the packed x. Four full groups (16 blocks) a step share one
// conversion of their 16 block scales; each group spreads its 4 to its lanes (lane j: block j / 4). The last
// nb % 16 blocks go a group at a time. (One loop for both, its inner bound and load chosen per group, ran
// 0.78-0.80 against 0.75-0.76 ns a block from L2 on the Zen 5 VM.)
GPTOSS_VNNI float dot_row(const uint8_t* blk, const uint8_t* sc, int64_t nb, const VnniGroup* xl) {
  const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i next = _mm512_set1_epi32(4);
  __m512 tot0 = _mm512_setzero_ps(), tot1 = _mm512_setzero_ps();
  int64_t g = 0;
  for (; 4 * g + 16 <= nb; g += 4) {
    const __m512 s16 = e8m0_scales16(sc + 4 * g, 16);
    __m512i at = lanes;
    for (int q = 0; q < 4; ++q, at = _mm512_add_epi32(at, next))
      dot_group(blk, g + q, _mm512_loadu_si512(blk + (g + q) * 64), _mm512_permutexvar_ps(at, s16), xl[g + q],
                q & 1 ? tot1 : tot0);
  }
  for (; 4 * g < nb; ++g) {
    const int n = int(std::min<int64_t>(4, nb - 4 * g));  // blocks in this group; a partial one reads only its own
    const __m512i z = _mm512_maskz_loadu_epi8(~0ull >> (64 - 16 * n), blk + g * 64);
    dot_group(blk, g, z, _mm512_permutexvar_ps(lanes, e8m0_scales16(sc + 4 * g, n)), xl[g], g & 1 ? tot1 : tot0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(tot0, tot1));
}

}  // namespace

void mxfp4_dot_rows_vnni(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, int64_t rows,
                         const VnniGroup* xl, float* out) {
  for (int64_t i = 0; i < rows; ++i) out[i] = dot_row(blocks + (r0 + i) * nb * 16, scales + (r0 + i) * nb, nb, xl);
}

}  // namespace gptoss::cpu::avx512
