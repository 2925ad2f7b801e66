// y[n, out] = x[n, in] W^T + b for decode batches of 2..64 tokens on the tensor cores (mma.sync m16n8k16,
// bf16 in, f32 accumulate), reading every weight once for all the batch's tokens. The CUDA-core kernel
// (matmul_bf16.cu) reads W once per 8 tokens and does 8 FMAs and a convert per weight and token in the
// SIMT pipes: at 8 / 16 tokens the 20b's lm_head ran at 1.27 TB/s (H200).
//
// Exact to f32 level as matmul_bf16_tc.cu: x is split into three bf16 limbs (launch_limbs_bf16), and
// every 32 values of k sum into a fresh accumulator that is added to the running sums with an FADD.
//
// A block of kWarps warps owns 16 output rows (one mma tile) and all tokens of its 8 * kNT-token group;
// its warps split k, each loading the weights of its next 64-wide chunk while it multiplies the current.
// W is read straight from global memory into mma fragments: lane (g, t) loads columns 16 t .. 16 t + 15
// of each 64-wide chunk of its rows g and g + 8 (two 16-byte loads a row), and k-step s of the chunk
// gives the mma's k slots {2t, 2t + 1} values 4s, 4s + 1 and slots {2t + 8, 2t + 9} values 4s + 2,
// 4s + 3 of those 16. The limbs of x are read in the same order (the B fragment of token g), so the
// permutation of k cancels in the dot products.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/matmul_segments.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerBlock = 16;
constexpr int kChunk = 64;  // k per chunk
constexpr int kLimbs = 3;
// Fewer rows than this make too few blocks to keep the GPU busy (the 32-row router: 2 blocks, 11.5 us at
// 16 tokens against 7.7 us on the CUDA cores); those stay on matmul_bf16.cu.
constexpr int64_t kSkinnyMinRows = 1024;

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bf16 (32 bytes) at p as 8 words, or zeros.
__device__ __forceinline__ void load16(const uint16_t* p, bool ok, uint32_t* v) {
  const uint4 lo = ok ? __ldg(reinterpret_cast<const uint4*>(p)) : make_uint4(0, 0, 0, 0);
  const uint4 hi = ok ? __ldg(reinterpret_cast<const uint4*>(p) + 1) : make_uint4(0, 0, 0, 0);
  v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
}

template <int kNT>
__global__ void __launch_bounds__(32 * kWarps) matmul_skinny_kernel(const uint16_t* limbs, int64_t n, int64_t in,
                                                                    MatmulSegments segs) {
  constexpr int kAcc = kNT * 4;  // kNT token tiles x 4 values
  __shared__ float part[kWarps - 1][kAcc][32];
  const int seg = segs.find(blockIdx.x);
  const uint16_t* W = segs.w[seg];
  const int64_t out = segs.out[seg];
  const int64_t r0 = int64_t(blockIdx.x - segs.first[seg]) * kRowsPerBlock;
  const int64_t tok0 = int64_t(blockIdx.y) * 8 * kNT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t chunks = in / kChunk, per = (chunks + kWarps - 1) / kWarps;
  const int64_t c_begin = warp * per, c_end = min(chunks, c_begin + per);
  // Rows g and g + 8 of the block (clamped: rows past the end compute garbage, not stored).
  const uint16_t* wa = W + min(r0 + g, out - 1) * in + 16 * t;
  const uint16_t* wb = W + min(r0 + g + 8, out - 1) * in + 16 * t;
  const int64_t plane = n * in;  // elements of one limb
  float acc[kAcc];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) acc[i] = 0.f;
  // The weights of the next chunk are loaded while this one is multiplied.
  uint32_t a[2][8], an[2][8];
  if (c_begin < c_end) {
    load16(wa + c_begin * kChunk, true, a[0]);
    load16(wb + c_begin * kChunk, true, a[1]);
  }
  grid_wait();  // the first weights are on their way while the kernel before this one finishes (launch.cuh)
  for (int64_t c = c_begin; c < c_end; ++c) {
    const int64_t col = c * kChunk;
    const bool more = c + 1 < c_end;
    load16(wa + col + kChunk, more, an[0]);
    load16(wb + col + kChunk, more, an[1]);
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
      const int64_t tok = tok0 + 8 * j + g;
      uint32_t b[kLimbs][8];
#pragma unroll
      for (int l = 0; l < kLimbs; ++l) load16(limbs + l * plane + tok * in + col + 16 * t, tok < n, b[l]);
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // 32 values of k: k-steps 2h, 2h + 1
        float f[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int s = 2 * h; s < 2 * h + 2; ++s) {
          const uint32_t frag[4] = {a[0][2 * s], a[1][2 * s], a[0][2 * s + 1], a[1][2 * s + 1]};
#pragma unroll
          for (int l = kLimbs - 1; l >= 0; --l) mma_bf16(f, frag, b[l][2 * s], b[l][2 * s + 1]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[j * 4 + i] += f[i];
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int i = 0; i < 8; ++i) a[r][i] = an[r][i];
  }
  // Warps 1.. hand their sums to warp 0, which adds the bias and stores.
  if (warp > 0)
#pragma unroll
    for (int i = 0; i < kAcc; ++i) part[warp - 1][i][lane] = acc[i];
  __syncthreads();
  if (warp > 0) return;
  const uint16_t* bias = segs.bias[seg];
  float* y = segs.y[seg];
#pragma unroll
  for (int j = 0; j < kNT; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int a = j * 4 + i;
      float v = acc[a];
#pragma unroll
      for (int w = 0; w < kWarps - 1; ++w) v += part[w][a][lane];
      const int64_t row = r0 + g + 8 * (i / 2), tok = tok0 + 8 * j + 2 * t + (i % 2);
      if (row < out && tok < n) y[tok * out + row] = v + (bias ? bf16_to_f32(bias[row]) : 0.f);
    }
}

}  // namespace

bool matmul_bf16_skinny_applies(int64_t n, int64_t in, int64_t rows) {
  return n >= 2 && n <= kSkinnyMaxTokens && in % kChunk == 0 && rows >= kSkinnyMinRows;
}

void launch_matmul_bf16_skinny(const float* x, int64_t n, int64_t in, const Backend::Linear* linears, int count,
                               void* scratch, cudaStream_t s) {
  GPTOSS_CHECK(n >= 2 && in % kChunk == 0, "cuda skinny matmul: n {} / in {} not supported", n, in);
  uint16_t* limbs = static_cast<uint16_t*>(scratch);
  launch_limbs_bf16(x, n * in, limbs, s);
  for (int c0 = 0; c0 < count; c0 += kMaxSegments) {
    const MatmulSegments segs = MatmulSegments::of(linears + c0, count - c0, kRowsPerBlock);
    const unsigned blocks = segs.blocks();
    if (blocks == 0) continue;
    auto run = [&](auto kernel, int tokens) {
      launch(kernel, dim3(blocks, ceil_div(n, tokens)), 32 * kWarps, 0, s, limbs, n, in, segs);
    };
    if (n <= 8)
      run(matmul_skinny_kernel<1>, 8);
    else if (n <= 16)
      run(matmul_skinny_kernel<2>, 16);
    else  // 33-64 tokens in two groups of 32 (one of 64, 142 registers: batch 40 / 48 1978 / 2262 vs 2146 / 2357)
      run(matmul_skinny_kernel<4>, 32);
  }
}

}  // namespace gptoss::cuda
