// y[n, out] = x[n, in] W^T + b with W [out, in] bf16, for up to kTok (1, 4 or 8) tokens per block row (decode reads
// every weight once). A block of kWarps warps owns kRows consecutive output rows and splits `in` between
// its warps; a lane reads the same 8 floats of x once per step and uses them for all kRows rows (16-byte
// loads of 8 bf16 each), so x is read from L1 kRows times less often than with a warp per row (Nsight:
// the warp-per-row kernel was bound by L1 traffic, not DRAM). Partial sums meet in shared memory.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/matmul_segments.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kRows = 4;

// vec: `in` % 8 == 0 and 16-byte aligned W and x, so a lane takes 8 elements per step.
// kTok tokens per block row: a template parameter so the accumulators of a decode step (n = 1) take 4
// registers, not 32 (at kTok = 8 the kernel used 128 registers a thread: 25 % occupancy, DRAM 29 % busy;
// H200, batch 1: 217.8 -> 251 tok/s with the reductions below). Capping the registers for 4 blocks an
// SM (__launch_bounds__(256, 4)) was slower: 228 tok/s, and so was a warp per row with 12 16-byte loads
// a lane in flight (no shared memory, no barrier): 258-262 vs 266 tok/s, q_proj 16.9 vs 13.9 us.
// Several weight matrices with the same input (q, k, v) run in one launch: block b belongs to the segment
// s with first[s] <= b < first[s + 1] and computes rows (b - first[s]) * kRows .. of that matrix.
template <int kTok>
__global__ void matmul_kernel(const float* x, int64_t n, int64_t in, MatmulSegments segs, bool vec) {
  __shared__ float part[kWarps][kRows][kTok];
  const int seg = segs.find(blockIdx.x);
  const uint16_t* w = segs.w[seg];
  const uint16_t* bias = segs.bias[seg];
  float* y = segs.y[seg];
  const int64_t out = segs.out[seg];
  const int64_t r0 = int64_t(blockIdx.x - segs.first[seg]) * kRows;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t0 = int64_t(blockIdx.y) * kTok;
  const int nt = int(n - t0 < kTok ? n - t0 : kTok);
  const int nr = int(out - r0 < kRows ? out - r0 : kRows);
  // The block's rows start for L2 while the kernel before this one finishes (launch.cuh).
  if (blockIdx.y == 0) prefetch_l2(w + r0 * in, int64_t(nr) * in * 2, threadIdx.x, blockDim.x);
  grid_wait();
  // Each warp takes whole steps of 32 lanes x `per_lane` elements.
  const int per_lane = vec ? 8 : 1;
  const int64_t step = 32 * per_lane;
  const int64_t steps = (in + step - 1) / step, per_warp = (steps + kWarps - 1) / kWarps;
  const int64_t k0 = warp * per_warp * step, k1 = min(in, k0 + per_warp * step);
  float acc[kRows][kTok];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int j = 0; j < kTok; ++j) acc[r][j] = 0.f;
  if (vec) {
    for (int64_t i = k0 + int64_t(lane) * 8; i < k1; i += 256) {
      float wv[kRows][8];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (r < nr) bf16x8(*reinterpret_cast<const uint4*>(w + (r0 + r) * in + i), wv[r]);
        else
#pragma unroll
          for (int e = 0; e < 8; ++e) wv[r][e] = 0.f;
      }
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (j < nt) {
          const float4* xr = reinterpret_cast<const float4*>(x + (t0 + j) * in + i);
          const float4 a = xr[0], b = xr[1];
#pragma unroll
          for (int r = 0; r < kRows; ++r) acc[r][j] += dot8(wv[r], a, b);
        }
      }
    }
  } else {
    for (int64_t i = k0 + lane; i < k1; i += 32) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const float wv = r < nr ? bf16_to_f32(w[(r0 + r) * in + i]) : 0.f;
#pragma unroll
        for (int j = 0; j < kTok; ++j)
          if (j < nt) acc[r][j] += wv * x[(t0 + j) * in + i];
      }
    }
  }
  // Only the rows and tokens that exist: at n = 1 with 8 token slots, the other 28 of the 32 warp
  // reductions were most of a warp's instructions. When all exist the reductions stay unconditional, so
  // their shuffles interleave (behind a branch each, they ran one after another: -8 % at batch 8).
  if (nr == kRows && nt == kTok) {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        const float v = warp_sum(acc[r][j]);
        if (lane == 0) part[warp][r][j] = v;
      }
  } else {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int j = 0; j < kTok; ++j) {
        if (r < nr && j < nt) {  // uniform over the warp
          const float v = warp_sum(acc[r][j]);
          if (lane == 0) part[warp][r][j] = v;
        }
      }
  }
  __syncthreads();
  if (threadIdx.x < kRows * kTok) {
    const int r = threadIdx.x / kTok, j = threadIdx.x % kTok;
    if (r < nr && j < nt) {
      float v = bias ? bf16_to_f32(bias[r0 + r]) : 0.f;
      for (int i = 0; i < kWarps; ++i) v += part[i][r][j];
      y[(t0 + j) * out + r0 + r] = v;
    }
  }
}

// One token (decode at batch 1) with `in` % 8 == 0 and 16-byte aligned W and x: a block of 256 threads
// owns kGemvRows rows, thread t the 16-byte chunks t, t + 256, ... of each, kGemvChunks of them a pass.
// Every thread has work, and the first pass's weights are loaded before grid_wait(), so they stream in
// while the kernel before this one finishes. (matmul_kernel<1> split `in` between 8 warps in whole steps
// of 256 values: for in = 2880 two of its warps idle, and a warp's second step loaded after its first
// multiplied. H200, 20b shape, decode batch 1: 436-444 tok/s against 399-401; its matmuls 944 against
// 1137 us a step.)
constexpr int kGemvRows = kRows, kGemvChunks = 2, kGemvThreads = 256;  // the same row blocks (segments)

__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(const float* x, int64_t in, MatmulSegments segs) {
  __shared__ float part[kGemvThreads / 32][kGemvRows];
  const int seg = segs.find(blockIdx.x);
  const uint16_t* w = segs.w[seg];
  const int64_t out = segs.out[seg], r0 = int64_t(blockIdx.x - segs.first[seg]) * kGemvRows;
  const int nr = int(min(int64_t(kGemvRows), out - r0));
  const int64_t chunks = in / 8, span = int64_t(kGemvThreads) * kGemvChunks;
  const int tid = threadIdx.x;
  float acc[kGemvRows] = {};
  uint4 wv[kGemvChunks][kGemvRows];
  auto load = [&](int64_t c0) {
#pragma unroll
    for (int k = 0; k < kGemvChunks; ++k) {
      const int64_t c = c0 + tid + k * kGemvThreads;
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r)
        wv[k][r] = c < chunks && r < nr ? __ldg(reinterpret_cast<const uint4*>(w + (r0 + r) * in) + c)
                                        : make_uint4(0, 0, 0, 0);
    }
  };
  load(0);
  grid_wait();
  for (int64_t c0 = 0; c0 < chunks; c0 += span) {
    if (c0) load(c0);
#pragma unroll
    for (int k = 0; k < kGemvChunks; ++k) {
      const int64_t c = c0 + tid + k * kGemvThreads;
      if (c >= chunks) break;
      const float4* xr = reinterpret_cast<const float4*>(x) + 2 * c;
      const float4 a = xr[0], b = xr[1];
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) acc[r] += dot8(wv[k][r], a, b);
    }
  }
  const int warp = tid >> 5, lane = tid & 31;
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) {
    const float v = warp_sum(acc[r]);
    if (lane == 0) part[warp][r] = v;
  }
  __syncthreads();
  if (tid >= nr) return;
  const uint16_t* bias = segs.bias[seg];
  float v = bias ? bf16_to_f32(bias[r0 + tid]) : 0.f;
#pragma unroll
  for (int i = 0; i < kGemvThreads / 32; ++i) v += part[i][tid];
  segs.y[seg][r0 + tid] = v;
}

}  // namespace

void launch_matmul_bf16_multi(const float* x, int64_t n, int64_t in, const Backend::Linear* outs, int count,
                              cudaStream_t s) {
  if (n == 0) return;
  for (int c0 = 0; c0 < count; c0 += kMaxSegments) {
    const MatmulSegments segs = MatmulSegments::of(outs + c0, count - c0, kRows);
    bool vec = in % 8 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
    for (int i = 0; i < segs.count; ++i) vec = vec && (reinterpret_cast<uintptr_t>(segs.w[i]) & 15) == 0;
    const unsigned blocks = segs.blocks();
    if (blocks == 0) continue;
    if (n == 1 && vec) {
      launch(gemv_kernel, blocks, kGemvThreads, 0, s, x, in, segs);
      continue;
    }
    auto run = [&](auto kernel, int tok) {
      launch(kernel, dim3(blocks, ceil_div(n, tok)), kWarps * 32, 0, s, x, n, in, segs, vec);
    };
    if (n == 1)
      run(matmul_kernel<1>, 1);
    else if (n <= 4)
      run(matmul_kernel<4>, 4);
    else
      run(matmul_kernel<8>, 8);
  }
}

}  // namespace gptoss::cuda
