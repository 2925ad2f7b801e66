// The dense backward ops (backend/cpu/grad_ops.h) against double-precision references: the bf16 linear's
// input gradient (register tiles, token tails, column tails, accumulation into dx), RMSNorm's gradient
// and the cross-entropy against central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "backend/kernel_tester.h"
#include "backend/cpu/grad_ops.h"
#include "train/finite_difference.h"

namespace gptoss::train {
namespace {

using cpu::matmul_bf16_backward_x;
using cpu::rms_norm_backward;
using cpu::cross_entropy;

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  return cpu::testing::Rng(seed).normal(int64_t(n), scale);
}

std::vector<uint16_t> bf16_of(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = f32_to_bf16(v[i]);
  return b;
}

double rel(const std::vector<double>& want, const std::vector<float>& got) {
  return cpu::testing::rel_error(got.data(), want.data(), int64_t(want.size()));
}

TEST(DenseGrad, LinearInputGradientAccumulatesDyTimesW) {
  struct Shape {
    int64_t n, out, in;
  };
  // Token tails (1..13 over tiles of 6), column tails (40 = 2 tiles + 8, 7 < one tile), row blocks (130, 300).
  for (Shape s : {Shape{1, 67, 40}, Shape{5, 130, 16}, Shape{13, 300, 2880}, Shape{7, 65, 7}, Shape{6, 1, 64}}) {
    const auto dy = randn(size_t(s.n * s.out), 1), x0 = randn(size_t(s.n * s.in), 2);
    const auto w = bf16_of(randn(size_t(s.out * s.in), 3, 0.05f));
    std::vector<float> dx = x0;
    matmul_bf16_backward_x(dy.data(), s.n, s.out, w.data(), s.in, dx.data());
    std::vector<double> want(size_t(s.n * s.in));
    for (int64_t t = 0; t < s.n; ++t)
      for (int64_t i = 0; i < s.in; ++i) {
        double a = x0[size_t(t * s.in + i)];
        for (int64_t o = 0; o < s.out; ++o) a += double(dy[size_t(t * s.out + o)]) * bf16_to_f32(w[size_t(o * s.in + i)]);
        want[size_t(t * s.in + i)] = a;
      }
    EXPECT_LT(rel(want, dx), 1e-6) << s.n << " x " << s.out << " x " << s.in;
  }
}

TEST(DenseGrad, RmsNormGradientMatchesFiniteDifferences) {
  const int64_t n = 3, d = 37;
  const float eps = 1e-5f;
  const auto x = randn(size_t(n * d), 4), dy = randn(size_t(n * d), 5);
  const auto w = bf16_of(randn(size_t(d), 6));
  auto loss = [&](const std::vector<double>& xv) {  // sum dy * rms_norm(x), in double
    double l = 0;
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += xv[size_t(t * d + i)] * xv[size_t(t * d + i)];
      const double r = 1.0 / std::sqrt(ss / double(d) + eps);
      for (int64_t i = 0; i < d; ++i) l += dy[size_t(t * d + i)] * xv[size_t(t * d + i)] * r * bf16_to_f32(w[size_t(i)]);
    }
    return l;
  };
  std::vector<double> xd(x.begin(), x.end());
  const std::vector<double> want = testing::central_gradient(xd, 1e-6, [&] { return loss(xd); });
  std::vector<float> dx(x.size(), 0.0f);
  rms_norm_backward(x.data(), w.data(), dy.data(), n, d, eps, dx.data());
  EXPECT_LT(rel(want, dx), 1e-6);
}

TEST(DenseGrad, CrossEntropyIsTheMeanOverLabelledRowsWithItsGradient) {
  const int64_t n = 4, vocab = 50;
  const auto z = randn(size_t(n * vocab), 7, 3.0f);
  const std::vector<int32_t> target = {3, -100, 49, 0};
  std::vector<float> g(size_t(n * vocab), 7.0f);  // poisoned: every element must be written
  const double loss = cross_entropy(z.data(), n, vocab, target.data(), g.data());
  auto ce = [&](const std::vector<double>& zv) {
    double l = 0;
    int c = 0;
    for (int64_t t = 0; t < n; ++t) {
      if (target[size_t(t)] < 0) continue;
      double mx = -1e300, s = 0;
      for (int64_t v = 0; v < vocab; ++v) mx = std::max(mx, zv[size_t(t * vocab + v)]);
      for (int64_t v = 0; v < vocab; ++v) s += std::exp(zv[size_t(t * vocab + v)] - mx);
      l += mx + std::log(s) - zv[size_t(t * vocab + target[size_t(t)])];
      ++c;
    }
    return l / c;
  };
  std::vector<double> zd(z.begin(), z.end());
  EXPECT_NEAR(loss, ce(zd), 1e-9 * ce(zd));
  const std::vector<double> want = testing::central_gradient(zd, 1e-6, [&] { return ce(zd); });
  EXPECT_LT(rel(want, g), 1e-6);
  for (int64_t v = 0; v < vocab; ++v) EXPECT_EQ(g[size_t(vocab + v)], 0.0f);  // the ignored row
  std::vector<int32_t> none(size_t(n), -100);
  EXPECT_EQ(cross_entropy(z.data(), n, vocab, none.data(), g.data()), 0.0);
}

}  // namespace
}  // namespace gptoss::train
