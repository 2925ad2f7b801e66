// rope, kv_store, attention with sinks over the paged KV cache.
#include <algorithm>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

// Same rounding as the CPU reference: f32 angle, cos/sin evaluated in double, rounded to f32. The
// head_dim/2 (cos, sin) pairs of a token are computed once into shared memory and used by every head
// (computing them per (head, pair) left one block of 256 threads doing 8 double sin/cos each in a row:
// 7.4 us a call at decode; 5.7 us after).
constexpr int kRopeMaxHalf = 256;
// Block (token, y): y = 0 rotates x0 (heads0 heads), y = 1 x1 (heads1; grid.y = 1 when there is none).
__global__ void rope_kernel(float* x0, int heads0, float* x1, int heads1, int head_dim, const int32_t* positions,
                            const float* inv_freq, float attn_factor) {
  __shared__ float cs[kRopeMaxHalf], sn[kRopeMaxHalf];
  const int64_t t = blockIdx.x;
  float* x = blockIdx.y == 0 ? x0 : x1;
  const int heads = blockIdx.y == 0 ? heads0 : heads1;
  const int half = head_dim / 2;
  const float pos = float(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = pos * inv_freq[i];
    double sd, cd;
    sincos(double(angle), &sd, &cd);
    cs[i] = float(cd) * attn_factor;
    sn[i] = float(sd) * attn_factor;
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    const float c = cs[i], s = sn[i];
    float* xh = x + (t * heads + h) * head_dim;
    const float x1 = xh[i], x2 = xh[i + half];
    xh[i] = x1 * c - x2 * s;
    xh[i + half] = x2 * c + x1 * s;
  }
}

__device__ __forceinline__ int64_t kv_offset(const KvView& kv, int32_t block, int g, int kind, int slot, int h) {
  return ((((int64_t(block) * kv.layers_per_group + g) * 2 + kind) * kv.block_size + slot) * kv.kv_heads + h) *
         kv.head_dim;
}

// Stores the K and V rows of token t at positions[t] through a block table: that of the token's sequence
// (seqs[token_seq[t]], a ragged batch) or, with seqs null, `block_table` (one sequence).
__global__ void kv_store_kernel(KvView kv, int g, const float* k, const float* v, const int32_t* positions,
                                const int32_t* block_table, const int32_t* token_seq, const DevAttnSeq* seqs) {
  const int64_t t = blockIdx.x;
  const int32_t pos = positions[t];
  const int32_t* table = seqs ? seqs[token_seq[t]].block_table : block_table;
  const int32_t block = table[pos / kv.block_size];
  const int slot = pos % kv.block_size;
  const int width = kv.kv_heads * kv.head_dim;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    const int h = i / kv.head_dim, d = i % kv.head_dim;
    kv.pool[kv_offset(kv, block, g, 0, slot, h) + d] = k[t * width + i];
    kv.pool[kv_offset(kv, block, g, 1, slot, h) + d] = v[t * width + i];
  }
}

// A block per (token, query head); its kAttnWarps warps take interleaved groups of 32 keys. In a group,
// lane j scores key j (its whole K row, float4 loads, q from shared memory), one warp max and sum update
// the warp's online softmax, and the V rows are accumulated 8 keys at a time (loads first, then FMAs, so
// the loads overlap); lane l holds output dims l, l + 32, ... (head_dim <= 32 * kMaxPerLane, a multiple
// of 4). The warps' (max, sum, accumulator) states are merged at the end. The softmax starts from the
// sink logit (its column carries no value). A warp walking the keys one at a time, with a reduction per
// key, decoded at 26 tok/s at a 4096-token context on an H200.
constexpr int kMaxPerLane = 8;
constexpr int kAttnWarps = 8;  // at most; the launch gives one warp per 32 keys of the longest context

// kPer: output dims a lane holds (head_dim <= 32 kPer): a template parameter so that head_dim 64 keeps
// 2 accumulators and 16 V values a lane, not 8 and 64 (134 registers, most of the V FMAs on zeros).
template <int kPer>
__global__ void attention_kernel(const float* q, int64_t n, int heads, KvView kv, int g, const DevAttnSeq* seqs,
                                 const int32_t* token_seq, const float* sinks, int window, float scale, float* out) {
  __shared__ float qs[32 * kPer];
  __shared__ float part_m[kAttnWarps], part_l[kAttnWarps];
  __shared__ float part_acc[kAttnWarps][32 * kPer];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = int(blockDim.x >> 5);
  const int64_t t = blockIdx.x / heads;
  const int h = int(blockIdx.x % heads);
  const DevAttnSeq sq = seqs[token_seq[t]];
  const int32_t pos = sq.start_pos + int32_t(t - sq.token_offset);
  const int kvh = h / (heads / kv.kv_heads);
  const int hd = kv.head_dim;
  const float* qh = q + (t * heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qh[d];
  __syncthreads();
  float acc[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) acc[j] = 0.f;
  float m = warp == 0 ? sinks[h] : -INFINITY, l = warp == 0 ? 1.f : 0.f;
  const int32_t lo = window > 0 ? max(0, pos - window + 1) : 0;
  for (int32_t p0 = lo + 32 * warp; p0 <= pos; p0 += 32 * warps) {
    const int32_t p = p0 + lane;
    const bool valid = p <= pos;
    float sc = -INFINITY;
    long long voff = 0;
    if (valid) {
      const int32_t block = sq.block_table[p / kv.block_size];
      const int slot = p % kv.block_size;
      const float4* kp = reinterpret_cast<const float4*>(kv.pool + kv_offset(kv, block, g, 0, slot, kvh));
      float dot = 0.f;
      for (int d4 = 0; d4 < hd / 4; ++d4) {
        const float4 k4 = kp[d4];
        dot += qs[4 * d4] * k4.x + qs[4 * d4 + 1] * k4.y + qs[4 * d4 + 2] * k4.z + qs[4 * d4 + 3] * k4.w;
      }
      sc = dot * scale;
      voff = kv_offset(kv, block, g, 1, slot, kvh);
    }
    const float m_new = fmaxf(m, warp_max(sc));  // finite: every group has a valid key
    const float e = valid ? expf(sc - m_new) : 0.f;
    const float corr = m == -INFINITY ? 0.f : expf(m - m_new);
    l = l * corr + warp_sum(e);
#pragma unroll
    for (int j = 0; j < kPer; ++j) acc[j] *= corr;
    const int nk = min(32, pos - p0 + 1);
    for (int k0 = 0; k0 < nk; k0 += 8) {
      float ek[8], vv[8][kPer];
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const int kk = k0 + u;
        ek[u] = __shfl_sync(0xffffffffu, e, kk & 31);
        const float* vp = kv.pool + __shfl_sync(0xffffffffu, voff, kk & 31);
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
          const int d = lane + 32 * j;
          vv[u][j] = (kk < nk && d < hd) ? vp[d] : 0.f;
        }
      }
#pragma unroll
      for (int u = 0; u < 8; ++u)
#pragma unroll
        for (int j = 0; j < kPer; ++j) acc[j] += ek[u] * vv[u][j];
    }
    m = m_new;
  }
  // Merge the warps' softmax states.
  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int d = lane + 32 * j;
    if (d < hd) part_acc[warp][d] = acc[j];
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int w = 0; w < warps; ++w) mx = fmaxf(mx, part_m[w]);
  float denom = 0.f;
  for (int w = 0; w < warps; ++w)
    if (part_m[w] != -INFINITY) denom += part_l[w] * expf(part_m[w] - mx);
  float* oh = out + (t * heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float v = 0.f;
    for (int w = 0; w < warps; ++w)
      if (part_m[w] != -INFINITY) v += part_acc[w][d] * expf(part_m[w] - mx);
    oh[d] = v / denom;
  }
}

}  // namespace

void launch_rope_qk(float* q, int q_heads, float* k, int kv_heads, int64_t n, int head_dim, const int32_t* positions,
                    const float* inv_freq, float attn_factor, cudaStream_t s) {
  if (n == 0) return;
  if (head_dim / 2 > kRopeMaxHalf || head_dim % 2 != 0)
    throw Error(fmt::format("cuda rope: head_dim {} is not supported (even, at most {})", head_dim, 2 * kRopeMaxHalf));
  rope_kernel<<<dim3(unsigned(n), k ? 2u : 1u), 256, 0, s>>>(q, q_heads, k, kv_heads, head_dim, positions, inv_freq,
                                                             attn_factor);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                     const int32_t* positions, const int32_t* block_table, cudaStream_t s) {
  if (n == 0) return;
  kv_store_kernel<<<unsigned(n), 256, 0, s>>>(kv, group_layer, k, v, positions, block_table, nullptr, nullptr);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_kv_store_seqs(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                          const int32_t* positions, const int32_t* token_seq, const DevAttnSeq* seqs, cudaStream_t s) {
  if (n == 0) return;
  kv_store_kernel<<<unsigned(n), 256, 0, s>>>(kv, group_layer, k, v, positions, nullptr, token_seq, seqs);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

int attention_warps(int64_t max_keys) { return int(std::clamp<int64_t>((max_keys + 31) / 32, 1, kAttnWarps)); }

void launch_attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer, const DevAttnSeq* seqs,
                      const int32_t* token_seq, const float* sinks, int window, float scale, float* out,
                      int64_t max_keys, cudaStream_t s) {
  if (n == 0) return;
  if (kv.head_dim > 32 * kMaxPerLane || kv.head_dim % 4 != 0)
    throw Error(fmt::format("cuda attention: head_dim {} is not supported (a multiple of 4, at most {})", kv.head_dim,
                            32 * kMaxPerLane));
  const int warps = attention_warps(max_keys);
  auto launch = [&](auto kernel) {
    kernel<<<unsigned(n * heads), warps * 32, 0, s>>>(q, n, heads, kv, group_layer, seqs, token_seq, sinks, window,
                                                      scale, out);
  };
  if (kv.head_dim <= 32)
    launch(attention_kernel<1>);
  else if (kv.head_dim <= 64)
    launch(attention_kernel<2>);
  else if (kv.head_dim <= 128)
    launch(attention_kernel<4>);
  else
    launch(attention_kernel<8>);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
