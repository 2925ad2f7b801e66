// The AMX version of the MXFP4 expert passes of 4 or more tokens (decode batches and prefill), used by
// f32_mxfp4w_moe when cpu_isa() is Isa::amx (see isa.h). Internal to the CPU kernels.
//
// Each k step of 32 columns decodes 32 weight rows into two bf16 A tiles in L1 and multiplies them by three
// B tiles holding the tokens' activations as three bf16 terms (as in bf16_amx.h), so products are exact and
// sums f32. The columns follow the activations' group order (mxfp4_avx512.h): k step j of a 64-byte group
// takes byte j of each of its 16 dwords, whose low nibbles are group positions 32j .. 32j+15 and high
// nibbles 32j+16 .. 32j+31. So a B tile pairs neighbouring floats of the group-ordered rows. A code becomes
// its bf16 value by a table lookup (vpermw), and the block scale 2^(s-127) is added to the exponent of the
// non-zero values, exactly. The tiles flush subnormal inputs, products and sums, so the pass takes block
// scales 2^-63 .. 2^63 only (checkpoints use ~2^-12 .. 2^2) and leaves rows with another to the f32
// kernels; and an activation's third bf16 term is lost below ~2^-110 (as in bf16_amx.h).
//
// Cost per block of a row (32 weights), one thread on the 2026-12-02 Xeon VM: ~2.5 ns from L2 for any 1-16
// tokens (the decode ~1.5, the tile multiplies ~1: they do not overlap), against 1.9 / 2.4 / 3.2 ns for the
// f32 passes of 2 / 3 / 4 tokens and ~9 ns for the packed f32 GEMM at 8 tokens.
#pragma once

#include <cstdint>

#include "backend/cpu/bf16_amx.h"

namespace gptoss::cpu::amx {

inline constexpr int kMxfp4Rows = 32;  // weight rows per mxfp4_rows call

// Tokens per B tile for a pass of T tokens (1 .. 16): 4, 8 or 16.
inline int mxfp4_tile_tokens(int T) { return T <= 4 ? 4 : T <= 8 ? 8 : 16; }

// uint16_t elements of mxfp4_pack's output for T tokens and rows of pcols floats (a multiple of 128).
inline int64_t mxfp4_packed_size(int T, int64_t pcols) { return pcols / 32 * kSplits * 32 * mxfp4_tile_tokens(T); }

// xp = the T (<= 16) group-ordered activation rows xr[t] (pcols floats each, zero padded) in mxfp4_rows'
// B-tile layout, [k step][term][k pair][token][2]; tokens from T to the tile's width are zeros. Needs
// AVX-512 BF16 (every AMX CPU has it).
void mxfp4_pack(const float* const* xr, int T, int64_t pcols, uint16_t* xp);

// out[i * mxfp4_tile_tokens(T) + t] = row r0 + i of one MXFP4 expert (blocks [rows, nb, 16], scales
// [rows, nb], the hub layout) dotted with token t of xp, for i < kMxfp4Rows and t < T. Returns false, with
// out untouched, when a block scale of those rows is outside 2^-63 .. 2^63 (e8m0 64 .. 190). Reads the
// rows' blocks only (a partial last group is loaded masked). Needs AMX-BF16 with the tile state granted:
// call only when cpu_isa() == Isa::amx.
bool mxfp4_rows(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, const uint16_t* xp, int T,
                float* out);

}  // namespace gptoss::cpu::amx
