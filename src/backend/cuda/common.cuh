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

inline unsigned ceil_div(int64_t a, int64_t b) { return unsigned((a + b - 1) / b); }

}  // namespace gptoss::cuda
