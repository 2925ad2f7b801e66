// router_topk and the MoE block (MXFP4 or bf16 experts) with the clamped SwiGLU.
// Three passes: gate_up + SwiGLU -> h [n*k, I]; down -> y [n*k, H]; weighted sum -> out [n, H]. MXFP4
// experts with at least one token-slot an expert on average take the tensor-core kernels of moe_mxfp4.cu
// for the first two (use_tensor_cores); fewer (decode at small batches) the CUDA-core kernels here.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/moe_mxfp4.cuh"

namespace gptoss::cuda {
namespace {

__constant__ float kFp4[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

// A warp per token: lane l holds the logits of experts l, l + 32, ... (up to kRouterPerLane each). k
// rounds of a warp-wide arg-max (the larger logit, ties to the lower index, as the CPU reference), then
// the softmax over the k chosen logits.
constexpr int kRouterPerLane = 4;
constexpr int kNoExpert = 1 << 30;

__device__ __forceinline__ bool router_better(float v, int e, float bv, int be) {
  return be == kNoExpert || v > bv || (v == bv && e < be);
}

__global__ void router_kernel(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) {
  grid_wait();
  const int64_t t = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (t >= n) return;
  const float* row = logits + t * experts;
  float v[kRouterPerLane];
  bool taken[kRouterPerLane];
#pragma unroll
  for (int j = 0; j < kRouterPerLane; ++j) {
    const int e = lane + 32 * j;
    v[j] = e < experts ? row[e] : 0.f;
    taken[j] = e >= experts;
  }
  int32_t* ti = idx + t * k;
  float* tw = w + t * k;
  for (int r = 0; r < k; ++r) {
    float bv = 0.f;
    int be = kNoExpert;
#pragma unroll
    for (int j = 0; j < kRouterPerLane; ++j)
      if (!taken[j] && router_better(v[j], lane + 32 * j, bv, be)) {
        bv = v[j];
        be = lane + 32 * j;
      }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (oe != kNoExpert && router_better(ov, oe, bv, be)) {
        bv = ov;
        be = oe;
      }
    }
    if (lane == 0) {
      ti[r] = be;
      tw[r] = bv;
    }
    if (be != kNoExpert && be % 32 == lane) taken[be / 32] = true;
  }
  __syncwarp();
  if (lane != 0) return;
  float mx = tw[0];
  for (int j = 1; j < k; ++j) mx = fmaxf(mx, tw[j]);
  float sum = 0.f;
  for (int j = 0; j < k; ++j) {
    tw[j] = expf(tw[j] - mx);
    sum += tw[j];
  }
  for (int j = 0; j < k; ++j) tw[j] /= sum;
}

// bf16 experts are input-major (w [E, cols, rows]): one thread per output row, coalesced over rows.
__device__ float bf16_row_dot(const ExpertWeights& W, int e, int64_t r, const float* x) {
  const uint16_t* base = W.w + int64_t(e) * W.cols * W.rows + r;
  float acc = 0.f;
  for (int64_t i = 0; i < W.cols; ++i) acc += bf16_to_f32(base[i * W.rows]) * x[i];
  return acc;
}

// MXFP4 rows, a warp per gate/up pair or per 2 down rows: lane l takes whole blocks l, l + 32, l + 64 of
// each row, one 16-byte load a block, so all of a warp's weight loads for up to 96 blocks a row go out at
// once. The x of the thread block's token sits in shared memory, swizzled (element e of block b at
// 32 b + (e + 4 b) % 32) so that 32 lanes reading the same offset of 32 different blocks take 4
// wavefronts per 16-byte read, not 32. The e2m1 values come from a 16-entry table in shared memory
// (lanes look up different codes at once: constant memory would serialize them, shared memory serves
// them in one pass). Measured and dropped: decoding half of the codes with integer ops to unload the
// shared-memory pipe (batch 1 / 8: 267 -> 262 / 672 -> 631 tok/s) and 4 down rows a warp (spills at 64
// registers: 249 / 635).
// History (H200, 20b shape): the previous kernels had lane l read 4 bytes of block l/4 (8 blocks a warp
// step, loads of 4 steps issued ahead, x read through L1): 40 us for gate_up and 21 us for down per layer
// at batch 1 (Nsight: DRAM 18 % busy). These take 36 and 22 us at batch 1 (DRAM 21 / 17 %: the
// shared-memory pipe - table lookups and x reads - is the next limit) and scale better with the batch:
// decode 617 -> 661 tok/s at batch 8, 742 -> 821 at 64 (and 673 / 827 with the weight loads issued
// before the block stages x).
constexpr int kWideWarps = 16;
constexpr int kWideChunk = 3;  // blocks a lane per pass

__device__ __forceinline__ int64_t xs_pos(int64_t b, int e) { return b * 32 + ((e + 4 * b) & 31); }

// x[0 .. cols) of one token into xs (swizzled), the e2m1 table into lut; every thread of the block calls it.
__device__ void load_x_lut(const float* x, int64_t cols, float* xs, float* lut) {
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) xs[xs_pos(i / 32, int(i % 32))] = x[i];
  if (threadIdx.x < 16) lut[threadIdx.x] = kFp4[threadIdx.x];
  __syncthreads();
}

__device__ __forceinline__ float word_dot(uint32_t w, const float4& a, const float4& b, const float* lut, float p) {
  p = fmaf(lut[w & 15], a.x, p);
  p = fmaf(lut[(w >> 4) & 15], a.y, p);
  p = fmaf(lut[(w >> 8) & 15], a.z, p);
  p = fmaf(lut[(w >> 12) & 15], a.w, p);
  p = fmaf(lut[(w >> 16) & 15], b.x, p);
  p = fmaf(lut[(w >> 20) & 15], b.y, p);
  p = fmaf(lut[(w >> 24) & 15], b.z, p);
  return fmaf(lut[w >> 28], b.w, p);
}

// The weights of one pass (blocks b0, b0 + 32, b0 + 64 of R rows) in registers, and their products.
template <int R>
struct WidePass {
  uint4 wv[kWideChunk][R];
  float sc[kWideChunk][R];

  __device__ __forceinline__ void load(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t b0) {
#pragma unroll
    for (int c = 0; c < kWideChunk; ++c) {
      const int64_t b = b0 + 32 * c;
      if (b < nb) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          wv[c][r] = *reinterpret_cast<const uint4*>(blocks + (int64_t(r) * nb + b) * 16);
          sc[c][r] = e8m0(scales[int64_t(r) * nb + b]);
        }
      }
    }
  }

  __device__ __forceinline__ void accumulate(const float* xs, const float* lut, int64_t nb, int64_t b0, float* acc) {
#pragma unroll
    for (int c = 0; c < kWideChunk; ++c) {
      const int64_t b = b0 + 32 * c;
      if (b >= nb) break;
      float p[R];
#pragma unroll
      for (int r = 0; r < R; ++r) p[r] = 0.f;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float4 xa = *reinterpret_cast<const float4*>(xs + xs_pos(b, 8 * q));
        const float4 xb = *reinterpret_cast<const float4*>(xs + xs_pos(b, 8 * q + 4));
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const uint32_t w = q == 0 ? wv[c][r].x : q == 1 ? wv[c][r].y : q == 2 ? wv[c][r].z : wv[c][r].w;
          p[r] = word_dot(w, xa, xb, lut, p[r]);
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = fmaf(p[r], sc[c][r], acc[r]);
    }
  }
};

// Dots of R consecutive rows (r0 ..) of expert e with x (cols values, global memory; one token for the
// whole thread block), the sums in every lane's acc[] (for active warps). Every thread of the block calls
// it: the first pass's weight loads are issued before x is staged in shared memory (xs, swizzled) and
// the block synchronizes, so the two latencies overlap.
template <int R>
__device__ void mxfp4_rows_dot_wide(const ExpertWeights& W, int e, int64_t r0, bool active, const float* x,
                                    float* xs, float* lut, float* acc) {
  const int lane = threadIdx.x & 31;
  const int64_t nb = W.cols / 32;
  const uint8_t* blocks = W.blocks + ((int64_t(e) * W.rows + r0) * nb) * 16;
  const uint8_t* scales = W.scales + (int64_t(e) * W.rows + r0) * nb;
  WidePass<R> pass;
  if (active) pass.load(blocks, scales, nb, lane);
  load_x_lut(x, W.cols, xs, lut);
  if (!active) return;
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int64_t b0 = lane; b0 < nb; b0 += 32 * kWideChunk) {
    if (b0 != lane) pass.load(blocks, scales, nb, b0);
    pass.accumulate(xs, lut, nb, b0, acc);
  }
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
}

// gate_up: thread block (16 pairs, token-slot), a warp per gate/up pair.
__global__ void __launch_bounds__(32 * kWideWarps, 2) gate_up_wide_kernel(const float* x, int64_t hidden,
                                                                          const int32_t* idx, int k, ExpertWeights W,
                                                                          float limit, float* h, int64_t inter) {
  grid_wait();
  extern __shared__ float xs[];
  __shared__ float lut[16];
  const int64_t ts = blockIdx.y;
  const int64_t p = int64_t(blockIdx.x) * kWideWarps + (threadIdx.x >> 5);
  const int e = idx[ts];
  float gu[2];
  mxfp4_rows_dot_wide<2>(W, e, 2 * p, p < inter, x + (ts / k) * hidden, xs, lut, gu);
  if (p >= inter || (threadIdx.x & 31) != 0) return;
  const uint16_t* bias = W.bias + int64_t(e) * W.rows + 2 * p;
  h[ts * inter + p] = swiglu(gu[0] + bf16_to_f32(bias[0]), gu[1] + bf16_to_f32(bias[1]), limit);
}

// down: thread block (16 x R rows, token-slot), a warp per R output rows (hidden % R == 0).
template <int R>
__global__ void __launch_bounds__(32 * kWideWarps, 2) down_wide_kernel(const float* h, int64_t inter,
                                                                       const int32_t* idx, ExpertWeights W, float* y,
                                                                       int64_t hidden) {
  grid_wait();
  extern __shared__ float xs[];
  __shared__ float lut[16];
  const int64_t ts = blockIdx.y;
  const int64_t r0 = (int64_t(blockIdx.x) * kWideWarps + (threadIdx.x >> 5)) * R;
  const int e = idx[ts];
  float v[R];
  mxfp4_rows_dot_wide<R>(W, e, r0, r0 < hidden, h + ts * inter, xs, lut, v);
  if (r0 >= hidden || (threadIdx.x & 31) != 0) return;
#pragma unroll
  for (int r = 0; r < R; ++r) y[ts * hidden + r0 + r] = v[r] + bf16_to_f32(W.bias[int64_t(e) * W.rows + r0 + r]);
}

// bf16 experts (input-major): a thread per (token-slot, pair) / (token-slot, row), coalesced over rows.
__global__ void gate_up_bf16_kernel(const float* x, int64_t n, int64_t hidden, const int32_t* idx, int k,
                                    ExpertWeights W, float limit, float* h, int64_t inter) {
  grid_wait();
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= n * k * inter) return;
  const int64_t ts = item / inter, p = item % inter;
  const int e = idx[ts];
  const float* xt = x + (ts / k) * hidden;
  const float gate = bf16_row_dot(W, e, 2 * p, xt) + bf16_to_f32(W.bias[int64_t(e) * W.rows + 2 * p]);
  const float up = bf16_row_dot(W, e, 2 * p + 1, xt) + bf16_to_f32(W.bias[int64_t(e) * W.rows + 2 * p + 1]);
  h[ts * inter + p] = swiglu(gate, up, limit);
}

__global__ void down_bf16_kernel(const float* h, int64_t n, int64_t inter, const int32_t* idx, int k,
                                 ExpertWeights W, float* y, int64_t hidden) {
  grid_wait();
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= n * k * hidden) return;
  const int64_t ts = item / hidden, r = item % hidden;
  const int e = idx[ts];
  y[ts * hidden + r] = bf16_row_dot(W, e, r, h + ts * inter) + bf16_to_f32(W.bias[int64_t(e) * W.rows + r]);
}

__global__ void combine_kernel(const float* y, const float* w, int k, int64_t hidden, int64_t n, float* out) {
  grid_wait();
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * hidden) return;
  int64_t t = i / hidden, r = i % hidden;
  float acc = 0.f;
  for (int j = 0; j < k; ++j) acc += w[t * k + j] * y[(t * k + j) * hidden + r];
  out[i] = acc;
}


// MXFP4 experts take the tensor cores (moe_mxfp4.cuh) from one token-slot an expert on average: fewer, and
// most chunks of the grouped kernels hold a single slot, which leaves 7 of the mma's 8 columns idle while
// the CUDA-core kernels above stream each slot's expert at a higher rate. H200, tensor cores vs CUDA cores:
// 20b (32 experts) 16 / 32 slots (batch 4 / 8): 591 / 918-932 vs 716 / 901-906 tok/s; 120b (128 experts)
// 32 / 64 / 128 slots (batch 8 / 16 / 32): 523 / 672 / 874 vs 623 / 717 / 763.
bool use_tensor_cores(const ExpertWeights& gate_up, int64_t slots) {
  return gate_up.mxfp4 && slots >= gate_up.experts;
}

}  // namespace

void launch_router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w, cudaStream_t s) {
  if (n == 0) return;
  GPTOSS_CHECK(experts <= 32 * kRouterPerLane && k <= experts, "cuda router: {} experts (at most {}), top-{}",
               experts, 32 * kRouterPerLane, k);
  launch(router_kernel, ceil_div(n, 4), 128, 0, s, logits, n, experts, k, idx, w);
}

size_t moe_tc_scratch_bytes(int64_t n, int k, int64_t hidden, const ExpertWeights& gate_up) {
  return use_tensor_cores(gate_up, n * k) ? moe_mxfp4_scratch_bytes(n * k, hidden, gate_up.rows / 2, gate_up.experts)
                                          : 0;
}

void launch_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* h_scratch,
                float* y_scratch, void* tc_scratch, float* out, cudaStream_t s) {
  if (n == 0) return;
  const int64_t inter = gate_up.rows / 2, slots = n * k;
  GPTOSS_CHECK(gate_up.mxfp4 == down.mxfp4, "cuda MoE: gate_up and down experts in different formats");
  if (use_tensor_cores(gate_up, slots)) {
    launch_moe_mxfp4(x, hidden, idx, k, gate_up, down, swiglu_limit, h_scratch, y_scratch, slots, tc_scratch, s);
  } else if (gate_up.mxfp4) {
    // MXFP4 needs hidden and intermediate sizes that are multiples of 32, so 2 rows and 16 pairs divide them.
    GPTOSS_CHECK(std::max(hidden, inter) * int64_t(sizeof(float)) <= 48 * 1024,
                 "cuda MXFP4 MoE: hidden {} / intermediate {} do not fit the kernels' 48 KB of shared memory", hidden,
                 inter);
    launch(gate_up_wide_kernel, dim3(ceil_div(inter, kWideWarps), unsigned(slots)), 32 * kWideWarps,
           size_t(hidden) * sizeof(float), s, x, hidden, idx, k, gate_up, swiglu_limit, h_scratch, inter);
    launch(down_wide_kernel<2>, dim3(ceil_div(hidden, 2 * kWideWarps), unsigned(slots)), 32 * kWideWarps,
           size_t(inter) * sizeof(float), s, h_scratch, inter, idx, down, y_scratch, hidden);
  } else {
    launch(gate_up_bf16_kernel, ceil_div(slots * inter, 256), 256, 0, s, x, n, hidden, idx, k, gate_up, swiglu_limit,
           h_scratch, inter);
    launch(down_bf16_kernel, ceil_div(slots * hidden, 256), 256, 0, s, h_scratch, n, inter, idx, k, down, y_scratch,
           hidden);
  }
  launch(combine_kernel, ceil_div(n * hidden, 256), 256, 0, s, y_scratch, w, k, hidden, n, out);
}

}  // namespace gptoss::cuda
