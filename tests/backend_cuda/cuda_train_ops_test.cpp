// The CUDA backend's TrainOps (the LoRA trainer's backward) against the CPU backend's, op by op, on fresh
// random inputs at real gpt-oss shapes and at the tiny model's. Overwritten outputs are poisoned (NaN);
// accumulated ones start from the same random values on both. Skips without a GPU (CI).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "backend/backend.h"
#include "backend/train_ops.h"
#include "backend_cuda/cuda_ops_fixture.h"

namespace gptoss {
namespace {

class CudaTrainOps : public testing::CudaOps {
 protected:
  static TrainOps& ops(Backend& b) { return *b.train_ops(); }
  // The expert choices of n tokens (k distinct experts each, random weights summing to 1).
  void routing(int64_t n, int experts, int k, std::vector<int32_t>& idx, std::vector<float>& w) {
    idx.clear();
    w.clear();
    std::vector<int32_t> all(size_t(experts), 0);
    std::iota(all.begin(), all.end(), 0);
    for (int64_t t = 0; t < n; ++t) {
      std::shuffle(all.begin(), all.end(), rng_);
      float sum = 0;
      std::vector<float> ws;
      for (int j = 0; j < k; ++j) {
        ws.push_back(std::uniform_real_distribution<float>(0.1f, 1.0f)(rng_));
        sum += ws.back();
      }
      for (int j = 0; j < k; ++j) {
        idx.push_back(all[size_t(j)]);
        w.push_back(ws[size_t(j)] / sum);
      }
    }
  }
};

TEST_F(CudaTrainOps, MatmulBf16BackwardX) {
  struct Shape {
    int64_t n, out, in;
  };
  // Real projections (q, k/v, o), the lm_head's shape at a long contraction (split over K), odd sizes.
  for (auto [n, outd, in] : {Shape{7, 4096, 2880}, Shape{300, 512, 2880}, Shape{70, 2880, 4096}, Shape{64, 32768, 2880},
                             Shape{3, 100, 72}, Shape{1, 201, 2880}}) {
    auto dy = rand_f32(size_t(n * outd)), dx0 = rand_f32(size_t(n * in));
    auto w = rand_bf16(size_t(outd * in), 0.02f);
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      float* dx = put(*b, dx0);
      ops(*b).matmul_bf16_backward_x(put(*b, dy), n, outd, put(*b, w), in, dx);
      res.push_back(get(*b, dx, size_t(n * in)));
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << n << " x " << outd << " x " << in;
  }
}

TEST_F(CudaTrainOps, RmsNormBackwardAndCrossEntropy) {
  const int64_t n = 6, d = 2880, vocab = 201088;
  auto x = rand_f32(size_t(n * d)), dy = rand_f32(size_t(n * d)), dx0 = rand_f32(size_t(n * d));
  auto w = rand_bf16(size_t(d));
  auto logits = rand_f32(size_t(n * vocab), 3.0f);
  const std::vector<int32_t> target = {5, -100, 201087, 0, 77, -100};
  std::vector<std::vector<float>> res;
  std::vector<double> loss;
  for (Backend* b : {cpu_.get(), gpu_.get()}) {
    float* dx = put(*b, dx0);
    ops(*b).rms_norm_backward(put(*b, x), put(*b, w), put(*b, dy), n, d, 1e-5f, dx);
    float* dl = out(*b, size_t(n * vocab));
    loss.push_back(ops(*b).cross_entropy(put(*b, logits), n, vocab, target.data(), 0.25, dl));
    EXPECT_EQ(ops(*b).cross_entropy(put(*b, logits), n, vocab, target.data(), 1.0, nullptr), loss.back());
    auto r = get(*b, dx, size_t(n * d));
    auto g = get(*b, dl, size_t(n * vocab));
    r.insert(r.end(), g.begin(), g.end());
    res.push_back(r);
  }
  EXPECT_LT(rel_err(res[1], res[0]), 1e-5);
  EXPECT_NEAR(loss[1], loss[0], 1e-5 * loss[0]);
  EXPECT_GT(loss[0], 1.0);
}

TEST_F(CudaTrainOps, AttentionAndRopeBackward) {
  struct Shape {
    int64_t T;
    int heads, kv_heads, hd, window;
  };
  // The 20b's heads with full and sliding attention, a sequence longer than a tile, the tiny model's shape
  // (window 8), a single token.
  for (auto [T, heads, kvh, hd, window] : {Shape{150, 64, 8, 64, 0}, Shape{150, 64, 8, 64, 128},
                                           Shape{300, 8, 2, 64, 0}, Shape{37, 4, 2, 64, 8}, Shape{1, 4, 2, 64, 8},
                                           Shape{20, 6, 3, 32, 5}}) {
    auto q = rand_f32(size_t(T * heads * hd)), k = rand_f32(size_t(T * kvh * hd)), v = rand_f32(size_t(T * kvh * hd));
    auto dout = rand_f32(size_t(T * heads * hd)), sinks = rand_f32(size_t(heads));
    std::vector<int32_t> pos(static_cast<size_t>(T));
    for (auto& p : pos) p = std::uniform_int_distribution<int32_t>(0, 100000)(rng_);
    std::vector<float> inv_freq(size_t(hd / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(150000.0f, -2.0f * float(i) / float(hd));
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      float* dq = out(*b, q.size());
      float* dk = out(*b, k.size());
      float* dv = out(*b, v.size());
      ops(*b).attention_backward(put(*b, q), put(*b, k), put(*b, v), T, heads, kvh, hd, put(*b, sinks), window,
                                 1.0f / std::sqrt(float(hd)), put(*b, dout), dq, dk, dv);
      ops(*b).rope_backward(dq, T, heads, hd, pos.data(), put(*b, inv_freq), 1.3f);
      std::vector<float> all;
      for (auto [p, count] : {std::pair{dq, q.size()}, std::pair{dk, k.size()}, std::pair{dv, v.size()}}) {
        auto r = get(*b, p, count);
        all.insert(all.end(), r.begin(), r.end());
      }
      res.push_back(all);
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << "T " << T << " heads " << heads << "/" << kvh << " window " << window;
  }
}

TEST_F(CudaTrainOps, MoeForwardKeepingGateUpAndBackwardMxfp4) {
  struct Shape {
    int64_t n, hidden, inter;
    int experts, k;
  };
  for (auto [n, hidden, inter, experts, k] : {Shape{40, 2880, 2880, 32, 4}, Shape{5, 2880, 2880, 32, 4},
                                              Shape{150, 128, 96, 8, 2}}) {
    const Mxfp4Experts e = rand_mxfp4_experts(hidden, inter, experts, 0.5f);
    std::vector<int32_t> idx;
    std::vector<float> w;
    routing(n, experts, k, idx, w);
    auto h = rand_f32(size_t(n * hidden)), dout = rand_f32(size_t(n * hidden));
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      auto [gu, dn] = e.on(*b);
      const int32_t* didx = put(*b, idx);
      const float* dw = put(*b, w);
      const float* dh_in = put(*b, h);
      float* y = out(*b, size_t(n * hidden));
      float* pre = out(*b, size_t(n * k * 2 * inter));
      b->moe_keep_gate_up(dh_in, n, hidden, didx, dw, k, gu, dn, 7.0f, y, pre);
      std::vector<float> all = get(*b, y, size_t(n * hidden));
      auto p = get(*b, pre, size_t(n * k * 2 * inter));
      all.insert(all.end(), p.begin(), p.end());
      for (const float* given : {static_cast<const float*>(pre), static_cast<const float*>(nullptr)}) {
        float* dh = out(*b, size_t(n * hidden));
        float* dl = out(*b, size_t(n * experts));
        ops(*b).moe_backward(dh_in, n, hidden, didx, dw, k, gu, dn, 7.0f, put(*b, dout), dh, dl, given);
        auto a = get(*b, dh, size_t(n * hidden));
        auto l = get(*b, dl, size_t(n * experts));
        all.insert(all.end(), a.begin(), a.end());
        all.insert(all.end(), l.begin(), l.end());
      }
      res.push_back(all);
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << n << " tokens, " << hidden << "/" << inter << ", " << experts;
  }
}

TEST_F(CudaTrainOps, MoeBackwardBf16ExpertsWithClampedActivations) {
  const int64_t n = 33, hidden = 256, inter = 192;
  const int experts = 8, k = 2;
  auto gu_w = rand_bf16(size_t(experts) * hidden * 2 * inter, 0.2f), gu_b = rand_bf16(size_t(experts) * 2 * inter);
  auto dn_w = rand_bf16(size_t(experts) * inter * hidden, 0.05f), dn_b = rand_bf16(size_t(experts) * hidden);
  std::vector<int32_t> idx;
  std::vector<float> w;
  routing(n, experts, k, idx, w);
  auto h = rand_f32(size_t(n * hidden), 2.0f), dout = rand_f32(size_t(n * hidden));  // some pre-activations pass 7
  std::vector<std::vector<float>> res;
  for (Backend* b : {cpu_.get(), gpu_.get()}) {
    auto prep = [&](const auto& v) { return static_cast<const uint16_t*>(b->prepare_weight(v.data(), v.size() * 2)); };
    ExpertWeights gu{false, nullptr, nullptr, prep(gu_w), prep(gu_b), 2 * inter, hidden, experts};
    ExpertWeights dn{false, nullptr, nullptr, prep(dn_w), prep(dn_b), hidden, inter, experts};
    float* dh = out(*b, size_t(n * hidden));
    float* dl = out(*b, size_t(n * experts));
    ops(*b).moe_backward(put(*b, h), n, hidden, put(*b, idx), put(*b, w), k, gu, dn, 7.0f, put(*b, dout), dh, dl,
                         nullptr);
    auto a = get(*b, dh, size_t(n * hidden));
    auto l = get(*b, dl, size_t(n * experts));
    a.insert(a.end(), l.begin(), l.end());
    res.push_back(a);
  }
  EXPECT_LT(rel_err(res[1], res[0]), 1e-5);
}

TEST_F(CudaTrainOps, LoraBackwardAndBuffers) {
  struct Shape {
    int64_t n, in, out;
    int r;
  };
  for (auto [n, in, outd, r] : {Shape{33, 2880, 4096, 8}, Shape{2100, 2880, 512, 16}, Shape{5, 2880, 32, 2},
                                Shape{1, 128, 64, 1}}) {
    auto x = rand_f32(size_t(n * in)), dy = rand_f32(size_t(n * outd));
    auto a = rand_f32(size_t(r) * in, 0.02f), bw = rand_f32(size_t(outd) * r, 0.02f);
    auto ga0 = rand_f32(size_t(r) * in), gb0 = rand_f32(size_t(outd) * r), dx0 = rand_f32(size_t(n * in));
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      float* ga = put(*b, ga0);
      float* gb = put(*b, gb0);
      float* dx = put(*b, dx0);
      ops(*b).lora_backward(put(*b, x), put(*b, dy), n, in, outd, put(*b, a), put(*b, bw), r, 2.0, 1.0 / 3.0, ga, gb,
                            dx);
      std::vector<float> all = get(*b, ga, ga0.size());
      for (auto [p, count] : {std::pair{gb, gb0.size()}, std::pair{dx, dx0.size()}}) {
        auto v = get(*b, p, count);
        all.insert(all.end(), v.begin(), v.end());
      }
      res.push_back(all);
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << n << " x " << in << " -> " << outd << " rank " << r;
  }
  // scatter_rows, zero, copy.
  const int64_t dim = 2880;
  auto src = rand_f32(size_t(3 * dim)), base = rand_f32(size_t(8 * dim));
  const std::vector<int32_t> rows = {6, 0, 3};
  std::vector<std::vector<float>> res;
  for (Backend* b : {cpu_.get(), gpu_.get()}) {
    float* dst = put(*b, base);
    ops(*b).scatter_rows(put(*b, src), rows.data(), 3, dim, dst);
    ops(*b).zero(dst + 1 * dim, dim);
    float* c = out(*b, size_t(dim));
    ops(*b).copy(c, dst + 6 * dim, size_t(dim) * 4);
    auto r = get(*b, dst, base.size());
    auto cr = get(*b, c, size_t(dim));
    r.insert(r.end(), cr.begin(), cr.end());
    res.push_back(r);
  }
  EXPECT_EQ(res[1], res[0]);
  EXPECT_EQ(std::vector<float>(res[0].begin() + 6 * dim, res[0].begin() + 7 * dim),
            std::vector<float>(src.begin(), src.begin() + dim));
}

}  // namespace
}  // namespace gptoss
