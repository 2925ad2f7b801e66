// y[n, out] = x[n, in] W^T + b with W [out, in] bf16. Each output row is split over `kSplit` warps of one
// block when there are few rows (the attention projections and the router would otherwise leave most
// SMs idle: 512 rows are 512 warps), and owned by one warp when there are many (lm_head). A lane reads
// 8 bf16 (16 bytes) of the row and the matching 8 floats of x per step, both coalesced, and keeps two
// steps in flight; the row is read once per group of up to kTok tokens (decode reads every weight once).
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kTok = 8;
constexpr int kWarps = 8;              // warps per block
constexpr int64_t kManyRows = 16384;   // from this many rows on, one warp per row

__device__ __forceinline__ void bf16x8(const uint4& p, float* w) {
  const uint32_t v[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[2 * i] = __uint_as_float(v[i] << 16);
    w[2 * i + 1] = __uint_as_float(v[i] & 0xffff0000u);
  }
}

// Partial dots of row `row` over elements [k0, k1) for tokens t0 .. t0+nt-1, by one warp; vec: 16-byte
// aligned rows and in % 8 == 0.
__device__ __forceinline__ void row_partial(const float* x, int64_t in, const uint16_t* wr, int64_t k0, int64_t k1,
                                            int64_t t0, int nt, bool vec, int lane, float* acc) {
  if (vec) {
#pragma unroll 2
    for (int64_t i = k0 + int64_t(lane) * 8; i < k1; i += 256) {
      float w[8];
      bf16x8(*reinterpret_cast<const uint4*>(wr + i), w);
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (j < nt) {
          const float4* xr = reinterpret_cast<const float4*>(x + (t0 + j) * in + i);
          const float4 a = xr[0], b = xr[1];
          acc[j] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z +
                    w[7] * b.w;
        }
      }
    }
  } else {
    for (int64_t i = k0 + lane; i < k1; i += 32) {
      float wv = bf16_to_f32(wr[i]);
#pragma unroll
      for (int j = 0; j < kTok; ++j)
        if (j < nt) acc[j] += wv * x[(t0 + j) * in + i];
    }
  }
}

// One warp per row (many rows).
__global__ void matmul_rows_kernel(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias,
                                   float* y, int64_t out, bool vec) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= out) return;
  const int64_t t0 = int64_t(blockIdx.y) * kTok;
  const int nt = int(n - t0 < kTok ? n - t0 : kTok);
  float acc[kTok] = {};
  row_partial(x, in, w + row * in, 0, in, t0, nt, vec, lane, acc);
  const float b = bias ? bf16_to_f32(bias[row]) : 0.f;
#pragma unroll
  for (int j = 0; j < kTok; ++j) {
    const float v = warp_sum(acc[j]);
    if (lane == 0 && j < nt) y[(t0 + j) * out + row] = v + b;
  }
}

// A block per row, its warps splitting the row (few rows); partial sums meet in shared memory.
__global__ void matmul_split_kernel(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias,
                                    float* y, int64_t out, bool vec) {
  __shared__ float part[kWarps][kTok];
  const int64_t row = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t0 = int64_t(blockIdx.y) * kTok;
  const int nt = int(n - t0 < kTok ? n - t0 : kTok);
  // Warp ranges in whole 256-element steps (a lane's 8 elements never straddle two warps).
  const int64_t step = vec ? 256 : 32;
  const int64_t steps = (in + step - 1) / step, per = (steps + kWarps - 1) / kWarps;
  const int64_t k0 = warp * per * step, k1 = k0 + per * step < in ? k0 + per * step : in;
  float acc[kTok] = {};
  if (k0 < in) row_partial(x, in, w + row * in, k0, k1, t0, nt, vec, lane, acc);
#pragma unroll
  for (int j = 0; j < kTok; ++j) {
    const float v = warp_sum(acc[j]);
    if (lane == 0) part[warp][j] = v;
  }
  __syncthreads();
  if (threadIdx.x < nt) {
    float v = bias ? bf16_to_f32(bias[row]) : 0.f;
    for (int i = 0; i < kWarps; ++i) v += part[i][threadIdx.x];
    y[(t0 + threadIdx.x) * out + row] = v;
  }
}

}  // namespace

void launch_matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                        int64_t out, cudaStream_t s) {
  if (n == 0 || out == 0) return;
  const bool vec = (in % 8 == 0) && ((reinterpret_cast<uintptr_t>(w) & 15) == 0) &&
                   ((reinterpret_cast<uintptr_t>(x) & 15) == 0);
  if (out >= kManyRows) {
    dim3 grid(ceil_div(out, kWarps), ceil_div(n, kTok));
    matmul_rows_kernel<<<grid, kWarps * 32, 0, s>>>(x, n, in, w, bias, y, out, vec);
  } else {
    dim3 grid(unsigned(out), ceil_div(n, kTok));
    matmul_split_kernel<<<grid, kWarps * 32, 0, s>>>(x, n, in, w, bias, y, out, vec);
  }
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
