#include "backend/cpu/mxfp4_amx.h"

#include <immintrin.h>

#include <algorithm>

#include "backend/cpu/bf16_amx.h"

// GCC 12's AVX-512 headers trip -Wuninitialized on their own set-zero helpers (as in bf16_amx.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define GPTOSS_AMX_MXFP4 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,amx-tile,amx-bf16")))

namespace gptoss::cpu::amx {

namespace {

// How far ahead of the group being decoded each row's blocks are prefetched: 32 row streams are more than
// the hardware prefetchers follow (a pass from DRAM took 4.3 ns a block without, 2.7 with 128 bytes; 256
// and 512 were slower).
constexpr int kPrefetchBytes = 128;

// The block scales the pass takes, 2^-63 .. 2^63. Any 2 .. 252 would keep the decoded weights normal in bf16,
// but the tiles flush subnormal products and sums too: with a weight of 2^-126 the third term of an
// activation (~2^-16 of it) already is one, and a scale of 2 lost 6 % (the f32 kernels keep subnormals).
// Checkpoints use scales near 2^0 (gpt-oss: ~2^-12 .. 2^2), far inside.
constexpr int kMinScale = 64, kMaxScale = 190;

// vpermb indices of k step j: byte j of dword w % 16 into (the low byte of) word w, so the low nibbles land
// in words 0-15 and the high ones in 16-31 (the odd bytes are zeroed by the mask).
struct alignas(64) PickTable {
  uint8_t idx[4][64];
};
constexpr PickTable kPick = [] {
  PickTable t{};
  for (int j = 0; j < 4; ++j)
    for (int w = 0; w < 32; ++w) t.idx[j][2 * w] = uint8_t(4 * (w % 16) + j);
  return t;
}();

// Word w of a decoded k step belongs to block (w % 16) / 4 of the group.
struct alignas(64) BlockOfWord {
  uint16_t w[32];
};
constexpr BlockOfWord kBlockOfWord = [] {
  BlockOfWord t{};
  for (int w = 0; w < 32; ++w) t.w[w] = uint16_t((w % 16) / 4);
  return t;
}();

// Whether every e8m0 scale of n bytes at s is in kMinScale .. kMaxScale.
GPTOSS_AMX_MXFP4 bool scales_in_range(const uint8_t* s, int64_t n) {
  __mmask64 bad = 0;
  for (int64_t i = 0; i < n; i += 64) {
    const __mmask64 m = n - i >= 64 ? ~__mmask64(0) : (__mmask64(1) << (n - i)) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(m, s + i);
    bad |= m & (_mm512_cmplt_epu8_mask(v, _mm512_set1_epi8(char(kMinScale))) |
                _mm512_cmpgt_epu8_mask(v, _mm512_set1_epi8(char(kMaxScale))));
  }
  return bad == 0;
}

}  // namespace

void mxfp4_pack(const float* const* xr, int T, int64_t pcols, uint16_t* xp) {
  const int n = mxfp4_tile_tokens(T);
  const int64_t steps = pcols / 32;
  for (int64_t ks = 0; ks < steps; ++ks)
    for (int t = 0; t < n; ++t) pack_step(t < T ? xr[t] + ks * 32 : nullptr, xp + ks * kSplits * 32 * n + t * 2, n);
}

GPTOSS_AMX_MXFP4 bool mxfp4_rows(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0,
                                 const uint16_t* xp, int T, float* out) {
  if (!scales_in_range(scales + r0 * nb, kMxfp4Rows * nb)) return false;
  const int n = mxfp4_tile_tokens(T);
  // Tiles 0-1: C (rows 0-15, 16-31); 2-3: A (the same rows); 4-6: B (the three terms), n tokens wide.
  TileConfig cfg;
  for (int t = 0; t < 7; ++t) cfg.rows[t] = 16, cfg.colsb[t] = uint16_t(t == 2 || t == 3 ? 64 : 4 * n);
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  // bf16 of the 16 codes (sign in bit 3), twice: vpermw reads 5 index bits, and a low-nibble word still
  // holds its byte's high nibble above them.
  const __m512i table = _mm512_set_epi16(
      -16192, -16256, -16320, -16384, -16448, -16512, -16640, -32768, 16576, 16512, 16448, 16384, 16320, 16256, 16128,
      0, -16192, -16256, -16320, -16384, -16448, -16512, -16640, -32768, 16576, 16512, 16448, 16384, 16320, 16256,
      16128, 0);
  const __m512i block_lane = _mm512_load_si512(kBlockOfWord.w);
  const int64_t groups = (nb + 3) / 4;
  const int64_t tile_bytes = 4 * n;
  alignas(64) uint16_t a[2][kMxfp4Rows][32];
  int buf = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int m = int(std::min<int64_t>(4, nb - 4 * g));  // blocks in this group
    __m512i z[kMxfp4Rows], add[kMxfp4Rows];
    for (int r = 0; r < kMxfp4Rows; ++r) {
      const uint8_t* row = blocks + ((r0 + r) * nb + 4 * g) * 16;
      _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
      z[r] = _mm512_maskz_loadu_epi32(__mmask16(m == 4 ? 0xffff : (1u << (4 * m)) - 1), row);
      // (s - 127) << 7 for each word's block: added to a bf16's exponent it multiplies by 2^(s-127).
      const __m128i s4 = _mm_maskz_loadu_epi8(__mmask16((1u << m) - 1), scales + (r0 + r) * nb + 4 * g);
      const __m512i sw = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(s4));
      add[r] = _mm512_permutexvar_epi16(block_lane, _mm512_slli_epi16(_mm512_sub_epi16(sw, _mm512_set1_epi16(127)), 7));
    }
    for (int j = 0; j < 4; ++j) {
      for (int r = 0; r < kMxfp4Rows; ++r) {
        __m512i c = _mm512_maskz_permutexvar_epi8(0x5555555555555555ull, _mm512_load_si512(kPick.idx[j]), z[r]);
        c = _mm512_mask_srli_epi16(c, 0xffff0000u, c, 4);
        __m512i v = _mm512_permutexvar_epi16(c, table);
        v = _mm512_mask_add_epi16(v, _mm512_test_epi16_mask(c, _mm512_set1_epi16(7)), v, add[r]);  // +-0 stay 0
        _mm512_store_si512(a[buf][r], v);
      }
      tile_step(a[buf][0], a[buf][16], 64, xp + (4 * g + j) * kSplits * 32 * n, 32 * n, tile_bytes);
      buf ^= 1;
    }
  }
  _tile_stored(0, out, tile_bytes);
  _tile_stored(1, out + 16 * n, tile_bytes);
  _tile_release();
  return true;
}

}  // namespace gptoss::cpu::amx
