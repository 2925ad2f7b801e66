#include <cmath>

#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/mxfp4_vnni.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

TEST(Mxfp4, AllCodesAcrossScalesDecodeExactly) {
  // One block per scale: byte j holds code j (low nibble, element 2j) and code 15-j (high, 2j+1).
  std::vector<int> scale_values;
  for (int s = 0x70; s <= 0x8f; ++s) scale_values.push_back(s);
  for (int s : {0, 1, 2, 126, 127, 128, 253, 254}) scale_values.push_back(s);
  const int64_t nb = int64_t(scale_values.size());
  std::vector<uint8_t> blocks(static_cast<size_t>(nb * 16)), scales(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    scales[size_t(b)] = uint8_t(scale_values[size_t(b)]);
    for (int j = 0; j < 16; ++j) blocks[size_t(b * 16 + j)] = uint8_t(j | ((15 - j) << 4));
  }
  // As one row of nb*32 columns and as nb rows of 32 columns.
  for (int64_t rows : {int64_t(1), nb}) {
    const int64_t cols = nb * 32 / rows;
    for (auto fn : {mxfp4_dequantize_ref, mxfp4_dequantize}) {
      Output out(nb * 32);
      fn(blocks.data(), scales.data(), rows, cols, out.data());
      out.expect_written_and_guarded("mxfp4_dequantize");
      for (int64_t b = 0; b < nb; ++b) {
        for (int i = 0; i < 32; ++i) {
          const int code = (i % 2 == 0) ? i / 2 : 15 - i / 2;
          const double want = double(kFp4Values[code]) * std::ldexp(1.0, scale_values[size_t(b)] - 127);
          const float got = out[b * 32 + i];
          // Exact; with scale 2^127, |values| >= 2 overflow f32 to inf (in both).
          ASSERT_EQ(got, float(want)) << "scale " << scale_values[size_t(b)] << " code " << code;
          ASSERT_EQ(std::signbit(got), code >= 8) << "sign of zero, code " << code;
        }
      }
    }
  }
  // Scale 255 is NaN.
  std::vector<uint8_t> nan_scale = {255};
  for (auto fn : {mxfp4_dequantize_ref, mxfp4_dequantize}) {
    Output out(32);
    fn(blocks.data(), nan_scale.data(), 1, 32, out.data());
    for (int i = 0; i < 32; ++i) EXPECT_TRUE(std::isnan(out[i])) << i;
  }
}

TEST(Mxfp4, OddRowCountsAndWideRows) {
  for (int64_t rows : {1, 3, 17}) {
    for (int64_t cols : {32, 96, 2880}) {
      Rng rng(uint32_t(rows * 31 + cols));
      auto blocks = rng.bytes(rows * cols / 2);
      auto scales = rng.bytes(rows * cols / 32, 0x70, 0x8f);
      Output a(rows * cols), b(rows * cols);
      mxfp4_dequantize_ref(blocks.data(), scales.data(), rows, cols, a.data());
      mxfp4_dequantize(blocks.data(), scales.data(), rows, cols, b.data());
      expect_close(b, a, 0.0, "mxfp4_dequantize");
    }
  }
}

TEST(Moe, HandComputedOneExpertBf16) {
  // hidden 2, intermediate 1: gate_up rows {gate, up}, stored input-major w[c * rows + r].
  const uint16_t gu_w[4] = {f32_to_bf16(1), f32_to_bf16(0.5f),   // c = 0: (gate, up)
                            f32_to_bf16(1), f32_to_bf16(0)};     // c = 1
  const uint16_t gu_b[2] = {f32_to_bf16(0.5f), f32_to_bf16(-0.25f)};
  const uint16_t d_w[2] = {f32_to_bf16(2), f32_to_bf16(-1)};  // [cols = 1][rows = 2]
  const uint16_t d_b[2] = {f32_to_bf16(0.5f), f32_to_bf16(0)};
  Bf16Experts gu{gu_w, gu_b, 2, 2, 1}, down{d_w, d_b, 2, 1, 1};
  const int32_t idx[2] = {0, 0};
  const float w[2] = {0.75f, 1.0f};
  // Token 0: x = (1, 2): gate = 3.5, up = 0.25. Token 1: x = (20, 0): gate = 20.5 -> 7, up = 9.75 -> 7.
  const float x[4] = {1, 2, 20, 0};
  const float h0 = 1.25f * 3.5f * sigmoid(1.702f * 3.5f);
  const float h1 = 8.0f * 7.0f * sigmoid(1.702f * 7.0f);
  using Moe = void (*)(const float*, int64_t, int64_t, const int32_t*, const float*, int, const Bf16Experts&,
                      const Bf16Experts&, float, float*);
  const Moe fast = [](const float* x, int64_t n, int64_t h, const int32_t* i, const float* w, int k,
                      const Bf16Experts& g, const Bf16Experts& d, float l, float* o) {
    f32_bf16w_moe(x, n, h, i, w, k, g, d, l, o);
  };
  for (Moe fn : {Moe(f32_bf16w_moe_ref), fast}) {
    Output out(4);
    fn(x, 2, 2, idx, w, 1, gu, down, 7.0f, out.data());
    out.expect_written_and_guarded("moe");
    EXPECT_NEAR(out[0], 0.75f * (2 * h0 + 0.5f), 1e-5);
    EXPECT_NEAR(out[1], 0.75f * (-h0), 1e-5);
    EXPECT_NEAR(out[2], 1.0f * (2 * h1 + 0.5f), 1e-4);
    EXPECT_NEAR(out[3], 1.0f * (-h1), 1e-4);
  }
}

// Fluent tester: random MXFP4 experts (and their exact bf16 twin), random routing.
class MoeTester {
 public:
  MoeTester& tokens(int64_t n) { n_ = n; return *this; }
  MoeTester& hidden(int64_t h) { hidden_ = h; return *this; }
  MoeTester& intermediate(int64_t i) { inter_ = i; return *this; }
  MoeTester& experts(int e) { experts_ = e; return *this; }
  MoeTester& top_k(int k) { k_ = k; return *this; }
  MoeTester& seed(uint32_t s) { seed_ = s; return *this; }
  MoeTester& skew(bool s) { skew_ = s; return *this; }  // route most tokens to expert 0

  void test() {
    SCOPED_TRACE("n=" + std::to_string(n_) + " hidden=" + std::to_string(hidden_) +
                 " inter=" + std::to_string(inter_) + " E=" + std::to_string(experts_) + " k=" + std::to_string(k_));
    Rng rng(seed_);
    const int64_t gu_rows = 2 * inter_;
    auto gu_blocks = rng.bytes(experts_ * gu_rows * hidden_ / 2);
    auto gu_scales = rng.bytes(experts_ * gu_rows * hidden_ / 32, 0x78, 0x7e);
    auto gu_bias = rng.bf16(experts_ * gu_rows, -9, 9);  // wide: the SwiGLU clamps are exercised
    auto d_blocks = rng.bytes(experts_ * hidden_ * inter_ / 2);
    auto d_scales = rng.bytes(experts_ * hidden_ * inter_ / 32, 0x76, 0x7c);
    auto d_bias = rng.bf16(experts_ * hidden_);
    auto x = rng.f32(n_ * hidden_);
    std::vector<int32_t> idx(static_cast<size_t>(n_ * k_));
    std::vector<float> w(static_cast<size_t>(n_ * k_));
    for (int64_t t = 0; t < n_; ++t) {
      // k distinct experts per token.
      std::vector<int> perm(static_cast<size_t>(experts_));
      for (int e = 0; e < experts_; ++e) perm[size_t(e)] = e;
      std::shuffle(perm.begin(), perm.end(), rng.gen());
      if (skew_ && t % 4 != 3) std::swap(perm[0], *std::find(perm.begin(), perm.end(), 0));
      float sum = 0;
      for (int j = 0; j < k_; ++j) {
        idx[size_t(t * k_ + j)] = perm[size_t(j)];
        w[size_t(t * k_ + j)] = rng.f32(1, 0.1f, 1)[0];
        sum += w[size_t(t * k_ + j)];
      }
      for (int j = 0; j < k_; ++j) w[size_t(t * k_ + j)] /= sum;
    }
    Mxfp4Experts gu{gu_blocks.data(), gu_scales.data(), gu_bias.data(), gu_rows, hidden_, experts_};
    Mxfp4Experts down{d_blocks.data(), d_scales.data(), d_bias.data(), hidden_, inter_, experts_};
    Output ref(n_ * hidden_);
    f32_mxfp4w_moe_ref(x.data(), n_, hidden_, idx.data(), w.data(), k_, gu, down, 7.0f, ref.data());
    // Every instruction set this CPU has: the AVX-512 few-token kernel (with and without the VNNI one-token
    // kernel, and with the AMX pass for experts of 4+ tokens) and the AVX2 one.
    const Isa isa = cpu_isa();
    for (Isa run : {Isa::avx2, Isa::avx512, Isa::vnni, Isa::amx}) {
      if (!isa_supported(run)) continue;
      SCOPED_TRACE(isa_name(run));
      set_cpu_isa(run);
      Output got(n_ * hidden_);
      f32_mxfp4w_moe(x.data(), n_, hidden_, idx.data(), w.data(), k_, gu, down, 7.0f, got.data());
      expect_close(got, ref, kTol, "f32_mxfp4w_moe");
    }
    set_cpu_isa(isa);

    if (int64_t(experts_) * hidden_ * inter_ > 5'000'000) return;  // twin too large for a unit test
    // The bf16 twin: dequantized (exact in bf16) and transposed to the hub's input-major layout.
    auto twin = [&](const Mxfp4Experts& m, std::vector<uint16_t>& dst) {
      std::vector<float> rowmajor(static_cast<size_t>(m.rows * m.cols));
      dst.resize(size_t(int64_t(m.experts) * m.rows * m.cols));
      for (int e = 0; e < m.experts; ++e) {
        const int64_t off = int64_t(e) * m.rows * m.cols;
        mxfp4_dequantize_ref(m.blocks + off / 2, m.scales + off / 32, m.rows, m.cols, rowmajor.data());
        for (int64_t r = 0; r < m.rows; ++r)
          for (int64_t c = 0; c < m.cols; ++c)
            dst[size_t(off + c * m.rows + r)] = f32_to_bf16(rowmajor[size_t(r * m.cols + c)]);
      }
    };
    std::vector<uint16_t> gu_w, d_w;
    twin(gu, gu_w);
    twin(down, d_w);
    Bf16Experts bgu{gu_w.data(), gu_bias.data(), gu_rows, hidden_, experts_};
    Bf16Experts bdown{d_w.data(), d_bias.data(), hidden_, inter_, experts_};
    Output bref(n_ * hidden_), bgot(n_ * hidden_);
    f32_bf16w_moe_ref(x.data(), n_, hidden_, idx.data(), w.data(), k_, bgu, bdown, 7.0f, bref.data());
    f32_bf16w_moe(x.data(), n_, hidden_, idx.data(), w.data(), k_, bgu, bdown, 7.0f, bgot.data());
    expect_close(bgot, bref, kTol, "f32_bf16w_moe");
    // Both references compute the same sums in the same order.
    EXPECT_EQ(rel_error(bref.data(), ref.data(), n_ * hidden_), 0.0) << "mxfp4 ref vs bf16 ref";
  }

 private:
  int64_t n_ = 1, hidden_ = 2880, inter_ = 2880;
  int experts_ = 32, k_ = 4;
  uint32_t seed_ = 1;
  bool skew_ = false;
};

TEST(Moe, RealShapeDecode) {
  // Real widths (hidden 2880, intermediate 2880, 32 experts, top-4).
  MoeTester().tokens(1).test();
  MoeTester().tokens(3).seed(2).test();
}

TEST(Moe, Bf16RealShape) {
  // Random bf16 experts at real widths (2 experts keep the test fast), the hub's input-major layout.
  const int64_t hidden = 2880, inter = 2880, n = 3;
  const int E = 2, k = 2;
  Rng rng(21);
  auto gu_w = rng.bf16(E * hidden * 2 * inter, -0.05f, 0.05f);
  auto gu_b = rng.bf16(E * 2 * inter, -9, 9);
  auto d_w = rng.bf16(E * inter * hidden, -0.05f, 0.05f);
  auto d_b = rng.bf16(E * hidden);
  auto x = rng.f32(n * hidden);
  const int32_t idx[n * k] = {0, 1, 1, 0, 1, 0};
  const float w[n * k] = {0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
  Bf16Experts gu{gu_w.data(), gu_b.data(), 2 * inter, hidden, E}, down{d_w.data(), d_b.data(), hidden, inter, E};
  Output ref(n * hidden), got(n * hidden);
  f32_bf16w_moe_ref(x.data(), n, hidden, idx, w, k, gu, down, 7.0f, ref.data());
  f32_bf16w_moe(x.data(), n, hidden, idx, w, k, gu, down, 7.0f, got.data());
  expect_close(got, ref, kTol, "f32_bf16w_moe real shape");
}

TEST(Moe, SmallShapesManyTokens) {
  for (int64_t n : {1, 3, 17, 512})
    MoeTester().tokens(n).hidden(128).intermediate(96).experts(8).top_k(2).seed(uint32_t(n)).test();
  MoeTester().tokens(77).hidden(160).intermediate(224).experts(4).top_k(4).seed(9).test();
  MoeTester().tokens(200).hidden(96).intermediate(32).experts(32).top_k(4).skew(true).seed(10).test();
}

TEST(Moe, EveryTokenCountPerExpert) {
  // skew routes 3 of every 4 tokens to expert 0: with n = 2..10 expert 0 gets 2..8 tokens, which covers
  // every split of a row's tokens into passes of up to 4 (5 = 3 + 2, 7 = 4 + 3), and the GEMM from 8 on.
  for (int64_t n = 2; n <= 10; ++n)
    MoeTester().tokens(n).hidden(256).intermediate(320).experts(4).top_k(2).skew(true).seed(uint32_t(60 + n)).test();
}

}  // namespace
}  // namespace gptoss::cpu

namespace gptoss::cpu {
namespace {

// The VNNI one-token kernel against the double-precision reference at f32's tolerance: x with a wide
// range inside each block (the three int8 limbs must all count: two give ~1e-5), odd block counts (partial
// groups), 16 blocks exactly and 17 (the kernel takes 16 blocks a step, then a group at a time), every e8m0
// scale (0 = 2^-127, 255 = NaN on rows of their own), and rows of one token.
TEST(Mxfp4Vnni, OneTokenRowsMatchTheReference) {
  if (!isa_supported(Isa::vnni)) GTEST_SKIP() << "no AVX-512 VNNI";
  Rng rng(11);
  for (int64_t cols : {32, 96, 160, 512, 544, 2880}) {
    SCOPED_TRACE("cols=" + std::to_string(cols));
    const int64_t rows = 37, nb = cols / 32;
    auto blocks = rng.bytes(rows * cols / 2);
    auto scales = rng.bytes(rows * nb, 0x70, 0x88);
    for (int64_t b = 0; b < nb; ++b) scales[size_t(3 * nb + b)] = 0;  // row 3: the subnormal scale
    auto x = rng.f32(cols);
    for (int64_t c = 0; c < cols; c += 7) x[size_t(c)] *= 3000.0f;  // one large element per 7
    std::vector<avx512::VnniGroup> xl(size_t(avx512::vnni_groups(cols)));
    avx512::pack_vnni(x.data(), cols, false, xl.data());
    std::vector<float> got(static_cast<size_t>(rows));
    avx512::mxfp4_dot_rows_vnni(blocks.data(), scales.data(), nb, 0, rows, xl.data(), got.data());
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double v = double(fp4_to_f32(uint8_t(blocks[size_t(r * cols / 2 + c / 2)] >> (4 * (c % 2))))) *
                         e8m0_to_f32(scales[size_t(r * nb + c / 32)]) * x[size_t(c)];
        ref += v, mag += std::fabs(v);
      }
      EXPECT_LE(std::fabs(got[size_t(r)] - ref), 1e-6 * mag + 1e-30) << "row " << r;
    }
  }
  // A NaN scale gives NaN, as in the f32 kernels.
  std::vector<uint8_t> blk(16, 0x22), sc(1, 255);
  std::vector<float> x(32, 1.0f);
  std::vector<avx512::VnniGroup> xl(1);
  avx512::pack_vnni(x.data(), 32, false, xl.data());
  float out = 0;
  avx512::mxfp4_dot_rows_vnni(blk.data(), sc.data(), 1, 0, 1, xl.data(), &out);
  EXPECT_TRUE(std::isnan(out));
}

}  // namespace
}  // namespace gptoss::cpu
