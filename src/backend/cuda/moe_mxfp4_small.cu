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
// into limbs in shared memory (XBlock: two loads a word of codes), then each warp walks the slot's rows;
// lane l takes whole blocks l, l + 32, l + 64 of a row (one 16-byte load each), and the next row's loads go
// out before the current row is multiplied. Offsets within an expert are int32, the e8m0 scales go through
// a table in shared memory, and the two register sets of loads take turns (no copy).
// H200, 20b shape, Nsight Compute at batch 1: gate_up 22.8 / down 13.9 us a layer, against 28.75 / 18.3
// for the kernels this replaced (a warp per row pair, the e2m1 value looked up in a shared-memory table
// a weight: ~8 instructions a weight, issue-bound); decode batch 1 / 2 / 4 398 / 600 / 886 tok/s against
// 367 / 533 / 738. Then 11.7 -> 9.8 M instructions for gate_up (three limb loads a word -> two, int64
// offsets and the e8m0 branches out, no Pass copy): batch 1 / 4 / 8 468 / 947 / 1270 against 455 / 908 /
// 1206. Measured on the way: the same integer kernel with one row pair a warp and x split in every thread
// block (no faster than the table: the split cost as much as the dot products), 16 warps a block (equal);
// see docs/performance.md for the tensor-core and shared-memory-ring variants that lost.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/moe_mxfp4.cuh"

namespace gptoss::cuda {
namespace {

// One block of x, read by one lane: for word q (values 8q .. 8q + 7), limbs 0 and 1 in l01[q] = {limb 0 of
// values 8q .. 8q + 3, of 8q + 4 .. 8q + 7, limb 1 of the same} and limb 2 in l2[q] (value 8q + i in byte
// i % 4), so a word's limbs take two loads; factor = 2^(e - 21) (the limbs' 2^(e - 20), halved for
// k = 2 x value). 112 bytes: the 16-byte reads of 8 lanes (blocks b .. b + 7) fall on distinct banks.
struct XBlock {
  uint4 l01[4];
  uint2 l2[4];
  float factor, pad[3];
};
static_assert(sizeof(XBlock) == 112);

// x[0 .. 32 nb) of one token into xq (a warp a block); every thread of the thread block calls it. The
// powers of two are built from exponent bits: e = max(exponent of m + 1, -100) keeps 2^(6 - e) and
// 2^(e - 21) normal floats (blocks below 2^-100 lose their low limbs); inf or NaN in a block makes its
// factor NaN (fmaxf would pass over a NaN).
__device__ void load_limbs(const float* x, int nb, XBlock* xq) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int b = warp; b < nb; b += warps) {
    const float v = x[32 * b + lane];
    const int biased = (__float_as_int(warp_max(fabsf(v))) >> 23) & 0xff;
    const int e = max(biased - 126, -100);  // max |v| < 2^e
    const float u = v * __int_as_float((133 - e) << 23);
    const float l0 = rintf(u), r1 = (u - l0) * 128.f, l1 = rintf(r1), l2 = rintf((r1 - l1) * 128.f);
    int8_t* bytes = reinterpret_cast<int8_t*>(&xq[b]);
    const int q = lane >> 3, i = lane & 7;
    bytes[16 * q + i] = int8_t(l0);
    bytes[16 * q + 8 + i] = int8_t(l1);
    bytes[64 + 8 * q + i] = int8_t(l2);
    const bool not_finite = __any_sync(0xffffffffu, !isfinite(v));
    if (lane == 0) xq[b].factor = not_finite ? __int_as_float(0x7fc00000) : __int_as_float((106 + e) << 23);
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
constexpr int kSpan = 32 * kChunk;
constexpr int kTableBytes = 256 * sizeof(float);  // e8m0 -> f32

// The weights of one pass over a row (blocks b0, b0 + 32, b0 + 64) in registers: codes and scale bytes.
struct Pass {
  uint4 wv[kChunk];
  uint32_t sb[kChunk];

  // Row `row` of an expert whose codes and scales start at blocks / scales (offsets within an expert fit
  // an int32).
  __device__ __forceinline__ void load(const uint8_t* blocks, const uint8_t* scales, int nb, int row, int b0) {
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int b = b0 + 32 * c;
      if (b < nb) {
        wv[c] = __ldg(reinterpret_cast<const uint4*>(blocks) + (row * nb + b));
        sb[c] = __ldg(scales + row * nb + b);
      }
    }
  }

  __device__ __forceinline__ float dot(const XBlock* xq, const float* table, int nb, int b0) const {
    float acc = 0.f;
#pragma unroll
    for (int c = 0; c < kChunk; ++c) {
      const int b = b0 + 32 * c;
      if (b >= nb) break;
      const XBlock& xb = xq[b];
      int s0 = 0, s1 = 0, s2 = 0;
#pragma unroll
      for (int q = 0; q < 4; ++q) {  // word q: codes 8q .. 8q + 7
        const uint32_t w = q == 0 ? wv[c].x : q == 1 ? wv[c].y : q == 2 ? wv[c].z : wv[c].w;
        int lo, hi;
        decode8(w, lo, hi);
        const uint4 l01 = xb.l01[q];
        const uint2 l2 = xb.l2[q];
        s0 = __dp4a(hi, int(l01.y), __dp4a(lo, int(l01.x), s0));
        s1 = __dp4a(hi, int(l01.w), __dp4a(lo, int(l01.z), s1));
        s2 = __dp4a(hi, int(l2.y), __dp4a(lo, int(l2.x), s2));
      }
      acc = fmaf(float(s0 * 16384 + s1 * 128 + s2), table[sb[c]] * xb.factor, acc);
    }
    return acc;
  }
};

// A warp's units in order: (group g, its row r, pass j), g = its index among the slot's warps, + stride.
struct Unit {
  int g, r, j;
  __device__ __forceinline__ Unit next(int rows_a_group, int passes, int stride) const {
    Unit n = *this;
    if (++n.j == passes) {
      n.j = 0;
      if (++n.r == rows_a_group) n.r = 0, n.g += stride;
    }
    return n;
  }
};

// A warp walks its slot's row groups g = its index among the slot's warps, + their number, ... (R rows: a
// gate/up pair, or one down row). out[ts][g] = SwiGLU(gate + bias, up + bias) (kGateUp, R = 2) or
// out[ts][R g + r] = row + bias. Each unit's loads go out before the previous one is multiplied, so a warp
// always has one unit of weights in flight (two Pass buffers taking turns).
template <int R, bool kGateUp>
__global__ void __launch_bounds__(32 * kWarps, 1) small_kernel(const float* x, int x_div, const int32_t* idx,
                                                              ExpertWeights W, float limit, float* out, int groups) {
  extern __shared__ __align__(16) uint8_t smem[];
  float* table = reinterpret_cast<float*>(smem);
  XBlock* xq = reinterpret_cast<XBlock*>(smem + kTableBytes);
  for (int i = threadIdx.x; i < 256; i += blockDim.x) table[i] = e8m0(uint32_t(i));
  grid_wait();
  const int ts = int(blockIdx.y);
  const int e = idx[ts];
  const int lane = threadIdx.x & 31;
  const int nb = int(W.cols / 32), passes = (nb + kSpan - 1) / kSpan, stride = int(gridDim.x) * kWarps;
  const uint8_t* blocks = W.blocks + int64_t(e) * W.rows * nb * 16;
  const uint8_t* scales = W.scales + int64_t(e) * W.rows * nb;
  const uint16_t* bias = W.bias + int64_t(e) * W.rows;
  Unit u{int(blockIdx.x) * kWarps + int(threadIdx.x >> 5), 0, 0};
  Pass pa, pb;
  if (u.g < groups) pa.load(blocks, scales, nb, u.g * R, lane);
  load_limbs(x + int64_t(ts / x_div) * W.cols, nb, xq);  // and its barrier covers the table
  float acc[R];
#pragma unroll
  for (int i = 0; i < R; ++i) acc[i] = 0.f;
  auto step = [&](const Pass& cur, Pass& next) {
    const Unit n = u.next(R, passes, stride);
    if (n.g < groups) next.load(blocks, scales, nb, n.g * R + n.r, lane + n.j * kSpan);
    const float a = cur.dot(xq, table, nb, lane + u.j * kSpan);
#pragma unroll
    for (int i = 0; i < R; ++i)
      if (i == u.r) acc[i] += a;
    if (n.g != u.g) {  // the group's last unit: reduce, store, start the next group
#pragma unroll
      for (int i = 0; i < R; ++i) acc[i] = warp_sum(acc[i]);
      if (lane == 0) {
        const int g = u.g;
        if constexpr (kGateUp)
          out[int64_t(ts) * groups + g] =
              swiglu(acc[0] + bf16_to_f32(bias[2 * g]), acc[1] + bf16_to_f32(bias[2 * g + 1]), limit);
        else
#pragma unroll
          for (int i = 0; i < R; ++i) out[int64_t(ts) * W.rows + g * R + i] = acc[i] + bf16_to_f32(bias[g * R + i]);
      }
#pragma unroll
      for (int i = 0; i < R; ++i) acc[i] = 0.f;
    }
    u = n;
    return u.g < groups;
  };
  if (u.g < groups)
    while (step(pa, pb) && step(pb, pa)) {
    }
}

}  // namespace

void launch_moe_mxfp4_small(const float* x, int k, const int32_t* idx, const ExpertWeights& gate_up,
                            const ExpertWeights& down, float swiglu_limit, float* h, float* y, int64_t slots,
                            cudaStream_t s) {
  GPTOSS_CHECK(gate_up.cols % 32 == 0 && down.cols % 32 == 0 && gate_up.rows == 2 * down.cols,
               "cuda MXFP4 MoE: gate_up [{} x {}] / down [{} x {}] are not MXFP4 expert shapes", gate_up.rows,
               gate_up.cols, down.rows, down.cols);
  GPTOSS_CHECK(std::max(gate_up.rows * gate_up.cols, down.rows * down.cols) / 2 < (int64_t(1) << 31),
               "cuda MXFP4 MoE: an expert of [{} x {}] / [{} x {}] is over 2 GB", gate_up.rows, gate_up.cols,
               down.rows, down.cols);
  const size_t smem_gu = kTableBytes + size_t(gate_up.cols / 32) * sizeof(XBlock);
  const size_t smem_dn = kTableBytes + size_t(down.cols / 32) * sizeof(XBlock);
  GPTOSS_CHECK(std::max(smem_gu, smem_dn) <= 48 * 1024,
               "cuda MXFP4 MoE: hidden {} / intermediate {} do not fit the kernels' 48 KB of shared memory",
               gate_up.cols, down.cols);
  // One wave: a thread block an SM, shared out among the slots.
  auto run = [&](auto kernel, const float* in, int x_div, const ExpertWeights& W, float limit, float* o,
                 int64_t groups, size_t smem) {
    const int64_t per_slot = std::clamp<int64_t>(num_sms() / slots, 1, ceil_div(groups, kWarps));
    launch(kernel, dim3(unsigned(per_slot), unsigned(slots)), 32 * kWarps, smem, s, in, x_div, idx, W, limit, o,
           int(groups));
  };
  run(small_kernel<2, true>, x, k, gate_up, swiglu_limit, h, gate_up.rows / 2, smem_gu);
  run(small_kernel<1, false>, h, 1, down, 0.f, y, down.rows, smem_dn);
}

}  // namespace gptoss::cuda
