// embed, rms_norm, add, add + rms_norm, gather_rows.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/launch.cuh"

namespace gptoss::cuda {
namespace {

__global__ void embed_kernel(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out) {
  grid_wait();
  int64_t t = blockIdx.x;
  const uint16_t* row = table + int64_t(tokens[t]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out[t * hidden + i] = bf16_to_f32(row[i]);
}

// One block per row; block-wide sum of squares. 1024 threads: a 2880-wide row is then 3 loads a thread,
// not 12 in a row (the 256-thread version took ~12 us a call at decode, mostly waiting on loads).
constexpr int kNormThreads = 1024;
__global__ void rms_norm_kernel(const float* x, const uint16_t* w, float* y, int64_t d, float eps) {
  float wp[kNormPre];
  load_norm(w, d, wp);
  grid_wait();
  __shared__ float partial[32];
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  const float inv = rsqrtf(block_sum(ss, partial) / float(d) + eps);
  for_norm_row(w, d, wp, [&](int64_t i, float wi) { yr[i] = xr[i] * inv * wi; });
}

// The residual add of one block and the rms_norm that starts the next, in one pass over the row (each
// thread normalizes the elements it added, so it reads its own writes).
__global__ void add_rms_norm_kernel(float* x, const float* y, const uint16_t* w, float* out, int64_t d, float eps) {
  float wp[kNormPre];
  load_norm(w, d, wp);
  grid_wait();
  __shared__ float partial[32];
  float* xr = x + blockIdx.x * d;
  const float* yr = y + blockIdx.x * d;
  float* o = out + blockIdx.x * d;
  const float ss = add_row_sumsq(xr, yr, xr, d);
  const float inv = rsqrtf(block_sum(ss, partial) / float(d) + eps);
  for_norm_row(w, d, wp, [&](int64_t i, float wi) { o[i] = xr[i] * inv * wi; });
}

__global__ void add_kernel(float* x, const float* y, int64_t count) {
  grid_wait();
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < count) x[i] += y[i];
}

__global__ void gather_kernel(const float* src, const int32_t* rows, int64_t dim, float* dst) {
  grid_wait();
  int64_t r = blockIdx.x;
  const float* s = src + int64_t(rows[r]) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[r * dim + i] = s[i];
}

}  // namespace

void launch_embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out, cudaStream_t s) {
  if (n == 0) return;
  launch(embed_kernel, unsigned(n), 256, 0, s, tokens, n, table, hidden, out);
}

void launch_rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t s) {
  if (n == 0) return;
  launch(rms_norm_kernel, unsigned(n), kNormThreads, 0, s, x, w, y, d, eps);
}

void launch_add_rms_norm(float* x, const float* y, const uint16_t* w, float* out, int64_t n, int64_t d, float eps,
                         cudaStream_t s) {
  if (n == 0) return;
  launch(add_rms_norm_kernel, unsigned(n), kNormThreads, 0, s, x, y, w, out, d, eps);
}

void launch_add(float* x, const float* y, int64_t count, cudaStream_t s) {
  if (count == 0) return;
  launch(add_kernel, ceil_div(count, 256), 256, 0, s, x, y, count);
}

void launch_gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst, cudaStream_t s) {
  if (n_rows == 0) return;
  launch(gather_kernel, unsigned(n_rows), 256, 0, s, src, rows, dim, dst);
}

}  // namespace gptoss::cuda
