// The MXFP4 expert projections (gate_up + SwiGLU, down) on the tensor cores, exact to f32 level.
//
// mma.sync m16n8k16 multiplies f16 inputs exactly and sums in f32. An e2m1 code becomes an f16 with two
// shifts and masks: its sign to bit 15 and its 3 magnitude bits to bits 9..11 give the f16 of its value
// times 2^-14 (code 1 lands on the subnormal 2^-15), undone on the sums. x (f32) is scaled by a power of
// two per row (max |x| < 2^14) and split into three f16 limbs x = l0 + l1 + l2 (33 significant bits, more
// than f32's 24) by limbs_kernel; the limbs are columns 0..2 of the mma's B operand. Each block of 32
// codes (one e8m0 scale) takes two k-steps into a fresh accumulator that is scaled into the running sums.
//
// The token-slots are grouped by expert (group_slots_kernel), and a warp's tile of 16 decoded rows of an
// expert serves all slots of a chunk of them: chunks of up to 8 slots below kGroupedMinSlots
// (mxfp4_stream_kernel, decode batches, weights streamed through shared memory), of up to 32 from there
// (mxfp4_grouped_kernel, prefill). Each selected expert is read once per chunk.
// Lane (g = lane / 4, t = lane % 4) loads bytes 4t .. 4t + 3 of each block of rows g and g + 8: codes
// 8t .. 8t + 7, code i in bits 4i .. 4i + 3. The f16 pair of
// codes (p, p + 4) is one fragment register; in k-step s the mma's columns {2t, 2t + 1} hold pair
// p = 2s, columns {2t + 8, 2t + 9} pair p = 2s + 1, and the B registers of the limbs follow the same order.
#include <algorithm>
#include <type_traits>
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/moe_mxfp4.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kTcWarps = 4;
// From here chunks of 32 slots (mxfp4_grouped_kernel), below it chunks of 8 (mxfp4_stream_kernel).
// H200, 20b shape, 8-slot chunks against 32-slot chunks: 320 slots (decode batch 80) 2529 vs 2354 tok/s;
// 512 slots (batch 128, pp128) 3066 / 3718 vs 3226 / 3945; 2048 slots (pp512) 4930 vs 6106.
constexpr int64_t kGroupedMinSlots = 416;
constexpr int kLimbs = 3;
constexpr int kXfLanes = 4 * kLimbs;  // lanes whose B columns hold a limb (g < 3)

__device__ __forceinline__ uint32_t half2_bits(__half lo, __half hi) {
  return uint32_t(__half_as_ushort(lo)) | uint32_t(__half_as_ushort(hi)) << 16;
}

// One thread block a row of x (cols = 32 nb values): xf[row][b][4 l + t] = limb l of x[32 b + 8 t + ..] *
// 2^shift in B-register order (pairs (0, 4), (1, 5), (2, 6), (3, 7)); unscale[row] = 2^(14 - shift).
__global__ void limbs_kernel(const float* x, int64_t nb, uint4* xf, float* unscale) {
  grid_wait();
  __shared__ float warp_max_abs[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * nb * 32;
  float m = 0.f;
  for (int64_t i = threadIdx.x; i < nb * 32; i += blockDim.x) m = fmaxf(m, fabsf(xr[i]));
  m = warp_max(m);
  if ((threadIdx.x & 31) == 0) warp_max_abs[threadIdx.x >> 5] = m;
  __syncthreads();
  for (int w = 0; w < int(blockDim.x >> 5); ++w) m = fmaxf(m, warp_max_abs[w]);
  int e = 0;
  frexpf(m, &e);  // m < 2^e (e = 0 for m = 0)
  const int shift = max(-100, min(100, 14 - e));
  const float scale = ldexpf(1.f, shift);
  if (threadIdx.x == 0) unscale[row] = ldexpf(1.f, 14 - shift);
  uint4* out = xf + row * nb * kXfLanes;
  for (int64_t item = threadIdx.x; item < nb * 4; item += blockDim.x) {
    const float4* src = reinterpret_cast<const float4*>(xr + item * 8);
    const float4 p = src[0], q = src[1];
    float lo[4] = {p.x, p.y, p.z, p.w}, hi[4] = {q.x, q.y, q.z, q.w};
    uint32_t r[kLimbs][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float a = lo[j] * scale, b = hi[j] * scale;
#pragma unroll
      for (int l = 0; l < kLimbs; ++l) {
        const __half ha = __float2half_rn(a), hb = __float2half_rn(b);
        r[l][j] = half2_bits(ha, hb);
        a -= __half2float(ha);
        b -= __half2float(hb);
      }
    }
    const int64_t b = item / 4, t = item % 4;
#pragma unroll
    for (int l = 0; l < kLimbs; ++l) out[b * kXfLanes + 4 * l + t] = make_uint4(r[l][0], r[l][1], r[l][2], r[l][3]);
  }
}

// Codes p and p + 4 of w as an f16 pair (values times 2^-14).
template <int p>
__device__ __forceinline__ uint32_t e2m1_pair(uint32_t w) {
  const uint32_t sign = (p == 3 ? w : w << (12 - 4 * p)) & 0x80008000u;
  const uint32_t mag = (p == 3 ? w >> 3 : w << (9 - 4 * p)) & 0x0e000e00u;
  return sign | mag;
}

__device__ __forceinline__ void mma_16816(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                          uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The sums va, vb of rows ra and ra + 8 (ra = 16 i + g in lane (g, t)) of one slot, whose output row is
// out_slot: gate_up (rows 2p gate, 2p + 1 up, the up in the lane 4 higher) writes SwiGLU at pair p, down
// writes the row; both add the bias. Every lane calls it (the shuffle); only lanes with `write` store.
template <bool kGateUp>
__device__ __forceinline__ void store_rows(const ExpertWeights& W, int e, float* out_slot, int64_t ra, float va,
                                           float vb, float limit, bool write) {
  const uint16_t* bias = W.bias + int64_t(e) * W.rows;
  const int64_t rb = ra + 8;
  if constexpr (kGateUp) {
    const float ua = __shfl_down_sync(0xffffffffu, va, 4), ub = __shfl_down_sync(0xffffffffu, vb, 4);
    if (!write || (ra & 1)) return;
    if (ra + 1 < W.rows)
      out_slot[ra / 2] = swiglu(va + bf16_to_f32(bias[ra]), ua + bf16_to_f32(bias[ra + 1]), limit);
    if (rb + 1 < W.rows)
      out_slot[rb / 2] = swiglu(vb + bf16_to_f32(bias[rb]), ub + bf16_to_f32(bias[rb + 1]), limit);
  } else {
    if (!write) return;
    if (ra < W.rows) out_slot[ra] = va + bf16_to_f32(bias[ra]);
    if (rb < W.rows) out_slot[rb] = vb + bf16_to_f32(bias[rb]);
  }
}

// --- Slots grouped by expert ------------------------------------------------------------------------
// With many token-slots each selected expert serves several of them: the grouped kernels decode a tile
// of an expert's codes once and run it against up to kChunk slots (4 column groups of 8 tokens as the
// mma's B columns, the three limbs one after another into the same accumulator).
constexpr int kChunk = 32;

struct SlotChunk {
  int32_t expert, begin, count;  // slots order[begin .. begin + count) all select expert
};

// One thread block: order = the slots sorted by expert (any order within an expert: a slot's sums do not
// depend on its column), chunks = runs of up to kChunk slots of one expert, then empty ones up to
// max_chunks (the grid's size).
__global__ void group_slots_kernel(const int32_t* idx, int slots, int experts, int chunk, int max_chunks,
                                   int32_t* order, SlotChunk* chunks) {
  grid_wait();
  __shared__ int count[128], offset[128], cursor[128];
  for (int e = threadIdx.x; e < experts; e += blockDim.x) count[e] = cursor[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < slots; i += blockDim.x) atomicAdd(&count[idx[i]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int off = 0, nc = 0;
    for (int e = 0; e < experts; ++e) {
      offset[e] = off;
      for (int c = 0; c < count[e]; c += chunk) chunks[nc++] = SlotChunk{e, off + c, min(chunk, count[e] - c)};
      off += count[e];
    }
    for (; nc < max_chunks; ++nc) chunks[nc] = SlotChunk{0, 0, 0};
  }
  __syncthreads();
  for (int i = threadIdx.x; i < slots; i += blockDim.x) {
    const int e = idx[i];
    order[offset[e] + atomicAdd(&cursor[e], 1)] = i;
  }
}

// The lane's two rows of a 16-row tile of expert e: rows r0 + g and r0 + g + 8 (clamped to the last row;
// the extra rows are computed and not stored), bytes 4t .. 4t + 3 of their blocks and their scales.
struct TileRows {
  const uint8_t *pa, *pb, *qa, *qb;

  __device__ __forceinline__ TileRows(const ExpertWeights& W, int e, int64_t r0, int g, int t, int nb) {
    const int64_t ra = int64_t(e) * W.rows + min(r0 + g, W.rows - 1);
    const int64_t rb = int64_t(e) * W.rows + min(r0 + g + 8, W.rows - 1);
    pa = W.blocks + ra * nb * 16 + 4 * t;
    pb = W.blocks + rb * nb * 16 + 4 * t;
    qa = W.scales + ra * nb;
    qb = W.scales + rb * nb;
  }
  // Codes (wa, wb) and scales (sa, sb) of block b.
  __device__ __forceinline__ void load(int b, uint32_t& wa, uint32_t& wb, uint32_t& sa, uint32_t& sb) const {
    wa = __ldg(reinterpret_cast<const uint32_t*>(pa + b * 16));
    wb = __ldg(reinterpret_cast<const uint32_t*>(pb + b * 16));
    sa = __ldg(qa + b);
    sb = __ldg(qb + b);
  }
};

// The A fragments of one block's two k-steps: f16 pairs of the codes of rows g (wa) and g + 8 (wb).
__device__ __forceinline__ void decode_tile(uint32_t wa, uint32_t wb, uint32_t* a) {
  a[0] = e2m1_pair<0>(wa), a[1] = e2m1_pair<0>(wb), a[2] = e2m1_pair<1>(wa), a[3] = e2m1_pair<1>(wb);
  a[4] = e2m1_pair<2>(wa), a[5] = e2m1_pair<2>(wb), a[6] = e2m1_pair<3>(wa), a[7] = e2m1_pair<3>(wb);
}

// acc += the block's sums of 8 token columns (their limbs x), each row scaled by its e8m0 (s0: row g,
// s1: row g + 8), from a fresh accumulator.
__device__ __forceinline__ void block_dot(const uint32_t* a, const uint4* x, float s0, float s1, float* acc) {
  float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int l = 0; l < kLimbs; ++l) {
    mma_16816(c, a[0], a[1], a[2], a[3], x[l].x, x[l].y);
    mma_16816(c, a[4], a[5], a[6], a[7], x[l].z, x[l].w);
  }
  acc[0] = fmaf(c[0], s0, acc[0]);
  acc[1] = fmaf(c[1], s0, acc[1]);
  acc[2] = fmaf(c[2], s1, acc[2]);
  acc[3] = fmaf(c[3], s1, acc[3]);
}

// This warp's 16-row tile of a grouped kernel's grid (row tiles / kTcWarps, chunks): its first row.
__device__ __forceinline__ int64_t tile_row0() { return (int64_t(blockIdx.x) * kTcWarps + (threadIdx.x >> 5)) * 16; }

// Lane (g, t)'s limbs of token column `col` of chunk ch (null past the chunk): limb l of block b at
// + 12 b + 4 l.
__device__ __forceinline__ const uint4* column_limbs(const uint4* xf, int x_div, const int32_t* order,
                                                     const SlotChunk& ch, int col, int nb, int t) {
  return col < ch.count ? xf + int64_t(order[ch.begin + col] / x_div) * nb * kXfLanes + t : nullptr;
}

// Stores lane (g, t)'s sums of token columns col0 + 2t and col0 + 2t + 1 (acc: rows g and g + 8 of both,
// c0..c3 of the mma's C fragment), unscaled per slot, through store_rows.
template <bool kGateUp>
__device__ __forceinline__ void store_columns(const ExpertWeights& W, const SlotChunk& ch, const int32_t* order,
                                              const float* unscale, int x_div, float* out, int64_t r0, int g, int t,
                                              int col0, const float* acc, float limit) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int col = col0 + 2 * t + i;
    const int slot = col < ch.count ? order[ch.begin + col] : 0;
    const float u = col < ch.count ? unscale[slot / x_div] : 0.f;
    store_rows<kGateUp>(W, ch.expert, out + int64_t(slot) * (kGateUp ? W.rows / 2 : W.rows), r0 + g, acc[i] * u,
                        acc[2 + i] * u, limit, col < ch.count);
  }
}

// Grid (row tiles / kTcWarps, chunks); warp w takes rows [16 (kTcWarps blockIdx.x + w), + 16) of the
// chunk's expert for all its slots. All limbs of a block are loaded before its first mma (loading them
// per column group measured 1460 vs 1818 tok/s at batch 64; two or four row tiles a warp sharing the
// limbs, 1700 / 1400: fewer warps; at pp2048 6956 / 5877 vs 7010, docs/performance.md). Limbs of slot sl:
// row sl / x_div of xf; gate_up (rows = gate/up pairs interleaved) writes out[slot * rows / 2 + pair] =
// SwiGLU, down out[slot * rows + row].
template <bool kGateUp>
__global__ void __launch_bounds__(32 * kTcWarps) mxfp4_grouped_kernel(const uint4* xf, const float* unscale,
                                                                      int x_div, const int32_t* order,
                                                                      const SlotChunk* chunks, ExpertWeights W,
                                                                      float limit, float* out) {
  grid_wait();
  const SlotChunk ch = chunks[blockIdx.y];
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t r0 = tile_row0();
  if (ch.count == 0 || r0 >= W.rows) return;
  const int nb = int(W.cols / 32), groups = (ch.count + 7) / 8;
  // B: this lane gives the limbs of token column g of each group.
  const uint4* xb[kChunk / 8];
#pragma unroll
  for (int cg = 0; cg < kChunk / 8; ++cg) xb[cg] = column_limbs(xf, x_div, order, ch, 8 * cg + g, nb, t);
  const TileRows rows(W, ch.expert, r0, g, t, nb);
  uint32_t wa, wb, sa, sb;
  rows.load(0, wa, wb, sa, sb);
  float acc[kChunk / 8][4] = {};
  for (int b = 0; b < nb; ++b) {
    uint4 x[kChunk / 8][kLimbs];
#pragma unroll
    for (int cg = 0; cg < kChunk / 8; ++cg)
#pragma unroll
      for (int l = 0; l < kLimbs; ++l)
        x[cg][l] = cg < groups && xb[cg] ? __ldg(xb[cg] + b * kXfLanes + 4 * l) : make_uint4(0, 0, 0, 0);
    uint32_t a[8];
    decode_tile(wa, wb, a);
    const float s0 = e8m0(sa), s1 = e8m0(sb);
    if (b + 1 < nb) rows.load(b + 1, wa, wb, sa, sb);
#pragma unroll
    for (int cg = 0; cg < kChunk / 8; ++cg) {
      if (cg >= groups) break;
      block_dot(a, x[cg], s0, s1, acc[cg]);
    }
  }
  // C: lane (g, t) holds rows g (c0, c1) and g + 8 (c2, c3) of token columns 2t, 2t + 1.
#pragma unroll
  for (int cg = 0; cg < kChunk / 8; ++cg) {
    if (cg >= groups) break;
    store_columns<kGateUp>(W, ch, order, unscale, x_div, out, r0, g, t, 8 * cg, acc[cg], limit);
  }
}

int64_t max_chunks(int64_t slots, int experts, int chunk) { return experts + (slots + chunk - 1) / chunk; }

// Chunks of up to 8 slots (one B column group) for decode batches, the weights streamed through shared
// memory: each warp keeps kStages steps of its 16-row tile (4 blocks = 64 bytes a row) in flight with
// cp.async (16 bytes a lane, two a step), and loads a step's limbs and the next step's scales before it
// waits. Rows are padded to 80 bytes, so the fragment reads (word t of block q of rows g and g + 8) hit 32
// different banks. H200, 20b shape, 64 / 128 slots (decode batch 16 / 32): 1407-1491 / 2243-2255 tok/s
// against 1342-1358 / 1999-2004 with the weights of 4 blocks ahead in registers (4 bytes a lane a load);
// 8 stages 1353 / 2216; two or four warps sharing a tile (split k) 1401 / 2174, 1284 / 2002.
constexpr int kSmallChunk = 8;
constexpr int kStages = 4;
constexpr int kStageRow = 80;  // bytes a tile row takes in a stage (64 + padding)
constexpr int kStageBytes = 16 * kStageRow;

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

template <bool kGateUp>
__global__ void __launch_bounds__(32 * kTcWarps) mxfp4_stream_kernel(const uint4* xf, const float* unscale,
                                                                     int x_div, const int32_t* order,
                                                                     const SlotChunk* chunks, ExpertWeights W,
                                                                     float limit, float* out) {
  grid_wait();
  __shared__ __align__(16) uint8_t ring[kTcWarps][kStages][kStageBytes];
  const SlotChunk ch = chunks[blockIdx.y];
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t r0 = tile_row0();
  if (ch.count == 0 || r0 >= W.rows) return;
  const int nb = int(W.cols / 32), steps = (nb + 3) / 4;
  uint8_t(*stage)[kStageBytes] = ring[threadIdx.x >> 5];
  // Lane L copies 16-byte pieces L and L + 32 of a step: piece c = row c / 4, block c % 4.
  const int64_t e_row = int64_t(ch.expert) * W.rows;
  const uint8_t* src[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int c = lane + 32 * h;
    src[h] = W.blocks + (e_row + min(r0 + c / 4, W.rows - 1)) * nb * 16 + (c % 4) * 16;
  }
  auto issue = [&](int j) {
    if (j < steps) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = lane + 32 * h;
        if (4 * j + c % 4 < nb) cp_async16(stage[j % kStages] + (c / 4) * kStageRow + (c % 4) * 16, src[h] + j * 64);
      }
    }
    cp_async_commit();  // an empty group past the end keeps the wait's count right
  };
#pragma unroll
  for (int j = 0; j < kStages - 1; ++j) issue(j);
  const uint8_t* qa = W.scales + (e_row + min(r0 + g, W.rows - 1)) * nb;
  const uint8_t* qb = W.scales + (e_row + min(r0 + g + 8, W.rows - 1)) * nb;
  auto load_scales = [&](int j, uint32_t* sa, uint32_t* sb) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int b = 4 * j + q;
      sa[q] = b < nb ? __ldg(qa + b) : 0u;
      sb[q] = b < nb ? __ldg(qb + b) : 0u;
    }
  };
  uint32_t sa[4], sb[4], na[4], nb4[4];
  load_scales(0, sa, sb);
  const uint4* xb = column_limbs(xf, x_div, order, ch, g, nb, t);
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int j = 0; j < steps; ++j) {
    issue(j + kStages - 1);
    load_scales(j + 1, na, nb4);
    uint4 x[4][kLimbs];
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
      for (int l = 0; l < kLimbs; ++l)
        x[q][l] = xb && 4 * j + q < nb ? __ldg(xb + (4 * j + q) * kXfLanes + 4 * l) : make_uint4(0, 0, 0, 0);
    cp_async_wait<kStages - 1>();
    __syncwarp();
    const uint8_t* st = stage[j % kStages];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if (4 * j + q >= nb) break;
      const uint32_t wa = *reinterpret_cast<const uint32_t*>(st + g * kStageRow + q * 16 + 4 * t);
      const uint32_t wb = *reinterpret_cast<const uint32_t*>(st + (g + 8) * kStageRow + q * 16 + 4 * t);
      uint32_t a[8];
      decode_tile(wa, wb, a);
      block_dot(a, x[q], e8m0(sa[q]), e8m0(sb[q]), acc);
    }
    __syncwarp();  // every lane has read the stage before a later issue() refills it
#pragma unroll
    for (int q = 0; q < 4; ++q) sa[q] = na[q], sb[q] = nb4[q];
  }
  store_columns<kGateUp>(W, ch, order, unscale, x_div, out, r0, g, t, 0, acc, limit);
}

}  // namespace

size_t moe_mxfp4_scratch_bytes(int64_t slots, int64_t hidden, int64_t inter, int experts) {
  const int64_t items = std::max(hidden, inter) / 32 * kXfLanes * slots;  // limbs of x (tokens <= slots) or h
  return size_t(items) * sizeof(uint4) + size_t(slots) * (sizeof(float) + sizeof(int32_t)) +
         size_t(max_chunks(slots, experts, kSmallChunk)) * sizeof(SlotChunk);
}

void launch_moe_mxfp4(const float* x, int64_t hidden, const int32_t* idx, int k, const ExpertWeights& gate_up,
                      const ExpertWeights& down, float swiglu_limit, float* h, float* y, int64_t slots, void* scratch,
                      cudaStream_t s) {
  GPTOSS_CHECK(gate_up.cols == hidden && down.rows == hidden && down.cols == gate_up.rows / 2,
               "cuda MXFP4 MoE: gate_up [{} x {}] and down [{} x {}] do not fit hidden {}", gate_up.rows, gate_up.cols,
               down.rows, down.cols, hidden);
  const int64_t n = slots / k, nb_x = hidden / 32, nb_h = down.cols / 32;
  uint4* xf = static_cast<uint4*>(scratch);
  float* unscale = reinterpret_cast<float*>(xf + std::max(hidden, down.cols) / 32 * kXfLanes * slots);
  int32_t* order = reinterpret_cast<int32_t*>(unscale + slots);
  SlotChunk* chunks = reinterpret_cast<SlotChunk*>(order + slots);
  const bool small = slots < kGroupedMinSlots;
  const int experts = gate_up.experts;
  const int chunk = small ? kSmallChunk : kChunk;
  const int64_t nchunks = max_chunks(slots, experts, chunk);
  GPTOSS_CHECK(experts <= 128, "cuda MXFP4 MoE: {} experts (the grouping takes at most 128)", experts);
  launch(group_slots_kernel, 1, 1024, 0, s, idx, int(slots), experts, chunk, int(nchunks), order, chunks);
  auto project = [&](auto gate_up_tag, int x_div, const ExpertWeights& W, float limit, float* o) {
    constexpr bool kGateUp = decltype(gate_up_tag)::value;
    const dim3 grid(ceil_div((W.rows + 15) / 16, kTcWarps), unsigned(nchunks));
    launch(small ? mxfp4_stream_kernel<kGateUp> : mxfp4_grouped_kernel<kGateUp>, grid, 32 * kTcWarps, 0, s, xf,
           unscale, x_div, order, chunks, W, limit, o);
  };
  launch(limbs_kernel, unsigned(n), 256, 0, s, x, nb_x, xf, unscale);
  project(std::true_type{}, k, gate_up, swiglu_limit, h);
  launch(limbs_kernel, unsigned(slots), 256, 0, s, h, nb_h, xf, unscale);
  project(std::false_type{}, 1, down, 0.f, y);
}

}  // namespace gptoss::cuda
