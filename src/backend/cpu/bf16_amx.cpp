#include "backend/cpu/bf16_amx.h"

#include <immintrin.h>

#include <cstring>

#include "core/dtype.h"

namespace gptoss::cpu::amx {

void pack_x(const float* x, int64_t n, int64_t ld, int64_t k_main, uint16_t* xp) {
  const int64_t steps = k_main / 32;
  std::memset(xp, 0, size_t(packed_size(n, k_main)) * sizeof(uint16_t));
  for (int64_t t = 0; t < n; ++t) {
    uint16_t* base = xp + (t / kTokens) * steps * kSplits * 512 + (t % kTokens) * 2;
    for (int64_t k = 0; k < k_main; ++k) {
      float left = x[t * ld + k];
      uint16_t* at = base + (k / 32) * kSplits * 512 + ((k % 32) / 2) * 32 + k % 2;
      for (int s = 0; s < kSplits; ++s) {
        const uint16_t h = f32_to_bf16(left);
        at[s * 512] = h;
        left = (h & 0x7f80) == 0x7f80 ? 0.0f : left - bf16_to_f32(h);  // inf / NaN: one term carries it
      }
    }
  }
}

namespace {

// Tiles 0-1: C (rows 0-15, 16-31); 2-3: A (the same rows); 4-6: B (the three splits). Every tile is
// 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

}  // namespace

__attribute__((target("amx-tile,amx-bf16"))) void bf16_rows(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0,
                                                          int64_t next_r0, const uint16_t* xp, int64_t n, float* out) {
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
      _tile_loadd(2, a0 + ks * 32, stride);
      _tile_loadd(3, a1 + ks * 32, stride);
      _tile_loadd(4, b, 64);
      _tile_loadd(5, b + 512, 64);
      _tile_loadd(6, b + 1024, 64);
      _tile_dpbf16ps(0, 2, 4);
      _tile_dpbf16ps(1, 3, 4);
      _tile_dpbf16ps(0, 2, 5);
      _tile_dpbf16ps(1, 3, 5);
      _tile_dpbf16ps(0, 2, 6);
      _tile_dpbf16ps(1, 3, 6);
    }
    _tile_stored(0, c[0], 64);
    _tile_stored(1, c[1], 64);
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 16; ++i) std::memcpy(out + (16 * h + i) * n_pad + tb * kTokens, c[h][i], sizeof(c[h][i]));
  }
  _tile_release();
}

}  // namespace gptoss::cpu::amx
