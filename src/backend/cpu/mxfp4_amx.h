// The AMX version of the MXFP4 expert passes of 4 or more tokens (decode batches and prefill), used by
// f32_mxfp4w_moe when cpu_isa() is Isa::amx (see isa.h). Internal to the CPU kernels.
//
// Each k step of 32 columns decodes 32 weight rows into two bf16 A tiles in L1 and multiplies them by B
// tiles holding the tokens' activations as three bf16 terms (as in bf16_amx.h), so products are exact and
// sums f32. A 64-byte group of a row (4 blocks) is read as 32 words, word i holding elements 4i .. 4i+3 of
// the group; k step q of the group takes nibble q of every word (a shift), so its A row is elements q,
// q+4, .. q+124, and mxfp4_pack gathers the activations in that order. A nibble plus 16 x its block indexes
// a 64-entry table of the row's group (vpermt2w): the 16 codes' bf16 values for each of the 4 blocks, the
// block scale 2^(s-127) added to the exponents of the non-zero ones, exactly. The tiles flush subnormal
// inputs, products and sums, so the pass takes block scales 2^-63 .. 2^63 only (checkpoints use
// ~2^-12 .. 2^2) and leaves rows with another to the f32 kernels; and an activation's third bf16 term is
// lost below ~2^-110 (as in bf16_amx.h).
//
// A TDPBF16PS costs the same for any B tile up to 12 columns wide, so up to 8 tokens the three terms of each
// token are columns of one or two B tiles (2 or 4 multiplies a k step, each term summed apart and the three
// added at the end); from 9 tokens each term is a B tile of up to 16 tokens (6 multiplies a block of
// tokens, the terms summed into the same C), and a pass takes up to 32 tokens in two such blocks, so a
// prefill's expert decodes its rows once per 32 tokens. Cost per block of a row (32 weights), one thread,
// from L2, 2026-12-02 Xeon VM: 1.6-1.9 ns at 1-5 tokens, 2.2-2.5 at 6-12, 3.1-3.3 at 13-16, 5.5-5.6 at 32;
// of that the decode is ~1.25 (it does not overlap with the tile multiplies). The f32 passes of 2 / 3
// tokens cost 1.8 / 2.3 ns. From DRAM the passes of 2-4 tokens all cost ~2-2.9 ns a block a thread: there
// a thread's memory parallelism, not the arithmetic, is the limit.
#pragma once

#include <cstdint>

#include "backend/cpu/bf16_amx.h"

namespace gptoss::cpu::amx {

inline constexpr int kMxfp4Rows = 32;      // weight rows per mxfp4_rows call
inline constexpr int kMaxPassTokens = 32;  // most tokens per mxfp4_rows call
// Up to this many tokens a pass puts the three terms of its tokens side by side as B-tile columns (3T of
// them, in one tile up to 5 tokens, else two); with more, each term has its own B tile of up to 16 tokens,
// the three summed into the same C tiles, and from 17 tokens two such blocks of tokens share each decode.
inline constexpr int kColumnTokens = 8;

// B tiles of a k step in the column layout (T <= kColumnTokens), and the columns of the first.
inline int mxfp4_b_tiles(int T) { return T <= 5 ? 1 : 2; }
inline int mxfp4_first_tile_columns(int T) { return T <= 5 ? 3 * T : (3 * T + 1) / 2; }

// uint16_t elements of mxfp4_pack's output for T tokens and rows of pcols floats (a multiple of 32).
inline int64_t mxfp4_packed_size(int T, int64_t pcols) {
  return pcols / 32 * 16 * 2 * (T <= kColumnTokens ? 3 * T : T <= 16 ? 48 : 96);
}

// xp = the T (1 .. kMaxPassTokens) group-ordered activation rows xr[t] (pcols floats each, a multiple of 128, zero
// padded) in mxfp4_rows' B-tile layout, k step by k step: with T <= kColumnTokens, 16 k pairs of 3T dwords,
// dword 3t + s being token t's term s (the first mxfp4_first_tile_columns(T) of them one tile, the rest
// the other); with more, [token block of 16][term][k pair][16 dwords], dword t % 16 token t's. Needs
// AVX-512 BF16 (every AMX CPU has it).
void mxfp4_pack(const float* const* xr, int T, int64_t pcols, uint16_t* xp);

// out[i * kMaxPassTokens + t] = row r0 + i of one MXFP4 expert (blocks [rows, nb, 16], scales [rows, nb], the hub
// layout) dotted with token t of xp, for i < kMxfp4Rows and t < T (the other entries of out are scratch).
// Returns false, with out untouched, when a block scale of those rows is outside 2^-63 .. 2^63 (e8m0
// 64 .. 190). Reads the rows' blocks only (a partial last group is loaded masked). Needs AMX-BF16 with the
// tile state granted: call only when cpu_isa() == Isa::amx.
bool mxfp4_rows(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, const uint16_t* xp, int T,
                float* out);

}  // namespace gptoss::cpu::amx
