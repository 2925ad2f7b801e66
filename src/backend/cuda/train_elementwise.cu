// The LoRA trainer's row-wise kernels (train_kernels.cuh): scatter, RMSNorm's backward, the
// cross-entropy with its gradient, RoPE's transpose. A thread block a row; sums over a row go through
// block_sum (a fixed tree), so results repeat bit for bit.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/train_kernels.cuh"

namespace gptoss::cuda {
namespace {

__global__ void scatter_rows_kernel(const float* src, const int32_t* rows, int64_t dim, float* dst) {
  const float* s = src + int64_t(blockIdx.x) * dim;
  float* d = dst + int64_t(rows[blockIdx.x]) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
}

// y_i = w_i x_i r with r = (mean(x^2) + eps)^-1/2: dx_i += r w_i dy_i - x_i r^3 / d * sum_j w_j dy_j x_j.
__global__ void rms_norm_backward_kernel(const float* x, const uint16_t* w, const float* dy, int64_t d, float eps,
                                         float* dx) {
  __shared__ float partial[32];
  const int64_t row = int64_t(blockIdx.x) * d;
  float ss = 0.f, wdx = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float xi = x[row + i];
    ss += xi * xi;
    wdx += bf16_to_f32(w[i]) * dy[row + i] * xi;
  }
  const float sum_sq = block_sum(ss, partial);
  __syncthreads();  // every thread has read partial[0] before the next sum reuses it
  const float sum_wdx = block_sum(wdx, partial);
  const float r = rsqrtf(sum_sq / float(d) + eps);
  const float c = r * r * r / float(d) * sum_wdx;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    dx[row + i] += r * bf16_to_f32(w[i]) * dy[row + i] - x[row + i] * c;
}

constexpr int kRowThreads = 1024;

__global__ void cross_entropy_kernel(const float* logits, int64_t vocab, const int32_t* target, float g,
                                     float* row_loss, float* dlogits) {
  __shared__ float partial[32];
  const int64_t row = int64_t(blockIdx.x) * vocab;
  const int32_t tgt = target[blockIdx.x];
  if (tgt < 0) {
    if (threadIdx.x == 0) row_loss[blockIdx.x] = 0.f;
    if (dlogits)
      for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) dlogits[row + i] = 0.f;
    return;
  }
  const float* z = logits + row;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, z[i]);
  mx = warp_max(mx);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = mx;
  __syncthreads();
  if (threadIdx.x < 32) {
    float u = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : -INFINITY;
    u = warp_max(u);
    if (threadIdx.x == 0) partial[0] = u;
  }
  __syncthreads();
  mx = partial[0];
  __syncthreads();
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += expf(z[i] - mx);
  const float lse = mx + logf(block_sum(sum, partial));
  if (threadIdx.x == 0) row_loss[blockIdx.x] = lse - z[tgt];
  if (!dlogits) return;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    dlogits[row + i] = g * (expf(z[i] - lse) - (i == tgt ? 1.f : 0.f));
}

// A thread per (token, rotation pair): cos and sin as the forward forms them (f32 angle, double sincos,
// times attn_factor in f32), then R(-angle) on the pair in every head.
__global__ void rope_backward_kernel(float* dx, int64_t n, int heads, int head_dim, const int32_t* positions,
                                     const float* inv_freq, float attn_factor) {
  const int half = head_dim / 2;
  const int64_t item = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= n * half) return;
  const int64_t t = item / half;
  const int i = int(item % half);
  const float angle = float(positions[t]) * inv_freq[i];
  double sd, cd;
  sincos(double(angle), &sd, &cd);
  const float c = float(cd) * attn_factor, s = float(sd) * attn_factor;
  for (int h = 0; h < heads; ++h) {
    float* d = dx + (t * heads + h) * head_dim;
    const float d1 = d[i], d2 = d[i + half];
    d[i] = d1 * c + d2 * s;
    d[i + half] = d2 * c - d1 * s;
  }
}

}  // namespace

void launch_zero(float* x, int64_t count, cudaStream_t s) {
  if (count > 0) GPTOSS_CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(count) * sizeof(float), s));
}

void launch_scatter_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst,
                         cudaStream_t s) {
  if (n_rows <= 0) return;
  scatter_rows_kernel<<<unsigned(n_rows), 256, 0, s>>>(src, rows, dim, dst);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                              float* dx, cudaStream_t s) {
  if (n <= 0) return;
  rms_norm_backward_kernel<<<unsigned(n), kRowThreads, 0, s>>>(x, w, dy, d, eps, dx);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, float g,
                          float* row_loss, float* dlogits, cudaStream_t s) {
  if (n <= 0) return;
  cross_entropy_kernel<<<unsigned(n), kRowThreads, 0, s>>>(logits, vocab, target, g, row_loss, dlogits);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

void launch_rope_backward(float* dx, int64_t n, int heads, int head_dim, const int32_t* positions,
                          const float* inv_freq, float attn_factor, cudaStream_t s) {
  const int64_t items = n * (head_dim / 2);
  if (items <= 0) return;
  rope_backward_kernel<<<ceil_div(items, 256), 256, 0, s>>>(dx, n, heads, head_dim, positions, inv_freq, attn_factor);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gptoss::cuda
