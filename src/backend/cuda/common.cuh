#pragma once

#include <cstdint>

namespace gptoss::cuda {

// Programmatic dependent launch (launch.cuh): wait until the previous kernel in the stream has finished
// and its writes are visible, then let the next kernel be scheduled. Everything before it may only read
// weights.
__device__ __forceinline__ void grid_wait() {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

// Starts moving [p, p + bytes) into L2 (no registers held): a prologue before grid_wait().
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes, int thread, int threads) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = int64_t(thread) * 128; off < bytes; off += int64_t(threads) * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

__device__ __forceinline__ float bf16_to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

// An e8m0 scale: 2^(s - 127); 0 is the subnormal 2^-127, 255 is NaN (as the CPU reference).
__device__ __forceinline__ float e8m0(uint32_t s) {
  if (s == 255) return __int_as_float(0x7fc00000);
  if (s == 0) return __int_as_float(0x00400000);
  return __int_as_float(int(s) << 23);
}

// The clamped SwiGLU of gpt-oss (alpha 1.702, up + 1).
__device__ __forceinline__ float swiglu(float gate, float up, float limit) {
  gate = fminf(gate, limit);
  up = fminf(fmaxf(up, -limit), limit);
  float glu = gate / (1.f + expf(-1.702f * gate));
  return (up + 1.f) * glu;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum of v over the block (every thread gets it); `partial` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* partial) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float u = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
    u = warp_sum(u);
    if (threadIdx.x == 0) partial[0] = u;
  }
  __syncthreads();
  return partial[0];
}

// dst[i] = a[i] + b[i] for the elements of a row a thread takes (block-strided; dst may be a), and the
// thread's part of the row's sum of squares.
__device__ __forceinline__ float add_row_sumsq(const float* a, const float* b, float* dst, int64_t d) {
  float ss = 0.f;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = a[i] + b[i];
    dst[i] = v;
    ss += v * v;
  }
  return ss;
}

// A norm's weights for the elements a thread of a block-strided row loop takes (threadIdx.x, + blockDim.x,
// ...): the first kNormPre of them go to registers before grid_wait (they are weights, so the kernel
// before need not finish), and for_norm_row hands each element with its weight to f.
constexpr int kNormPre = 4;
__device__ __forceinline__ void load_norm(const uint16_t* w, int64_t d, float (&pre)[kNormPre]) {
#pragma unroll
  for (int j = 0; j < kNormPre; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    pre[j] = w && i < d ? bf16_to_f32(w[i]) : 0.f;
  }
}
template <class F>
__device__ __forceinline__ void for_norm_row(const uint16_t* w, int64_t d, const float (&pre)[kNormPre], F&& f) {
#pragma unroll
  for (int j = 0; j < kNormPre; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    if (i < d) f(i, pre[j]);
  }
  for (int64_t i = threadIdx.x + int64_t(kNormPre) * blockDim.x; i < d; i += blockDim.x)
    f(i, bf16_to_f32(w[i]));
}

// Eight bf16 values (16 bytes) to f32.
__device__ __forceinline__ void bf16x8(const uint4& p, float* w) {
  const uint32_t v[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    w[2 * i] = __uint_as_float(v[i] << 16);
    w[2 * i + 1] = __uint_as_float(v[i] & 0xffff0000u);
  }
}

// w[0 .. 8) . (a, b), summed in order (the f32 weights of one 16-byte bf16 chunk against 8 activations).
__device__ __forceinline__ float dot8(const float* w, const float4& a, const float4& b) {
  return w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z + w[7] * b.w;
}
// The same for the chunk's 8 bf16 weights p.
__device__ __forceinline__ float dot8(const uint4& p, const float4& a, const float4& b) {
  float w[8];
  bf16x8(p, w);
  return dot8(w, a, b);
}

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace gptoss::cuda
