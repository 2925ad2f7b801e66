// router_topk and the MoE block (MXFP4 or bf16 experts) with the clamped SwiGLU.
// Three passes: gate_up + SwiGLU -> h [n*k, I]; down -> y [n*k, H]; weighted sum -> out [n, H]. MXFP4
// experts with at least two token-slots an expert on average take the tensor-core kernels of moe_mxfp4.cu
// for the first two (use_tensor_cores); fewer (decode at small batches) the CUDA-core kernels of
// moe_mxfp4_small.cu.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/moe_mxfp4.cuh"

namespace gptoss::cuda {
namespace {

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

// MXFP4 experts take the tensor cores (moe_mxfp4.cuh) from two token-slots an expert on average: fewer, and
// most chunks of the grouped kernels hold one or two slots, which leaves most of the mma's 8 columns idle
// while the integer CUDA-core kernels of moe_mxfp4_small.cu stream each slot's expert faster. H200, decode
// tok/s, tensor cores vs CUDA cores (same-machine A/B): 20b (32 experts) at 32 slots (batch 8) 949 vs
// 1176-1196, at 64 slots (batch 16) 1363-1423 vs 1451; 120b (128 experts) at 128 slots (batch 32) 858 vs
// 1062-1073, at 256 (batch 64) 1131-1168 vs 1075. (With the earlier table-lookup CUDA-core kernels the
// crossover was one slot an expert.)
bool use_tensor_cores(const ExpertWeights& gate_up, int64_t slots) {
  return gate_up.mxfp4 && slots >= 2 * int64_t(gate_up.experts);
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
    launch_moe_mxfp4_small(x, k, idx, gate_up, down, swiglu_limit, h_scratch, y_scratch, slots, s);
  } else {
    launch(gate_up_bf16_kernel, ceil_div(slots * inter, 256), 256, 0, s, x, n, hidden, idx, k, gate_up, swiglu_limit,
           h_scratch, inter);
    launch(down_bf16_kernel, ceil_div(slots * hidden, 256), 256, 0, s, h_scratch, n, inter, idx, k, down, y_scratch,
           hidden);
  }
  launch(combine_kernel, ceil_div(n * hidden, 256), 256, 0, s, y_scratch, w, k, hidden, n, out);
}

}  // namespace gptoss::cuda
