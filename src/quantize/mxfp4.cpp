#include "quantize/mxfp4.h"

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace gptoss {

Mxfp4Rounding parse_mxfp4_rounding(std::string_view name) {
  if (name == "best") return Mxfp4Rounding::Best;
  if (name == "ocp") return Mxfp4Rounding::Ocp;
  if (name == "triton") return Mxfp4Rounding::Triton;
  fail_input("rounding '{}' is unknown; expected best (default: per block the lower-error scale), ocp or triton",
             name);
}

std::string_view mxfp4_rounding_name(Mxfp4Rounding r) {
  switch (r) {
    case Mxfp4Rounding::Ocp: return "ocp";
    case Mxfp4Rounding::Triton: return "triton";
    case Mxfp4Rounding::Best: return "best";
  }
  return "?";
}

namespace {
// Branch-free: the magnitude code counts the midpoints below |x|; at a tie the even code (mantissa
// 0) wins, so a midpoint just above an even code is crossed only strictly (>) and one just above an
// odd code already at equality (>=). NaN maps to 0 (callers reject non-finite input first).
inline uint8_t fp4_encode_inline(float x) {
  const float a = std::fabs(x);
  const int m = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
  return uint8_t(((x < 0.0f) << 3) | m);  // -0 stays +0; tiny negatives keep their sign (-0 code)
}
}  // namespace

uint8_t fp4_encode(float x) { return fp4_encode_inline(x); }

namespace {
// floor(log2(a)) for finite a > 0, exact (also for subnormals).
int floor_log2(float a) {
  int e;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
  return e - 1;
}
uint8_t clamp_scale(int e) {
  if (e < -127) e = -127;
  if (e > 127) e = 127;
  return uint8_t(e + 127);
}
// 2^(s-127) and its inverse as floats without libm (E8M0 bytes from a finite amax are <= 252).
inline float pow2_of_scale(uint8_t s) {
  if (s == 0) return std::ldexp(1.0f, -127);  // subnormal
  uint32_t u = uint32_t(s) << 23;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float inv_pow2_of_scale(uint8_t s) {
  if (s >= 254) return std::ldexp(1.0f, 127 - int(s));
  uint32_t u = uint32_t(254 - s) << 23;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double encode_with(const float* x, uint8_t s, uint8_t* codes) {
  const float inv = inv_pow2_of_scale(s);
  const double scale = double(pow2_of_scale(s));
  for (int i = 0; i < kMxfp4BlockSize; ++i) codes[i] = fp4_encode_inline(x[i] * inv);  // x * inv is exact
  double err = 0;
  for (int i = 0; i < kMxfp4BlockSize; ++i) {
    const double d = double(x[i]) - double(kFp4Values[codes[i]]) * scale;
    err += d * d;
  }
  return err;
}
}  // namespace

uint8_t mxfp4_scale_ocp(float amax) {
  if (!(amax > 0)) return 0;
  return clamp_scale(floor_log2(amax) - 2);
}

uint8_t mxfp4_scale_triton(float amax) {
  if (!(amax > 0)) return 0;
  // triton_kernels rounds the f32 bits of amax / 6 up to a power of two: 2^ceil(log2(amax / 6)).
  // Computed in double (exact here) so that tiny blocks whose amax / 6 is an f32 subnormal still get
  // the smallest E8M0 scale that does not saturate, instead of the bit trick's 2^-126.
  int e;
  const double f = std::frexp(double(amax) / 6.0, &e);  // amax / 6 = f * 2^e, f in [0.5, 1)
  return clamp_scale(f == 0.5 ? e - 1 : e);
}

double mxfp4_quantize_block(const float* x, Mxfp4Rounding rule, uint8_t* packed, uint8_t* scale, bool* used_triton) {
  float amax = 0;
  for (int i = 0; i < kMxfp4BlockSize; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  uint8_t codes[kMxfp4BlockSize];
  double err;
  uint8_t s;
  if (used_triton) *used_triton = false;
  if (rule == Mxfp4Rounding::Best) {
    const uint8_t so = mxfp4_scale_ocp(amax), st = mxfp4_scale_triton(amax);
    err = encode_with(x, so, codes);
    s = so;
    if (st != so) {
      uint8_t codes_t[kMxfp4BlockSize];
      double err_t = encode_with(x, st, codes_t);
      if (err_t < err) {
        err = err_t;
        s = st;
        std::memcpy(codes, codes_t, sizeof codes);
        if (used_triton) *used_triton = true;
      }
    }
  } else {
    s = rule == Mxfp4Rounding::Ocp ? mxfp4_scale_ocp(amax) : mxfp4_scale_triton(amax);
    err = encode_with(x, s, codes);
  }
  for (int k = 0; k < kMxfp4BlockSize / 2; ++k) packed[k] = uint8_t(codes[2 * k] | (codes[2 * k + 1] << 4));
  *scale = s;
  return err;
}

void mxfp4_dequantize_block(const uint8_t* packed, uint8_t scale, float* out) {
  const float s = e8m0_to_f32(scale);
  for (int k = 0; k < kMxfp4BlockSize / 2; ++k) {
    out[2 * k] = fp4_to_f32(packed[k] & 0xf) * s;
    out[2 * k + 1] = fp4_to_f32(packed[k] >> 4) * s;
  }
}

}  // namespace gptoss
