// The AVX-512 version of the MXFP4 few-token dot products (decode), used by f32_mxfp4w_moe when
// cpu_isa() is AVX-512 (see isa.h). Internal to the CPU kernels.
//
// Group order. A row is read 4 blocks (64 bytes, 128 elements) at a time as 16 dwords; in the hub's byte
// order (byte j = elements 2j, 2j+1) dword d holds elements 8d .. 8d+7 of the group, element 8d + p in
// bits 4p .. 4p+3. Shifting all 16 dwords right by 4p and looking up each low nibble in a 16-entry f32
// table (vpermps; the sign is part of the code) decodes elements 8d + p, d = 0..15, in one instruction,
// exactly. The activations are stored in that order, [group][p][d]: element c of a row lives at
// group_pos(c), and rows are padded with zeros to a multiple of 128.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace gptoss::cpu::avx512 {

inline constexpr int64_t kGroup = 128;

inline int64_t padded_cols(int64_t cols) { return (cols + kGroup - 1) / kGroup * kGroup; }
inline int64_t group_pos(int64_t c) { return c / kGroup * kGroup + (c % 8) * 16 + (c % kGroup) / 8; }

// xq[t] (stride padded_cols(cols)) = the first `cols` elements of row t of x (stride ld) in group
// order, zero padded, for n rows. Plain code: callable on any CPU.
void permute_rows(const float* x, int64_t n, int64_t ld, int64_t cols, float* xq);

// out[i * T + t] = row (r0 + i) of an MXFP4 matrix (blocks [rows, nb, 16], scales [rows, nb]: the
// hub layout of one expert, total_rows rows) dotted with xq[t] (group order), for i < rows and t < T (1..8).
// It may read any byte of the expert's rows (never past row total_rows). Needs AVX-512 (F, BW, VL): call
// only when cpu_isa() >= Isa::avx512.
void mxfp4_dot_rows(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, int64_t rows,
                    int64_t total_rows, const float* const* xq, int T, float* out);

// The packed GEMM's panel (simd::gemm_panel) in group order: panel[(g - g0) * 128 + k][16] = row r0 + i
// (i < rows <= 16; missing rows are zero) of one MXFP4 expert at group position k of group g, block scale
// applied, for groups [g0, g1) (the last group may be partial: its missing blocks are zero). Rows are
// decoded a group at a time as in mxfp4_dot_rows and transposed 16 x 16; panel is 64-byte aligned.
void mxfp4_pack_panel(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, int rows, int64_t g0,
                      int64_t g1, float* panel);

// 2^(s-127) for the e8m0 scales s[0 .. n) (n <= 16) in lanes 0 .. n-1, exactly as e8m0_to_f32: s = 0 is
// the subnormal 2^-127, s = 255 NaN. Lanes from n on hold 2^-127 (their blocks are absent, their sums 0).
// For the AVX-512 kernels (this file's and mxfp4_vnni.cpp's): inlined into functions compiled for AVX-512.
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline __m512 e8m0_scales16(const uint8_t* s,
                                                                                               int n) {
  const __m512i e = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(__mmask16((1u << n) - 1), s));
  __m512i f = _mm512_slli_epi32(e, 23);
  f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(e, _mm512_setzero_si512()), _mm512_set1_epi32(0x00400000));
  f = _mm512_mask_mov_epi32(f, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)), _mm512_set1_epi32(0x7fc00000));
  return _mm512_castsi512_ps(f);
}

}  // namespace gptoss::cpu::avx512
