// C = alpha A op(W) (+ C) for the LoRA trainer's backward (contract: train_kernels.cuh). Two kernels share
// the work (train_gemm.cuh: the product as both take it):
// - bf16 and MXFP4 W (the dense input gradients, the MoE experts grouped by expert, both orientations, rows
//   gathered and scattered: nearly all the trainer's FLOPs) go to the tensor cores (train_gemm_tc.cu), exact
//   to f32 level;
// - f32 W (the LoRA terms: rank-sized, any strides) stays on this file's CUDA-core kernel, a classic
//   shared-memory tiled SGEMM.
//
// The CUDA-core kernel: a thread block computes 64 product rows x 64 columns of C with 256 threads, each a
// 4 x 4 register block (tile rows 4 ty .. 4 ty + 3, columns 4 tx .. 4 tx + 3). Per step of 32 along K the A
// tile and the op(W) tile go to shared memory k-major (as[k][i], ws[k][n]); the next step's elements are
// loaded into registers while the current step is multiplied. W is read as lines (train_gemm.cuh): a thread
// loads 8 consecutive elements of one line a step; kLineIsK says whether a line is one k of op(W) (running
// along N) or one n (running along K).
//
// Determinism: each C element is written by one thread, from its own sum in K order. An ungrouped product
// with too few tiles to fill the GPU and a long K is split over K: split s writes its range's sums to
// partial [s, m, N] in the scratch, and sum_splits_kernel adds the splits in order 0 .. S-1, then applies
// alpha and accumulate. The split depends on the shape, the W format (which kernel, so which tile) and the
// SM count only.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/train_gemm.cuh"
#include "backend/cuda/train_kernels.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 32, kThreads = 256;
constexpr TrainGemmTile kF32Tile{kBM, kBN, 2};
// Shared rows of 68 floats: 16-byte aligned for the float4 reads, and the A stores of a warp (a_slot) fall
// on 32 distinct banks.
constexpr int kPad = 4;
// The shortest K range of a split: 32 steps, so the partials' round trip stays small next to the sums.
constexpr int64_t kMinSplitK = 1024;

// Elements x0 .. x0 + 7 of line `line` of f32 W, zero from line_end and x_end on.
__device__ __forceinline__ void load_w8(const TrainGemmW& w, int64_t line, int64_t x0, int64_t line_end,
                                        int64_t x_end, float (&v)[8]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = 0.f;
  if (line >= line_end || x0 >= x_end) return;
  const float* p = static_cast<const float*>(w.w) + line * w.ld_line;
#pragma unroll
  for (int j = 0; j < 8; ++j)
    if (x0 + j < x_end) v[j] = p[(x0 + j) * w.ld_x];
}

// Tile row i and k of the j-th of a thread's 8 A elements: along k when A's rows are contiguous (8 threads
// a 32-byte run of a row), else along rows (a warp 32 consecutive rows of one k).
__device__ __forceinline__ void a_slot(bool k_contig, int j, int& i, int& k) {
  const int t = threadIdx.x;
  if (k_contig) {
    k = t % 8 + 8 * (j % 4);
    i = t / 8 + 32 * (j / 4);
  } else {
    i = t % kBM;
    k = t / kBM + 4 * j;
  }
}

// Grid (N tiles, row tiles, splits); f32 W is never grouped.
template <bool kLineIsK>
__global__ void __launch_bounds__(kThreads, 2) train_gemm_f32_kernel(const TrainGemmArgs p) {
  __shared__ __align__(16) float as[kBK][kBM + kPad];  // A(row0 + i, k0 + k) at as[k][i]
  __shared__ __align__(16) float ws[kBK][kBN + kPad];  // op(W)(k0 + k, n0 + n) at ws[k][n]
  __shared__ int64_t a_off[kBM], c_off[kBM];
  const int t = threadIdx.x;
  const TrainGemmBlock b = train_gemm_block(p, WFormat::kF32, kBM);
  const int64_t n0 = int64_t(blockIdx.x) * kBN, k_end = b.k_end;
  if (b.row0 >= b.row_end) return;
  train_gemm_row_offsets(p, b, kBM, a_off, c_off);
  __syncthreads();

  // This thread's 8 elements of W a step: a line's x .. x + 7 from tile position (wk, wn), along n or along k.
  const bool a_k_contig = p.lda_k == 1;
  const int wk = kLineIsK ? t / 8 : t % 4 * 8;
  const int wn = kLineIsK ? t % 8 * 8 : t / 4;
  float av[8], wv[8];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int i, kk;
      a_slot(a_k_contig, j, i, kk);
      const int64_t off = a_off[i], k = k0 + kk;
      av[j] = off >= 0 && k < k_end ? p.a[off + k * p.lda_k] : 0.f;
    }
    if constexpr (kLineIsK)
      load_w8(b.w, k0 + wk, n0 + wn, k_end, p.n, wv);
    else
      load_w8(b.w, n0 + wn, k0 + wk, p.n, k_end, wv);
  };

  const int tx = t % 16, ty = t / 16;
  float acc[4][4] = {};
  load(b.k_begin);
  for (int64_t k0 = b.k_begin; k0 < k_end; k0 += kBK) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int i, kk;
      a_slot(a_k_contig, j, i, kk);
      as[kk][i] = av[j];
    }
    if constexpr (kLineIsK) {
      *reinterpret_cast<float4*>(&ws[wk][wn]) = make_float4(wv[0], wv[1], wv[2], wv[3]);
      *reinterpret_cast<float4*>(&ws[wk][wn + 4]) = make_float4(wv[4], wv[5], wv[6], wv[7]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) ws[wk + j][wn] = wv[j];
    }
    __syncthreads();
    if (k0 + kBK < k_end) load(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const float4 a4 = *reinterpret_cast<const float4*>(&as[kk][4 * ty]);
      const float4 w4 = *reinterpret_cast<const float4*>(&ws[kk][4 * tx]);
      const float ar[4] = {a4.x, a4.y, a4.z, a4.w}, wr[4] = {w4.x, w4.y, w4.z, w4.w};
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(ar[r], wr[c], acc[r][c]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int64_t off = c_off[4 * ty + r];
    if (off < 0) continue;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t n = n0 + 4 * tx + c;
      if (n < p.n) train_gemm_store(p, off, n, acc[r][c]);
    }
  }
}

// C(c_row(i), col) = alpha * (sum over splits s = 0, 1, .. of partial[s, i, col]) (+ C): a thread an element.
__global__ void sum_splits_kernel(const float* partial, int64_t splits, int64_t m, int64_t n, const int32_t* c_rows,
                                  float alpha, bool accumulate, float* c, int64_t ldc) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= m * n) return;
  float sum = 0.f;
  for (int64_t s = 0; s < splits; ++s) sum += partial[s * m * n + e];
  const int64_t i = e / n;
  float* dst = c + (c_rows ? c_rows[i] : i) * ldc + e % n;
  float v = alpha * sum;
  if (accumulate) v += *dst;
  *dst = v;
}

// The tensor cores take every W but f32.
TrainGemmTile tile_of(WFormat format) { return format == WFormat::kF32 ? kF32Tile : kTrainGemmTcTile; }

struct Split {
  int64_t splits, k_split;  // k_split: the K range of a split, a multiple of kBK (the last may be shorter)
};

// Ungrouped products only: as many splits as fill one wave of the kernel's blocks, each at least kMinSplitK
// long. Ranges are whole steps of 32 (both kernels'), so a split boundary is a tile boundary.
Split plan_split(int64_t m, int64_t n, int64_t k, bool grouped, TrainGemmTile tile) {
  if (grouped || m == 0 || n == 0) return {1, k};
  const int64_t tiles = int64_t(ceil_div(m, tile.rows)) * ceil_div(n, tile.cols);
  const int64_t want = std::min<int64_t>(tile.blocks_per_sm * num_sms() / tiles, k / kMinSplitK);
  if (want < 2) return {1, k};
  const int64_t k_split = int64_t(ceil_div(k, want * kBK)) * kBK;
  return {int64_t(ceil_div(k, k_split)), k_split};
}

// W's lines (train_gemm.cuh), and whether a line runs along the rows of W.
TrainGemmW lines_of(const GemmW& w, bool& along_rows) {
  along_rows = w.format == WFormat::kBf16 || w.format == WFormat::kMxfp4 ||
               (w.format == WFormat::kF32 && w.ld_c == 1);
  return along_rows ? TrainGemmW{w.w, w.scales, w.rows, w.cols, w.ld_r, w.ld_c}
                    : TrainGemmW{w.w, w.scales, w.cols, w.rows, w.ld_c, w.ld_r};
}

}  // namespace

size_t train_gemm_scratch_bytes(int64_t m, const GemmW& w, bool transposed, const GemmGroups& g) {
  const int64_t n = transposed ? w.rows : w.cols, k = transposed ? w.cols : w.rows;
  const Split split = plan_split(m, n, k, g.offsets != nullptr, tile_of(w.format));
  return split.splits == 1 ? 0 : size_t(split.splits * m * n) * sizeof(float);
}

void launch_train_gemm(int64_t m, const GemmA& a, const GemmW& w, bool transposed, const GemmGroups& g, float alpha,
                       bool accumulate, float* c, int64_t ldc, void* scratch, cudaStream_t s) {
  const int64_t n = transposed ? w.rows : w.cols, k = transposed ? w.cols : w.rows;
  const bool grouped = g.offsets != nullptr;
  if (m == 0 || n == 0 || (grouped && g.max_rows == 0)) return;
  GPTOSS_CHECK(w.format != WFormat::kMxfp4 || w.cols % 32 == 0,
               "cuda train_gemm: MXFP4 W [{} x {}]; expected columns in whole blocks of 32", w.rows, w.cols);
  GPTOSS_CHECK(!grouped || w.format != WFormat::kF32, "cuda train_gemm: f32 W is never grouped ({} groups)",
               g.groups);
  const TrainGemmTile tile = tile_of(w.format);
  const Split split = plan_split(m, n, k, grouped, tile);
  GPTOSS_CHECK(split.splits == 1 || scratch,
               "cuda train_gemm: [{} x {}] x [{} x {}] splits over K into {} bytes of scratch; got none", m, k, k, n,
               train_gemm_scratch_bytes(m, w, transposed, g));
  const int64_t rows = grouped ? g.max_rows : m;
  const dim3 grid(ceil_div(n, tile.cols), ceil_div(rows, tile.rows), unsigned(grouped ? g.groups : split.splits));
  GPTOSS_CHECK(grid.y <= 65535 && grid.z <= 65535,
               "cuda train_gemm: {} rows and {} groups / splits (at most {} and 65535)", rows, grid.z,
               65535 * int64_t(tile.rows));

  bool along_rows = false;
  TrainGemmArgs p{};
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = a.a;
  p.lda_m = a.ld_m;
  p.lda_k = a.ld_k;
  p.w = lines_of(w, along_rows);
  p.offsets = g.offsets;
  p.a_rows = g.a_rows;
  p.c_rows = g.c_rows;
  p.alpha = alpha;
  p.accumulate = accumulate;
  p.c = c;
  p.ldc = ldc;
  p.partial = split.splits > 1 ? static_cast<float*>(scratch) : nullptr;
  p.k_split = split.k_split;
  // A line of W is one k of op(W) when it runs along W's rows and W is not transposed, or along its columns
  // and W is.
  const bool line_is_k = along_rows != transposed;
  if (w.format != WFormat::kF32) {
    launch_train_gemm_tc(p, w.format, line_is_k, grid, s);
  } else {
    if (line_is_k)
      train_gemm_f32_kernel<true><<<grid, kThreads, 0, s>>>(p);
    else
      train_gemm_f32_kernel<false><<<grid, kThreads, 0, s>>>(p);
    GPTOSS_CUDA_CHECK(cudaGetLastError());
  }
  if (split.splits > 1) {
    sum_splits_kernel<<<ceil_div(m * n, kThreads), kThreads, 0, s>>>(p.partial, split.splits, m, n, g.c_rows, alpha,
                                                                     accumulate, c, ldc);
    GPTOSS_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace gptoss::cuda
