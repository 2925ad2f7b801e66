// Internal to the trainer's GEMM (contract: train_kernels.cuh): the product as its two kernels take it.
// train_gemm.cu holds the entry points, the split over K and the CUDA-core kernel (f32 W);
// train_gemm_tc.cu the tensor-core kernel (bf16 and MXFP4 W).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/train_kernels.cuh"

namespace gptoss::cuda {

// The stored W as `lines` lines of `len` elements: its runs along its contiguous dimension (the rows of
// kBf16, kMxfp4 and of kF32 with unit column stride; the columns of kBf16InputMajor and of other kF32).
// kBf16 (either layout) and kMxfp4: element x of line l is element l * len + x of the matrix; kF32: at
// l * ld_line + x * ld_x. A line is one k of op(W) (running along N) or one n (running along K).
struct TrainGemmW {
  const void* w;
  const uint8_t* scales;  // kMxfp4
  int64_t lines, len;
  int64_t ld_line, ld_x;  // kF32
};

struct TrainGemmArgs {
  int64_t m, n, k;  // product rows, C columns, K
  const float* a;
  int64_t lda_m, lda_k;
  TrainGemmW w;
  const int32_t* offsets;  // null: one group of m rows
  const int32_t* a_rows;
  const int32_t* c_rows;
  float alpha;
  bool accumulate;
  float* c;
  int64_t ldc;
  float* partial;   // split over K: [splits, m, n] sums of K ranges of k_split (blockIdx.z the split); null: no split
  int64_t k_split;
};

// A kernel's output tile (product rows x C columns) and how many of its thread blocks an SM holds.
struct TrainGemmTile {
  int rows, cols, blocks_per_sm;
};

// The tensor-core kernel (train_gemm_tc.cu): W kBf16 / kBf16InputMajor (as kBf16 lines) or kMxfp4; grid
// (column tiles, row tiles, groups or splits) of kTrainGemmTcTile.
constexpr TrainGemmTile kTrainGemmTcTile{64, 128, 2};
void launch_train_gemm_tc(const TrainGemmArgs& p, WFormat format, bool line_is_k, dim3 grid, cudaStream_t s);

// The block's part of the product (grid z: the group or the split): product rows [row0, row_end), K range
// [k_begin, k_end) and its group's W; row0 >= row_end: nothing to do.
struct TrainGemmBlock {
  int64_t row0, row_end, k_begin, k_end;
  TrainGemmW w;
};
__device__ __forceinline__ TrainGemmBlock train_gemm_block(const TrainGemmArgs& p, WFormat format, int tile_rows) {
  TrainGemmBlock b{0, p.m, 0, p.k, p.w};
  if (p.offsets) {
    b.row0 = p.offsets[blockIdx.z];
    b.row_end = p.offsets[blockIdx.z + 1];
    // The g-th matrix of the stack (train_kernels.cuh GemmGroups); kF32 is never grouped.
    const int64_t elems = p.w.lines * p.w.len, g = blockIdx.z;
    if (format == WFormat::kMxfp4) {
      b.w.w = static_cast<const uint8_t*>(p.w.w) + g * elems / 2;
      b.w.scales += g * elems / 32;
    } else {
      b.w.w = static_cast<const uint16_t*>(p.w.w) + g * elems;
    }
  } else if (p.partial) {
    b.k_begin = blockIdx.z * p.k_split;
    b.k_end = min(p.k, b.k_begin + p.k_split);
  }
  b.row0 += int64_t(blockIdx.y) * tile_rows;
  return b;
}

// Where tile row r reads A (a_off[r]) and writes C or its split's partial (c_off[r]); -1: past the
// block's rows. Threads 0 .. rows - 1 write one each; the caller syncs.
__device__ __forceinline__ void train_gemm_row_offsets(const TrainGemmArgs& p, const TrainGemmBlock& b, int rows,
                                                       int64_t* a_off, int64_t* c_off) {
  const int t = threadIdx.x;
  if (t >= rows) return;
  const int64_t i = b.row0 + t;
  const bool in = i < b.row_end;
  a_off[t] = in ? (p.a_rows ? p.a_rows[i] : i) * p.lda_m : -1;
  c_off[t] = !in ? -1 : p.partial ? (blockIdx.z * p.m + i) * p.n : (p.c_rows ? p.c_rows[i] : i) * p.ldc;
}

// One result element: the sum into the partial when split, else alpha sum (+ C) into C.
__device__ __forceinline__ void train_gemm_store(const TrainGemmArgs& p, int64_t off, int64_t n, float sum) {
  if (p.partial) {
    p.partial[off + n] = sum;
  } else {
    float v = p.alpha * sum;
    if (p.accumulate) v += p.c[off + n];
    p.c[off + n] = v;
  }
}

}  // namespace gptoss::cuda
