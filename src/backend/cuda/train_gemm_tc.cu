// The trainer's products with bf16 or MXFP4 W on the tensor cores (mma.sync m16n8k16, bf16 in, f32
// accumulate), exact to f32 level as the forward's matmul_bf16_tc.cu: W is exact in bf16 (bf16 as stored;
// MXFP4's e2m1 times its power-of-two scale has at most 2 significant bits, and bf16 has f32's exponent
// range, subnormals included, so each decoded weight is bit for bit the f32 the CUDA-core kernel would use,
// the e8m0 extremes too: 2^-127 and 2^-128 are bf16 subnormals, scale 255 NaN, 6 * 2^127 inf). The f32 A is
// split into three bf16 limbs a = l0 + l1 + l2 (24 significant bits) and the three products go into the
// same f32 accumulator. Contract and the split over K: train_kernels.cuh, train_gemm.cu.
//
// A block computes 64 product rows x 128 columns with 8 warps (2 along rows x 4 along columns), a warp 32 x
// 32; k advances 32 at a time through shared memory, double-buffered: the next stage's global loads are in
// flight while this one is multiplied, and are converted to bf16 (A split into limbs, MXFP4 decoded) as they
// are stored. A stage's 6 mma of an output fragment go into a fresh accumulator that is added to the sum
// with a rounded FADD: the tensor cores' own f32 accumulation does not round to nearest, and over a long K
// that drifts well above f32's rounding (matmul_bf16_tc.cu measured 1.1e-5 at K = 4096).
//
// Shared tiles are rows of 16-byte chunks (8 bf16 of consecutive k, or of consecutive n), swizzled so that
// ldmatrix (8 rows of one chunk) and the 16-byte stores hit 8 different bank groups. A limbs: [row][k], 4
// chunks a row, chunk c of row r at c ^ ((r / 2) % 4). W as its lines run: [n][k] like A (ldmatrix gives
// mma's column-major B directly), or [k][n], 16 chunks a row, chunk c at c ^ (r % 8) (ldmatrix .trans).
//
// H200, 20b shapes (1800 tokens top-4 of 32 experts, against the CUDA-core kernel this replaced): MXFP4
// gate_up forward 3.38 ms (71 TFLOP/s) vs 10.4 (23), backward 3.40 vs 10.2; input-major bf16 experts
// 76-85 TFLOP/s; dense dx 1800 x 4096 -> 2880 0.56 ms vs 1.63; lm_head dx 64 x 201088 -> 2880 (split
// over K) 0.83 ms vs 3.24. Norm-wise error against a double reference 1.3e-7 .. 2.9e-7 (1.3e-6 over
// K = 201088 unsplit, where the CUDA-core kernel had 9.7e-6); scale bytes 0 and 1 (bf16 subnormal weights)
// come out as exact as the others, so the tensor cores take subnormal bf16 as it is.
#include <cuda_bf16.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/train_gemm.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kBM = kTrainGemmTcTile.rows, kBN = kTrainGemmTcTile.cols, kBK = 32;
constexpr int kThreads = 256;
constexpr int kLimbs = 3;
constexpr int kAChunks = kBM * kBK / 8;             // 16-byte chunks of one limb's tile
constexpr int kWChunks = kBN * kBK / 8;             // of the W tile
constexpr int kALoads = kBM * kBK / 4 / kThreads;   // float4 loads of A a thread a stage: 2
constexpr int kWLoads = kWChunks / kThreads;        // chunks of W a thread a stage: 2

struct Tiles {
  uint4 a[kLimbs][kAChunks];
  uint4 w[kWChunks];
};

// Chunk c of row r in a tile of 4 (k-major rows of 32 k) or 16 (rows of 128 n) chunks a row.
__device__ __forceinline__ int swz4(int r, int c) { return r * 4 + (c ^ ((r >> 1) & 3)); }
__device__ __forceinline__ int swz16(int r, int c) { return r * 16 + (c ^ (r & 7)); }

// An e2m1 code (bit 3 the sign) as f32: its bits put in an f32's sign, low exponent bits and top mantissa bit
// read e2m1 * 2^-126 (code 1 the subnormal 2^-127), exact times 2^126.
__device__ __forceinline__ float e2m1(uint32_t code) {
  return __uint_as_float((code & 8) << 28 | (code & 7) << 22) * 0x1p126f;
}

// The upper halves of two f32 (bf16 values held exactly) packed as bf16x2, lo in the low half.
__device__ __forceinline__ uint32_t pack_upper(float lo, float hi) {
  return __byte_perm(__float_as_uint(lo), __float_as_uint(hi), 0x7632);
}

// 8 consecutive elements of a line of W as loaded, then as bf16.
template <WFormat F>
struct WChunk;
template <>
struct WChunk<WFormat::kBf16> {
  uint4 v;
  __device__ __forceinline__ uint4 bf16() const { return v; }
};
template <>
struct WChunk<WFormat::kMxfp4> {
  uint32_t codes, scale;  // 8 codes (low nibble first), the e8m0 scale byte
  __device__ __forceinline__ uint4 bf16() const {
    const float s = e8m0(scale);
    uint32_t h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = pack_upper(e2m1(codes >> (8 * j)) * s, e2m1(codes >> (8 * j + 4)) * s);
    return make_uint4(h[0], h[1], h[2], h[3]);
  }
};

// Elements x0 .. x0 + 7 of line `line` (x0 % 8 == 0), zero from line_end and x_end on. MXFP4 lines are whole
// blocks of 32 and x_end is a multiple of 32 (the line's end or a split boundary), so its 8 codes are all in
// or all out.
template <WFormat F>
__device__ __forceinline__ WChunk<F> load_w_chunk(const TrainGemmW& w, int64_t line, int64_t x0, int64_t line_end,
                                                  int64_t x_end) {
  const bool in = line < line_end && x0 < x_end;
  if constexpr (F == WFormat::kBf16) {
    WChunk<F> r{make_uint4(0, 0, 0, 0)};
    if (!in) return r;
    const uint16_t* p = static_cast<const uint16_t*>(w.w) + line * w.len + x0;
    if (x0 + 8 <= x_end && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
      r.v = __ldg(reinterpret_cast<const uint4*>(p));
    } else {
      uint32_t h[4] = {};
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (x0 + j < x_end) h[j / 2] |= uint32_t(p[j]) << (16 * (j % 2));
      r.v = make_uint4(h[0], h[1], h[2], h[3]);
    }
    return r;
  } else {
    if (!in) return {0, 127};  // zero codes, scale 1: +0 (a NaN scale would make NaN of them)
    const int64_t at = line * w.len + x0;  // codes at byte at / 2 (4-byte aligned), scale at / 32
    return {__ldg(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(w.w) + at / 2)),
            __ldg(w.scales + at / 32)};
  }
}

// The three bf16 limbs of x0 and x1, packed in pairs: l[i] = limb i of (x0, x1). Round to nearest leaves a
// remainder of at most 16, then 8 significant bits, so the third limb is exact.
__device__ __forceinline__ void limbs2(float x0, float x1, uint32_t (&l)[kLimbs]) {
#pragma unroll
  for (int i = 0; i < kLimbs; ++i) {
    const __nv_bfloat162 b = __floats2bfloat162_rn(x0, x1);
    l[i] = *reinterpret_cast<const uint32_t*>(&b);
    x0 -= __uint_as_float(l[i] << 16);
    x1 -= __uint_as_float(l[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ void ldmatrix_x4(const uint4* p, uint32_t (&r)[4]) {
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(const uint4* p, uint32_t (&r)[4]) {
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One stage's global loads of this thread, held in registers while the stage before is multiplied. A: the
// j-th load is tile row (t + 256 j) / 8, k 4 ((t + 256 j) % 8) .. + 3 (8 threads a 128-byte run of a row).
// W: the j-th chunk is q = t + 256 j: line n q / 4, chunk q % 4 ([n][k]) or line k q / 16, chunk q % 16
// ([k][n]); a warp reads 8 lines' 4 chunks or 2 lines' 16.
template <WFormat F, bool kLineIsK>
struct Stage {
  float4 a[kALoads];
  WChunk<F> w[kWLoads];

  __device__ __forceinline__ void load(const TrainGemmArgs& p, const TrainGemmW& wl, const int64_t (&a_off)[kALoads],
                                       bool a_vec4, int64_t n0, int64_t k0, int64_t k_end) {
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      const int64_t k = k0 + 4 * (threadIdx.x % 8);
      a[j] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (a_off[j] < 0 || k >= k_end) continue;
      const float* src = p.a + a_off[j] + k * p.lda_k;
      if (a_vec4 && k + 4 <= k_end) {
        a[j] = __ldg(reinterpret_cast<const float4*>(src));
      } else {
        float e[4];
#pragma unroll
        for (int x = 0; x < 4; ++x) e[x] = k + x < k_end ? __ldg(src + x * p.lda_k) : 0.f;
        a[j] = make_float4(e[0], e[1], e[2], e[3]);
      }
    }
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) {
      const int q = threadIdx.x + kThreads * j;
      if constexpr (kLineIsK)
        w[j] = load_w_chunk<F>(wl, k0 + q / 16, n0 + 8 * (q % 16), k_end, p.n);
      else
        w[j] = load_w_chunk<F>(wl, n0 + q / 4, k0 + 8 * (q % 4), p.n, k_end);
    }
  }

  __device__ __forceinline__ void store(Tiles& t) const {
#pragma unroll
    for (int j = 0; j < kALoads; ++j) {
      const int q = threadIdx.x + kThreads * j, k4 = q % 8;
      uint32_t lo[kLimbs], hi[kLimbs];
      limbs2(a[j].x, a[j].y, lo);
      limbs2(a[j].z, a[j].w, hi);
#pragma unroll
      for (int l = 0; l < kLimbs; ++l)
        reinterpret_cast<uint2*>(&t.a[l][swz4(q / 8, k4 / 2)])[k4 % 2] = make_uint2(lo[l], hi[l]);
    }
#pragma unroll
    for (int j = 0; j < kWLoads; ++j) {
      const int q = threadIdx.x + kThreads * j;
      t.w[kLineIsK ? swz16(q / 16, q % 16) : swz4(q / 4, q % 4)] = w[j].bf16();
    }
  }
};

// Grid (column tiles, row tiles, groups or splits).
template <WFormat F, bool kLineIsK>
__global__ void __launch_bounds__(kThreads, kTrainGemmTcTile.blocks_per_sm) train_gemm_tc_kernel(
    const TrainGemmArgs p, bool a_vec4) {
  __shared__ Tiles tiles[2];
  __shared__ int64_t a_off_s[kBM], c_off[kBM];
  const TrainGemmBlock b = train_gemm_block(p, F, kBM);
  if (b.row0 >= b.row_end) return;
  train_gemm_row_offsets(p, b, kBM, a_off_s, c_off);
  __syncthreads();
  int64_t a_off[kALoads];
#pragma unroll
  for (int j = 0; j < kALoads; ++j) a_off[j] = a_off_s[(threadIdx.x + kThreads * j) / 8];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3, mat = lane >> 3;
  const int wm = warp & 1, wn = warp >> 1;  // the warp's rows 32 wm .., columns 32 wn ..
  const int64_t n0 = int64_t(blockIdx.x) * kBN;
  const int64_t stages = (b.k_end - b.k_begin + kBK - 1) / kBK;
  float acc[2][4][4] = {};  // [16-row half][8-column group][fragment]: rows g, g + 8, columns 2 t4, 2 t4 + 1
  Stage<F, kLineIsK> regs;
  if (stages > 0) {
    regs.load(p, b.w, a_off, a_vec4, n0, b.k_begin, b.k_end);
    regs.store(tiles[0]);
  }
  __syncthreads();
  for (int64_t st = 0; st < stages; ++st) {
    const bool more = st + 1 < stages;
    if (more) regs.load(p, b.w, a_off, a_vec4, n0, b.k_begin + (st + 1) * kBK, b.k_end);
    const Tiles& cur = tiles[st & 1];
    float part[2][4][4] = {};
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      // B of column groups 2 np, 2 np + 1: matrices (columns 0-7, k 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15).
      uint32_t bw[2][4];
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        if constexpr (kLineIsK)
          ldmatrix_x4_trans(&cur.w[swz16(16 * ks + (lane & 7) + 8 * (mat & 1), 4 * wn + 2 * np + (mat >> 1))], bw[np]);
        else
          ldmatrix_x4(&cur.w[swz4(32 * wn + 16 * np + (lane & 7) + 8 * (mat >> 1), 2 * ks + (mat & 1))], bw[np]);
      }
#pragma unroll
      for (int l = 0; l < kLimbs; ++l)
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
          uint32_t a[4];
          ldmatrix_x4(&cur.a[l][swz4(32 * wm + 16 * mi + (lane & 7) + 8 * (mat & 1), 2 * ks + (mat >> 1))], a);
#pragma unroll
          for (int ng = 0; ng < 4; ++ng) mma_bf16(part[mi][ng], a, bw[ng / 2][2 * (ng % 2)], bw[ng / 2][2 * (ng % 2) + 1]);
        }
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ng = 0; ng < 4; ++ng)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][ng][e] += part[mi][ng][e];
    if (more) {
      regs.store(tiles[(st + 1) & 1]);
      __syncthreads();
    }
  }

#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t off = c_off[32 * wm + 16 * mi + 8 * h + g];
      if (off < 0) continue;
#pragma unroll
      for (int ng = 0; ng < 4; ++ng)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t n = n0 + 32 * wn + 8 * ng + 2 * t4 + e;
          if (n < p.n) train_gemm_store(p, off, n, acc[mi][ng][2 * h + e]);
        }
    }
}

template <WFormat F>
void launch_tc(const TrainGemmArgs& p, bool a_vec4, bool line_is_k, dim3 grid, cudaStream_t s) {
  if (line_is_k)
    train_gemm_tc_kernel<F, true><<<grid, kThreads, 0, s>>>(p, a_vec4);
  else
    train_gemm_tc_kernel<F, false><<<grid, kThreads, 0, s>>>(p, a_vec4);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_train_gemm_tc(const TrainGemmArgs& p, WFormat format, bool line_is_k, dim3 grid, cudaStream_t s) {
  // A's rows as float4: unit k stride, rows and base 16-byte aligned (k ranges start at multiples of 32).
  const bool a_vec4 = p.lda_k == 1 && p.lda_m % 4 == 0 && (reinterpret_cast<uintptr_t>(p.a) & 15) == 0;
  if (format == WFormat::kMxfp4)
    launch_tc<WFormat::kMxfp4>(p, a_vec4, line_is_k, grid, s);
  else
    launch_tc<WFormat::kBf16>(p, a_vec4, line_is_k, grid, s);
}

}  // namespace gptoss::cuda
