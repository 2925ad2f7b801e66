// The MXFP4 codec against a scalar reference: every code, ties, saturation, zero blocks, subnormal
// and clamped scales, and the three scale rules.
#include "quantize/mxfp4.h"

#include <cmath>
#include <random>
#include <cstring>
#include <algorithm>

#include <gtest/gtest.h>

#include "core/dtype.h"
#include "core/error.h"

namespace gptoss {
namespace {

// Reference: the nearest of the 8 magnitudes by exhaustive search, ties to the even code index,
// sign kept for negative inputs (as fixtures/make_fixtures.py quant_mxfp4 does).
uint8_t ref_encode(double x) {
  static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  double a = std::min(std::fabs(x), 6.0);
  int best = 0;
  for (int i = 1; i < 8; ++i) {
    double d = std::fabs(a - mag[i]), db = std::fabs(a - mag[best]);
    if (d < db || (d == db && i % 2 == 0)) best = i;
  }
  return uint8_t(best + (x < 0 ? 8 : 0));
}

// OCP reference scale exponent: floor(log2(amax)) - 2, clamped to [-127, 127]; zero block -> -127.
int ref_ocp_exp(double amax) {
  if (amax == 0) return -127;
  return std::clamp(int(std::floor(std::log2(amax))) - 2, -127, 127);
}
int ref_triton_exp(double amax) {
  if (amax == 0) return -127;
  return std::clamp(int(std::ceil(std::log2(amax / 6.0))), -127, 127);
}

TEST(Fp4, EveryCodeRoundTrips) {
  for (int c = 0; c < 16; ++c) {
    const float v = fp4_to_f32(uint8_t(c));
    const uint8_t back = fp4_encode(v);
    if (c == 8) EXPECT_EQ(back, 0) << "-0 encodes as +0";
    else EXPECT_EQ(back, c) << "value " << v;
    EXPECT_EQ(back, ref_encode(v)) << v;
  }
}

TEST(Fp4, TiesGoToEvenCodes) {
  struct Tie {
    float x;
    uint8_t code;
  } ties[] = {{0.25f, 0}, {0.75f, 2}, {1.25f, 2}, {1.75f, 4}, {2.5f, 4}, {3.5f, 6}, {5.0f, 6},
              {-0.75f, 10}, {-2.5f, 12}, {-5.0f, 14}, {-0.25f, 8}};
  for (const auto& t : ties) {
    EXPECT_EQ(fp4_encode(t.x), t.code) << t.x;
    EXPECT_EQ(ref_encode(t.x), t.code) << t.x;
    // Just off the tie goes to the nearer neighbour.
    EXPECT_EQ(fp4_encode(std::nextafter(t.x, 100.0f * t.x)), ref_encode(std::nextafter(double(t.x), 100.0 * t.x)));
  }
}

TEST(Fp4, SaturatesAndMatchesReferenceEverywhere) {
  EXPECT_EQ(fp4_encode(6.0f), 7);
  EXPECT_EQ(fp4_encode(7.99f), 7);
  EXPECT_EQ(fp4_encode(1e30f), 7);
  EXPECT_EQ(fp4_encode(-1e30f), 15);
  // A dense sweep over [-8, 8] in steps of 1/1024 (hits every tie and midpoint exactly).
  for (int i = -8192; i <= 8192; ++i) {
    float x = float(i) / 1024.0f;
    ASSERT_EQ(fp4_encode(x), ref_encode(x)) << x;
  }
}

TEST(Mxfp4, ScaleRules) {
  EXPECT_EQ(mxfp4_scale_ocp(0.0f), 0);
  EXPECT_EQ(mxfp4_scale_triton(0.0f), 0);
  EXPECT_EQ(mxfp4_scale_ocp(4.0f), 127);   // [4, 8) -> 2^0
  EXPECT_EQ(mxfp4_scale_ocp(7.99f), 127);
  EXPECT_EQ(mxfp4_scale_ocp(8.0f), 128);
  EXPECT_EQ(mxfp4_scale_triton(6.0f), 127);  // 6/6 = 1 exactly
  EXPECT_EQ(mxfp4_scale_triton(6.01f), 128);
  EXPECT_EQ(mxfp4_scale_triton(4.0f), 127);
  EXPECT_EQ(mxfp4_scale_triton(3.0f), 126);
  EXPECT_EQ(mxfp4_scale_ocp(3.0f), 126);
  // Subnormal and clamped exponents.
  EXPECT_EQ(mxfp4_scale_ocp(std::ldexp(1.0f, -120)), 5);
  EXPECT_EQ(mxfp4_scale_ocp(std::ldexp(1.0f, -125)), 0);
  EXPECT_EQ(mxfp4_scale_ocp(1e-40f), 0);  // f32 subnormal amax
  EXPECT_EQ(mxfp4_scale_triton(1e-40f), 0);
  EXPECT_EQ(mxfp4_scale_ocp(3e38f), 252);  // floor(log2) = 127, minus 2
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> lg(-140, 127);
  for (int i = 0; i < 20000; ++i) {
    float a = float(std::exp2(lg(rng)));
    if (a == 0 || !std::isfinite(a)) continue;
    ASSERT_EQ(mxfp4_scale_ocp(a), uint8_t(ref_ocp_exp(a) + 127)) << a;
    ASSERT_EQ(mxfp4_scale_triton(a), uint8_t(ref_triton_exp(double(a)) + 127)) << a;
  }
}

// Reference block quantization with a given scale exponent.
void ref_block(const float* x, int e, uint8_t* packed, double* err) {
  double s = std::ldexp(1.0, e);
  uint8_t codes[32];
  *err = 0;
  for (int i = 0; i < 32; ++i) {
    codes[i] = ref_encode(double(x[i]) / s);
    double d = double(x[i]) - double(fp4_to_f32(codes[i])) * s;
    *err += d * d;
  }
  for (int k = 0; k < 16; ++k) packed[k] = uint8_t(codes[2 * k] | (codes[2 * k + 1] << 4));
}

TEST(Mxfp4, BlocksMatchTheScalarReference) {
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-130, 20);
  for (int trial = 0; trial < 3000; ++trial) {
    float x[32];
    const float mul = std::ldexp(1.0f, expo(rng));
    for (float& v : x) v = bf16_to_f32(f32_to_bf16(nd(rng) * mul));
    if (trial % 10 == 0) x[trial % 32] = 0;  // some exact zeros
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    for (auto rule : {Mxfp4Rounding::Ocp, Mxfp4Rounding::Triton, Mxfp4Rounding::Best}) {
      uint8_t packed[16], scale;
      double err = mxfp4_quantize_block(x, rule, packed, &scale);
      uint8_t rp[16], rpt[16];
      double rerr, rerr_t;
      ref_block(x, ref_ocp_exp(amax), rp, &rerr);
      ref_block(x, ref_triton_exp(amax), rpt, &rerr_t);
      const bool want_triton = rule == Mxfp4Rounding::Triton || (rule == Mxfp4Rounding::Best && rerr_t < rerr);
      const int want_e = want_triton ? ref_triton_exp(amax) : ref_ocp_exp(amax);
      ASSERT_EQ(int(scale) - 127, want_e) << "trial " << trial;
      ASSERT_EQ(std::memcmp(packed, want_triton ? rpt : rp, 16), 0) << "trial " << trial;
      ASSERT_NEAR(err, want_triton ? rerr_t : rerr, 1e-9 * (rerr + rerr_t) + 1e-300);
      if (rule == Mxfp4Rounding::Best) {
        ASSERT_LE(err, std::min(rerr, rerr_t) * (1 + 1e-12));
      }
      // Dequantization gives back exactly the reference values.
      float deq[32];
      mxfp4_dequantize_block(packed, scale, deq);
      for (int i = 0; i < 32; ++i) {
        uint8_t c = (packed[i / 2] >> (4 * (i % 2))) & 0xf;
        ASSERT_EQ(deq[i], fp4_to_f32(c) * std::ldexp(1.0f, want_e));
      }
    }
  }
}

TEST(Mxfp4, ZeroBlockAndSaturation) {
  float z[32] = {};
  uint8_t packed[16], scale = 99;
  EXPECT_EQ(mxfp4_quantize_block(z, Mxfp4Rounding::Best, packed, &scale), 0.0);
  EXPECT_EQ(scale, 0);
  for (uint8_t b : packed) EXPECT_EQ(b, 0);
  // amax = 7.5: OCP scale 1 saturates 7.5 -> 6 (error 1.5^2); Triton scale 2 represents 7.5 as 8 (0.5^2)
  // but loses the small values; with everything else 0 the Triton scale wins under Best.
  float x[32] = {};
  x[0] = 7.5f;
  bool used_triton = false;
  double e_ocp = mxfp4_quantize_block(x, Mxfp4Rounding::Ocp, packed, &scale);
  EXPECT_EQ(scale, 127);
  EXPECT_EQ(packed[0] & 0xf, 7);
  EXPECT_DOUBLE_EQ(e_ocp, 1.5 * 1.5);
  double e_tri = mxfp4_quantize_block(x, Mxfp4Rounding::Triton, packed, &scale);
  EXPECT_EQ(scale, 128);
  EXPECT_DOUBLE_EQ(e_tri, 0.5 * 0.5);
  double e_best = mxfp4_quantize_block(x, Mxfp4Rounding::Best, packed, &scale, &used_triton);
  EXPECT_TRUE(used_triton);
  EXPECT_DOUBLE_EQ(e_best, e_tri);
  // With many mid-size values the OCP scale is better even though 7.5 saturates.
  for (int i = 1; i < 32; ++i) x[i] = 0.5f * float(i % 4);
  double b_ocp = mxfp4_quantize_block(x, Mxfp4Rounding::Ocp, packed, &scale);
  double b_tri = mxfp4_quantize_block(x, Mxfp4Rounding::Triton, packed, &scale);
  ASSERT_LT(b_ocp, b_tri);
  EXPECT_DOUBLE_EQ(mxfp4_quantize_block(x, Mxfp4Rounding::Best, packed, &scale, &used_triton), b_ocp);
  EXPECT_FALSE(used_triton);
}

TEST(Mxfp4, RoundingNames) {
  EXPECT_EQ(parse_mxfp4_rounding("ocp"), Mxfp4Rounding::Ocp);
  EXPECT_EQ(parse_mxfp4_rounding("triton"), Mxfp4Rounding::Triton);
  EXPECT_EQ(parse_mxfp4_rounding("best"), Mxfp4Rounding::Best);
  EXPECT_THROW(parse_mxfp4_rounding("rtn"), InputError);
}

}  // namespace
}  // namespace gptoss
