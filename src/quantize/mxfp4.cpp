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

uint8_t fp4_encode(float x) {
  const uint8_t sign = std::signbit(x) && x != 0.0f ? 8 : 0;
  const float a = std::fabs(x);
  // Midpoints between neighbours; at a tie the even code (mantissa 0) wins: <= rounds down onto an
  // even code, < rounds down onto an odd one.
  uint8_t m;
  if (a <= 0.25f) m = 0;        // tie 0.25 -> 0 (code 0)
  else if (a < 0.75f) m = 1;    // tie 0.75 -> 1.0 (code 2)
  else if (a <= 1.25f) m = 2;   // tie 1.25 -> 1.0
  else if (a < 1.75f) m = 3;    // tie 1.75 -> 2.0 (code 4)
  else if (a <= 2.5f) m = 4;    // tie 2.5 -> 2.0
  else if (a < 3.5f) m = 5;     // tie 3.5 -> 4.0 (code 6)
  else if (a <= 5.0f) m = 6;    // tie 5 -> 4.0
  else m = 7;                   // saturate at 6
  return uint8_t(sign | m);
}

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
double encode_with(const float* x, uint8_t s, uint8_t* codes) {
  const float inv = std::ldexp(1.0f, 127 - int(s));  // exact power of two (s <= 254)
  const float scale = std::ldexp(1.0f, int(s) - 127);
  double err = 0;
  for (int i = 0; i < kMxfp4BlockSize; ++i) {
    // x * 2^-e is exact unless it underflows; the OCP reference divides, which is the same.
    float q = (s >= 2 && s <= 253) ? x[i] * inv : x[i] / scale;
    codes[i] = fp4_encode(q);
    double d = double(x[i]) - double(fp4_to_f32(codes[i])) * double(scale);
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
