#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

TEST(RouterTopk, TiesGoToLowerIndex) {
  const float logits[2 * 5] = {1, 3, 3, 2, 3, /**/ 0, 0, 0, 0, 0};
  for (auto fn : {router_topk_softmax_ref, router_topk_softmax}) {
    int32_t idx[4];
    float w[4];
    fn(logits, 2, 5, 2, idx, w);
    EXPECT_EQ(idx[0], 1);
    EXPECT_EQ(idx[1], 2);
    EXPECT_EQ(idx[2], 0);
    EXPECT_EQ(idx[3], 1);
    for (float x : w) EXPECT_FLOAT_EQ(x, 0.5f);
  }
}

TEST(RouterTopk, HandComputedSoftmax) {
  const float logits[4] = {0.5f, -1, 2, 1};
  for (auto fn : {router_topk_softmax_ref, router_topk_softmax}) {
    int32_t idx[2];
    float w[2];
    fn(logits, 1, 4, 2, idx, w);
    EXPECT_EQ(idx[0], 2);
    EXPECT_EQ(idx[1], 3);
    EXPECT_NEAR(w[0], 1 / (1 + std::exp(-1.0)), 1e-7);
    EXPECT_NEAR(w[1], 1 / (1 + std::exp(1.0)), 1e-7);
  }
}

TEST(RouterTopk, MatchesReference) {
  for (int E : {32, 128, 8}) {
    for (int k : {4, 1, 2}) {
      for (int64_t n : {1, 3, 17, 512}) {
        Rng rng(uint32_t(E * 100 + k * 10 + n));
        auto logits = rng.f32(n * E, -4, 4);
        // Quantize half the rows so ties are common.
        for (int64_t t = 0; t < n; t += 2)
          for (int e = 0; e < E; ++e) logits[size_t(t * E + e)] = std::round(logits[size_t(t * E + e)]);
        std::vector<int32_t> ia(static_cast<size_t>(n * k)), ib(size_t(n * k), -7);
        Output wa(n * k), wb(n * k);
        router_topk_softmax_ref(logits.data(), n, E, k, ia.data(), wa.data());
        router_topk_softmax(logits.data(), n, E, k, ib.data(), wb.data());
        EXPECT_EQ(ia, ib) << "E=" << E << " k=" << k << " n=" << n;
        expect_close(wb, wa, 1e-6, "router weights");
      }
    }
  }
}

}  // namespace
}  // namespace gptoss::cpu
