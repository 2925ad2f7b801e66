#include <cmath>

#include "backend/cpu/kernels.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

TEST(RopeYarn, HandComputed) {
  // head_dim 4: pairs (x0, x2) and (x1, x3); position 2, inv_freq {0.5, 0.25}, factor 2.
  const float inv_freq[2] = {0.5f, 0.25f};
  const int32_t pos[1] = {2};
  for (auto fn : {rope_yarn_ref, rope_yarn}) {
    float x[4] = {1, 2, 3, 4};
    fn(x, 1, 1, 4, pos, inv_freq, 2.0f);
    const float c0 = 2 * float(std::cos(1.0)), s0 = 2 * float(std::sin(1.0));
    const float c1 = 2 * float(std::cos(0.5)), s1 = 2 * float(std::sin(0.5));
    EXPECT_FLOAT_EQ(x[0], 1 * c0 - 3 * s0);
    EXPECT_FLOAT_EQ(x[2], 3 * c0 + 1 * s0);
    EXPECT_FLOAT_EQ(x[1], 2 * c1 - 4 * s1);
    EXPECT_FLOAT_EQ(x[3], 4 * c1 + 2 * s1);
  }
}

TEST(RopeYarn, MatchesReference) {
  for (int64_t n : {1, 3, 17, 512}) {
    for (int heads : {64, 8, 3}) {
      Rng rng(uint32_t(n * 7 + heads));
      const int head_dim = 64;
      auto x = rng.f32(n * heads * head_dim, -2, 2);
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (auto& p : pos) p = rng.uniform_int(0, 131071);
      std::vector<float> inv_freq(head_dim / 2);
      for (int i = 0; i < head_dim / 2; ++i) inv_freq[size_t(i)] = std::pow(150000.0f, -2.0f * i / head_dim);
      auto a = x, b = x;
      rope_yarn_ref(a.data(), n, heads, head_dim, pos.data(), inv_freq.data(), 1.3465736f);
      rope_yarn(b.data(), n, heads, head_dim, pos.data(), inv_freq.data(), 1.3465736f);
      // Same cos/sin; only FMA contraction may differ.
      EXPECT_LE(rel_error(b.data(), a.data(), int64_t(a.size())), 1e-6) << "n=" << n << " heads=" << heads;
    }
  }
}

}  // namespace
}  // namespace gptoss::cpu
