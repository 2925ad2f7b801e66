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

__global__ void router_kernel(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) {
  int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const float* row = logits + t * experts;
  int32_t* ti = idx + t * k;
  float* tw = w + t * k;
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < experts; ++e) {
      bool taken = false;
      for (int p = 0; p < j; ++p) taken |= (ti[p] == e);
      if (!taken && (best < 0 || row[e] > row[best])) best = e;
    }
    ti[j] = best;
    tw[j] = row[best];
  }
  float mx = tw[0];
  for (int j = 1; j < k; ++j) mx = fmaxf(mx, tw[j]);
  float sum = 0.f;
  for (int j = 0; j < k; ++j) {
    tw[j] = expf(tw[j] - mx);
    sum += tw[j];
  }
  for (int j = 0; j < k; ++j) tw[j] /= sum;
}

// Dot of MXFP4 row `r` of expert `e` with x (cols values), by one warp; lanes take whole 32-blocks.
__device__ float mxfp4_row_dot(const ExpertWeights& W, int e, int64_t r, const float* x, int lane) {
  int64_t nb = W.cols / 32;
  const uint8_t* blocks = W.blocks + ((int64_t(e) * W.rows + r) * nb) * 16;
  const uint8_t* scales = W.scales + (int64_t(e) * W.rows + r) * nb;
  float acc = 0.f;
  for (int64_t b = lane; b < nb; b += 32) {
    uint4 raw = *reinterpret_cast<const uint4*>(blocks + b * 16);
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&raw);
    const float* xb = x + b * 32;
    float part = 0.f;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      part += kFp4[bytes[j] & 0xf] * xb[2 * j] + kFp4[bytes[j] >> 4] * xb[2 * j + 1];
    }
    acc += part * e8m0(scales[b]);
  }
  return warp_sum(acc);
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

// Items: (token-slot ts in [0, n*k), output pair p in [0, I)); a warp per item for MXFP4, a thread for bf16.
__global__ void gate_up_kernel(const float* x, int64_t n, int64_t hidden, const int32_t* idx, int k, ExpertWeights W,
                               float limit, float* h, int64_t inter) {
  int lane = threadIdx.x & 31;
  int64_t total = n * k * inter;
  if (W.mxfp4) {
    int64_t item = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (item >= total) return;
    int64_t ts = item / inter, p = item % inter;
    int e = idx[ts];
    const float* xt = x + (ts / k) * hidden;
    float gate = mxfp4_row_dot(W, e, 2 * p, xt, lane) + bf16_to_f32(W.bias[int64_t(e) * W.rows + 2 * p]);
    float up = mxfp4_row_dot(W, e, 2 * p + 1, xt, lane) + bf16_to_f32(W.bias[int64_t(e) * W.rows + 2 * p + 1]);
    if (lane == 0) h[ts * inter + p] = swiglu(gate, up, limit);
  } else {
    int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (item >= total) return;
    int64_t ts = item / inter, p = item % inter;
    int e = idx[ts];
    const float* xt = x + (ts / k) * hidden;
    float gate = bf16_row_dot(W, e, 2 * p, xt) + bf16_to_f32(W.bias[int64_t(e) * W.rows + 2 * p]);
    float up = bf16_row_dot(W, e, 2 * p + 1, xt) + bf16_to_f32(W.bias[int64_t(e) * W.rows + 2 * p + 1]);
    h[ts * inter + p] = swiglu(gate, up, limit);
  }
}

__global__ void down_kernel(const float* h, int64_t n, int64_t inter, const int32_t* idx, int k, ExpertWeights W,
                            float* y, int64_t hidden) {
  int lane = threadIdx.x & 31;
  int64_t total = n * k * hidden;
  if (W.mxfp4) {
    int64_t item = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (item >= total) return;
    int64_t ts = item / hidden, r = item % hidden;
    int e = idx[ts];
    float v = mxfp4_row_dot(W, e, r, h + ts * inter, lane);
    if (lane == 0) y[ts * hidden + r] = v + bf16_to_f32(W.bias[int64_t(e) * W.rows + r]);
  } else {
    int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (item >= total) return;
    int64_t ts = item / hidden, r = item % hidden;
    int e = idx[ts];
    y[ts * hidden + r] = bf16_row_dot(W, e, r, h + ts * inter) + bf16_to_f32(W.bias[int64_t(e) * W.rows + r]);
  }
}

__global__ void combine_kernel(const float* y, const float* w, int k, int64_t hidden, int64_t n, float* out) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * hidden) return;
  int64_t t = i / hidden, r = i % hidden;
  float acc = 0.f;
  for (int j = 0; j < k; ++j) acc += w[t * k + j] * y[(t * k + j) * hidden + r];
  out[i] = acc;
}

unsigned grid_for(int64_t items, bool warp_per_item) {
  return warp_per_item ? ceil_div(items, 8) : ceil_div(items, 256);
}

}  // namespace

void launch_router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w, cudaStream_t s) {
  if (n == 0) return;
  router_kernel<<<ceil_div(n, 128), 128, 0, s>>>(logits, n, experts, k, idx, w);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* h_scratch,
                float* y_scratch, float* out, cudaStream_t s) {
  if (n == 0) return;
  int64_t inter = gate_up.rows / 2;
  gate_up_kernel<<<grid_for(n * k * inter, gate_up.mxfp4), 256, 0, s>>>(x, n, hidden, idx, k, gate_up, swiglu_limit,
                                                                        h_scratch, inter);
  GPTOSS_CUDA_LAUNCH_CHECK();
  down_kernel<<<grid_for(n * k * hidden, down.mxfp4), 256, 0, s>>>(h_scratch, n, inter, idx, k, down, y_scratch,
                                                                   hidden);
  GPTOSS_CUDA_LAUNCH_CHECK();
  combine_kernel<<<ceil_div(n * hidden, 256), 256, 0, s>>>(y_scratch, w, k, hidden, n, out);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
