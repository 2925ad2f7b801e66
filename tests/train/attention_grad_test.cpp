// Tests of attention_forward / attention_backward / rope_backward (src/train/attention_grad.cpp):
// the forward against the CPU backend's attention op, the backward against central finite differences
// of a double-precision forward written here, and rope_backward as the transpose of the backend's rope.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/kernel_tester.h"
#include "model/rope.h"
#include "backend/cpu/grad_ops.h"
#include "train/finite_difference.h"

namespace gptoss::train {
namespace {

using cpu::attention_forward;
using cpu::attention_backward;
using cpu::rope_backward;
using cpu::testing::Output;
using cpu::testing::rel_error;
using cpu::testing::Rng;

struct Dims {
  int64_t T;
  int heads, kv_heads, hd, window;
  int64_t q_size() const { return T * heads * hd; }
  int64_t kv_size() const { return T * kv_heads * hd; }
  float scale() const { return 1.0f / std::sqrt(float(hd)); }
};

std::string describe(const Dims& d) {
  return "T=" + std::to_string(d.T) + " heads=" + std::to_string(d.heads) + " kv_heads=" +
         std::to_string(d.kv_heads) + " hd=" + std::to_string(d.hd) + " window=" + std::to_string(d.window);
}

// Random inputs; the sinks are of the scores' size so they take a real share of each softmax.
struct Inputs {
  std::vector<float> q, k, v, sinks, dout;
  Inputs(const Dims& d, uint32_t seed) {
    Rng rng(seed);
    q = rng.f32(d.q_size(), -2, 2);
    k = rng.f32(d.kv_size(), -2, 2);
    v = rng.f32(d.kv_size());
    sinks = rng.f32(d.heads, -1, 2);
    dout = rng.f32(d.q_size());
  }
};

// The backend's attention op on the same inputs: K/V stored into a paged pool (block size 16, second
// layer of a two-layer group, blocks in reverse physical order) and read back by `fn`.
using BackendAttention = decltype(&cpu::attention_sinks_paged);
std::vector<float> backend_attention(const Dims& d, const Inputs& in, BackendAttention fn) {
  const int block = 16, layers = 2, layer = 1;
  const int64_t blocks = (d.T + block - 1) / block;
  std::vector<float> pool(size_t(blocks * layers * 2 * block * d.kv_heads * d.hd), NAN);
  cpu::PagedKv kv{pool.data(), block, layers, d.kv_heads, d.hd};
  std::vector<int32_t> table(static_cast<size_t>(blocks)), pos(static_cast<size_t>(d.T));
  for (int64_t b = 0; b < blocks; ++b) table[size_t(b)] = int32_t(blocks - 1 - b);
  std::iota(pos.begin(), pos.end(), 0);
  cpu::kv_store_ref(kv, layer, in.k.data(), in.v.data(), d.T, pos.data(), table.data());
  const cpu::AttnSeq seq{0, d.T, 0, table.data()};
  std::vector<float> out(size_t(d.q_size()));
  fn(in.q.data(), d.T, d.heads, kv, layer, &seq, 1, in.sinks.data(), d.window, d.scale(), out.data());
  return out;
}

// Plain double-precision forward, written from the definition (grad_ops.h), for the finite differences.
std::vector<double> forward_double(const Dims& d, const std::vector<double>& q, const std::vector<double>& k,
                                   const std::vector<double>& v, const std::vector<float>& sinks) {
  const int G = d.heads / d.kv_heads;
  const double scale = d.scale();
  std::vector<double> out(size_t(d.q_size()), 0.0), s;
  for (int64_t t = 0; t < d.T; ++t) {
    const int64_t lo = d.window > 0 ? std::max<int64_t>(0, t - d.window + 1) : 0;
    for (int h = 0; h < d.heads; ++h) {
      const int kvh = h / G;
      s.assign(size_t(t - lo + 1), 0.0);
      double m = sinks[size_t(h)];
      for (int64_t j = lo; j <= t; ++j) {
        double dot = 0;
        for (int i = 0; i < d.hd; ++i) dot += q[size_t((t * d.heads + h) * d.hd + i)] * k[size_t((j * d.kv_heads + kvh) * d.hd + i)];
        s[size_t(j - lo)] = scale * dot;
        m = std::max(m, scale * dot);
      }
      double denom = std::exp(sinks[size_t(h)] - m);
      for (double& x : s) denom += (x = std::exp(x - m));
      for (int64_t j = lo; j <= t; ++j)
        for (int i = 0; i < d.hd; ++i)
          out[size_t((t * d.heads + h) * d.hd + i)] +=
              s[size_t(j - lo)] / denom * v[size_t((j * d.kv_heads + kvh) * d.hd + i)];
    }
  }
  return out;
}

std::vector<double> to_double(const std::vector<float>& x) { return {x.begin(), x.end()}; }

// L = Σ dout ⊙ forward(q, k, v) in double.
struct Loss {
  const Dims& d;
  const Inputs& in;
  double operator()(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v) const {
    const std::vector<double> out = forward_double(d, q, k, v, in.sinks);
    double l = 0;
    for (size_t i = 0; i < out.size(); ++i) l += double(in.dout[i]) * out[i];
    return l;
  }
};

struct Grads {
  Output dq, dk, dv;
  explicit Grads(const Dims& d) : dq(d.q_size()), dk(d.kv_size()), dv(d.kv_size()) {}
};

Grads run_backward(const Dims& d, const Inputs& in) {
  Grads g(d);
  attention_backward(in.q.data(), in.k.data(), in.v.data(), d.T, d.heads, d.kv_heads, d.hd, in.sinks.data(),
                     d.window, d.scale(), in.dout.data(), g.dq.data(), g.dk.data(), g.dv.data());
  g.dq.expect_written_and_guarded("dq");
  g.dk.expect_written_and_guarded("dk");
  g.dv.expect_written_and_guarded("dv");
  return g;
}

double rel_error_vs(const Output& got, const std::vector<double>& ref) {
  return rel_error(got.data(), ref.data(), int64_t(ref.size()));
}

// ---- forward ------------------------------------------------------------------------------------

TEST(AttentionGrad, ForwardMatchesBackendOp) {
  // Window 0 and a window shorter than T; GQA; head_dim 64 (the model's), 32, and 20 (not a multiple of
  // 8: the padded path); the model's 64/8 heads at T 150 with its window 128. Both sides are f32 results
  // of the same sums (measured ~1.5e-7 vs the double reference op, ~2e-7 vs the optimized one).
  const Dims cases[] = {{70, 8, 2, 64, 0},  {70, 8, 2, 64, 16}, {70, 8, 2, 32, 0},
                        {70, 8, 2, 32, 16}, {41, 6, 3, 20, 9},  {150, 64, 8, 64, 128}};
  uint32_t seed = 10;
  for (const Dims& d : cases) {
    SCOPED_TRACE(describe(d));
    const Inputs in(d, seed++);
    Output out(d.q_size());
    attention_forward(in.q.data(), in.k.data(), in.v.data(), d.T, d.heads, d.kv_heads, d.hd, in.sinks.data(),
                      d.window, d.scale(), out.data());
    out.expect_written_and_guarded("attention_forward");
    const std::vector<float> ref = backend_attention(d, in, cpu::attention_sinks_paged_ref);
    const std::vector<float> opt = backend_attention(d, in, cpu::attention_sinks_paged);
    const double e_ref = rel_error(out.data(), ref.data(), d.q_size());
    const double e_opt = rel_error(out.data(), opt.data(), d.q_size());
    EXPECT_LE(e_ref, 1e-6) << "vs attention_sinks_paged_ref";
    EXPECT_LE(e_opt, 1e-5) << "vs attention_sinks_paged";
    // The double forward of the gradient tests agrees too, so the finite differences test this very function.
    EXPECT_LE(rel_error_vs(out, forward_double(d, to_double(in.q), to_double(in.k), to_double(in.v), in.sinks)), 1e-6);
  }
}

// ---- backward -----------------------------------------------------------------------------------

TEST(AttentionGrad, HandComputedOneTokenWithSink) {
  // T 1, one head, head_dim 1: p = e^s / (e^s + e^sink) with s = scale q k; out = p v.
  // dp = dout v, ds = p (dp - p dp) = p (1 - p) dp (the sink keeps p < 1, so this is not 0),
  // dq = scale ds k, dk = scale ds q, dv = p dout.
  const float q = 0.8f, k = -1.5f, v = 2.0f, sink = 0.3f, dout = 0.7f, scale = 0.5f;
  const double s = double(scale) * q * k, p = std::exp(s) / (std::exp(s) + std::exp(double(sink)));
  const double ds = p * (1 - p) * dout * v;
  float out, dq, dk, dv;
  attention_forward(&q, &k, &v, 1, 1, 1, 1, &sink, 0, scale, &out);
  attention_backward(&q, &k, &v, 1, 1, 1, 1, &sink, 0, scale, &dout, &dq, &dk, &dv);
  EXPECT_NEAR(out, p * v, 1e-7);
  EXPECT_NEAR(dq, scale * ds * k, 1e-7);
  EXPECT_NEAR(dk, scale * ds * q, 1e-7);
  EXPECT_NEAR(dv, p * dout, 1e-7);
  EXPECT_GT(std::abs(dq), 0.05);  // the sink's share makes the one-key gradient real
}

// Central differences of the double loss, one element at a time, for every element of q, k and v.
// Step 1e-5 on inputs of size ~1: truncation ~h²·L'''/6 and rounding ~1e-16·|L|/h are both ~1e-10, far
// below the f32 error of the analytic gradient (~1e-7), so the check measures attention_backward alone.
TEST(AttentionGrad, BackwardMatchesFiniteDifferences) {
  const Dims cases[] = {{7, 4, 2, 8, 0}, {7, 4, 2, 8, 3}, {6, 3, 3, 6, 2}};  // last: G 1, padded head_dim
  uint32_t seed = 30;
  for (const Dims& d : cases) {
    SCOPED_TRACE(describe(d));
    const Inputs in(d, seed++);
    const Grads g = run_backward(d, in);
    std::vector<double> q = to_double(in.q), k = to_double(in.k), v = to_double(in.v);
    const Loss loss{d, in};
    const double h = 1e-5;
    auto fd = [&](std::vector<double>& x) { return testing::central_gradient(x, h, [&] { return loss(q, k, v); }); };
    const double eq = rel_error_vs(g.dq, fd(q)), ek = rel_error_vs(g.dk, fd(k)), ev = rel_error_vs(g.dv, fd(v));
    EXPECT_LE(eq, 1e-6) << "dq";
    EXPECT_LE(ek, 1e-6) << "dk";
    EXPECT_LE(ev, 1e-6) << "dv";
  }
}

// Plain double-precision backward, written from the formulas in the .cpp header; checked against finite
// differences along random directions below, then used element by element at sizes where per-element
// finite differences would be slow.
struct DoubleGrads {
  std::vector<double> dq, dk, dv;
};
DoubleGrads backward_double(const Dims& d, const Inputs& in) {
  const int G = d.heads / d.kv_heads;
  const double scale = d.scale();
  DoubleGrads r{std::vector<double>(size_t(d.q_size())), std::vector<double>(size_t(d.kv_size())),
                std::vector<double>(size_t(d.kv_size()))};
  auto at = [&](const std::vector<float>& x, int64_t t, int nh, int h) { return &x[size_t((t * nh + h) * d.hd)]; };
  std::vector<double> p, dp;
  for (int64_t t = 0; t < d.T; ++t) {
    const int64_t lo = d.window > 0 ? std::max<int64_t>(0, t - d.window + 1) : 0;
    for (int h = 0; h < d.heads; ++h) {
      const int kvh = h / G;
      const float *qh = at(in.q, t, d.heads, h), *doh = at(in.dout, t, d.heads, h);
      p.assign(size_t(t - lo + 1), 0.0);
      dp.assign(p.size(), 0.0);
      double denom = std::exp(double(in.sinks[size_t(h)]));  // small inputs: no max shift needed
      for (int64_t j = lo; j <= t; ++j) {
        double s = 0, pv = 0;
        for (int i = 0; i < d.hd; ++i) {
          s += double(qh[i]) * at(in.k, j, d.kv_heads, kvh)[i];
          pv += double(doh[i]) * at(in.v, j, d.kv_heads, kvh)[i];
        }
        denom += (p[size_t(j - lo)] = std::exp(scale * s));
        dp[size_t(j - lo)] = pv;
      }
      double D = 0;
      for (size_t j = 0; j < p.size(); ++j) D += (p[j] /= denom) * dp[j];
      for (int64_t j = lo; j <= t; ++j) {
        const double pj = p[size_t(j - lo)], ds = pj * (dp[size_t(j - lo)] - D);
        for (int i = 0; i < d.hd; ++i) {
          r.dq[size_t((t * d.heads + h) * d.hd + i)] += scale * ds * at(in.k, j, d.kv_heads, kvh)[i];
          r.dk[size_t((j * d.kv_heads + kvh) * d.hd + i)] += scale * ds * qh[i];
          r.dv[size_t((j * d.kv_heads + kvh) * d.hd + i)] += pj * doh[i];
        }
      }
    }
  }
  return r;
}

// Long enough to cross the implementation's f32 partial-sum boundaries (64 keys, 32 query tokens), with
// and without a window; the model's head_dim and GQA group of 8. The f32 gradient is within a few f32
// ulps of the double one (measured ~3e-7), so a dropped or double-counted partial (O(1e-2)) cannot hide.
TEST(AttentionGrad, BackwardMatchesDoubleReferenceLongSequence) {
  const Dims cases[] = {{200, 16, 2, 64, 0}, {200, 16, 2, 64, 70}, {131, 8, 2, 32, 0}};
  uint32_t seed = 50;
  for (const Dims& d : cases) {
    SCOPED_TRACE(describe(d));
    const Inputs in(d, seed++);
    const Grads g = run_backward(d, in);
    const DoubleGrads r = backward_double(d, in);
    EXPECT_LE(rel_error_vs(g.dq, r.dq), 1e-6) << "dq";
    EXPECT_LE(rel_error_vs(g.dk, r.dk), 1e-6) << "dk";
    EXPECT_LE(rel_error_vs(g.dv, r.dv), 1e-6) << "dv";
    // The reference itself: the directional derivative of the double loss along a random direction
    // u = (uq, uk, uv) equals <grad, u>. Measured to ~1e-12 of Σ|terms|; one wrong element among these
    // ~10^5 would move it by ~1e-5 of that.
    Rng rng(seed + 100);
    const std::vector<double> uq = to_double(rng.f32(d.q_size())), uk = to_double(rng.f32(d.kv_size())),
                              uv = to_double(rng.f32(d.kv_size()));
    const Loss loss{d, in};
    const double h = 1e-5;
    auto shifted = [&](double sign) {
      std::vector<double> q = to_double(in.q), k = to_double(in.k), v = to_double(in.v);
      for (size_t i = 0; i < q.size(); ++i) q[i] += sign * h * uq[i];
      for (size_t i = 0; i < k.size(); ++i) k[i] += sign * h * uk[i], v[i] += sign * h * uv[i];
      return loss(q, k, v);
    };
    const double fd = (shifted(1) - shifted(-1)) / (2 * h);
    double dir = 0, mag = 0;
    for (size_t i = 0; i < uq.size(); ++i) dir += r.dq[i] * uq[i], mag += std::abs(r.dq[i] * uq[i]);
    for (size_t i = 0; i < uk.size(); ++i)
      dir += r.dk[i] * uk[i] + r.dv[i] * uv[i], mag += std::abs(r.dk[i] * uk[i]) + std::abs(r.dv[i] * uv[i]);
    EXPECT_LE(std::abs(fd - dir), 1e-9 * mag) << "directional derivative " << fd << " vs " << dir;
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------

struct RopeCase {
  static constexpr int kHeads = 4, kHd = 64;
  int64_t n = 97;
  RopeTable table = compute_yarn(YarnParams{});  // gpt-oss: theta 150000, YaRN factor 32 (attn factor ~1.35)
  std::vector<int32_t> pos;
  explicit RopeCase(Rng& rng) : pos(size_t(n)) {
    for (auto& p : pos) p = rng.uniform_int(0, 5000);
    pos[0] = 0;
    pos[1] = 5000;
  }
  int64_t size() const { return n * kHeads * kHd; }
};

double dot_double(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

TEST(RopeBackward, AdjointOfBackendRope) {
  Rng rng(70);
  const RopeCase c(rng);
  ASSERT_NEAR(c.table.attention_factor, 1.3466, 1e-3);
  const std::vector<float> x = rng.f32(c.size()), dy = rng.f32(c.size());
  std::vector<float> dx = dy;
  rope_backward(dx.data(), c.n, c.kHeads, c.kHd, c.pos.data(), c.table.inv_freq.data(), c.table.attention_factor);
  const double rhs = dot_double(x, dx);
  for (auto fn : {cpu::rope_yarn, cpu::rope_yarn_ref}) {
    std::vector<float> y = x;
    fn(y.data(), c.n, c.kHeads, c.kHd, c.pos.data(), c.table.inv_freq.data(), c.table.attention_factor);
    const double lhs = dot_double(y, dy);
    // Each term carries f32 rounding of at most ~1.2e-7 of its size, with random signs, so over these
    // 25k terms the error is ~1e-7 * Σ|terms| / sqrt(25k) (measured 1e-10); a wrong angle or sign is O(1).
    double mag = 0;
    for (size_t i = 0; i < y.size(); ++i) mag += std::abs(double(y[i]) * dy[i]);
    EXPECT_LE(std::abs(lhs - rhs), 1e-6 * std::abs(lhs)) << "<rope(x), dy> " << lhs << " vs <x, rope^T(dy)> " << rhs;
    EXPECT_LE(std::abs(lhs - rhs), 1e-8 * mag);
  }
}

TEST(RopeBackward, EqualsRopeAtNegatedPositions) {
  // a·R(θ)ᵀ = a·R(-θ), and the forward forms -θ's f32 angle, cos and sin exactly (negation is exact), so
  // the transpose is the backend rope at -pos up to FMA contraction.
  Rng rng(71);
  const RopeCase c(rng);
  std::vector<int32_t> neg(c.pos.size());
  for (size_t i = 0; i < neg.size(); ++i) neg[i] = -c.pos[i];
  const std::vector<float> dy = rng.f32(c.size(), -3, 3);
  std::vector<float> got = dy, want = dy;
  rope_backward(got.data(), c.n, c.kHeads, c.kHd, c.pos.data(), c.table.inv_freq.data(), c.table.attention_factor);
  cpu::rope_yarn_ref(want.data(), c.n, c.kHeads, c.kHd, neg.data(), c.table.inv_freq.data(),
                     c.table.attention_factor);
  EXPECT_LE(rel_error(got.data(), want.data(), c.size()), 1e-7);
}

TEST(RopeBackward, HandComputed) {
  // head_dim 4: pairs (d0, d2) and (d1, d3); position 2, inv_freq {0.5, 0.25}, factor 2.
  const float inv_freq[2] = {0.5f, 0.25f};
  const int32_t pos[1] = {2};
  float d[4] = {1, 2, 3, 4};
  rope_backward(d, 1, 1, 4, pos, inv_freq, 2.0f);
  const double c0 = 2 * std::cos(1.0), s0 = 2 * std::sin(1.0), c1 = 2 * std::cos(0.5), s1 = 2 * std::sin(0.5);
  EXPECT_NEAR(d[0], 1 * c0 + 3 * s0, 1e-6);
  EXPECT_NEAR(d[2], 3 * c0 - 1 * s0, 1e-6);
  EXPECT_NEAR(d[1], 2 * c1 + 4 * s1, 1e-6);
  EXPECT_NEAR(d[3], 4 * c1 - 2 * s1, 1e-6);
}

}  // namespace
}  // namespace gptoss::train
