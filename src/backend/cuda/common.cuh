#pragma once

#include <cstdint>

namespace gptoss::cuda {

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
