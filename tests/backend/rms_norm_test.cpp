#include <cmath>

#include "backend/cpu/kernels.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

TEST(RmsNorm, HandComputed) {
  const float x[4] = {1, 2, 3, 4};
  const uint16_t w[4] = {f32_to_bf16(1), f32_to_bf16(1), f32_to_bf16(2), f32_to_bf16(0.5f)};
  const float r = 1.0f / std::sqrt(7.5f);  // mean(x^2) = 30 / 4
  const float want[4] = {r, 2 * r, 6 * r, 2 * r};
  for (auto fn : {rms_norm_ref, rms_norm}) {
    Output y(4);
    fn(x, w, y.data(), 1, 4, 0.0f);
    y.expect_written_and_guarded("rms_norm");
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], want[i], 1e-6f) << i;
  }
}

TEST(RmsNorm, MatchesReference) {
  for (int64_t d : {2880, 37, 8}) {
    for (int64_t n : {1, 3, 17, 512}) {
      Rng rng(uint32_t(d * 1000 + n));
      auto x = rng.f32(n * d, -3, 3);
      auto w = rng.bf16(d, 0.5f, 1.5f);
      Output ref(n * d), got(n * d);
      rms_norm_ref(x.data(), w.data(), ref.data(), n, d, 1e-5f);
      rms_norm(x.data(), w.data(), got.data(), n, d, 1e-5f);
      expect_close(got, ref, kTol, "rms_norm");
      // In place gives the same result.
      auto xi = x;
      rms_norm(xi.data(), w.data(), xi.data(), n, d, 1e-5f);
      EXPECT_LE(rel_error(xi.data(), ref.data(), n * d), kTol) << "in place d=" << d << " n=" << n;
    }
  }
}

}  // namespace
}  // namespace gptoss::cpu
