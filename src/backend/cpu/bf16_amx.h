// The AMX version of the bf16 matmul for batches of 2 or more tokens (decode batches and prefill, up to 64
// tokens a pass), used by bf16w_matmul when cpu_isa() is Isa::amx (see isa.h). Internal to the CPU kernels.
//
// TDPBF16PS multiplies a 16 x 32 bf16 tile A by a 32 x 16 bf16 tile B (stored as 16 rows of k pairs) into
// a 16 x 16 f32 tile C, with exact products and f32 sums. A is 16 rows of W straight from memory (one
// 64-byte line of each row, the row stride as the tile stride); B holds 16 tokens' activations. An f32 x is
// the sum of three bf16 numbers (x = h + m + l, each the bf16 rounding of what is left), exact to ~2^-24 of
// |x|, so three B tiles and three TDPBF16PS per A tile give f32 accuracy. Two A tiles (32 rows) share each
// B tile; C covers 32 rows x 16 tokens. A row block's weights (32 rows) stay in L2 while every 16-token
// block passes over them, so W is read from DRAM once.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace gptoss::cpu::amx {

inline constexpr int kRows = 32;    // rows of W per call of bf16_rows
inline constexpr int kTokens = 16;  // tokens per B tile
inline constexpr int kSplits = 3;   // bf16 terms per f32 activation

// The LDTILECFG operand: palette 1, then bytes per row and rows of each tile.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// One k step of both AMX kernels, with the tiles configured as C (0-1), A (2-3) and B (4-6): loads the A
// tiles (16 rows each from a0 and a1, rows a_stride bytes apart) and the three B tiles (b, b + b_term and
// b + 2 b_term, rows b_stride bytes apart), and adds each A times every B into its C.
__attribute__((target("amx-tile,amx-bf16"), always_inline)) inline void tile_step(const void* a0, const void* a1,
                                                                                 int64_t a_stride, const uint16_t* b,
                                                                                 int64_t b_term, int64_t b_stride) {
  _tile_loadd(2, a0, a_stride);
  _tile_loadd(3, a1, a_stride);
  _tile_loadd(4, b, b_stride);
  _tile_loadd(5, b + b_term, b_stride);
  _tile_loadd(6, b + 2 * b_term, b_stride);
  _tile_dpbf16ps(0, 2, 4);
  _tile_dpbf16ps(1, 3, 4);
  _tile_dpbf16ps(0, 2, 5);
  _tile_dpbf16ps(1, 3, 5);
  _tile_dpbf16ps(0, 2, 6);
  _tile_dpbf16ps(1, 3, 6);
}

// uint16_t elements of pack_x's output for n tokens and k_main columns.
inline int64_t packed_size(int64_t n, int64_t k_main) {
  return (n + kTokens - 1) / kTokens * (k_main / 32) * kSplits * 512;
}

// 32 columns of one token (x32, 32 floats; nullptr: a padding token) as three bf16 terms in B-tile rows of
// row_dwords dwords: pair p of term s (columns 2p, 2p+1) goes to dword p * row_dwords + s * term_dwords of
// dst, dst pointing at this token's first dword. An inf or NaN carries the whole value in the first term.
// Needs AVX-512 BF16.
void pack_step(const float* x32, uint16_t* dst, int row_dwords, int term_dwords);

// Items [i0, i1) of xp = the first k_main (a multiple of 32) columns of x [n, ld] in bf16_rows' B-tile
// layout, [token block][k step of 32][split][k pair][token][2]: item i is k step i / n_pad of token
// i % n_pad (tokens from n to n_pad, the next multiple of 16, are zeros); there are n_pad * k_main / 32
// items. Disjoint ranges may be packed by different threads: k step major, so that two threads' ranges
// share no cache line but at their boundary (token-major ranges had both threads writing every line of
// the B tiles: the k and v projections at 16 tokens spent 42 % of their time packing). Needs AVX-512 BF16
// (every AMX CPU has it).
void pack_x(const float* x, int64_t n, int64_t ld, int64_t k_main, uint16_t* xp, int64_t i0, int64_t i1);

// out[i * n_pad + t] = sum over k < k_main of w[(r0 + i) * ld + k] * x[t][k] for i < kRows and t < n,
// with n_pad = n rounded up to 16 (the padding columns hold zeros). xp from pack_x. Needs AMX-BF16 with
// the tile state granted (isa_supported(Isa::amx)): call only when cpu_isa() == Isa::amx. next_r0 >= 0:
// the row block the caller does next, prefetched into L2 during this one.
void bf16_rows(const uint16_t* w, int64_t ld, int64_t k_main, int64_t r0, int64_t next_r0, const uint16_t* xp,
               int64_t n, float* out);

}  // namespace gptoss::cpu::amx
