// y[n, out] = x[n, in] W^T + b with W [out, in] bf16. A warp per output row; the row is read once per
// group of up to kTok tokens (decode reads every weight once). Row reads are 8-byte (4 x bf16) loads
// when `in` allows it.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kTok = 8;
constexpr int kWarps = 8;

__global__ void matmul_bf16_kernel(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias,
                                   float* y, int64_t out) {
  int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= out) return;
  int64_t t0 = int64_t(blockIdx.y) * kTok;
  int nt = int(n - t0 < kTok ? n - t0 : kTok);
  const uint16_t* wr = w + row * in;
  float acc[kTok];
#pragma unroll
  for (int j = 0; j < kTok; ++j) acc[j] = 0.f;
  bool vec = (in % 4 == 0) && ((reinterpret_cast<uintptr_t>(w) & 7) == 0);
  if (vec) {
    for (int64_t i = int64_t(lane) * 4; i < in; i += 128) {
      uint2 p = *reinterpret_cast<const uint2*>(wr + i);
      float w0 = __uint_as_float(p.x << 16), w1 = __uint_as_float(p.x & 0xffff0000u);
      float w2 = __uint_as_float(p.y << 16), w3 = __uint_as_float(p.y & 0xffff0000u);
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (j < nt) {
          const float* xr = x + (t0 + j) * in + i;
          acc[j] += w0 * xr[0] + w1 * xr[1] + w2 * xr[2] + w3 * xr[3];
        }
      }
    }
  } else {
    for (int64_t i = lane; i < in; i += 32) {
      float wv = bf16_to_f32(wr[i]);
#pragma unroll
      for (int j = 0; j < kTok; ++j)
        if (j < nt) acc[j] += wv * x[(t0 + j) * in + i];
    }
  }
  float b = bias ? bf16_to_f32(bias[row]) : 0.f;
#pragma unroll
  for (int j = 0; j < kTok; ++j) {
    float v = warp_sum(acc[j]);
    if (lane == 0 && j < nt) y[(t0 + j) * out + row] = v + b;
  }
}

}  // namespace

void launch_matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                        int64_t out, cudaStream_t s) {
  if (n == 0 || out == 0) return;
  dim3 grid(ceil_div(out, kWarps), ceil_div(n, kTok));
  matmul_bf16_kernel<<<grid, kWarps * 32, 0, s>>>(x, n, in, w, bias, y, out);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
