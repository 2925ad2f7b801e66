// MXFP4 expert projections for few token-slots (decode at small batches) on the CUDA cores with integer
// dot products; x is carried to 2^-20 of each block's largest |x| (f32 itself rounds to 2^-24 of it).
//
// An e2m1 code is k / 2 with k in {0, ±1, ±2, ±3, ±4, ±6, ±8, ±12}: byte permutes turn four codes into
// four int8 k (decode8). x is split per block of 32 values into three int8 limbs: with m = max |x| < 2^e,
// u = x 2^(6 - e) in (-64, 64), l0 = rint(u), l1 = rint((u - l0) 2^7), l2 = rint(((u - l0) 2^7 - l1) 2^7),
// all exact in f32 and in [-64, 64]; x = 2^(e - 20) (l0 2^14 + l1 2^7 + l2) to within 2^-20 m (f32's own
// rounding of m is 2^-24 m). __dp4a sums four k * l products a step; a block's three limb sums combine
// exactly in an int32 (|sum| <= 32 * 12 * 64 * (2^14 + 2^7 + 1) < 2^31) and meet the two block scales
// in one f32 multiply-add.
//
// Grid (thread blocks a slot, token-slots), 32 warps a block, one block an SM: a block splits its slot's x
// into limbs in shared memory (104 bytes a block of 32: the 8-byte reads of 16 lanes fall on distinct
// banks), then each warp walks the slot's rows; lane l takes whole blocks l, l + 32, l + 64 of a row (one
// 16-byte load each), and the next row's loads go out before the current row is multiplied.
// H200, 20b shape, Nsight Compute at batch 1: gate_up 22.8 / down 13.9 us a layer, against 28.75 / 18.3
// for the kernels this replaced (a warp per row pair, the e2m1 value looked up in a shared-memory table
// a weight: ~8 instructions a weight, issue-bound); decode batch 1 / 2 / 4 398 / 600 / 886 tok/s against
// 367 / 533 / 738. Measured on the way: the same integer kernel with one row pair a warp and x split in
// every thread block (no faster than the table: the split cost as much as the dot products), 16 warps a
// block (equal).
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/moe_mxfp4.cuh"

namespace gptoss::cuda {
namespace {

// One block of x: limb l of values 4j .. 4j + 3 in word l[.][j] (value 4j + i in byte i), and its factor.
struct XBlock {
  int32_t limb[3][8];
  float factor;  // 2^(e - 20)
  float pad;
};
static_assert(sizeof(XBlock) == 104);

// x[0 .. 32 nb) of one token into xq (a warp a block); every thread of the thread block calls it. The
// powers of two are built from exponent bits: e = max(exponent of m + 1, -100) keeps 2^(6 - e) and
// 2^(e - 20) normal floats (blocks below 2^-100 lose their low limbs); inf or NaN in a block makes its
// factor NaN (fmaxf would pass over a NaN).
__device__ void load_limbs(const float* x, int64_t nb, XBlock* xq) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64_t b = warp; b < nb; b += warps) {
    const float v = x[32 * b + lane];
    const int biased = (__float_as_int(warp_max(fabsf(v))) >> 23) & 0xff;
    const int e = max(biased - 126, -100);  // max |v| < 2^e
    const float u = v * __int_as_float((133 - e) << 23);
    const float l0 = rintf(u), r1 = (u - l0) * 128.f, l1 = rintf(r1), l2 = rintf((r1 - l1) * 128.f);
    int8_t* bytes = reinterpret_cast<int8_t*>(xq[b].limb);
    bytes[lane] = int8_t(l0);
    bytes[32 + lane] = int8_t(l1);
    bytes[64 + lane] = int8_t(l2);
    const bool not_finite = __any_sync(0xffffffffu, !isfinite(v));
    if (lane == 0) xq[b].factor = not_finite ? __int_as_float(0x7fc00000) : __int_as_float((107 + e) << 23);
  }
  __syncthreads();
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(selector));
  return r;
}

// The eight codes of w as int8 k = 2 x value: codes 0..3 in lo, 4..7 in hi (code i in byte i % 4). prmt
// looks up four bytes a call (selector nibble i picks byte i; its bit 3 would mean sign replication, so
// the sign bits are masked off once for all eight codes); a third prmt takes byte i from the positive
// table's result (selector i) or, with code i's sign bit set, from the negative one's (i + 4).
__device__ __forceinline__ void decode8(uint32_t w, int& lo, int& hi) {
  constexpr uint32_t kPos0 = 0x03020100u, kPos1 = 0x0c080604u;  // 0 1 2 3 | 4 6 8 12
  constexpr uint32_t kNeg0 = 0xfdfeff00u, kNeg1 = 0xf4f8fafcu;  // 0 -1 -2 -3 | -4 -6 -8 -12
  const uint32_t mag = w & 0x77777777u, mag_hi = mag >> 16;
  const uint32_t pick = ((w >> 1) & 0x44444444u) | 0x32103210u;
  lo = int(prmt(prmt(kPos0, kPos1, mag), prmt(kNeg0, kNeg1, mag), pick));
  hi = int(prmt(prmt(kPos0, kPos1, mag_hi), prmt(kNeg0, kNeg1, mag_hi), pick >> 16));
}

constexpr int kWarps = 32;
constexpr int kChunk = 3;  // blocks a lane per pass

// The weights of one pass over a row (blocks b0, b0 + 32, b0 + 64) in registers, and their products.
struct Pass {
  uint4 wv[kChunk];
  float sc[kChunk];

  __device__ __forceinline__ void load(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t b0) {
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int64_t b = b0 + 32 * c;
      if (b < nb) {
        wv[c] = *reinterpret_cast<const uint4*>(blocks + b * 16);
        sc[c] = e8m0(scales[b]);
      }
    }
  }

  __device__ __forceinline__ float dot(const XBlock* xq, int64_t nb, int64_t b0) const {
    float acc = 0.f;
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int64_t b = b0 + 32 * c;
      if (b >= nb) break;
      const XBlock& xb = xq[b];
      int s[3] = {0, 0, 0};
#pragma unroll
      for (int q = 0; q < 4; ++q) {  // word q: codes 8q .. 8q + 7
        const uint32_t w = q == 0 ? wv[c].x : q == 1 ? wv[c].y : q == 2 ? wv[c].z : wv[c].w;
        int lo, hi;
        decode8(w, lo, hi);
#pragma unroll
        for (int l = 0; l < 3; ++l) {
          const int2 xl = *reinterpret_cast<const int2*>(&xb.limb[l][2 * q]);
          s[l] = __dp4a(hi, xl.y, __dp4a(lo, xl.x, s[l]));
        }
      }
      const int sum = s[0] * 16384 + s[1] * 128 + s[2];
      acc = fmaf(float(sum), sc[c] * (xb.factor * 0.5f), acc);  // k = 2 x value
    }
    return acc;
  }
};

// A warp walks its slot's row groups g = its index among the slot's warps, + their number, ... (R rows: a
// gate/up pair, or one down row). out[ts][g] = SwiGLU(gate + bias, up + bias) (kGateUp, R = 2) or
// out[ts][R g + r] = row + bias.
template <int R, bool kGateUp>
__global__ void __launch_bounds__(32 * kWarps, 1) small_kernel(const float* x, int x_div, const int32_t* idx,
                                                              ExpertWeights W, float limit, float* out,
                                                              int64_t groups) {
  extern __shared__ XBlock xq[];
  grid_wait();
  const int64_t ts = blockIdx.y;
  const int e = idx[ts];
  const int lane = threadIdx.x & 31;
  const int64_t nb = W.cols / 32, span = 32 * kChunk, passes = (nb + span - 1) / span;
  const int64_t stride = int64_t(gridDim.x) * kWarps;
  const uint8_t* blocks = W.blocks + int64_t(e) * W.rows * nb * 16;
  const uint8_t* scales = W.scales + int64_t(e) * W.rows * nb;
  const uint16_t* bias = W.bias + int64_t(e) * W.rows;
  // Units (group g, its row r, pass j) in order; each unit's loads go out before the previous one is
  // multiplied, so a warp always has one unit of weights in flight.
  auto load = [&](Pass& p, int64_t g, int r, int64_t j) {
    const int64_t row = g * R + r;
    p.load(blocks + row * nb * 16, scales + row * nb, nb, lane + j * span);
  };
  int64_t g = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5), j = 0;
  int r = 0;
  Pass cur, next;
  if (g < groups) load(cur, g, 0, 0);
  load_limbs(x + (ts / x_div) * W.cols, nb, xq);
  float acc[R];
#pragma unroll
  for (int i = 0; i < R; ++i) acc[i] = 0.f;
  while (g < groups) {
    int64_t gn = g, jn = j + 1;
    int rn = r;
    if (jn == passes) {
      jn = 0;
      if (++rn == R) rn = 0, gn += stride;
    }
    if (gn < groups) load(next, gn, rn, jn);
    const float a = cur.dot(xq, nb, lane + j * span);
#pragma unroll
    for (int i = 0; i < R; ++i)
      if (i == r) acc[i] += a;
    if (gn != g) {  // the group's last unit: reduce, store, start the next group
#pragma unroll
      for (int i = 0; i < R; ++i) acc[i] = warp_sum(acc[i]);
      if (lane == 0) {
        if constexpr (kGateUp)
          out[ts * groups + g] =
              swiglu(acc[0] + bf16_to_f32(bias[2 * g]), acc[1] + bf16_to_f32(bias[2 * g + 1]), limit);
        else
#pragma unroll
          for (int i = 0; i < R; ++i) out[ts * W.rows + g * R + i] = acc[i] + bf16_to_f32(bias[g * R + i]);
      }
#pragma unroll
      for (int i = 0; i < R; ++i) acc[i] = 0.f;
    }
    cur = next;
    g = gn;
    r = rn;
    j = jn;
  }
}

}  // namespace

void launch_moe_mxfp4_small(const float* x, int k, const int32_t* idx, const ExpertWeights& gate_up,
                            const ExpertWeights& down, float swiglu_limit, float* h, float* y, int64_t slots,
                            cudaStream_t s) {
  GPTOSS_CHECK(gate_up.cols % 32 == 0 && down.cols % 32 == 0 && gate_up.rows == 2 * down.cols,
               "cuda MXFP4 MoE: gate_up [{} x {}] / down [{} x {}] are not MXFP4 expert shapes", gate_up.rows,
               gate_up.cols, down.rows, down.cols);
  const size_t smem_gu = size_t(gate_up.cols / 32) * sizeof(XBlock), smem_dn = size_t(down.cols / 32) * sizeof(XBlock);
  GPTOSS_CHECK(std::max(smem_gu, smem_dn) <= 48 * 1024,
               "cuda MXFP4 MoE: hidden {} / intermediate {} do not fit the kernels' 48 KB of shared memory",
               gate_up.cols, down.cols);
  // One wave: a thread block an SM, shared out among the slots.
  auto run = [&](auto kernel, const float* in, int x_div, const ExpertWeights& W, float limit, float* o,
                 int64_t groups, size_t smem) {
    const int64_t per_slot = std::clamp<int64_t>(num_sms() / slots, 1, ceil_div(groups, kWarps));
    launch(kernel, dim3(unsigned(per_slot), unsigned(slots)), 32 * kWarps, smem, s, in, x_div, idx, W, limit, o,
           groups);
  };
  run(small_kernel<2, true>, x, k, gate_up, swiglu_limit, h, gate_up.rows / 2, smem_gu);
  run(small_kernel<1, false>, h, 1, down, 0.f, y, down.rows, smem_dn);
}

}  // namespace gptoss::cuda
