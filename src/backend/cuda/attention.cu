// rope, kv_store, attention with sinks over the paged KV cache.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {
namespace {

// Same rounding as the CPU reference: f32 angle, cos/sin evaluated in double, rounded to f32.
__global__ void rope_kernel(float* x, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
                            float attn_factor) {
  int64_t t = blockIdx.x;
  int half = head_dim / 2;
  float pos = float(positions[t]);
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    int h = idx / half, i = idx % half;
    float angle = pos * inv_freq[i];
    float c = float(cos(double(angle))) * attn_factor;
    float s = float(sin(double(angle))) * attn_factor;
    float* xh = x + (t * heads + h) * head_dim;
    float x1 = xh[i], x2 = xh[i + half];
    xh[i] = x1 * c - x2 * s;
    xh[i + half] = x2 * c + x1 * s;
  }
}

__device__ __forceinline__ int64_t kv_offset(const KvView& kv, int32_t block, int g, int kind, int slot, int h) {
  return ((((int64_t(block) * kv.layers_per_group + g) * 2 + kind) * kv.block_size + slot) * kv.kv_heads + h) *
         kv.head_dim;
}

__global__ void kv_store_kernel(KvView kv, int g, const float* k, const float* v, const int32_t* positions,
                                const int32_t* block_table) {
  int64_t t = blockIdx.x;
  int32_t pos = positions[t];
  int32_t block = block_table[pos / kv.block_size];
  int slot = pos % kv.block_size;
  int width = kv.kv_heads * kv.head_dim;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    int h = i / kv.head_dim, d = i % kv.head_dim;
    kv.pool[kv_offset(kv, block, g, 0, slot, h) + d] = k[t * width + i];
    kv.pool[kv_offset(kv, block, g, 1, slot, h) + d] = v[t * width + i];
  }
}

// A warp per (token, query head); lane l holds dims l, l+32, ... (head_dim <= 32 * kMaxPerLane).
// Online softmax seeded with the sink logit (its column carries no value).
constexpr int kMaxPerLane = 8;

__global__ void attention_kernel(const float* q, int64_t n, int heads, KvView kv, int g, const DevAttnSeq* seqs,
                                 const int32_t* token_seq, const float* sinks, int window, float scale, float* out) {
  int64_t item = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (item >= n * heads) return;
  int64_t t = item / heads;
  int h = int(item % heads);
  const DevAttnSeq sq = seqs[token_seq[t]];
  int32_t pos = sq.start_pos + int32_t(t - sq.token_offset);
  int kvh = h / (heads / kv.kv_heads);
  int hd = kv.head_dim;
  int per_lane = (hd + 31) / 32;
  float qv[kMaxPerLane], acc[kMaxPerLane];
  const float* qh = q + (t * heads + h) * hd;
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    int d = lane + 32 * j;
    qv[j] = (j < per_lane && d < hd) ? qh[d] : 0.f;
    acc[j] = 0.f;
  }
  float m = sinks[h], l = 1.f;
  int32_t lo = window > 0 ? max(0, pos - window + 1) : 0;
  for (int32_t p = lo; p <= pos; ++p) {
    int32_t block = sq.block_table[p / kv.block_size];
    int slot = p % kv.block_size;
    const float* kp = kv.pool + kv_offset(kv, block, g, 0, slot, kvh);
    const float* vp = kv.pool + kv_offset(kv, block, g, 1, slot, kvh);
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) {
      int d = lane + 32 * j;
      if (j < per_lane && d < hd) dot += qv[j] * kp[d];
    }
    float s = warp_sum(dot) * scale;
    float m_new = fmaxf(m, s);
    float corr = expf(m - m_new), e = expf(s - m_new);
    l = l * corr + e;
#pragma unroll
    for (int j = 0; j < kMaxPerLane; ++j) {
      int d = lane + 32 * j;
      if (j < per_lane && d < hd) acc[j] = acc[j] * corr + e * vp[d];
    }
    m = m_new;
  }
  float* oh = out + (t * heads + h) * hd;
#pragma unroll
  for (int j = 0; j < kMaxPerLane; ++j) {
    int d = lane + 32 * j;
    if (j < per_lane && d < hd) oh[d] = acc[j] / l;
  }
}

}  // namespace

void launch_rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
                 float attn_factor, cudaStream_t s) {
  if (n == 0) return;
  rope_kernel<<<unsigned(n), 256, 0, s>>>(x, heads, head_dim, positions, inv_freq, attn_factor);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                     const int32_t* positions, const int32_t* block_table, cudaStream_t s) {
  if (n == 0) return;
  kv_store_kernel<<<unsigned(n), 256, 0, s>>>(kv, group_layer, k, v, positions, block_table);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

void launch_attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer, const DevAttnSeq* seqs,
                      int n_seqs, const int32_t* token_seq, const float* sinks, int window, float scale, float* out,
                      cudaStream_t s) {
  if (n == 0) return;
  if (kv.head_dim > 32 * kMaxPerLane)
    throw Error(fmt::format("cuda attention: head_dim {} > {} is not supported", kv.head_dim, 32 * kMaxPerLane));
  constexpr int kWarps = 4;
  attention_kernel<<<ceil_div(n * heads, kWarps), kWarps * 32, 0, s>>>(q, n, heads, kv, group_layer, seqs, token_seq,
                                                                       sinks, window, scale, out);
  GPTOSS_CUDA_LAUNCH_CHECK();
}

}  // namespace gptoss::cuda
