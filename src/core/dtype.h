// Scalar number formats: bf16, fp4 e2m1 (MXFP4 elements), e8m0 (MXFP4 block scales).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <string_view>

namespace gptoss {

// bf16 <-> f32. Conversion to bf16 rounds to nearest even; NaN stays NaN.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE half (f16) to f32, exact (subnormals, infinities and NaN included).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else {
    float f = float(man) * 0x1p-24f;  // subnormal (or zero): man x 2^-24, exact
    std::memcpy(&u, &f, 4);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// MXFP4: 32 fp4 e2m1 values share one e8m0 scale 2^(s-127). Code bits: sign | exp(2) | mantissa(1).
inline constexpr int kMxfp4BlockSize = 32;
inline constexpr float kFp4Values[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

inline float fp4_to_f32(uint8_t code) { return kFp4Values[code & 0xf]; }

// e8m0 scale byte -> 2^(s-127); 255 is NaN per the OCP MX spec.
inline float e8m0_to_f32(uint8_t s) {
  if (s == 255) return NAN;
  return std::ldexp(1.0f, int(s) - 127);
}

// Element type of the paged KV cache: f32 (exact, the default) or bf16 (half the memory, as vLLM's
// default; K and V are rounded to nearest even when stored, attention reads them back as f32).
enum class KvDtype : uint8_t { f32, bf16 };

inline size_t kv_dtype_bytes(KvDtype d) { return d == KvDtype::bf16 ? 2 : 4; }
inline const char* kv_dtype_name(KvDtype d) { return d == KvDtype::bf16 ? "bfloat16" : "float32"; }

// The kv_cache_dtype setting's values (vLLM's names; "auto" is float32 here), for readers and messages.
inline constexpr std::string_view kKvDtypeSettings[] = {"auto", "float32", "bfloat16"};

// The kv_cache_dtype setting: one of kKvDtypeSettings; false for anything else.
inline bool parse_kv_dtype(std::string_view name, KvDtype* out) {
  if (name == "auto" || name == "float32") return *out = KvDtype::f32, true;
  if (name == "bfloat16") return *out = KvDtype::bf16, true;
  return false;
}

}  // namespace gptoss
