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

// The dot product of one row (nb blocks) with the packed x.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) float dot_row(const uint8_t* blk, const uint8_t* sc,
                                                                              int64_t nb, const VnniGroup* xl) {
  const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 tot0 = _mm512_setzero_ps(), tot1 = _mm512_setzero_ps();
  const int64_t groups = vnni_groups(nb * 32);
  for (int64_t g = 0; g < groups; ++g) {
    // Past the row's end these are the next row's lines, which follow it in memory.
    _mm_prefetch(reinterpret_cast<const char*>(blk + g * 64) + kPrefetchL1, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(blk + g * 64) + kPrefetchL2Bytes, _MM_HINT_T1);
    const int n = int(std::min<int64_t>(4, nb - 4 * g));  // blocks in this group; a partial one reads only its own
    const __m512i z = n == 4 ? _mm512_loadu_si512(blk + g * 64) : _mm512_maskz_loadu_epi8(~0ull >> (64 - 16 * n), blk + g * 64);
    const __m512i even = _mm512_shuffle_epi8(table, _mm512_and_si512(z, nibble));
    const __m512i odd = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(z, 4), nibble));
    const VnniGroup& x = xl[g];
    __m512i a0 = _mm512_dpbusd_epi32(_mm512_load_si512(x.corr), even, _mm512_load_si512(x.limb[0][0]));
    a0 = _mm512_dpbusd_epi32(a0, odd, _mm512_load_si512(x.limb[0][1]));
    __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), even, _mm512_load_si512(x.limb[1][0]));
    a1 = _mm512_dpbusd_epi32(a1, odd, _mm512_load_si512(x.limb[1][1]));
    __m512i a2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), even, _mm512_load_si512(x.limb[2][0]));
    a2 = _mm512_dpbusd_epi32(a2, odd, _mm512_load_si512(x.limb[2][1]));
    // |sum| <= 8 * 12 * 2^23 per lane: the int32 sum is exact, its conversion rounds like an f32 sum.
    const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(a0, _mm512_slli_epi32(a1, 8)), _mm512_slli_epi32(a2, 16));
    // The group's block scales 2^(s - 127), spread to their lanes.
    const __m512 scale =
        _mm512_mul_ps(_mm512_permutexvar_ps(lanes, e8m0_scales16(sc + 4 * g, n)), _mm512_load_ps(x.scale));
    if (g & 1)
      tot1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, tot1);
    else
      tot0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, tot0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(tot0, tot1));
}

}  // namespace

void mxfp4_dot_rows_vnni(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, int64_t rows,
                         const VnniGroup* xl, float* out) {
  for (int64_t i = 0; i < rows; ++i) out[i] = dot_row(blocks + (r0 + i) * nb * 16, scales + (r0 + i) * nb, nb, xl);
}

}  // namespace gptoss::cpu::avx512
