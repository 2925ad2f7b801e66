// Several weight matrices with the same input in one launch (q, k and v): the grid's blocks are dealt to
// the matrices in order, ceil(out / rows-per-block) each; block b belongs to segment s with
// first[s] <= b < first[s + 1] and computes rows (b - first[s]) * rows-per-block .. of that matrix.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/common.cuh"

namespace gptoss::cuda {

constexpr int kMaxSegments = 4;

struct MatmulSegments {
  const uint16_t* w[kMaxSegments];
  const uint16_t* bias[kMaxSegments];
  float* y[kMaxSegments];
  int64_t out[kMaxSegments];
  unsigned first[kMaxSegments + 1];
  int count;

  // The first min(kMaxSegments, count) of linears, rows_per_block rows a block.
  static MatmulSegments of(const Backend::Linear* linears, int count, int64_t rows_per_block) {
    MatmulSegments segs{};
    segs.count = std::min(kMaxSegments, count);
    for (int i = 0; i < segs.count; ++i) {
      segs.w[i] = linears[i].w;
      segs.bias[i] = linears[i].bias;
      segs.y[i] = linears[i].y;
      segs.out[i] = linears[i].out;
      segs.first[i + 1] = segs.first[i] + ceil_div(linears[i].out, rows_per_block);
    }
    return segs;
  }
  unsigned blocks() const { return first[count]; }
  // The segment of thread block `block`.
  __device__ __forceinline__ int find(unsigned block) const {
    int seg = 0;
    while (seg + 1 < count && block >= first[seg + 1]) ++seg;
    return seg;
  }
};

}  // namespace gptoss::cuda
