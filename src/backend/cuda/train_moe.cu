// The MoE's per-slot steps of the LoRA trainer (train_kernels.cuh) around its grouped expert products
// (train_gemm.cu): bias, SwiGLU, the weighted sum of the forward; the SwiGLU's and the routing softmax's
// backward. Slot s = t * k + j holds token t's j-th expert choice. The math is backend/cpu/moe_grad.cpp's.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/train_kernels.cuh"

namespace gptoss::cuda {
namespace {

constexpr float kAlpha = 1.702f;
constexpr int kThreads = 256;

__global__ void slot_bias_kernel(float* g, int64_t width, const int32_t* idx, const uint16_t* bias) {
  float* row = g + int64_t(blockIdx.x) * width;
  const uint16_t* b = bias + int64_t(idx[blockIdx.x]) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) row[i] += bf16_to_f32(b[i]);
}

__global__ void swiglu_slots_kernel(const float* g, int64_t inter, float limit, float* act) {
  const float* row = g + int64_t(blockIdx.x) * 2 * inter;
  for (int64_t p = threadIdx.x; p < inter; p += blockDim.x)
    act[int64_t(blockIdx.x) * inter + p] = swiglu(row[2 * p], row[2 * p + 1], limit);
}

// A block per token; a thread per column.
__global__ void moe_combine_kernel(const float* y, const uint16_t* bias, const int32_t* idx, const float* w, int k,
                                   int64_t hidden, float* out) {
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; ++j) {
      const int64_t s = t * k + j;
      acc += w[s] * (y[s * hidden + c] + bf16_to_f32(bias[int64_t(idx[s]) * hidden + c]));
    }
    out[t * hidden + c] = acc;
  }
}

// A block per slot: dw = z . act + b_down . dout_t (block sums), then the SwiGLU's backward of ds = w z:
//   dg_p = ds_p (u' + 1) glu'(g') where g <= L, du_p = ds_p glu(g') where -L <= u <= L (bounds pass).
__global__ void moe_slot_backward_kernel(const float* g, const float* z, const float* dout, const int32_t* idx,
                                         const float* w, const uint16_t* down_bias, int k, int64_t inter,
                                         int64_t hidden, float limit, float* dg, float* dw) {
  __shared__ float partial[32];
  const int64_t s = blockIdx.x, t = s / k;
  const float* gs = g + s * 2 * inter;
  const float* zs = z + s * inter;
  float part = 0.f;
  for (int64_t p = threadIdx.x; p < inter; p += blockDim.x) part += zs[p] * swiglu(gs[2 * p], gs[2 * p + 1], limit);
  const float* go = dout + t * hidden;
  const uint16_t* b = down_bias + int64_t(idx[s]) * hidden;
  for (int64_t r = threadIdx.x; r < hidden; r += blockDim.x) part += go[r] * bf16_to_f32(b[r]);
  const float total = block_sum(part, partial);
  if (threadIdx.x == 0) dw[s] = total;
  const float ws = w[s];
  float* d = dg + s * 2 * inter;
  for (int64_t p = threadIdx.x; p < inter; p += blockDim.x) {
    const float ds = ws * zs[p];
    const float gv = gs[2 * p], uv = gs[2 * p + 1];
    const float gc = fminf(gv, limit), uc = fminf(fmaxf(uv, -limit), limit);
    const float sig = 1.f / (1.f + expf(-kAlpha * gc));
    const float glu = gc * sig, dglu = sig + kAlpha * gc * sig * (1.f - sig);
    d[2 * p] = gv <= limit ? ds * (uc + 1.f) * dglu : 0.f;
    d[2 * p + 1] = uv >= -limit && uv <= limit ? ds * glu : 0.f;
  }
}

// A block per token: dh = the slots' rows summed in slot order; the routing softmax's backward.
__global__ void moe_token_backward_kernel(const float* dhs, const int32_t* idx, const float* w, const float* dw, int k,
                                          int experts, int64_t hidden, float* dh, float* d_logits) {
  const int64_t t = blockIdx.x;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < k; ++j) acc += dhs[(t * k + j) * hidden + c];
    dh[t * hidden + c] = acc;
  }
  if (threadIdx.x == 0) {
    float* dl = d_logits + t * experts;
    for (int e = 0; e < experts; ++e) dl[e] = 0.f;
    float mean = 0.f;
    for (int j = 0; j < k; ++j) mean += w[t * k + j] * dw[t * k + j];
    for (int j = 0; j < k; ++j) dl[idx[t * k + j]] += w[t * k + j] * (dw[t * k + j] - mean);
  }
}

}  // namespace

void launch_slot_bias(float* g, int64_t slots, int64_t width, const int32_t* idx, const uint16_t* bias,
                      cudaStream_t s) {
  if (slots <= 0) return;
  slot_bias_kernel<<<unsigned(slots), kThreads, 0, s>>>(g, width, idx, bias);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_swiglu_slots(const float* g, int64_t slots, int64_t inter, float limit, float* act, cudaStream_t s) {
  if (slots <= 0) return;
  swiglu_slots_kernel<<<unsigned(slots), kThreads, 0, s>>>(g, inter, limit, act);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_moe_combine(const float* y, const uint16_t* bias, const int32_t* idx, const float* w, int64_t n, int k,
                        int64_t hidden, float* out, cudaStream_t s) {
  if (n <= 0) return;
  moe_combine_kernel<<<unsigned(n), kThreads, 0, s>>>(y, bias, idx, w, k, hidden, out);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_moe_slot_backward(const float* g, const float* z, const float* dout, const int32_t* idx, const float* w,
                              const uint16_t* down_bias, int64_t n, int k, int64_t inter, int64_t hidden, float limit,
                              float* dg, float* dw, cudaStream_t s) {
  if (n <= 0) return;
  moe_slot_backward_kernel<<<unsigned(n * k), kThreads, 0, s>>>(g, z, dout, idx, w, down_bias, k, inter, hidden, limit,
                                                               dg, dw);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_moe_token_backward(const float* dhs, const int32_t* idx, const float* w, const float* dw, int64_t n, int k,
                               int experts, int64_t hidden, float* dh, float* d_logits, cudaStream_t s) {
  if (n <= 0) return;
  moe_token_backward_kernel<<<unsigned(n), kThreads, 0, s>>>(dhs, idx, w, dw, k, experts, hidden, dh, d_logits);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gptoss::cuda
