#include <cmath>

#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

// Fluent tester: shapes, random inputs from a seed, optimized vs reference.
class MatmulTester {
 public:
  MatmulTester& tokens(int64_t n) { n_ = n; return *this; }
  MatmulTester& in(int64_t v) { in_ = v; return *this; }
  MatmulTester& out(int64_t v) { out_ = v; return *this; }
  MatmulTester& bias(bool b) { bias_ = b; return *this; }
  MatmulTester& seed(uint32_t s) { seed_ = s; return *this; }
  void test() const {
    SCOPED_TRACE(testing_name());
    Rng rng(seed_);
    auto x = rng.f32(n_ * in_);
    auto w = rng.bf16(out_ * in_);
    auto b = rng.bf16(out_);
    Output ref(n_ * out_), got(n_ * out_);
    bf16w_matmul_ref(x.data(), n_, in_, w.data(), bias_ ? b.data() : nullptr, ref.data(), out_);
    bf16w_matmul(x.data(), n_, in_, w.data(), bias_ ? b.data() : nullptr, got.data(), out_);
    expect_close(got, ref, kTol, "bf16w_matmul");
  }

 private:
  std::string testing_name() const {
    return "n=" + std::to_string(n_) + " in=" + std::to_string(in_) + " out=" + std::to_string(out_) +
           (bias_ ? " bias" : "");
  }
  int64_t n_ = 1, in_ = 2880, out_ = 64;
  bool bias_ = true;
  uint32_t seed_ = 1;
};

TEST(Bf16wMatmul, HandComputed) {
  const float x[2] = {1, 2};
  const uint16_t w[6] = {f32_to_bf16(1),   f32_to_bf16(0), f32_to_bf16(0.5f),
                         f32_to_bf16(-1), f32_to_bf16(2), f32_to_bf16(2)};
  const uint16_t b[3] = {f32_to_bf16(1), f32_to_bf16(0), f32_to_bf16(-1)};
  for (auto fn : {bf16w_matmul_ref, bf16w_matmul}) {
    Output y(3);
    fn(x, 1, 2, w, b, y.data(), 3);
    y.expect_written_and_guarded("hand");
    EXPECT_EQ(y[0], 2.0f);
    EXPECT_EQ(y[1], -1.5f);
    EXPECT_EQ(y[2], 5.0f);
  }
}

TEST(Bf16wMatmul, AttentionProjections) {
  MatmulTester().tokens(1).in(2880).out(4096 + 2 * 512).test();   // qkv
  MatmulTester().tokens(3).in(4096).out(2880).test();             // o_proj
  MatmulTester().tokens(17).in(2880).out(512).test();
  MatmulTester().tokens(512).in(2880).out(40).seed(3).test();
}

TEST(Bf16wMatmul, RouterAndUnembeddingSlices) {
  MatmulTester().tokens(1).in(2880).out(32).test();               // router
  MatmulTester().tokens(17).in(2880).out(32).test();
  MatmulTester().tokens(1).in(2880).out(20011).bias(false).test();  // lm_head slice, odd rows
  MatmulTester().tokens(5).in(2880).out(1003).bias(false).test();
}

TEST(Bf16wMatmul, EveryDecodeTileTokenCount) {
  // With the AVX2 kernels, n = 1..79 take the dot-product tiles (groups of up to 4 tokens, each group size
  // its own row blocking; row blocks of 24 with tails of every size), 80 the packed GEMM.
  const Isa before = cpu_isa();
  set_cpu_isa(Isa::avx2);
  for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 32, 33, 79, 80})
    for (int64_t out : {37, 24 + 23})
      MatmulTester().tokens(n).in(2880).out(out).seed(uint32_t(40 + n + out)).test();
  set_cpu_isa(before);
}

// Decode batches of 2..64 tokens take the AVX-512 tiles where the CPU has them (bf16_avx512.h), and with
// AMX whole 32-row blocks on the tiles (bf16_amx.h): every instruction set this CPU has, blocks of 1..6
// rows, token groups of 1..4, K tails and a batch past the limit.
TEST(Bf16wMatmul, DecodeBatchesUnderEveryIsa) {
  const Isa before = cpu_isa();
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::amx}) {
    if (!isa_supported(isa)) continue;
    set_cpu_isa(isa);
    for (int64_t n : {2, 3, 4, 5, 8, 13, 16, 32, 33, 64, 65})
      for (int64_t out : {1, 5, 6, 7, 50})
        for (int64_t in : {96, 2880 + 7})
          MatmulTester().tokens(n).in(in).out(out).bias(out % 2 == 1).seed(uint32_t(n * 7 + out + in)).test();
  }
  set_cpu_isa(before);
}

// The AMX path's own edges: 32-row blocks and the rest (out % 32) by the other paths, token blocks of 16
// with padding, passes of 64 tokens (prefill), K tails, the real widths, and activations whose three bf16 terms matter (tiny, huge, mixed
// magnitudes) against the f32 reference at the f32 tolerance.
TEST(Bf16wMatmul, AmxDecodeBatches) {
  if (!isa_supported(Isa::amx)) GTEST_SKIP() << "this CPU has no AMX-BF16 (or the OS does not grant the tiles)";
  const Isa before = cpu_isa();
  set_cpu_isa(Isa::amx);
  for (int64_t n : {2, 15, 16, 17, 31, 48, 64})
    for (int64_t out : {32, 33, 64, 95, 160})
      for (int64_t in : {32, 64 + 5, 2880})
        MatmulTester().tokens(n).in(in).out(out).bias(out % 2 == 1).seed(uint32_t(n * 131 + out * 7 + in)).test();
  for (int64_t n : {65, 130, 512})  // prefill: 64 tokens a pass, the row rest by the GEMM
    MatmulTester().tokens(n).in(2880 + 7).out(70).bias(true).seed(uint32_t(n)).test();
  MatmulTester().tokens(16).in(4096).out(2880).test();     // o_proj
  MatmulTester().tokens(7).in(2880).out(4096 + 1024).test();  // qkv
  // x = 1 + 2^-9 + 2^-18 (exactly three bf16 terms: dropping the last errs by 2^-18 = 3.8e-6), times a
  // scale per token; positive weights, so no cancellation hides an error.
  Rng rng(7);
  const int64_t n = 5, in = 256, out = 64;
  std::vector<float> x(size_t(n * in));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < in; ++k)
      x[size_t(t * in + k)] = (1.0f + 0x1p-9f + 0x1p-18f) * (t == 0 ? 0x1p-100f : t == 1 ? 0x1p100f : float(k % 3 + 1));
  auto w = rng.bf16(out * in, 0.5f, 1.0f);
  Output ref(n * out), got(n * out);
  bf16w_matmul_ref(x.data(), n, in, w.data(), nullptr, ref.data(), out);
  bf16w_matmul(x.data(), n, in, w.data(), nullptr, got.data(), out);
  got.expect_written_and_guarded("amx bf16w_matmul");
  for (int64_t t = 0; t < n; ++t) {
    SCOPED_TRACE("token " + std::to_string(t));
    double e = 0, r = 0;
    for (int64_t o = 0; o < out; ++o) {
      e += std::fabs(double(got[t * out + o]) - ref[t * out + o]);
      r += std::fabs(double(ref[t * out + o]));
    }
    EXPECT_LE(e / r, 1e-6);
  }
  set_cpu_isa(before);
}

TEST(Bf16wMatmul, OddSizes) {
  for (int64_t n : {1, 3, 17, 512})
    for (int64_t in : {1, 7, 37, 128})
      for (int64_t out : {1, 5, 13, 67})
        MatmulTester().tokens(n).in(in).out(out).bias(out % 2 == 1).seed(uint32_t(n + in + out)).test();
}

}  // namespace
}  // namespace gptoss::cpu
