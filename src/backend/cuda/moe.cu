// router_topk and the MoE block (MXFP4 or bf16 experts) with the clamped SwiGLU.
// Three passes: gate_up + SwiGLU -> h [n*k, I]; down -> y [n*k, H]; weighted sum -> out [n, H].
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

__constant__ float kFp4[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

__device__ __forceinline__ float e8m0(uint8_t s) {
  if (s == 255) return __int_as_float(0x7fc00000);
  if (s == 0) return __int_as_float(0x00400000);  // 2^-127, a subnormal
  return __int_as_float(int(s) << 23);
}

// A warp per token: lane l holds the logits of experts l, l + 32, ... (up to kRouterPerLane each). k
// rounds of a warp-wide arg-max (the larger logit, ties to the lower index, as the CPU reference), then
// the softmax over the k chosen logits.
constexpr int kRouterPerLane = 4;
constexpr int kNoExpert = 1 << 30;

__device__ __forceinline__ bool router_better(float v, int e, float bv, int be) {
  return be == kNoExpert || v > bv || (v == bv && e < be);
}

__global__ void router_kernel(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) {
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

// Dots of R consecutive MXFP4 rows (r0 ..) of expert `e` with x (cols values), by one warp. The warp
// walks the rows in chunks of 8 blocks (128 bytes a row): lane l reads 4 bytes of block l/4, i.e. the
// 8 consecutive elements 8*(l%4) .. of that block (nibble n of the word is element 8*(l%4) + n), so
// the weight reads and the x reads (two float4 a lane) are both coalesced. `lut` is the e2m1 table in
// shared memory: lanes look up different codes at once, which constant memory would serialize and
// shared memory serves in one pass (16 entries in 16 banks). The sums go to lane 0's acc[].
template <int R, int kAhead>
__device__ void mxfp4_rows_dot(const ExpertWeights& W, int e, int64_t r0, const float* x, int lane, const float* lut,
                               float* acc) {
  const int64_t nb = W.cols / 32;
  const uint8_t* blocks = W.blocks + ((int64_t(e) * W.rows + r0) * nb) * 16;
  const uint8_t* scales = W.scales + (int64_t(e) * W.rows + r0) * nb;
  const int q = lane & 3;
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  // Loads of kAhead steps are issued before any of them is used, so each warp keeps several requests in
  // flight (one step at a time left the kernel latency-bound: DRAM 12-18 % busy in Nsight). gate_up (2
  // rows) takes 4 steps (2 and 8 measured no better / slower); down (4 rows) 1 step: its 4 rows already
  // put 4 loads in flight a lane, and 4 steps took 128 registers a thread (25 % occupancy): H200 batch 1
  // 228 -> 232 tok/s, batch 8 556 -> 569.
  for (int64_t b0 = lane >> 2; b0 < nb; b0 += 8 * kAhead) {
    uint32_t wv[kAhead][R];
    float sc[kAhead][R];
    float4 xa[kAhead], xb[kAhead];
#pragma unroll
    for (int u = 0; u < kAhead; ++u) {
      const int64_t b = b0 + 8 * u;
      if (b < nb) {
        const float4* xv = reinterpret_cast<const float4*>(x + b * 32 + 8 * q);
        xa[u] = xv[0];
        xb[u] = xv[1];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          wv[u][r] = *reinterpret_cast<const uint32_t*>(blocks + (int64_t(r) * nb + b) * 16 + 4 * q);
          sc[u][r] = e8m0(scales[int64_t(r) * nb + b]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kAhead; ++u) {
      if (b0 + 8 * u >= nb) break;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint32_t w = wv[u][r];
        float p = lut[w & 15] * xa[u].x;
        p = fmaf(lut[(w >> 4) & 15], xa[u].y, p);
        p = fmaf(lut[(w >> 8) & 15], xa[u].z, p);
        p = fmaf(lut[(w >> 12) & 15], xa[u].w, p);
        p = fmaf(lut[(w >> 16) & 15], xb[u].x, p);
        p = fmaf(lut[(w >> 20) & 15], xb[u].y, p);
        p = fmaf(lut[(w >> 24) & 15], xb[u].z, p);
        p = fmaf(lut[w >> 28], xb[u].w, p);
        acc[r] = fmaf(p, sc[u][r], acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
}

// Fills the block's shared e2m1 table; every thread of the block must call it (it synchronizes).
__device__ __forceinline__ void load_lut(float* lut) {
  if (threadIdx.x < 16) lut[threadIdx.x] = kFp4[threadIdx.x];
  __syncthreads();
}

// bf16 experts are input-major (w [E, cols, rows]): one thread per output row, coalesced over rows.
__device__ float bf16_row_dot(const ExpertWeights& W, int e, int64_t r, const float* x) {
  const uint16_t* base = W.w + int64_t(e) * W.cols * W.rows + r;
  float acc = 0.f;
  for (int64_t i = 0; i < W.cols; ++i) acc += bf16_to_f32(base[i * W.rows]) * x[i];
  return acc;
}

__device__ __forceinline__ float swiglu(float gate, float up, float limit) {
  gate = fminf(gate, limit);
  up = fminf(fmaxf(up, -limit), limit);
  float glu = gate / (1.f + expf(-1.702f * gate));
  return (up + 1.f) * glu;
}

// MXFP4 gate_up: a warp per (token-slot ts, gate/up pair p); the pair's two rows are consecutive in the
// expert, so every x value a lane reads serves both. (Two pairs a warp halved the warps and was slower.)
__global__ void gate_up_mxfp4_kernel(const float* x, int64_t n, int64_t hidden, const int32_t* idx, int k,
                                     ExpertWeights W, float limit, float* h, int64_t inter) {
  __shared__ float lut[16];
  load_lut(lut);
  const int lane = threadIdx.x & 31;
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= n * k * inter) return;
  const int64_t ts = item / inter, p = item % inter;
  const int e = idx[ts];
  float gu[2];
  mxfp4_rows_dot<2, 4>(W, e, 2 * p, x + (ts / k) * hidden, lane, lut, gu);
  if (lane != 0) return;
  const uint16_t* bias = W.bias + int64_t(e) * W.rows + 2 * p;
  h[ts * inter + p] = swiglu(gu[0] + bf16_to_f32(bias[0]), gu[1] + bf16_to_f32(bias[1]), limit);
}

// MXFP4 down: a warp per (token-slot, R consecutive output rows), loads kAhead steps ahead.
template <int R, int kAhead>
__global__ void down_mxfp4_kernel(const float* h, int64_t n, int64_t inter, const int32_t* idx, int k,
                                  ExpertWeights W, float* y, int64_t hidden) {
  __shared__ float lut[16];
  load_lut(lut);
  const int lane = threadIdx.x & 31;
  const int64_t groups = hidden / R;
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= n * k * groups) return;
  const int64_t ts = item / groups, r0 = (item % groups) * R;
  const int e = idx[ts];
  float v[R];
  mxfp4_rows_dot<R, kAhead>(W, e, r0, h + ts * inter, lane, lut, v);
  if (lane != 0) return;
#pragma unroll
  for (int r = 0; r < R; ++r) y[ts * hidden + r0 + r] = v[r] + bf16_to_f32(W.bias[int64_t(e) * W.rows + r0 + r]);
}

// bf16 experts (input-major): a thread per (token-slot, pair) / (token-slot, row), coalesced over rows.
__global__ void gate_up_bf16_kernel(const float* x, int64_t n, int64_t hidden, const int32_t* idx, int k,
                                    ExpertWeights W, float limit, float* h, int64_t inter) {
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
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= n * k * hidden) return;
  const int64_t ts = item / hidden, r = item % hidden;
  const int e = idx[ts];
  y[ts * hidden + r] = bf16_row_dot(W, e, r, h + ts * inter) + bf16_to_f32(W.bias[int64_t(e) * W.rows + r]);
}

__global__ void combine_kernel(const float* y, const float* w, int k, int64_t hidden, int64_t n, float* out) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * hidden) return;
  int64_t t = i / hidden, r = i % hidden;
  float acc = 0.f;
  for (int j = 0; j < k; ++j) acc += w[t * k + j] * y[(t * k + j) * hidden + r];
  out[i] = acc;
}


}  // namespace

void launch_router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w, cudaStream_t s) {
  if (n == 0) return;
  GPTOSS_CHECK(experts <= 32 * kRouterPerLane && k <= experts, "cuda router: {} experts (at most {}), top-{}",
               experts, 32 * kRouterPerLane, k);
  router_kernel<<<ceil_div(n, 4), 128, 0, s>>>(logits, n, experts, k, idx, w);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* h_scratch,
                float* y_scratch, float* out, cudaStream_t s) {
  if (n == 0) return;
  const int64_t inter = gate_up.rows / 2, slots = n * k;
  constexpr int kWarpsPerBlock = 8;
  auto warp_grid = [&](int64_t warps) { return ceil_div(warps, kWarpsPerBlock); };
  // MXFP4 needs hidden and intermediate sizes that are multiples of 32, so 4 rows divide them.
  if (gate_up.mxfp4) {
    // One pair (2 rows) a warp: with 2 pairs the warps halve and the kernel got slower (Nsight, H200: 43 ->
    // 53 us per layer at batch 1: too few loads in flight), while down gains from 4 rows (31 -> 28 us).
    gate_up_mxfp4_kernel<<<warp_grid(slots * inter), 32 * kWarpsPerBlock, 0, s>>>(
        x, n, hidden, idx, k, gate_up, swiglu_limit, h_scratch, inter);
  } else {
    gate_up_bf16_kernel<<<ceil_div(slots * inter, 256), 256, 0, s>>>(x, n, hidden, idx, k, gate_up, swiglu_limit,
                                                                     h_scratch, inter);
  }
  GPTOSS_CUDA_LAUNCH_CHECK();
  if (down.mxfp4) {
    down_mxfp4_kernel<4, 1><<<warp_grid(slots * hidden / 4), 32 * kWarpsPerBlock, 0, s>>>(
        h_scratch, n, inter, idx, k, down, y_scratch, hidden);
  } else {
    down_bf16_kernel<<<ceil_div(slots * hidden, 256), 256, 0, s>>>(h_scratch, n, inter, idx, k, down, y_scratch,
                                                                   hidden);
  }
  GPTOSS_CUDA_LAUNCH_CHECK();
  combine_kernel<<<ceil_div(n * hidden, 256), 256, 0, s>>>(y_scratch, w, k, hidden, n, out);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
