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

// A group's 64 bytes of codes read as 32 words: word i holds elements 4i .. 4i+3 of the group (bytes 2i and
// 2i+1, low nibble first), all in block i / 8. K step q of the group takes nibble q of every word, so word i
// of its A row is element 4i + q. Its table index is that nibble plus 16 x the block (vpermt2w reads 6 bits).
struct alignas(64) WordBlocks {
  uint16_t w[32];
};
constexpr WordBlocks kBlockBits = [] {
  WordBlocks t{};
  for (int i = 0; i < 32; ++i) t.w[i] = uint16_t(i / 8 * 16);
  return t;
}();

// vpermb indices that put scale byte b into the high byte of the table words of block b: word w of the low
// table (blocks 0-1) is block w / 16, of the high table (blocks 2-3) block 2 + w / 16. Low bytes are zeroed.
struct alignas(64) ScaleSpread {
  uint8_t idx[2][64];
};
constexpr ScaleSpread kScaleSpread = [] {
  ScaleSpread t{};
  for (int h = 0; h < 2; ++h)
    for (int w = 0; w < 32; ++w) t.idx[h][2 * w + 1] = uint8_t(2 * h + w / 16);
  return t;
}();

// Group-order position (mxfp4_avx512.h) of the activation that word i of k step q multiplies: element 4i + q
// of the group.
struct StepCols {
  uint8_t pos[4][32];
};
constexpr StepCols kStepCols = [] {
  StepCols t{};
  for (int q = 0; q < 4; ++q)
    for (int i = 0; i < 32; ++i) {
      const int c = 4 * i + q;
      t.pos[q][i] = uint8_t(c % 8 * 16 + c / 8);
    }
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
  const bool columns = T <= kColumnTokens;
  const int row_dwords = columns ? 3 * T : 16, term_dwords = columns ? 1 : 256;
  // Token t's first dword in a k step: column 3t (column layout), or its block's term tiles (t / 16:
  // kSplits tiles of 512 words each) and column t % 16.
  auto token_at = [columns](int t) { return columns ? 2 * 3 * t : t / 16 * kSplits * 512 + 2 * (t % 16); };
  const int64_t steps = pcols / 32, step_size = mxfp4_packed_size(T, 32);
  alignas(64) float col[32];
  for (int64_t ks = 0; ks < steps; ++ks)
    for (int t = 0; t < T; ++t) {
      const float* g = xr[t] + ks / 4 * 128;
      for (int i = 0; i < 32; ++i) col[i] = g[kStepCols.pos[ks % 4][i]];
      pack_step(col, xp + ks * step_size + token_at(t), row_dwords, term_dwords);
    }
}

namespace {

// The decode of mxfp4_rows: for every group of 4 blocks, the 32 rows' 4 k steps into bf16 A rows in L1, then
// step(a0, a1, ks) with the two 16-row halves of k step ks.
template <class Step>
GPTOSS_AMX_MXFP4 __attribute__((always_inline)) inline void decode_groups(const uint8_t* blocks, const uint8_t* scales,
                                                                         int64_t nb, int64_t r0, Step&& step) {
  // bf16 of the 16 codes (sign in bit 3) for two blocks; the non-zero ones (not codes 0 and 8) less
  // 127 << 7, so that adding a block's scale byte << 7 to them multiplies them by 2^(s-127), exactly.
  const __m512i table = _mm512_set_epi16(
      -16192, -16256, -16320, -16384, -16448, -16512, -16640, -32768, 16576, 16512, 16448, 16384, 16320, 16256, 16128,
      0, -16192, -16256, -16320, -16384, -16448, -16512, -16640, -32768, 16576, 16512, 16448, 16384, 16320, 16256,
      16128, 0);
  const __mmask32 nonzero = 0xfefefefe;
  const __m512i biased = _mm512_mask_sub_epi16(table, nonzero, table, _mm512_set1_epi16(127 << 7));
  const __m512i block_bits = _mm512_load_si512(kBlockBits.w), nibble = _mm512_set1_epi16(15);
  const __m512i spread_lo = _mm512_load_si512(kScaleSpread.idx[0]), spread_hi = _mm512_load_si512(kScaleSpread.idx[1]);
  const int64_t groups = (nb + 3) / 4;
  alignas(64) uint16_t a[2][4][kMxfp4Rows][32];
  for (int64_t g = 0; g < groups; ++g) {
    const int m = int(std::min<int64_t>(4, nb - 4 * g));  // blocks in this group
    auto& ab = a[g & 1];
    for (int r = 0; r < kMxfp4Rows; ++r) {
      const uint8_t* row = blocks + ((r0 + r) * nb + 4 * g) * 16;
      _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
      const __m512i z = _mm512_maskz_loadu_epi32(__mmask16(m == 4 ? 0xffff : (1u << (4 * m)) - 1), row);
      // The 64-entry table of this row's group, [block][code], with the scales put in (a missing block's
      // codes are zeros, whose entries take no scale).
      const __m512i s4 =
          _mm512_zextsi128_si512(_mm_maskz_loadu_epi8(__mmask16((1u << m) - 1), scales + (r0 + r) * nb + 4 * g));
      const __m512i t_lo = _mm512_mask_add_epi16(
          table, nonzero, biased,
          _mm512_srli_epi16(_mm512_maskz_permutexvar_epi8(0xaaaaaaaaaaaaaaaaull, spread_lo, s4), 1));
      const __m512i t_hi = _mm512_mask_add_epi16(
          table, nonzero, biased,
          _mm512_srli_epi16(_mm512_maskz_permutexvar_epi8(0xaaaaaaaaaaaaaaaaull, spread_hi, s4), 1));
      for (int q = 0; q < 4; ++q) {
        const __m512i idx =
            _mm512_ternarylogic_epi32(q == 0 ? z : _mm512_srli_epi16(z, 4 * q), nibble, block_bits, 0xea);
        _mm512_store_si512(ab[q][r], _mm512_permutex2var_epi16(t_lo, idx, t_hi));
      }
    }
    for (int q = 0; q < 4; ++q) step(ab[q][0], ab[q][16], 4 * g + q);
  }
}

}  // namespace

GPTOSS_AMX_MXFP4 bool mxfp4_rows(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0,
                                 const uint16_t* xp, int T, float* out) {
  if (!scales_in_range(scales + r0 * nb, kMxfp4Rows * nb)) return false;
  const int64_t step_size = mxfp4_packed_size(T, 32);
  TileConfig cfg;  // every tile used has 16 rows; an unused one must have none
  cfg.colsb[2] = cfg.colsb[3] = 64;  // A: rows 0-15, 16-31 (4-5 with two token blocks)
  if (T > 16) {
    // Two token blocks: C 0-1 (tokens 0-15) and 2-3 (16 .. T-1) with the A tiles 4-5; each block's three
    // term tiles go through B 6 (and 7) in turn, one decode serving both.
    cfg.colsb[4] = cfg.colsb[5] = 64;
    cfg.colsb[0] = cfg.colsb[1] = cfg.colsb[6] = 64;
    cfg.colsb[2] = cfg.colsb[3] = cfg.colsb[7] = uint16_t(4 * (T - 16));
    for (int t = 0; t < 8; ++t) cfg.rows[t] = cfg.colsb[t] ? 16 : 0;
    _tile_loadconfig(&cfg);
    _tile_zero(0);  // the tile macros take the tile's number as a literal
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    decode_groups(blocks, scales, nb, r0, [&](const uint16_t* a0, const uint16_t* a1, int64_t ks) GPTOSS_AMX_MXFP4 {
      const uint16_t* b = xp + ks * step_size;
      _tile_loadd(4, a0, 64);
      _tile_loadd(5, a1, 64);
      for (int term = 0; term < kSplits; ++term) {
        _tile_loadd(6, b + term * 512, 64);
        _tile_loadd(7, b + (kSplits + term) * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 5, 6);
        _tile_dpbf16ps(2, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    });
    _tile_stored(0, out, 4 * kMaxPassTokens);
    _tile_stored(1, out + 16 * kMaxPassTokens, 4 * kMaxPassTokens);
    _tile_stored(2, out + 16, 4 * kMaxPassTokens);
    _tile_stored(3, out + 16 * kMaxPassTokens + 16, 4 * kMaxPassTokens);
    _tile_release();
    return true;
  }
  if (T > kColumnTokens) {
    // C 0-1, B 4-6 (the three terms): T columns, token t in column t.
    for (int t : {0, 1, 4, 5, 6}) cfg.colsb[t] = uint16_t(4 * T);
    for (int t = 0; t < 8; ++t) cfg.rows[t] = cfg.colsb[t] ? 16 : 0;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    decode_groups(blocks, scales, nb, r0, [&](const uint16_t* a0, const uint16_t* a1, int64_t ks) GPTOSS_AMX_MXFP4 {
      tile_step(a0, a1, 64, xp + ks * step_size, 512, 64);
    });
    _tile_stored(0, out, 4 * kMaxPassTokens);
    _tile_stored(1, out + 16 * kMaxPassTokens, 4 * kMaxPassTokens);
    _tile_release();
    return true;
  }
  // B 6 (and 7): columns 0 .. w0-1 (w0 .. 3T-1) of the 3T, token t's terms in columns 3t .. 3t+2; C 0-1
  // (4-5) its products with the two A tiles.
  const int tiles = mxfp4_b_tiles(T), w0 = mxfp4_first_tile_columns(T), w1 = 3 * T - w0;
  cfg.colsb[0] = cfg.colsb[1] = cfg.colsb[6] = uint16_t(4 * w0);
  if (tiles == 2) cfg.colsb[4] = cfg.colsb[5] = cfg.colsb[7] = uint16_t(4 * w1);
  for (int t = 0; t < 8; ++t) cfg.rows[t] = cfg.colsb[t] ? 16 : 0;
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  const int64_t row_bytes = 12 * T;
  if (tiles == 2) {
    _tile_zero(4);
    _tile_zero(5);
    decode_groups(blocks, scales, nb, r0, [&](const uint16_t* a0, const uint16_t* a1, int64_t ks) GPTOSS_AMX_MXFP4 {
      _tile_loadd(2, a0, 64);
      _tile_loadd(3, a1, 64);
      _tile_loadd(6, xp + ks * step_size, row_bytes);
      _tile_loadd(7, xp + ks * step_size + 2 * w0, row_bytes);
      _tile_dpbf16ps(0, 2, 6);
      _tile_dpbf16ps(1, 3, 6);
      _tile_dpbf16ps(4, 2, 7);
      _tile_dpbf16ps(5, 3, 7);
    });
  } else {
    decode_groups(blocks, scales, nb, r0, [&](const uint16_t* a0, const uint16_t* a1, int64_t ks) GPTOSS_AMX_MXFP4 {
      _tile_loadd(2, a0, 64);
      _tile_loadd(3, a1, 64);
      _tile_loadd(6, xp + ks * step_size, row_bytes);
      _tile_dpbf16ps(0, 2, 6);
      _tile_dpbf16ps(1, 3, 6);
    });
  }
  alignas(64) float c[kMxfp4Rows][3 * kColumnTokens];
  _tile_stored(0, c[0], sizeof(c[0]));
  _tile_stored(1, c[16], sizeof(c[0]));
  if (tiles == 2) {
    _tile_stored(4, c[0] + w0, sizeof(c[0]));
    _tile_stored(5, c[16] + w0, sizeof(c[0]));
  }
  _tile_release();
  for (int i = 0; i < kMxfp4Rows; ++i)
    for (int t = 0; t < T; ++t) out[i * kMaxPassTokens + t] = c[i][3 * t] + c[i][3 * t + 1] + c[i][3 * t + 2];
  return true;
}

}  // namespace gptoss::cpu::amx
