// y[n, out] = x[n, in] W^T + b on the tensor cores for prefill-sized n (mma.sync m16n8k16, bf16 in, f32
// accumulate), exact to f32 level: W is bf16 already; x (f32) is split into three bf16 limbs
// x = l0 + l1 + l2 (24 significant bits, f32's; bf16 has f32's exponent range, so no scaling), and the
// three products go into the same f32 accumulator.
//
// A block computes 64 output rows x 64 tokens, a warp 16 rows x 64 tokens; k advances 32 at a time
// through shared memory (double-buffered: the next stage's global loads are in flight while this one is
// multiplied). Tiles are stored as rows of four 16-byte chunks, chunk c of row r at c ^ ((r / 2) % 4), so
// that ldmatrix (8 rows of one chunk) and the 16-byte stores (8 lanes: 2 rows x 4 chunks) hit 8 different
// bank groups.
#include <cuda_bf16.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kBm = 64, kBn = 64, kBk = 32;  // rows, tokens, k of a block stage
constexpr int kChunks = kBk / 8;              // 16-byte chunks a tile row
constexpr int kThreads = 128;                 // 4 warps, 16 rows each
constexpr int kLimbs = 3;
constexpr int kWLoads = kBm * kChunks / kThreads;           // 2
constexpr int kXLoads = kLimbs * kBn * kChunks / kThreads;  // 6

__device__ __forceinline__ uint16_t bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
__device__ __forceinline__ float bf16_value(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

// limbs[l][i] = limb l of x[i] (i < count).
__global__ void limbs_bf16_kernel(const float* x, int64_t count, uint16_t* limbs) {
  grid_wait();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float r = x[i];
#pragma unroll
  for (int l = 0; l < kLimbs; ++l) {
    const uint16_t b = bf16_bits(r);
    limbs[l * count + i] = b;
    r -= bf16_value(b);
  }
}

__device__ __forceinline__ int swz(int r, int c) { return r * kChunks + (c ^ ((r >> 1) & 3)); }

struct Tiles {
  uint4 w[kBm * kChunks];
  uint4 x[kLimbs][kBn * kChunks];
};

// One stage's global loads of this thread (W rows row0 .., tokens tok0 .., k0 ..), zero past the ends.
struct StageRegs {
  uint4 w[kWLoads], x[kXLoads];

  __device__ __forceinline__ void load(const uint16_t* W, int64_t out, const uint16_t* limbs, int64_t n, int64_t in,
                                       int64_t row0, int64_t tok0, int64_t k0) {
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) {
      const int i = threadIdx.x + kThreads * j, r = i / kChunks, c = i % kChunks;
      w[j] = row0 + r < out ? __ldg(reinterpret_cast<const uint4*>(W + (row0 + r) * in + k0 + 8 * c))
                            : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kXLoads; ++j) {
      const int i = threadIdx.x + kThreads * j, l = i / (kBn * kChunks), r = (i / kChunks) % kBn, c = i % kChunks;
      x[j] = tok0 + r < n ? __ldg(reinterpret_cast<const uint4*>(limbs + l * n * in + (tok0 + r) * in + k0 + 8 * c))
                          : make_uint4(0, 0, 0, 0);
    }
  }

  __device__ __forceinline__ void store(Tiles& t) const {
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) {
      const int i = threadIdx.x + kThreads * j;
      t.w[swz(i / kChunks, i % kChunks)] = w[j];
    }
#pragma unroll
    for (int j = 0; j < kXLoads; ++j) {
      const int i = threadIdx.x + kThreads * j, l = i / (kBn * kChunks);
      t.x[l][swz((i / kChunks) % kBn, i % kChunks)] = x[j];
    }
  }
};

__device__ __forceinline__ void ldmatrix_x4(const uint4* p, uint32_t* r) {
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Grid (row blocks, token blocks).
__global__ void __launch_bounds__(kThreads) matmul_bf16_tc_kernel(const uint16_t* limbs, int64_t n, int64_t in,
                                                                  const uint16_t* W, const uint16_t* bias, float* y,
                                                                  int64_t out) {
  grid_wait();
  __shared__ Tiles tiles[2];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, mi = lane >> 3;
  const int64_t row0 = int64_t(blockIdx.x) * kBm, tok0 = int64_t(blockIdx.y) * kBn;
  float acc[kBn / 8][4] = {};
  StageRegs regs;
  regs.load(W, out, limbs, n, in, row0, tok0, 0);
  regs.store(tiles[0]);
  __syncthreads();
  const int64_t stages = in / kBk;
  for (int64_t st = 0; st < stages; ++st) {
    const bool more = st + 1 < stages;
    if (more) regs.load(W, out, limbs, n, in, row0, tok0, (st + 1) * kBk);
    const Tiles& cur = tiles[st & 1];
    // The stage's 6 mma a token group go into a fresh accumulator, added to acc with a rounded FADD: the
    // tensor cores' own f32 accumulation does not round to nearest, and over in = 4096 (768 mma) that
    // drifted to 1.1e-5 of the f32 result; per stage it stays at the CUDA cores' level.
    float part[kBn / 8][4] = {};
#pragma unroll
    for (int ks = 0; ks < kBk / 16; ++ks) {
      // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) of the warp's 16.
      uint32_t a[4];
      ldmatrix_x4(&cur.w[swz(16 * warp + (lane & 7) + 8 * (mi & 1), 2 * ks + (mi >> 1))], a);
#pragma unroll
      for (int l = 0; l < kLimbs; ++l)
#pragma unroll
        for (int np = 0; np < kBn / 16; ++np) {
          // B of token groups 2np, 2np + 1: matrices (tokens 0-7, k 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15).
          uint32_t b[4];
          ldmatrix_x4(&cur.x[l][swz(16 * np + (lane & 7) + 8 * (mi >> 1), 2 * ks + (mi & 1))], b);
          mma_bf16(part[2 * np], a, b[0], b[1]);
          mma_bf16(part[2 * np + 1], a, b[2], b[3]);
        }
    }
#pragma unroll
    for (int ng = 0; ng < kBn / 8; ++ng)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[ng][i] += part[ng][i];
    if (more) {
      regs.store(tiles[(st + 1) & 1]);
      __syncthreads();
    }
  }
  // C of token group ng: (row g, tokens 2t, 2t + 1), (row g + 8, same tokens).
  const int64_t ra = row0 + 16 * warp + g, rb = ra + 8;
  const float ba = bias && ra < out ? bf16_to_f32(bias[ra]) : 0.f, bb = bias && rb < out ? bf16_to_f32(bias[rb]) : 0.f;
#pragma unroll
  for (int ng = 0; ng < kBn / 8; ++ng)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int64_t tok = tok0 + 8 * ng + 2 * t + i;
      if (tok >= n) continue;
      if (ra < out) y[tok * out + ra] = acc[ng][i] + ba;
      if (rb < out) y[tok * out + rb] = acc[ng][2 + i] + bb;
    }
}

}  // namespace

bool matmul_bf16_tc_applies(int64_t n, int64_t in) { return n >= kMatmulTcMinTokens && in % kBk == 0; }

size_t matmul_bf16_tc_scratch_bytes(int64_t n, int64_t in) { return size_t(kLimbs) * size_t(n * in) * 2; }

void launch_limbs_bf16(const float* x, int64_t count, uint16_t* limbs, cudaStream_t s) {
  if (count == 0) return;
  launch(limbs_bf16_kernel, ceil_div(count, 256), 256, 0, s, x, count, limbs);
}

void launch_matmul_bf16_tc(const float* x, int64_t n, int64_t in, const Backend::Linear* linears, int count,
                           void* scratch, cudaStream_t s) {
  GPTOSS_CHECK(matmul_bf16_tc_applies(n, in), "cuda tensor-core matmul: n {} / in {} not supported", n, in);
  uint16_t* limbs = static_cast<uint16_t*>(scratch);
  launch_limbs_bf16(x, n * in, limbs, s);
  for (int i = 0; i < count; ++i) {
    const Backend::Linear& o = linears[i];
    if (o.out == 0) continue;
    launch(matmul_bf16_tc_kernel, dim3(ceil_div(o.out, kBm), ceil_div(n, kBn)), kThreads, 0, s, limbs, n, in, o.w,
           o.bias, o.y, o.out);
  }
}

}  // namespace gptoss::cuda
