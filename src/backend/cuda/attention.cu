// rope, kv_store, attention with sinks over the paged KV cache.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/launch.cuh"

namespace gptoss::cuda {
namespace {

// Same rounding as the CPU reference: f32 angle, cos/sin evaluated in double, rounded to f32. The
// head_dim/2 (cos, sin) pairs of a token are computed once into shared memory and used by every head
// (computing them per (head, pair) left one block of 256 threads doing 8 double sin/cos each in a row:
// 7.4 us a call at decode; 5.7 us after).
constexpr int kRopeMaxHalf = 256;

__device__ __forceinline__ int64_t kv_offset(const KvView& kv, int32_t block, int g, int kind, int slot, int h) {
  return ((((int64_t(block) * kv.layers_per_group + g) * 2 + kind) * kv.block_size + slot) * kv.kv_heads + h) *
         kv.head_dim;
}

// Element `off` of the pool := x, rounded to nearest even for a bf16 pool (as the CPU's f32_to_bf16).
__device__ __forceinline__ void kv_put(const KvView& kv, int64_t off, float x) {
  if (kv.dtype == KvDtype::bf16)
    static_cast<__nv_bfloat16*>(kv.pool)[off] = __float2bfloat16_rn(x);
  else
    static_cast<float*>(kv.pool)[off] = x;
}

// Row `src` (kv_heads x head_dim values) into slot `slot` of cache block `block`, K (kind 0) or V (1) of
// layer g; every thread of the thread block takes part.
__device__ __forceinline__ void store_row(const KvView& kv, int32_t block, int g, int kind, int slot,
                                          const float* src) {
  for (int i = threadIdx.x; i < kv.kv_heads * kv.head_dim; i += blockDim.x)
    kv_put(kv, kv_offset(kv, block, g, kind, slot, i / kv.head_dim) + i % kv.head_dim, src[i]);
}

// Where rope_kernel also stores K and V (pool null: nowhere): layer g of the paged cache, through the
// block table of each token's sequence (seqs[token_seq[t]]).
struct KvDest {
  KvView kv;
  int g;
  const float* v;
  const int32_t* token_seq;
  const DevAttnSeq* seqs;
};

// Block (token, y): y = 0 rotates x0 (heads0 heads), y = 1 x1 (heads1; grid.y = 1 when there is none)
// and, with dst.kv.pool set, stores the rotated x1 (K) and v at the token's position in the cache.
__global__ void rope_kernel(float* x0, int heads0, float* x1, int heads1, int head_dim, const int32_t* positions,
                            const float* inv_freq, float attn_factor, KvDest dst) {
  __shared__ float cs[kRopeMaxHalf], sn[kRopeMaxHalf];
  grid_wait();
  const int64_t t = blockIdx.x;
  float* x = blockIdx.y == 0 ? x0 : x1;
  const int heads = blockIdx.y == 0 ? heads0 : heads1;
  const int half = head_dim / 2;
  const int32_t p = positions[t];
  const float pos = float(p);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = pos * inv_freq[i];
    double sd, cd;
    sincos(double(angle), &sd, &cd);
    cs[i] = float(cd) * attn_factor;
    sn[i] = float(sd) * attn_factor;
  }
  __syncthreads();
  const KvView& kv = dst.kv;
  const bool store = blockIdx.y == 1 && kv.pool;
  int32_t block = 0;
  int slot = 0;
  if (store) {
    block = dst.seqs[dst.token_seq[t]].block_table[p / kv.block_size];
    slot = p % kv.block_size;
  }
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    const float c = cs[i], s = sn[i];
    float* xh = x + (t * heads + h) * head_dim;
    const float a = xh[i], b = xh[i + half];
    const float ra = a * c - b * s, rb = b * c + a * s;
    xh[i] = ra;
    xh[i + half] = rb;
    if (store) {
      const int64_t kr = kv_offset(kv, block, dst.g, 0, slot, h);
      kv_put(kv, kr + i, ra);
      kv_put(kv, kr + i + half, rb);
    }
  }
  if (store) store_row(kv, block, dst.g, 1, slot, dst.v + t * heads * head_dim);
}

// Stores the K and V rows of token t at positions[t] through a block table: that of the token's sequence
// (seqs[token_seq[t]], a ragged batch) or, with seqs null, `block_table` (one sequence).
__global__ void kv_store_kernel(KvView kv, int g, const float* k, const float* v, const int32_t* positions,
                                const int32_t* block_table, const int32_t* token_seq, const DevAttnSeq* seqs) {
  grid_wait();
  const int64_t t = blockIdx.x;
  const int32_t pos = positions[t];
  const int32_t* table = seqs ? seqs[token_seq[t]].block_table : block_table;
  const int32_t block = table[pos / kv.block_size];
  const int slot = pos % kv.block_size;
  const int64_t width = int64_t(kv.kv_heads) * kv.head_dim;
  store_row(kv, block, g, 0, slot, k + t * width);
  store_row(kv, block, g, 1, slot, v + t * width);
}

// Attention over the paged cache, flash-decoding style. A thread block takes one token, one KV head and
// up to kGroupWarps of the query heads that share it (a warp each), and one of `splits` parts of the
// token's keys; tiles of kTile keys of K and V are copied into shared memory once for all of its heads.
// In a tile, lane j scores key j (K rows padded by 4 floats: the float4 reads of 8 lanes hit different
// banks), one warp max and sum update the head's online softmax, and lane l accumulates output dims
// l, l + 32, ... A part's keys are its share of the token's own context, rounded to whole tiles, so the
// launch depends only on the batch's token count (CUDA graphs replay it as the contexts grow); with one
// part the block finishes the softmax itself (the sink logit joins the denominator, its column carries no
// value), with several it leaves (max, sum, accumulator) for attention_combine_kernel. The kernel it
// replaced (a block per token and query head, no split) ran at ~0.1 TB/s of KV at a 4096-token context.
constexpr int kTile = 32;
constexpr int kGroupWarps = 8;
constexpr int kMaxSplits = 32;
constexpr int kMaxHeadDim = 256;

__device__ __forceinline__ int64_t kv_row(const KvView& kv, const int32_t* table, int g, int kind, int32_t p, int h) {
  return kv_offset(kv, table[p / kv.block_size], g, kind, p % kv.block_size, h);
}

// Elements off .. off + 3 of the pool (off a multiple of 4) as f32: bf16 widened exactly.
template <bool kBf16>
__device__ __forceinline__ float4 kv_load4(const KvView& kv, int64_t off) {
  if constexpr (kBf16) {
    const uint2 u = *reinterpret_cast<const uint2*>(static_cast<const uint16_t*>(kv.pool) + off);
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                       __uint_as_float(u.y & 0xffff0000u));
  } else {
    return *reinterpret_cast<const float4*>(static_cast<const float*>(kv.pool) + off);
  }
}

// kPer: output dims a lane holds (head_dim <= 32 kPer); kBf16: the pool holds bf16.
template <int kPer, bool kBf16>
__global__ void __launch_bounds__(32 * kGroupWarps) attention_kernel(const float* q, int heads, KvView kv, int g,
                                                                     const DevAttnSeq* seqs, const int32_t* token_seq,
                                                                     const float* sinks, int window, float scale,
                                                                     int splits, float* part, float* out) {
  extern __shared__ float4 smem4[];
  const int hd = kv.head_dim, kstride = hd + 4;
  float* ks = reinterpret_cast<float*>(smem4);     // [kTile][hd + 4]
  float* vs = ks + kTile * kstride;                 // [kTile][hd]
  float* qs = vs + kTile * hd;                      // [kGroupWarps][hd]
  grid_wait();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = heads / kv.kv_heads, hgroups = (group + kGroupWarps - 1) / kGroupWarps;
  const int64_t t = blockIdx.x / (int64_t(kv.kv_heads) * hgroups);
  const int kvh = int(blockIdx.x / hgroups % kv.kv_heads), hg = int(blockIdx.x % hgroups);
  const int hi = hg * kGroupWarps + warp;  // this warp's head within the group
  const bool head_ok = hi < group;
  const int h = kvh * group + min(hi, group - 1);
  const DevAttnSeq sq = seqs[token_seq[t]];
  const int32_t pos = sq.start_pos + int32_t(t - sq.token_offset);
  const int32_t lo = window > 0 ? max(0, pos - window + 1) : 0;
  const int32_t per = ((pos - lo + splits) / splits + kTile - 1) / kTile * kTile;  // keys a part, whole tiles
  const int32_t k0 = lo + int32_t(blockIdx.y) * per, k1 = min(pos + 1, k0 + per);
  for (int d = lane; d < hd; d += 32) qs[warp * hd + d] = q[(t * heads + h) * hd + d];
  float acc[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) acc[j] = 0.f;
  float m = -INFINITY, l = 0.f;
  const int q4 = hd / 4;
  for (int32_t p0 = k0; p0 < k1; p0 += kTile) {
    const int nk = min(kTile, k1 - p0);
    __syncthreads();  // the previous tile is used up (and qs is written, the first time)
    for (int i = threadIdx.x; i < nk * q4; i += blockDim.x) {
      const int key = i / q4, c = i % q4;
      const int32_t p = p0 + key;
      reinterpret_cast<float4*>(ks + key * kstride)[c] = kv_load4<kBf16>(kv, kv_row(kv, sq.block_table, g, 0, p, kvh) + 4 * c);
      reinterpret_cast<float4*>(vs + key * hd)[c] = kv_load4<kBf16>(kv, kv_row(kv, sq.block_table, g, 1, p, kvh) + 4 * c);
    }
    __syncthreads();
    const bool valid = lane < nk;
    float sc = -INFINITY;
    if (valid) {
      const float4* kr = reinterpret_cast<const float4*>(ks + lane * kstride);
      const float4* qr = reinterpret_cast<const float4*>(qs + warp * hd);
      float dot = 0.f;
      for (int c = 0; c < q4; ++c) {
        const float4 a = qr[c], b = kr[c];
        dot += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
      }
      sc = dot * scale;
    }
    const float m_new = fmaxf(m, warp_max(sc));  // finite: the tile has a key
    const float e = valid ? expf(sc - m_new) : 0.f;
    const float corr = m == -INFINITY ? 0.f : expf(m - m_new);
    l = l * corr + warp_sum(e);
#pragma unroll
    for (int j = 0; j < kPer; ++j) acc[j] *= corr;
    for (int kk = 0; kk < nk; ++kk) {
      const float pk = __shfl_sync(0xffffffffu, e, kk);
      const float* vr = vs + kk * hd;
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int d = lane + 32 * j;
        if (d < hd) acc[j] = fmaf(pk, vr[d], acc[j]);
      }
    }
    m = m_new;
  }
  if (!head_ok) return;
  if (splits == 1) {
    const float sink = sinks[h], mx = fmaxf(m, sink);
    const float c = m == -INFINITY ? 0.f : expf(m - mx);
    const float inv = 1.f / (l * c + expf(sink - mx));
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int d = lane + 32 * j;
      if (d < hd) out[(t * heads + h) * hd + d] = acc[j] * c * inv;
    }
    return;
  }
  float* pp = part + ((t * heads + h) * splits + blockIdx.y) * (hd + 2);
  if (lane == 0) pp[0] = m, pp[1] = l;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int d = lane + 32 * j;
    if (d < hd) pp[2 + d] = acc[j];
  }
}

// out[t, h] from the parts of (token t, head h), a block each: warp 0 turns the parts' (max, sum) and the
// sink into one weight a part, then a thread an output dim sums the parts' accumulators with them. (A
// thread walking the parts three times, one dependent load after another, took 7 us a call at batch 1.)
__global__ void attention_combine_kernel(const float* part, int heads, int hd, int splits, const float* sinks,
                                         float* out) {
  __shared__ float weight[kMaxSplits];
  grid_wait();
  const int64_t th = blockIdx.x;
  const float* pp = part + th * splits * (hd + 2);
  if (threadIdx.x < 32) {
    const int s = int(threadIdx.x);
    const float ms = s < splits ? pp[s * (hd + 2)] : -INFINITY;
    const float ls = s < splits ? pp[s * (hd + 2) + 1] : 0.f;
    const float sink = sinks[th % heads];
    const float mx = fmaxf(warp_max(ms), sink);
    const float e = ms == -INFINITY ? 0.f : expf(ms - mx);
    const float denom = warp_sum(ls * e) + expf(sink - mx);
    if (s < splits) weight[s] = e / denom;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float v = 0.f;
#pragma unroll 4
    for (int s = 0; s < splits; ++s) v = fmaf(weight[s], pp[s * (hd + 2) + 2 + d], v);
    out[th * hd + d] = v;
  }
}

}  // namespace

int num_sms() {
  static const int sms = [] {
    int dev = 0, n = 0;
    GPTOSS_CUDA_CHECK(cudaGetDevice(&dev));
    GPTOSS_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  return sms;
}

namespace {
void check_rope_head_dim(int head_dim) {
  if (head_dim / 2 > kRopeMaxHalf || head_dim % 2 != 0)
    throw Error(fmt::format("cuda rope: head_dim {} is not supported (even, at most {})", head_dim, 2 * kRopeMaxHalf));
}
}  // namespace

void launch_rope_qk(float* q, int q_heads, float* k, int kv_heads, int64_t n, int head_dim, const int32_t* positions,
                    const float* inv_freq, float attn_factor, cudaStream_t s) {
  if (n == 0) return;
  check_rope_head_dim(head_dim);
  launch(rope_kernel, dim3(unsigned(n), k ? 2u : 1u), 256, 0, s, q, q_heads, k, kv_heads, head_dim, positions,
         inv_freq, attn_factor, KvDest{});
}

void launch_kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                     const int32_t* positions, const int32_t* block_table, cudaStream_t s) {
  if (n == 0) return;
  launch(kv_store_kernel, unsigned(n), 256, 0, s, kv, group_layer, k, v, positions, block_table,
         static_cast<const int32_t*>(nullptr), static_cast<const DevAttnSeq*>(nullptr));
}

void launch_kv_store_seqs(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                          const int32_t* positions, const int32_t* token_seq, const DevAttnSeq* seqs, cudaStream_t s) {
  if (n == 0) return;
  launch(kv_store_kernel, unsigned(n), 256, 0, s, kv, group_layer, k, v, positions,
         static_cast<const int32_t*>(nullptr), token_seq, seqs);
}

void launch_rope_kv_store(float* q, int q_heads, float* k, const float* v, int kv_heads, int64_t n, int head_dim,
                          const int32_t* positions, const float* inv_freq, float attn_factor, const KvView& kv,
                          int group_layer, const int32_t* token_seq, const DevAttnSeq* seqs, cudaStream_t s) {
  if (n == 0) return;
  check_rope_head_dim(head_dim);
  GPTOSS_CHECK(kv.kv_heads == kv_heads && kv.head_dim == head_dim, "cuda rope + kv_store: K is [{} x {}], the cache [{} x {}]",
               kv_heads, head_dim, kv.kv_heads, kv.head_dim);
  launch(rope_kernel, dim3(unsigned(n), 2u), 256, 0, s, q, q_heads, k, kv_heads, head_dim, positions, inv_freq,
         attn_factor, KvDest{kv, group_layer, v, token_seq, seqs});
}

int attention_splits(int64_t n, int heads, int kv_heads) {
  const int64_t blocks = n * kv_heads * ((heads / kv_heads + kGroupWarps - 1) / kGroupWarps);
  return int(std::clamp<int64_t>((2 * num_sms() + blocks - 1) / blocks, 1, kMaxSplits));
}

size_t attention_scratch_bytes(int64_t n, int heads, int kv_heads, int head_dim) {
  const int splits = attention_splits(n, heads, kv_heads);
  return splits == 1 ? 0 : size_t(n * heads * splits * (head_dim + 2)) * sizeof(float);
}

void launch_attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer, const DevAttnSeq* seqs,
                      const int32_t* token_seq, const float* sinks, int window, float scale, float* out, float* scratch,
                      cudaStream_t s) {
  if (n == 0) return;
  if (kv.head_dim > kMaxHeadDim || kv.head_dim % 4 != 0)
    throw Error(fmt::format("cuda attention: head_dim {} is not supported (a multiple of 4, at most {})", kv.head_dim,
                            kMaxHeadDim));
  GPTOSS_CHECK(kv.kv_heads > 0 && heads % kv.kv_heads == 0, "cuda attention: {} query heads over {} KV heads", heads,
               kv.kv_heads);
  const int group = heads / kv.kv_heads, hgroups = (group + kGroupWarps - 1) / kGroupWarps;
  const int splits = attention_splits(n, heads, kv.kv_heads);
  const int warps = std::min(group, kGroupWarps);
  const size_t smem = size_t(kTile * (kv.head_dim + 4) + kTile * kv.head_dim + warps * kv.head_dim) * sizeof(float);
  const dim3 grid(unsigned(n * kv.kv_heads * hgroups), unsigned(splits));
  auto run = [&](auto kernel) {
    if (smem > 48 * 1024)  // head_dim above ~170 takes more than the default limit
      GPTOSS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    launch(kernel, grid, warps * 32, smem, s, q, heads, kv, group_layer, seqs, token_seq, sinks, window, scale,
           splits, scratch, out);
  };
  auto run_dtype = [&](auto bf16) {
    constexpr bool kBf16 = decltype(bf16)::value;
    if (kv.head_dim <= 32)
      run(attention_kernel<1, kBf16>);
    else if (kv.head_dim <= 64)
      run(attention_kernel<2, kBf16>);
    else if (kv.head_dim <= 128)
      run(attention_kernel<4, kBf16>);
    else
      run(attention_kernel<8, kBf16>);
  };
  if (kv.dtype == KvDtype::bf16)
    run_dtype(std::true_type{});
  else
    run_dtype(std::false_type{});
  if (splits > 1)
    launch(attention_combine_kernel, unsigned(n * heads), std::clamp(kv.head_dim, 32, 128), 0, s, scratch, heads,
           kv.head_dim, splits, sinks, out);
}

}  // namespace gptoss::cuda
