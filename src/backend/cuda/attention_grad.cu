// The backward of attention with sinks for one sequence (train_kernels.cuh; the math and the CPU reference
// are backend/cpu/attention_grad.cpp), in f32 on the CUDA cores, deterministic: no atomics, every sum in a
// fixed order.
//
// Three kernels, FlashAttention-2 style (the probabilities are recomputed from q and k, never stored):
//   1. stats: a block per 64 query tokens x query head walks the keys once and leaves, per (head, token),
//      the log-normaliser L = log(exp(sink) + sum_j exp(s_j)) (online max, the sink only in the
//      denominator) and D = sum_j p_j dout . v_j in the scratch.
//   2. dq: the same blocks walk the keys again: p = exp(s - L), ds = p (dout . v - D), dq += scale ds k.
//   3. dk, dv: a block per 64 keys x KV head walks the query tokens that see those keys (j <= t < j +
//      window, or t >= j) for each of the G query heads of the KV head: dk += scale ds q, dv += p dout.
// Each block owns its outputs outright, which is what makes it deterministic; the price is computing the
// scores three times and the two products dout . v twice (9 row products a (query, key, head) where a
// fused atomic kernel does 5).
//
// Tiles. Each 64 x 64 tile of scores is a small matrix product over head_dim: 256 threads (ty, tx) in
// 16 x 16, thread (ty, tx) owning rows ty + 16 i and columns tx + 16 j (i, j < 4). The rows of q, k, v
// and dout sit in shared memory padded by 4 floats: the float4 reads of 8 consecutive tx (one phase of a
// 128-bit load) hit 8 different bank groups, and the reads of a row shared by the phase are broadcasts.
// The tile (p or ds) then goes to shared memory (row stride 80: the two rows a warp writes land on
// disjoint banks) and feeds the second product, acc[64 rows, head_dim] += tile [64, 64] x rows [64,
// head_dim], where thread (ty, tx) owns rows ty + 16 i and dims 64 c + 4 tx .. + 3. head_dim is padded
// with zeros to kD = 64 or 128 (a template argument), so any even head_dim <= 128 takes the same code.
// The tiles need 68 - 173 KiB of shared memory a block, so the kernels take it dynamically (opted in above
// the 48 KiB default); they are launched plainly (no programmatic dependent launch).
//
// H200, T 8192, 64 query / 8 KV heads, head_dim 64: 93 ms a call with full attention (stats 22, dq 28,
// dk/dv 43 ms: ~10 ms per product pass over all (query, key, head) triples, ~27 TFLOP/s of f32), 4.3 ms
// with window 128. Errors against a double-precision reference: 1e-7 .. 1.3e-6 (norm-wise) up to T 1000.
#include <cstdint>
#include <initializer_list>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/train_kernels.cuh"

namespace gptoss::cuda {
namespace {

constexpr int kTile = 64;             // query tokens and keys of a score tile
constexpr int kThreads = 256;         // 16 x 16
constexpr int kSub = 4;               // rows (and columns) of a tile a thread owns: ty + 16 i
constexpr int kPad = 4;               // floats after each q / k / v / dout row in shared memory
constexpr int kPStride = kTile + 16;  // row stride of a p / ds tile in shared memory
constexpr int kMaxHeadDim = 128;

template <int kD>
constexpr int kRowStride = kD + kPad;
// Blocks an SM holds: with kD = 64 the shared memory (68 - 108.5 KiB a block) leaves room for two, so the
// registers are capped at 128 a thread to match; with kD = 128 (132 - 173 KiB) one.
template <int kD>
constexpr int kMinBlocks = kD <= 64 ? 2 : 1;

// First key that query token t sees.
__device__ __forceinline__ int64_t first_key(int64_t t, int window) {
  return window > 0 ? max(int64_t(0), t - window + 1) : int64_t(0);
}

__device__ __forceinline__ float lane_of(const float4& v, int e) {
  return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

// Rows r0 .. r0 + 63 of head `head` of x [n, heads_x, hd] into dst [64][kD + kPad]; rows >= n and dims
// >= hd are zeros (they multiply into the products, so they must be finite). hd even: float2 reads.
template <int kD>
__device__ __forceinline__ void load_rows(float* dst, const float* x, int64_t r0, int64_t n, int heads_x, int head,
                                          int hd) {
  constexpr int kPairs = kD / 2;
  for (int i = threadIdx.x; i < kTile * kPairs; i += kThreads) {
    const int r = i / kPairs, d = 2 * (i % kPairs);
    const int64_t row = r0 + r;
    float2 val = make_float2(0.f, 0.f);
    if (row < n && d < hd) val = *reinterpret_cast<const float2*>(x + (row * heads_x + head) * hd + d);
    *reinterpret_cast<float2*>(dst + r * kRowStride<kD> + d) = val;
  }
}

// acc[i][j] = a_r . b_c over kD for r = ty + 16 i, c = tx + 16 j (a, b: [64][kD + kPad]); d ascending.
template <int kD>
__device__ __forceinline__ void tile_dot(const float* a, const float* b, int ty, int tx, float (&acc)[kSub][kSub]) {
#pragma unroll
  for (int i = 0; i < kSub; ++i)
#pragma unroll
    for (int j = 0; j < kSub; ++j) acc[i][j] = 0.f;
#pragma unroll 1  // unrolled further, the kD = 64 kernels spill at 128 registers
  for (int d = 0; d < kD; d += 4) {
    float4 av[kSub], bv[kSub];
#pragma unroll
    for (int i = 0; i < kSub; ++i) av[i] = *reinterpret_cast<const float4*>(a + (ty + 16 * i) * kRowStride<kD> + d);
#pragma unroll
    for (int j = 0; j < kSub; ++j) bv[j] = *reinterpret_cast<const float4*>(b + (tx + 16 * j) * kRowStride<kD> + d);
#pragma unroll
    for (int i = 0; i < kSub; ++i)
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        float s = acc[i][j];
        s = fmaf(av[i].x, bv[j].x, s);
        s = fmaf(av[i].y, bv[j].y, s);
        s = fmaf(av[i].z, bv[j].z, s);
        s = fmaf(av[i].w, bv[j].w, s);
        acc[i][j] = s;
      }
  }
}

// acc[i][4 c + e] += sum_k w[r][k] b[k][64 c + 4 tx + e] for r = ty + 16 i (w: [64][kPStride], b: [64][kD +
// kPad]); k ascending.
template <int kD>
__device__ __forceinline__ void tile_accumulate(const float* w, const float* b, int ty, int tx,
                                                float (&acc)[kSub][kD / 16]) {
  constexpr int kC = kD / 64;
#pragma unroll 2
  for (int k = 0; k < kTile; k += 4) {
    float4 wv[kSub];
#pragma unroll
    for (int i = 0; i < kSub; ++i) wv[i] = *reinterpret_cast<const float4*>(w + (ty + 16 * i) * kPStride + k);
#pragma unroll
    for (int e = 0; e < 4; ++e)
#pragma unroll
      for (int c = 0; c < kC; ++c) {
        const float4 bv = *reinterpret_cast<const float4*>(b + (k + e) * kRowStride<kD> + 64 * c + 4 * tx);
#pragma unroll
        for (int i = 0; i < kSub; ++i) {
          const float wk = lane_of(wv[i], e);
          acc[i][4 * c + 0] = fmaf(wk, bv.x, acc[i][4 * c + 0]);
          acc[i][4 * c + 1] = fmaf(wk, bv.y, acc[i][4 * c + 1]);
          acc[i][4 * c + 2] = fmaf(wk, bv.z, acc[i][4 * c + 2]);
          acc[i][4 * c + 3] = fmaf(wk, bv.w, acc[i][4 * c + 3]);
        }
      }
  }
}

// Rows r = ty + 16 i (< 64) of out [n, heads_x, hd] head `head` from r0: factor * acc, dims < hd.
template <int kD>
__device__ __forceinline__ void store_rows(float* out, const float (&acc)[kSub][kD / 16], float factor, int64_t r0,
                                           int64_t n, int heads_x, int head, int hd, int ty, int tx) {
#pragma unroll
  for (int i = 0; i < kSub; ++i) {
    const int64_t row = r0 + ty + 16 * i;
    if (row >= n) continue;
    float* o = out + (row * heads_x + head) * hd;
#pragma unroll
    for (int c = 0; c < kD / 64; ++c)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const int d = 64 * c + 4 * tx + e;  // even, so d < hd means d + 1 < hd too
        if (d < hd)
          *reinterpret_cast<float2*>(o + d) = make_float2(factor * acc[i][4 * c + e], factor * acc[i][4 * c + e + 1]);
      }
  }
}

// The shared-memory tiles of the query-tile kernels (stats, dq), each [64][kD + kPad]: the q and dout rows
// of the block's 64 query tokens, and the key tile's k and v rows.
template <int kD>
struct QueryTiles {
  float *qs, *dos, *ks, *vs;
  __device__ explicit QueryTiles(float* smem)
      : qs(smem),
        dos(qs + kTile * kRowStride<kD>),
        ks(dos + kTile * kRowStride<kD>),
        vs(ks + kTile * kRowStride<kD>) {}
  __device__ float* end() const { return vs + kTile * kRowStride<kD>; }

  // Stages key tile k0 (KV head kvh) once the block is done with the previous one, then this thread's
  // s = q . k and dp = dout . v.
  __device__ __forceinline__ void scores(const float* k, const float* v, int64_t k0, int64_t T, int kv_heads, int kvh,
                                         int hd, int ty, int tx, float (&s)[kSub][kSub], float (&dp)[kSub][kSub]) {
    __syncthreads();
    load_rows<kD>(ks, k, k0, T, kv_heads, kvh, hd);
    load_rows<kD>(vs, v, k0, T, kv_heads, kvh, hd);
    __syncthreads();
    tile_dot<kD>(qs, ks, ty, tx, s);
    tile_dot<kD>(dos, vs, ty, tx, dp);
  }
};

// Grid (ceil(T / 64), heads): 64 query tokens of head h. lse[h * T + t] = L, dsum[h * T + t] = D.
template <int kD>
__global__ void __launch_bounds__(kThreads, kMinBlocks<kD>)
    attention_stats_kernel(const float* q, const float* k, const float* v, const float* dout, int64_t T, int heads,
                           int kv_heads, int hd, const float* sinks, int window, float scale, float* lse,
                           float* dsum) {
  extern __shared__ float4 smem4[];
  QueryTiles<kD> tiles(reinterpret_cast<float*>(smem4));
  const int h = int(blockIdx.y), kvh = h / (heads / kv_heads);
  const int ty = int(threadIdx.x) / 16, tx = int(threadIdx.x) % 16;
  const int64_t t0 = int64_t(blockIdx.x) * kTile, t_last = min(T - 1, t0 + kTile - 1);
  load_rows<kD>(tiles.qs, q, t0, T, heads, h, hd);
  load_rows<kD>(tiles.dos, dout, t0, T, heads, h, hd);
  // Per row, this thread's share of the keys: m (a running max; the sink only seeds it, so every
  // exponent below stays <= 0), l = sum exp(s - m), a = sum exp(s - m) dp.
  const float sink = sinks[h];
  float m[kSub], l[kSub], a[kSub];
#pragma unroll
  for (int i = 0; i < kSub; ++i) m[i] = sink, l[i] = 0.f, a[i] = 0.f;
  for (int64_t k0 = first_key(t0, window); k0 <= t_last; k0 += kTile) {
    float s[kSub][kSub], dp[kSub][kSub];
    tiles.scores(k, v, k0, T, kv_heads, kvh, hd, ty, tx, s, dp);
#pragma unroll
    for (int i = 0; i < kSub; ++i) {
      const int64_t t = t0 + ty + 16 * i, lo = first_key(t, window);
      bool valid[kSub];
      float mt = m[i];
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int64_t key = k0 + tx + 16 * j;
        valid[j] = t < T && key >= lo && key <= t;
        s[i][j] *= scale;
        if (valid[j]) mt = fmaxf(mt, s[i][j]);
      }
      const float c = mt == m[i] ? 1.f : expf(m[i] - mt);
      float li = l[i] * c, ai = a[i] * c;
#pragma unroll
      for (int j = 0; j < kSub; ++j)
        if (valid[j]) {
          const float e = expf(s[i][j] - mt);
          li += e;
          ai = fmaf(e, dp[i][j], ai);
        }
      m[i] = mt, l[i] = li, a[i] = ai;
    }
  }
  // Join the 16 threads of each row (lanes that differ in bits 0..3), then add the sink.
#pragma unroll
  for (int i = 0; i < kSub; ++i) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[i], o);
      const float lo = __shfl_xor_sync(0xffffffffu, l[i], o);
      const float ao = __shfl_xor_sync(0xffffffffu, a[i], o);
      const float mm = fmaxf(m[i], mo);
      const float c = mm == m[i] ? 1.f : expf(m[i] - mm), co = mm == mo ? 1.f : expf(mo - mm);
      l[i] = l[i] * c + lo * co;
      a[i] = a[i] * c + ao * co;
      m[i] = mm;
    }
    const int64_t t = t0 + ty + 16 * i;
    if (tx == 0 && t < T) {
      const float denom = l[i] + expf(sink - m[i]);
      lse[h * T + t] = m[i] + logf(denom);
      dsum[h * T + t] = a[i] / denom;
    }
  }
}

// Grid (ceil(T / 64), heads): dq of 64 query tokens of head h.
template <int kD>
__global__ void __launch_bounds__(kThreads, kMinBlocks<kD>)
    attention_dq_kernel(const float* q, const float* k, const float* v, const float* dout, int64_t T, int heads,
                        int kv_heads, int hd, int window, float scale, const float* lse, const float* dsum, float* dq) {
  extern __shared__ float4 smem4[];
  QueryTiles<kD> tiles(reinterpret_cast<float*>(smem4));
  float* dss = tiles.end();  // [64 queries][kPStride]
  const int h = int(blockIdx.y), kvh = h / (heads / kv_heads);
  const int ty = int(threadIdx.x) / 16, tx = int(threadIdx.x) % 16;
  const int64_t t0 = int64_t(blockIdx.x) * kTile, t_last = min(T - 1, t0 + kTile - 1);
  load_rows<kD>(tiles.qs, q, t0, T, heads, h, hd);
  load_rows<kD>(tiles.dos, dout, t0, T, heads, h, hd);
  float row_l[kSub], row_d[kSub];
#pragma unroll
  for (int i = 0; i < kSub; ++i) {
    const int64_t t = t0 + ty + 16 * i;
    row_l[i] = t < T ? lse[h * T + t] : 0.f;
    row_d[i] = t < T ? dsum[h * T + t] : 0.f;
  }
  float acc[kSub][kD / 16];
#pragma unroll
  for (int i = 0; i < kSub; ++i)
#pragma unroll
    for (int c = 0; c < kD / 16; ++c) acc[i][c] = 0.f;
  for (int64_t k0 = first_key(t0, window); k0 <= t_last; k0 += kTile) {
    float s[kSub][kSub], dp[kSub][kSub];
    tiles.scores(k, v, k0, T, kv_heads, kvh, hd, ty, tx, s, dp);  // (its first sync: the ds tile is used up too)
#pragma unroll
    for (int i = 0; i < kSub; ++i) {
      const int64_t t = t0 + ty + 16 * i, lo = first_key(t, window);
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int64_t key = k0 + tx + 16 * j;
        float ds = 0.f;
        if (t < T && key >= lo && key <= t) ds = expf(s[i][j] * scale - row_l[i]) * (dp[i][j] - row_d[i]);
        dss[(ty + 16 * i) * kPStride + tx + 16 * j] = ds;
      }
    }
    __syncthreads();
    tile_accumulate<kD>(dss, tiles.ks, ty, tx, acc);
  }
  store_rows<kD>(dq, acc, scale, t0, T, heads, h, hd, ty, tx);
}

// Grid (ceil(T / 64), kv_heads): dk and dv of 64 keys of KV head kvh.
template <int kD>
__global__ void __launch_bounds__(kThreads, kMinBlocks<kD>)
    attention_dkdv_kernel(const float* q, const float* k, const float* v, const float* dout, int64_t T, int heads,
                          int kv_heads, int hd, int window, float scale, const float* lse, const float* dsum, float* dk,
                          float* dv) {
  extern __shared__ float4 smem4[];
  float* ks = reinterpret_cast<float*>(smem4);  // [64][kD + kPad] each
  float* vs = ks + kTile * kRowStride<kD>;
  float* qs = vs + kTile * kRowStride<kD>;
  float* dos = qs + kTile * kRowStride<kD>;
  float* ps = dos + kTile * kRowStride<kD>;  // [64 keys][kPStride] each
  float* dss = ps + kTile * kPStride;
  float* ls = dss + kTile * kPStride;  // [64 queries] each
  float* ds_sum = ls + kTile;
  const int kvh = int(blockIdx.y), group = heads / kv_heads;
  const int ty = int(threadIdx.x) / 16, tx = int(threadIdx.x) % 16;
  const int64_t j0 = int64_t(blockIdx.x) * kTile;
  // Query tokens that see a key of [j0, j0 + 63]: t >= j0, and t < j0 + 63 + window with a window.
  const int64_t t_end = window > 0 ? min(T, j0 + kTile - 1 + window) : T;
  load_rows<kD>(ks, k, j0, T, kv_heads, kvh, hd);
  load_rows<kD>(vs, v, j0, T, kv_heads, kvh, hd);
  float dk_acc[kSub][kD / 16], dv_acc[kSub][kD / 16];
#pragma unroll
  for (int i = 0; i < kSub; ++i)
#pragma unroll
    for (int c = 0; c < kD / 16; ++c) dk_acc[i][c] = 0.f, dv_acc[i][c] = 0.f;
  for (int g = 0; g < group; ++g) {
    const int h = kvh * group + g;
    for (int64_t q0 = j0; q0 < t_end; q0 += kTile) {
      __syncthreads();  // the previous query tile and p / ds tiles are used up
      load_rows<kD>(qs, q, q0, T, heads, h, hd);
      load_rows<kD>(dos, dout, q0, T, heads, h, hd);
      if (threadIdx.x < kTile) {
        const int64_t t = q0 + threadIdx.x;
        ls[threadIdx.x] = t < T ? lse[h * T + t] : 0.f;
        ds_sum[threadIdx.x] = t < T ? dsum[h * T + t] : 0.f;
      }
      __syncthreads();
      // Transposed scores: rows are keys (ks, vs), columns query tokens (qs, dos).
      float s[kSub][kSub], dp[kSub][kSub];
      tile_dot<kD>(ks, qs, ty, tx, s);
      tile_dot<kD>(vs, dos, ty, tx, dp);
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int64_t t = q0 + tx + 16 * j, lo = first_key(t, window);
        const float lt = ls[tx + 16 * j], dt = ds_sum[tx + 16 * j];
#pragma unroll
        for (int i = 0; i < kSub; ++i) {
          const int64_t key = j0 + ty + 16 * i;
          float p = 0.f, ds = 0.f;
          if (t < T && key >= lo && key <= t) {
            p = expf(s[i][j] * scale - lt);
            ds = p * (dp[i][j] - dt);
          }
          ps[(ty + 16 * i) * kPStride + tx + 16 * j] = p;
          dss[(ty + 16 * i) * kPStride + tx + 16 * j] = ds;
        }
      }
      __syncthreads();
      tile_accumulate<kD>(ps, dos, ty, tx, dv_acc);
      tile_accumulate<kD>(dss, qs, ty, tx, dk_acc);
    }
  }
  store_rows<kD>(dk, dk_acc, scale, j0, T, kv_heads, kvh, hd, ty, tx);
  store_rows<kD>(dv, dv_acc, 1.f, j0, T, kv_heads, kvh, hd, ty, tx);
}

template <int kD>
void run_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads, int hd,
                  const float* sinks, int window, float scale, const float* dout, float* dq, float* dk, float* dv,
                  float* lse, float* dsum, cudaStream_t s) {
  constexpr size_t kRows = size_t(kTile) * kRowStride<kD> * sizeof(float);  // one [64][kD + kPad] tile
  constexpr size_t kP = size_t(kTile) * kPStride * sizeof(float);           // one [64][kPStride] tile
  constexpr size_t stats_smem = 4 * kRows, dq_smem = 4 * kRows + kP;
  constexpr size_t dkdv_smem = 4 * kRows + 2 * kP + 2 * kTile * sizeof(float);
  // All above the 48 KiB default (kD = 64: 68, 88, 108.5 KiB).
  GPTOSS_CUDA_CHECK(cudaFuncSetAttribute(attention_stats_kernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(stats_smem)));
  GPTOSS_CUDA_CHECK(
      cudaFuncSetAttribute(attention_dq_kernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dq_smem)));
  GPTOSS_CUDA_CHECK(
      cudaFuncSetAttribute(attention_dkdv_kernel<kD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dkdv_smem)));
  const dim3 q_grid(ceil_div(T, kTile), unsigned(heads)), kv_grid(ceil_div(T, kTile), unsigned(kv_heads));
  attention_stats_kernel<kD><<<q_grid, kThreads, stats_smem, s>>>(q, k, v, dout, T, heads, kv_heads, hd, sinks, window,
                                                                  scale, lse, dsum);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
  attention_dq_kernel<kD><<<q_grid, kThreads, dq_smem, s>>>(q, k, v, dout, T, heads, kv_heads, hd, window, scale, lse,
                                                            dsum, dq);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
  attention_dkdv_kernel<kD><<<kv_grid, kThreads, dkdv_smem, s>>>(q, k, v, dout, T, heads, kv_heads, hd, window,
                                                                 scale, lse, dsum, dk, dv);
  GPTOSS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t attention_backward_scratch_bytes(int64_t T, int heads) {
  return size_t(2 * T * heads) * sizeof(float);  // L and D, [heads, T] each
}

void launch_attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads,
                               int head_dim, const float* sinks, int window, float scale, const float* dout, float* dq,
                               float* dk, float* dv, void* scratch, cudaStream_t s) {
  GPTOSS_CHECK(T >= 0 && heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && heads <= 65535,
               "cuda attention backward: T {}, {} query heads over {} KV heads", T, heads, kv_heads);
  GPTOSS_CHECK(head_dim > 0 && head_dim <= kMaxHeadDim && head_dim % 2 == 0,
               "cuda attention backward: head_dim {} is not supported (even, at most {})", head_dim, kMaxHeadDim);
  if (T == 0) return;
  // Rows are read and written as float2.
  for (const void* p : {static_cast<const void*>(q), static_cast<const void*>(k), static_cast<const void*>(v),
                        static_cast<const void*>(dout), static_cast<const void*>(dq), static_cast<const void*>(dk),
                        static_cast<const void*>(dv)})
    GPTOSS_CHECK(reinterpret_cast<uintptr_t>(p) % 8 == 0,
                 "cuda attention backward: tensor at {} is not 8-byte aligned (rows are read as float2)", p);
  float* lse = static_cast<float*>(scratch);
  float* dsum = lse + T * heads;
  if (head_dim <= 64)
    run_backward<64>(q, k, v, T, heads, kv_heads, head_dim, sinks, window, scale, dout, dq, dk, dv, lse, dsum, s);
  else
    run_backward<128>(q, k, v, T, heads, kv_heads, head_dim, sinks, window, scale, dout, dq, dk, dv, lse, dsum, s);
}

}  // namespace gptoss::cuda
