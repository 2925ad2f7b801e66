// The AVX-512 VNNI version of the MXFP4 one-token dot product (decode), used by f32_mxfp4w_moe for experts
// with a single token in a pass when the CPU has VNNI (cpu_isa() >= Isa::vnni, isa.h). Internal to the CPU kernels.
//
// Integer dot products, exact to f32's level. Per block of 32, x is scaled to int24 (s = max |x| / 8350000)
// and split into three signed int8 limbs, x_q = l0 + 256 l1 + 65536 l2. A group of 4 blocks (64 bytes of
// codes) splits into its low nibbles (even elements) and high nibbles (odd elements); vpermb looks each code
// up as 2v + 12 (unsigned 0..24, e2m1 doubled and shifted up), and vpdpbusd multiplies those by the limbs and
// sums 4 products into each int32 lane (lane j covers 8 elements of block j / 4). The +12 adds 12 * sum x_q,
// subtracted by a per-lane constant packed with x. Per 64 bytes: 3 operations decode the codes (a shift, two
// vpermb) and 6 vpdpbusd, 3 shifts/adds, a convert, a spread of the block scales and 2 multiplies apply them;
// the e8m0 scales are converted 16 at a time. The f32 kernel (mxfp4_avx512.cpp) needs ~28, and its vpermps
// decode bound it on an Intel core: 1.03-1.09 ns a block from L2 there against 0.81 for the first version of
// this one (5 decode operations, the limbs combined apart, the scales converted per group), and 22 against
// 28 GB/s from DRAM with two threads. On the Zen 5 VM of 2026-12-02 (evening), one thread from L2: 0.85-0.91
// ns a block for that version, 0.71-0.74 for this one (0.78-0.80 with vpshufb and masks instead of vpermb).
#pragma once

#include <cstdint>

namespace gptoss::cpu::avx512 {

// One group of 128 activations packed for the VNNI kernel.
struct alignas(64) VnniGroup {
  int8_t limb[3][2][64];  // [limb][even / odd elements][block * 16 + j]: element 2j (+1) of the group's block
  int32_t corr[16];       // -12 * sum of x_q over lane j's 8 elements
  float scale[16];        // lane j: s of block j / 4, halved (the codes are doubled)
};

inline int64_t vnni_groups(int64_t cols) { return (cols + 127) / 128; }

// xl[0 .. vnni_groups(cols)) = x[0 .. cols) packed (cols a multiple of 32; missing blocks of the last group
// are zeros). With `group_order`, element c of x is read at group_pos(c) (mxfp4_avx512.h). Plain code.
void pack_vnni(const float* x, int64_t cols, bool group_order, VnniGroup* xl);

// out[i] = row (r0 + i) of an MXFP4 matrix (blocks [rows, nb, 16], scales [rows, nb]) dotted with the packed
// x, for i < rows. Needs AVX-512 VNNI: call only when cpu_isa() >= Isa::vnni.
void mxfp4_dot_rows_vnni(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t r0, int64_t rows,
                         const VnniGroup* xl, float* out);

}  // namespace gptoss::cpu::avx512
