// embed, rms_norm, add, gather_rows.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

__global__ void embed_kernel(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out) {
  int64_t t = blockIdx.x;
  const uint16_t* row = table + int64_t(tokens[t]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[t * hidden + i] = bf16_to_f32(row[i]);
}

// One block per row; block-wide sum of squares. 1024 threads: a 2880-wide row is then 3 loads a thread,
// not 12 in a row (the 256-thread version took ~12 us a call at decode, mostly waiting on loads).
constexpr int kNormThreads = 1024;
__global__ void rms_norm_kernel(const float* x, const uint16_t* w, float* y, int64_t d, float eps) {
  __shared__ float partial[32];
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  float inv = rsqrtf(partial[0] / float(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * inv * bf16_to_f32(w[i]);
}

__global__ void add_kernel(float* x, const float* y, int64_t count) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < count) x[i] += y[i];
}

__global__ void gather_kernel(const float* src, const int32_t* rows, int64_t dim, float* dst) {
  int64_t r = blockIdx.x;
  const float* s = src + int64_t(rows[r]) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[r * dim + i] = s[i];
}

}  // namespace

void launch_embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out, cudaStream_t s) {
  if (n == 0) return;
  embed_kernel<<<unsigned(n), 256, 0, s>>>(tokens, n, table, hidden, out);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t s) {
  if (n == 0) return;
  rms_norm_kernel<<<unsigned(n), kNormThreads, 0, s>>>(x, w, y, d, eps);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_add(float* x, const float* y, int64_t count, cudaStream_t s) {
  if (count == 0) return;
  add_kernel<<<ceil_div(count, 256), 256, 0, s>>>(x, y, count);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst, cudaStream_t s) {
  if (n_rows == 0) return;
  gather_kernel<<<unsigned(n_rows), 256, 0, s>>>(src, rows, dim, dst);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
