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

// The top-k of one token's logits and their softmax into ti, tw [k], by one warp; lane l holds the logits
// of experts l, l + 32, ... in v.
__device__ __forceinline__ void router_select(const float (&v)[kRouterPerLane], int experts, int k, int32_t* ti,
                                              float* tw) {
  const int lane = threadIdx.x & 31;
  bool taken[kRouterPerLane];
#pragma unroll
  for (int j = 0; j < kRouterPerLane; ++j) taken[j] = lane + 32 * j >= experts;
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

__global__ void router_kernel(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) {
  grid_wait();
  const int64_t t = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (t >= n) return;
  const int lane = threadIdx.x & 31;
  float v[kRouterPerLane];
#pragma unroll
  for (int j = 0; j < kRouterPerLane; ++j) v[j] = lane + 32 * j < experts ? logits[t * experts + lane + 32 * j] : 0.f;
  router_select(v, experts, k, idx + t * k, w + t * k);
}

// The last of `blocks` thread blocks working on one item to get here (counter: the item's, zero before
// the first arrives; the last sets it back to zero). Call with every thread of the block, after its
// global writes; the last block then reads the others' writes with __ldcg (L2, not a stale L1).
__device__ __forceinline__ bool last_block_of(int32_t* counter, int blocks) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1) == blocks - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  return last;
}

// add_rms_norm + the router's matmul + router_topk of decode batches in one launch. Block (b, t) takes
// router rows 32b .. 32b + 31 of token t, a warp a row: it loads its row (up to kRoutePre chunks of 8 a
// lane) before grid_wait, then x + y and its rms_norm go to shared memory (1024 threads: three loads of
// x and y a thread for a 2880-wide row, all in flight) and the warps take their dots. The token's last
// block (the only one for up to 32 experts) writes x and out and picks the experts.
// From 17 tokens: H200, 20b shape, decode tok/s against the three kernels (same-machine A/B, two rounds)
// batch 64 3058 / 3031 vs 2860 / 2800, batch 24-48 equal; at batch 1-16 the one thread block a token
// (its 184 KB of router rows loaded by one SM) gave back 1-2 % of what the other fusions won.
constexpr int kRouteWarps = 32;
constexpr int kRoutePre = 12;  // a 3072-wide row at most is loaded before grid_wait
constexpr int64_t kRouteMinTokens = 17, kRouteMaxTokens = 64;
constexpr int64_t kRouteMaxWidth = 6144;  // two rows of d floats in 48 KB of shared memory

__global__ void __launch_bounds__(kRouteWarps * 32)
    add_rms_norm_router_kernel(float* x, const float* y, const uint16_t* norm_w, float* out, int64_t d, float eps,
                               const uint16_t* rw, const uint16_t* rb, float* logits, int experts, int k,
                               int32_t* idx, float* w, int32_t* counters) {
  extern __shared__ float4 hs4[];
  float* hs = reinterpret_cast<float*>(hs4);  // [d]: rms_norm(x + y)
  float* vs = hs + d;                          // [d]: x + y
  __shared__ float partial[32];
  __shared__ float block_logits[kRouteWarps];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = int(blockIdx.x) * kRouteWarps + warp;
  const int64_t t = blockIdx.y, chunks = d / 8;
  const uint4* wr = reinterpret_cast<const uint4*>(rw + int64_t(min(r, experts - 1)) * d);
  uint4 pre[kRoutePre];
#pragma unroll
  for (int j = 0; j < kRoutePre; ++j) {
    const int64_t c = lane + 32 * j;
    pre[j] = r < experts && c < chunks ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
  }
  float wp[kNormPre];
  load_norm(norm_w, d, wp);
  const float bias = rb && r < experts ? bf16_to_f32(rb[r]) : 0.f;
  grid_wait();
  const float* xr = x + t * d;
  const float* yr = y + t * d;
  const float ss = add_row_sumsq(xr, yr, vs, d);
  const float inv = rsqrtf(block_sum(ss, partial) / float(d) + eps);
  for_norm_row(norm_w, d, wp, [&](int64_t i, float wi) { hs[i] = vs[i] * inv * wi; });
  __syncthreads();
  if (r < experts) {
    float dot = 0.f;
    auto add8 = [&](const uint4& p, int64_t c) { dot += dot8(p, hs4[2 * c], hs4[2 * c + 1]); };
#pragma unroll
    for (int j = 0; j < kRoutePre; ++j)
      if (lane + 32 * j < chunks) add8(pre[j], lane + 32 * j);
    for (int64_t c = lane + 32 * kRoutePre; c < chunks; c += 32) add8(__ldg(wr + c), c);
    dot = warp_sum(dot);
    if (lane == 0) logits[t * experts + r] = block_logits[warp] = dot + bias;
  }
  if (gridDim.x > 1 && !last_block_of(counters + t, int(gridDim.x))) return;
  __syncthreads();  // one block: its logits are in block_logits
  // Every block has read x by now: the last one writes the sum back.
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    x[t * d + i] = vs[i];
    out[t * d + i] = hs[i];
  }
  if (warp != 0) return;
  float v[kRouterPerLane];  // the other blocks' logits through L2 (__ldcg: not a stale L1 line)
#pragma unroll
  for (int j = 0; j < kRouterPerLane; ++j) {
    const int e = lane + 32 * j;
    v[j] = e >= experts ? 0.f : gridDim.x == 1 ? block_logits[e] : __ldcg(logits + t * experts + e);
  }
  router_select(v, experts, k, idx + t * k, w + t * k);
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

constexpr int kMaxTopK = 32;  // the residual combine keeps a token's expert weights in shared memory

// combine_kernel ending the block with the residual (launch_moe's MoeResidual): a block a token adds the
// weighted experts to x and, with a norm, writes h = rms_norm(x) (add_rms_norm_kernel's arithmetic).
__global__ void combine_residual_kernel(const float* y, const float* w, int k, int64_t hidden, float* x,
                                        const uint16_t* norm, float* h, float eps) {
  float wp[kNormPre];
  load_norm(norm, hidden, wp);
  grid_wait();
  __shared__ float partial[32];
  const int64_t t = blockIdx.x;
  float* xr = x + t * hidden;
  __shared__ float wt[kMaxTopK];
  if (threadIdx.x < k) wt[threadIdx.x] = w[t * k + threadIdx.x];
  __syncthreads();
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; ++j) acc += wt[j] * y[(t * k + j) * hidden + i];
    const float v = xr[i] + acc;
    xr[i] = v;
    ss += v * v;
  }
  if (!norm) return;
  const float inv = rsqrtf(block_sum(ss, partial) / float(hidden) + eps);
  for_norm_row(norm, hidden, wp, [&](int64_t i, float wi) { h[t * hidden + i] = xr[i] * inv * wi; });
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

bool add_rms_norm_router_applies(int64_t n, int64_t d, int experts, const void* router_w) {
  return n >= kRouteMinTokens && n <= kRouteMaxTokens && d % 8 == 0 && d <= kRouteMaxWidth &&
         experts <= 32 * kRouterPerLane && (reinterpret_cast<uintptr_t>(router_w) & 15) == 0;
}

void launch_add_rms_norm_router(float* x, const float* y, const uint16_t* norm_w, float* out, int64_t n, int64_t d,
                                float eps, const uint16_t* router_w, const uint16_t* router_b, float* logits,
                                int experts, int k, int32_t* idx, float* w, int32_t* counters, cudaStream_t s) {
  if (n == 0) return;
  GPTOSS_CHECK(add_rms_norm_router_applies(n, d, experts, router_w) && k <= experts,
               "cuda add_rms_norm_router: {} tokens of {} over {} experts (top-{}) do not fit its kernel", n, d,
               experts, k);
  launch(add_rms_norm_router_kernel, dim3(ceil_div(experts, kRouteWarps), unsigned(n)), kRouteWarps * 32,
         size_t(2 * d) * sizeof(float), s, x, y, norm_w, out, d, eps, router_w, router_b, logits, experts, k, idx, w,
         counters);
}

size_t moe_tc_scratch_bytes(int64_t n, int k, int64_t hidden, const ExpertWeights& gate_up) {
  return use_tensor_cores(gate_up, n * k) ? moe_mxfp4_scratch_bytes(n * k, hidden, gate_up.rows / 2, gate_up.experts)
                                          : 0;
}

void launch_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* h_scratch,
                float* y_scratch, void* tc_scratch, float* out, const MoeResidual* residual, cudaStream_t s) {
  if (n == 0) return;
  const int64_t inter = gate_up.rows / 2, slots = n * k;
  GPTOSS_CHECK(gate_up.mxfp4 == down.mxfp4, "cuda MoE: gate_up and down experts in different formats");
  GPTOSS_CHECK(!residual || k <= kMaxTopK, "cuda MoE: top-{} experts (the residual sum takes at most {})", k,
               kMaxTopK);
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
  if (residual)
    launch(combine_residual_kernel, unsigned(n), 1024, 0, s, y_scratch, w, k, hidden, residual->x, residual->norm,
           residual->h, residual->eps);
  else
    launch(combine_kernel, ceil_div(n * hidden, 256), 256, 0, s, y_scratch, w, k, hidden, n, out);
}

}  // namespace gptoss::cuda
