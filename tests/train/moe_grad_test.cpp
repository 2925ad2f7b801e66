// Tests of cpu::moe_backward against a double-precision reference of the MoE forward written here
// (same math as the backend's `moe` op; checked against the CPU backend's op itself), by central finite
// differences of L = sum dout . out with respect to h and to the selected router logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/kernel_tester.h"
#include "core/dtype.h"
#include "backend/cpu/grad_ops.h"
#include "train/finite_difference.h"

namespace gptoss::train {
namespace {

using cpu::moe_backward;

constexpr double kAlpha = double(1.702f);  // the forward's f32 constant

// Experts of one matrix (gate_up or down) owning their bytes.
struct Experts {
  bool mxfp4 = true;
  int count = 0;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> blocks, scales;
  std::vector<uint16_t> w, bias;

  ExpertWeights view() const {
    ExpertWeights v;
    v.mxfp4 = mxfp4;
    v.blocks = mxfp4 ? blocks.data() : nullptr;
    v.scales = mxfp4 ? scales.data() : nullptr;
    v.w = mxfp4 ? nullptr : w.data();
    v.bias = bias.data();
    v.rows = rows;
    v.cols = cols;
    v.experts = count;
    return v;
  }
};

// MXFP4: every code, scales uniform in [scale_lo, scale_hi] (e8m0 bytes); bf16: uniform in
// +-w_range, stored input-major. Biases uniform in +-bias_range.
Experts random_experts(std::mt19937& rng, bool mxfp4, int count, int64_t rows, int64_t cols, int scale_lo,
                       int scale_hi, float w_range, float bias_range) {
  Experts x;
  x.mxfp4 = mxfp4;
  x.count = count;
  x.rows = rows;
  x.cols = cols;
  if (mxfp4) {
    std::uniform_int_distribution<int> byte(0, 255), scale(scale_lo, scale_hi);
    x.blocks.resize(size_t(count * rows * cols / 2));
    x.scales.resize(size_t(count * rows * cols / 32));
    for (auto& b : x.blocks) b = uint8_t(byte(rng));
    for (auto& s : x.scales) s = uint8_t(scale(rng));
  } else {
    std::uniform_real_distribution<float> d(-w_range, w_range);
    x.w.resize(size_t(count * rows * cols));
    for (auto& v : x.w) v = f32_to_bf16(d(rng));
  }
  std::uniform_real_distribution<float> b(-bias_range, bias_range);
  x.bias.resize(size_t(count * rows));
  for (auto& v : x.bias) v = f32_to_bf16(b(rng));
  return x;
}

// Row r of expert e as doubles (exact), decoded independently of the code under test.
void ref_row(const ExpertWeights& m, int e, int64_t r, std::vector<double>& dst) {
  dst.resize(size_t(m.cols));
  if (m.mxfp4) {
    const int64_t row = int64_t(e) * m.rows + r;
    for (int64_t c = 0; c < m.cols; c += 32) {
      const double scale = std::ldexp(1.0, int(m.scales[row * (m.cols / 32) + c / 32]) - 127);
      for (int64_t i = c; i < c + 32; ++i) {
        const uint8_t byte = m.blocks[row * (m.cols / 2) + i / 2];
        dst[size_t(i)] = double(fp4_to_f32(i % 2 ? byte >> 4 : byte & 0xf)) * scale;
      }
    }
  } else {
    for (int64_t c = 0; c < m.cols; ++c) dst[size_t(c)] = bf16_to_f32(m.w[(int64_t(e) * m.cols + c) * m.rows + r]);
  }
}

// Where the pre-activations fall relative to the clamps, and how close any comes to a kink.
struct ClampStats {
  int64_t gate_over = 0, gate_in = 0, up_over = 0, up_under = 0, up_in = 0;
  double margin = std::numeric_limits<double>::infinity();
};

// out[hidden] = sum_j w_j y_j for one token, all in double.
void ref_token(const ExpertWeights& gu, const ExpertWeights& dn, double limit, const double* x, const int32_t* idx,
               const double* w, int k, std::vector<double>& out, ClampStats* st = nullptr) {
  const int64_t hidden = gu.cols, inter = dn.cols;
  out.assign(size_t(hidden), 0.0);
  std::vector<double> row, s(static_cast<size_t>(inter));
  for (int j = 0; j < k; ++j) {
    const int e = idx[j];
    for (int64_t p = 0; p < inter; ++p) {
      double v[2];
      for (int q = 0; q < 2; ++q) {
        ref_row(gu, e, 2 * p + q, row);
        double a = bf16_to_f32(gu.bias[int64_t(e) * gu.rows + 2 * p + q]);
        for (int64_t c = 0; c < hidden; ++c) a += row[size_t(c)] * x[c];
        v[q] = a;
      }
      const double g = v[0], u = v[1];
      if (st) {
        (g > limit ? st->gate_over : st->gate_in)++;
        (u > limit ? st->up_over : u < -limit ? st->up_under : st->up_in)++;
        st->margin = std::min({st->margin, std::abs(g - limit), std::abs(u - limit), std::abs(u + limit)});
      }
      const double gc = std::min(g, limit), uc = std::clamp(u, -limit, limit);
      s[size_t(p)] = (uc + 1.0) * gc / (1.0 + std::exp(-kAlpha * gc));
    }
    for (int64_t r = 0; r < hidden; ++r) {
      ref_row(dn, e, r, row);
      double y = bf16_to_f32(dn.bias[int64_t(e) * dn.rows + r]);
      for (int64_t c = 0; c < inter; ++c) y += row[size_t(c)] * s[size_t(c)];
      out[size_t(r)] += w[j] * y;
    }
  }
}

std::vector<double> softmax(const std::vector<double>& l) {
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> w(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += (w[i] = std::exp(l[i] - m));
  for (auto& v : w) v /= sum;
  return w;
}

// ||got - want|| / ||want|| (float or double data).
template <typename A, typename B>
double rel_error(const std::vector<A>& got, const std::vector<B>& want) {
  return cpu::testing::rel_error(got.data(), want.data(), int64_t(want.size()));
}

struct Case {
  const char* name;
  bool mxfp4;
  int64_t hidden, inter;
  int experts, k;
  int64_t n;
  float limit;
  int scale_lo, scale_hi;  // MXFP4
  float w_range;           // bf16
  float bias_range;
  uint32_t seed;
};

// One MoE problem: experts, inputs, routing from the CPU backend's router_topk.
struct Problem {
  Case c;
  Experts gu, dn;
  std::vector<float> h, logits, w, dout;
  std::vector<int32_t> idx;

  explicit Problem(const Case& cs) : c(cs) {
    std::mt19937 rng(c.seed);
    gu = random_experts(rng, c.mxfp4, c.experts, 2 * c.inter, c.hidden, c.scale_lo, c.scale_hi, c.w_range,
                        c.bias_range);
    dn = random_experts(rng, c.mxfp4, c.experts, c.hidden, c.inter, c.scale_lo, c.scale_hi, c.w_range, 1.0f);
    std::uniform_real_distribution<float> u(-1, 1), l(-2, 2);
    h.resize(size_t(c.n * c.hidden));
    for (auto& v : h) v = u(rng);
    dout.resize(size_t(c.n * c.hidden));
    for (auto& v : dout) v = u(rng);
    logits.resize(size_t(c.n * c.experts));
    for (auto& v : logits) v = l(rng);
    idx.resize(size_t(c.n * c.k));
    w.resize(size_t(c.n * c.k));
    make_cpu_backend()->router_topk(logits.data(), c.n, c.experts, c.k, idx.data(), w.data());
  }
  std::vector<double> h_row(int64_t t) const {
    return {h.begin() + t * c.hidden, h.begin() + (t + 1) * c.hidden};
  }
  std::vector<double> selected_logits(int64_t t) const {
    std::vector<double> l(size_t(c.k));
    for (int j = 0; j < c.k; ++j) l[size_t(j)] = logits[size_t(t * c.experts + idx[size_t(t * c.k + j)])];
    return l;
  }
  // L_t = dout_t . out_t for token t at input x and selected logits l.
  double token_loss(int64_t t, const std::vector<double>& x, const std::vector<double>& l,
                    ClampStats* st = nullptr) const {
    std::vector<double> out;
    const std::vector<double> wt = softmax(l);
    ref_token(gu.view(), dn.view(), c.limit, x.data(), idx.data() + t * c.k, wt.data(), c.k, out, st);
    double sum = 0;
    for (int64_t r = 0; r < c.hidden; ++r) sum += double(dout[size_t(t * c.hidden + r)]) * out[size_t(r)];
    return sum;
  }
};

// Both clamp branches of both halves are hit (a small limit in some cases makes most values clamp);
// hidden/inter not multiples of 8 (bf16) exercise the kernels' tails; n = 70 over 2 experts puts 70
// tokens on each expert, more than one token chunk.
const Case kCases[] = {
    {"Mxfp4Limit7", true, 64, 32, 4, 2, 5, 7.0f, 0x7e, 0x7f, 0, 9.0f, 11},
    {"Mxfp4Limit05", true, 64, 32, 4, 2, 5, 0.5f, 0x7b, 0x7d, 0, 1.0f, 12},
    {"Mxfp4Top4Of8", true, 32, 64, 8, 4, 6, 7.0f, 0x7e, 0x7f, 0, 9.0f, 13},
    {"Mxfp4ManyTokens", true, 32, 32, 2, 2, 70, 7.0f, 0x7e, 0x7f, 0, 9.0f, 14},
    {"Bf16Limit7", false, 50, 21, 4, 2, 5, 7.0f, 0, 0, 1.0f, 9.0f, 15},
    {"Bf16Limit05", false, 64, 32, 4, 2, 5, 0.5f, 0, 0, 0.3f, 1.0f, 16},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class MoeBackwardCase : public ::testing::TestWithParam<Case> {};

// The double reference used for the finite differences is the backend's forward (so the
// differences are those of the real op, not of a look-alike).
TEST_P(MoeBackwardCase, ReferenceForwardMatchesCpuBackend) {
  const Problem P(GetParam());
  const Case& c = P.c;
  std::vector<float> out(size_t(c.n * c.hidden), NAN);
  make_cpu_backend()->moe(P.h.data(), c.n, c.hidden, P.idx.data(), P.w.data(), c.k, P.gu.view(), P.dn.view(),
                          c.limit, out.data());
  std::vector<double> got(out.begin(), out.end()), want;
  for (int64_t t = 0; t < c.n; ++t) {
    std::vector<double> o;
    std::vector<double> wt(P.w.begin() + t * c.k, P.w.begin() + (t + 1) * c.k);
    const std::vector<double> x = P.h_row(t);
    ref_token(P.gu.view(), P.dn.view(), c.limit, x.data(), P.idx.data() + t * c.k, wt.data(), c.k, o);
    want.insert(want.end(), o.begin(), o.end());
  }
  const double err = rel_error(got, want);
  EXPECT_LE(err, 1e-5);
  std::printf("  [%s] forward: reference vs CPU backend moe, relative error %.2e\n", c.name, err);
}

// Backend::moe_keep_gate_up: the same output as moe, and every token-slot's gate_up values (bias
// added) equal to a double dot of the decoded expert row; the backward taking them equals the backward
// that recomputes them.
TEST_P(MoeBackwardCase, KeptGateUpEqualsReferenceAndServesTheBackward) {
  const Problem P(GetParam());
  const Case& c = P.c;
  auto cpu = make_cpu_backend();
  std::vector<float> out(size_t(c.n * c.hidden), NAN), kept_out(out.size(), NAN);
  std::vector<float> gu(size_t(c.n * c.k * 2 * c.inter), NAN);  // every element must be written
  cpu->moe(P.h.data(), c.n, c.hidden, P.idx.data(), P.w.data(), c.k, P.gu.view(), P.dn.view(), c.limit, out.data());
  cpu->moe_keep_gate_up(P.h.data(), c.n, c.hidden, P.idx.data(), P.w.data(), c.k, P.gu.view(), P.dn.view(), c.limit,
                        kept_out.data(), gu.data());
  EXPECT_EQ(kept_out, out);
  std::vector<double> want, row;
  const ExpertWeights g = P.gu.view();
  for (int64_t a = 0; a < c.n * c.k; ++a)
    for (int64_t r = 0; r < 2 * c.inter; ++r) {
      ref_row(g, P.idx[size_t(a)], r, row);
      double d = bf16_to_f32(g.bias[int64_t(P.idx[size_t(a)]) * g.rows + r]);
      for (int64_t i = 0; i < c.hidden; ++i) d += row[size_t(i)] * P.h[size_t(a / c.k * c.hidden + i)];
      want.push_back(d);
    }
  EXPECT_LE(rel_error(gu, want), 1e-6);
  std::vector<float> dh0(size_t(c.n * c.hidden)), dl0(size_t(c.n * c.experts)), dh1(dh0.size()), dl1(dl0.size());
  moe_backward(P.h.data(), c.n, c.hidden, P.idx.data(), P.w.data(), c.k, P.gu.view(), P.dn.view(), c.limit,
               P.dout.data(), dh0.data(), dl0.data());
  moe_backward(P.h.data(), c.n, c.hidden, P.idx.data(), P.w.data(), c.k, P.gu.view(), P.dn.view(), c.limit,
               P.dout.data(), dh1.data(), dl1.data(), gu.data());
  EXPECT_LE(rel_error(dh1, dh0), 1e-6);
  EXPECT_LE(rel_error(dl1, dl0), 1e-6);
}

// dh (every element) and d_logits (every element: selected ones by differences of the softmax over
// the selected logits, the others exactly 0) against central differences of the double reference.
//
// Tolerance 1e-6 on ||got - fd|| / ||fd||: the differences (step 1e-6, double) are good to ~1e-9
// (truncation ~eps^2 f''' / f', cancellation ~1e-16 |L| / eps), and no step crosses a clamp kink
// (asserted: margin >> 6e-6, the most a step moves a pre-activation). What is left is moe_backward's
// f32 arithmetic: f32 inputs and outputs, pre-activations rounded to f32 as the forward rounds them,
// sums accumulated in double: a few 1e-8 to 1e-7. Any wrong or missing term is O(1).
TEST_P(MoeBackwardCase, GradientsMatchFiniteDifferences) {
  const Problem P(GetParam());
  const Case& c = P.c;
  std::vector<float> dh(size_t(c.n * c.hidden), NAN), dl(size_t(c.n * c.experts), NAN);  // must be overwritten
  moe_backward(P.h.data(), c.n, c.hidden, P.idx.data(), P.w.data(), c.k, P.gu.view(), P.dn.view(), c.limit,
               P.dout.data(), dh.data(), dl.data());

  constexpr double eps = 1e-6;
  ClampStats st;
  std::vector<double> fd_h(dh.size()), fd_l(dl.size(), 0.0);
  for (int64_t t = 0; t < c.n; ++t) {
    std::vector<double> x = P.h_row(t), l = P.selected_logits(t);
    P.token_loss(t, x, l, &st);
    // d token_loss / d v[i] by central differences (v is x or l).
    auto central = [&](std::vector<double>& v, size_t i) {
      return testing::central_difference(v, i, eps, [&] { return P.token_loss(t, x, l); });
    };
    for (int64_t i = 0; i < c.hidden; ++i) fd_h[size_t(t * c.hidden + i)] = central(x, size_t(i));
    for (int j = 0; j < c.k; ++j) fd_l[size_t(t * c.experts + P.idx[size_t(t * c.k + j)])] = central(l, size_t(j));
  }
  // The clamp branches are all covered, and far enough from the kinks for the differences.
  EXPECT_GT(st.gate_over, 0);
  EXPECT_GT(st.gate_in, 0);
  EXPECT_GT(st.up_over, 0);
  EXPECT_GT(st.up_under, 0);
  EXPECT_GT(st.up_in, 0);
  ASSERT_GT(st.margin, 1e-4) << "a pre-activation lies on a clamp kink: pick another seed";

  const double err_h = rel_error(dh, fd_h);
  const double err_l = rel_error(dl, fd_l);
  EXPECT_LE(err_h, 1e-6);
  EXPECT_LE(err_l, 1e-6);
  for (int64_t t = 0; t < c.n; ++t)
    for (int e = 0; e < c.experts; ++e) {
      const int32_t* sel = P.idx.data() + t * c.k;
      if (std::find(sel, sel + c.k, e) == sel + c.k) {
        EXPECT_EQ(dl[size_t(t * c.experts + e)], 0.0f) << "token " << t << ", unselected expert " << e;
      }
    }
  std::printf("  [%s] rel error dh %.2e, d_logits %.2e (gate >L %lld / in %lld; up >L %lld, <-L %lld, in %lld; "
              "kink margin %.1e)\n",
              c.name, err_h, err_l, (long long)st.gate_over, (long long)st.gate_in, (long long)st.up_over,
              (long long)st.up_under, (long long)st.up_in, st.margin);
}

INSTANTIATE_TEST_SUITE_P(Cases, MoeBackwardCase, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// At the clamp bounds themselves the gradient passes (torch.clamp's backward: min <= x <= max), as the
// gpt-oss reference's x.clamp(max=L) / x.clamp(-L, L) would give. Hand-built so that the
// pre-activations are exactly +-L.
TEST(MoeBackward, ClampBoundsPassTheGradientAsTorchClamp) {
  const double L = 7;
  // hidden 2, inter 1, one bf16 expert. gate_up, input-major [c][r]: gate = 2 x0, up = x1.
  const uint16_t gu_w[4] = {f32_to_bf16(2), f32_to_bf16(0), f32_to_bf16(0), f32_to_bf16(1)};
  const uint16_t gu_b[2] = {0, 0};
  // down [c = 0][r]: y = (s, 0.5 s).
  const uint16_t d_w[2] = {f32_to_bf16(1), f32_to_bf16(0.5f)};
  const uint16_t d_b[2] = {f32_to_bf16(0.25f), 0};
  ExpertWeights gu, dn;
  gu.mxfp4 = dn.mxfp4 = false;
  gu.w = gu_w, gu.bias = gu_b, gu.rows = 2, gu.cols = 2, gu.experts = 1;
  dn.w = d_w, dn.bias = d_b, dn.rows = 2, dn.cols = 1, dn.experts = 1;
  // Tokens: (gate, up) = (L, L), (L, -L), (7.2 > L, 0).
  const float h[6] = {3.5f, 7, 3.5f, -7, 3.6f, 0};
  const int32_t idx[3] = {0, 0, 0};
  const float w[3] = {1, 1, 1};
  const float dout[6] = {1, 2, 1, 2, 1, 2};  // dL/ds = 1 + 2 * 0.5 = 2
  float dh[6], dl[3];
  moe_backward(h, 3, 2, idx, w, 1, gu, dn, float(L), dout, dh, dl);

  const double sig = 1 / (1 + std::exp(-kAlpha * L));
  const double glu = L * sig, dglu = sig + kAlpha * L * sig * (1 - sig);
  const double ds = 2;
  const double want[6] = {2 * ds * (L + 1) * dglu, ds * glu,   // both at +L: both pass
                          2 * ds * (1 - L) * dglu, ds * glu,   // up at -L passes
                          0, ds * glu};                        // gate above L: none; up inside
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(dh[i], want[i], 1e-6 * std::abs(want[i]) + 1e-12) << i;
  for (float v : dl) EXPECT_EQ(v, 0.0f);  // k = 1: the weight is 1 whatever the logit
}

// splitmix64: fast deterministic bytes for the large weights.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// gpt-oss-20b's MoE layer shape, MXFP4, 64 tokens: prints the time of one call (and of the forward op
// for scale), and checks token 0 by directional differences of the double reference.
TEST(MoeBackward, Timing20bShape) {
  const int64_t hidden = 2880, inter = 2880, n = 64;
  const int E = 32, k = 4;
  const float limit = 7;
  uint64_t seed = 20;
  auto fill = [&](Experts& x, int64_t rows, int64_t cols) {
    x.mxfp4 = true, x.count = E, x.rows = rows, x.cols = cols;
    x.blocks.resize(size_t(E * rows * cols / 2));
    for (size_t i = 0; i < x.blocks.size(); i += 8) {
      const uint64_t r = splitmix(seed);
      std::memcpy(&x.blocks[i], &r, std::min<size_t>(8, x.blocks.size() - i));
    }
    x.scales.resize(size_t(E * rows * cols / 32));
    for (auto& s : x.scales) s = uint8_t(0x76 + splitmix(seed) % 4);  // 2^-9 .. 2^-6: pre-activations O(1)
    x.bias.resize(size_t(E * rows));
    for (auto& b : x.bias) b = f32_to_bf16(float(int(splitmix(seed) % 2001) - 1000) / 1000.0f);
  };
  Experts gu, dn;
  fill(gu, 2 * inter, hidden);
  fill(dn, hidden, inter);
  auto uniform = [&] { return float(int(splitmix(seed) % 20001) - 10000) / 10000.0f; };
  std::vector<float> h(size_t(n * hidden)), dout(size_t(n * hidden)), logits(size_t(n * E));
  for (auto& v : h) v = uniform();
  for (auto& v : dout) v = uniform();
  for (auto& v : logits) v = 2 * uniform();
  std::vector<int32_t> idx(size_t(n * k));
  std::vector<float> w(size_t(n * k)), out(size_t(n * hidden));
  auto be = make_cpu_backend();
  be->router_topk(logits.data(), n, E, k, idx.data(), w.data());

  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  be->moe(h.data(), n, hidden, idx.data(), w.data(), k, gu.view(), dn.view(), limit, out.data());
  auto t1 = clock::now();
  std::vector<float> dh(size_t(n * hidden), NAN), dl(size_t(n * E), NAN);
  moe_backward(h.data(), n, hidden, idx.data(), w.data(), k, gu.view(), dn.view(), limit, dout.data(), dh.data(),
               dl.data());
  auto t2 = clock::now();
  const double fwd = std::chrono::duration<double>(t1 - t0).count();
  const double bwd = std::chrono::duration<double>(t2 - t1).count();
  std::printf("  moe_backward, 20b shape (hidden %lld, inter %lld, %d experts, top-%d, MXFP4), n = %lld: %.3f s "
              "(forward moe op: %.3f s)\n",
              (long long)hidden, (long long)inter, E, k, (long long)n, bwd, fwd);
  RecordProperty("moe_backward_seconds", std::to_string(bwd));

  // Token 0 along random directions: (L(x + eps v) - L(x - eps v)) / 2 eps = dh_0 . v, and likewise for
  // its selected logits. Tolerance 1e-5: the same error sources as above, with 2880-long sums.
  std::vector<double> x0(h.begin(), h.begin() + hidden), v(static_cast<size_t>(hidden)), l0(static_cast<size_t>(k)),
      vl(static_cast<size_t>(k));
  for (auto& q : v) q = uniform();
  for (int j = 0; j < k; ++j) l0[size_t(j)] = logits[size_t(idx[size_t(j)])], vl[size_t(j)] = uniform();
  auto loss = [&](const std::vector<double>& x, const std::vector<double>& l) {
    std::vector<double> o;
    const std::vector<double> wt = softmax(l);
    ref_token(gu.view(), dn.view(), limit, x.data(), idx.data(), wt.data(), k, o);
    double s = 0;
    for (int64_t r = 0; r < hidden; ++r) s += double(dout[size_t(r)]) * o[size_t(r)];
    return s;
  };
  constexpr double eps = 1e-6;
  auto shifted = [](std::vector<double> a, const std::vector<double>& d, double s) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += s * d[i];
    return a;
  };
  const double fd_h = (loss(shifted(x0, v, eps), l0) - loss(shifted(x0, v, -eps), l0)) / (2 * eps);
  const double fd_l = (loss(x0, shifted(l0, vl, eps)) - loss(x0, shifted(l0, vl, -eps))) / (2 * eps);
  double got_h = 0, got_l = 0, norm_h = 0;
  for (int64_t c = 0; c < hidden; ++c) got_h += double(dh[size_t(c)]) * v[size_t(c)], norm_h += double(dh[size_t(c)]) * dh[size_t(c)];
  for (int j = 0; j < k; ++j) got_l += double(dl[size_t(idx[size_t(j)])]) * vl[size_t(j)];
  EXPECT_GT(norm_h, 0.0);
  EXPECT_NEAR(got_h, fd_h, 1e-5 * std::abs(fd_h));
  EXPECT_NEAR(got_l, fd_l, 1e-5 * std::abs(fd_l));
  for (float q : dh) ASSERT_TRUE(std::isfinite(q));
  for (float q : dl) ASSERT_TRUE(std::isfinite(q));
  std::printf("  token 0 directional: dh.v %.9g vs fd %.9g; dl.v %.9g vs fd %.9g\n", got_h, fd_h, got_l, fd_l);
}

}  // namespace
}  // namespace gptoss::train
