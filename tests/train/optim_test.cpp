// train/optim.h: AdamW against updates worked out by hand from torch.optim.AdamW's algorithm, every
// learning-rate schedule against transformers' lambdas evaluated by hand (the formulas are written next
// to the numbers), and clip_grad_norm against torch.nn.utils.clip_grad_norm_'s rule.
#include <gtest/gtest.h>

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/optim.h"

namespace gptoss::train {
namespace {

TrainingParams adam_params(double wd) {
  TrainingParams tp;
  tp.adam_beta1 = 0.9;
  tp.adam_beta2 = 0.999;
  tp.adam_epsilon = 1e-8;
  tp.weight_decay = wd;
  return tp;
}

// Three updates at lr 0.1, weight decay 0.01, on two tensors. Worked by hand (t = 1, 2, 3):
//   p *= 1 - 0.1 * 0.01;  m = 0.9 m + 0.1 g;  v = 0.999 v + 0.001 g^2;
//   p -= 0.1 * (m / (1 - 0.9^t)) / (sqrt(v / (1 - 0.999^t)) + 1e-8)
// Tensor 0: p = 1, g = 0.5, -0.25, 1.0
//   t=1: p = 0.999; m = 0.05; v = 0.00025; m^ = 0.5, v^ = 0.25 -> p = 0.999 - 0.1*0.5/(0.5+1e-8) = 0.899000002
//   t=2: p = 0.898101002; m = 0.045 - 0.025 = 0.02; v = 0.00024975 + 0.0000625 = 0.00031225;
//        m^ = 0.02/0.19 = 0.1052632, v^ = 0.00031225/0.001999 = 0.1562031 -> p = 0.8714673
//   t=3: m = 0.018 + 0.1 = 0.118; v = 0.000311938 + 0.001 = 0.001311938; m^ = 0.118/0.271 = 0.4354244,
//        v^ = 0.001311938/0.002997001 = 0.4377502 -> p = 0.8714673*0.999 - 0.1*0.4354244/0.6616269 = 0.8047847
// Tensor 1: p = -2, g = 0, 3, -1 (a zero gradient still decays the weight; m = v = 0 give no Adam step)
//   t=1: p = -1.998
//   t=2: m = 0.3, v = 0.009; m^ = 1.5789474, v^ = 4.5022511 -> p = -1.998*0.999 - 0.1*1.5789474/2.1218509
//        = -2.0704157
//   t=3: m = 0.17, v = 0.009991; m^ = 0.6273063, v^ = 3.3336659 -> p = -2.1027025
TEST(AdamW, MatchesHandComputedUpdatesWithWeightDecay) {
  AdamW opt(adam_params(0.01), {1, 1});
  std::vector<float> p0 = {1.0f}, p1 = {-2.0f};
  const float g0[3] = {0.5f, -0.25f, 1.0f}, g1[3] = {0.0f, 3.0f, -1.0f};
  const double want0[3] = {0.899000002, 0.8714672987058463, 0.804784672376384};
  const double want1[3] = {-1.998, -2.0704156820059967, -2.1027025319502983};
  const double want_m0[3] = {0.05, 0.02, 0.118}, want_v0[3] = {0.00025, 0.00031225, 0.00131193775};
  for (int t = 0; t < 3; ++t) {
    std::vector<float> a = {g0[t]}, b = {g1[t]};
    opt.step({p0, p1}, {std::span<const float>(a), std::span<const float>(b)}, 0.1);
    EXPECT_EQ(opt.t, t + 1);
    EXPECT_NEAR(p0[0], want0[t], 2e-7) << "step " << t + 1;
    EXPECT_NEAR(p1[0], want1[t], 4e-7) << "step " << t + 1;
    EXPECT_NEAR(opt.exp_avg[0][0], want_m0[t], 1e-8);
    EXPECT_NEAR(opt.exp_avg_sq[0][0], want_v0[t], 1e-10);
  }
}

// Without weight decay and with a constant gradient, m^ = g and v^ = g^2 exactly at every step, so each
// update moves p by lr * g / (|g| + eps): lr * sign(g), whatever the betas.
TEST(AdamW, ConstantGradientStepsByLearningRate) {
  TrainingParams tp = adam_params(0.0);
  tp.adam_beta1 = 0.5;
  tp.adam_beta2 = 0.75;
  AdamW opt(tp, {3});
  std::vector<float> p = {0.0f, 1.0f, -1.0f};
  const std::vector<float> g = {2.0f, -4.0f, 0.0f};
  for (int t = 1; t <= 3; ++t) {
    opt.step({p}, {std::span<const float>(g)}, 0.01);
    EXPECT_NEAR(p[0], -0.01 * t, 1e-6);
    EXPECT_NEAR(p[1], 1.0 + 0.01 * t, 1e-6);
    EXPECT_EQ(p[2], -1.0f);  // zero gradient, no decay: untouched
  }
}

TEST(AdamW, RejectsBadHyperparametersAndMismatchedTensors) {
  TrainingParams tp = adam_params(0.0);
  tp.adam_beta1 = 1.0;
  try {
    AdamW opt(tp, {1});
    FAIL() << "beta1 = 1 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("training.adam_beta1"), std::string::npos) << e.what();
  }
  tp = adam_params(-0.1);
  EXPECT_THROW(AdamW(tp, {1}), InputError);
  AdamW opt(adam_params(0.0), {2});
  std::vector<float> p = {1.0f}, g = {1.0f};
  EXPECT_THROW(opt.step({p}, {std::span<const float>(g)}, 0.1), Error);
}

TrainingParams sched(const std::string& name, double lr = 1e-3) {
  TrainingParams tp;
  tp.lr_scheduler_type = name;
  tp.learning_rate = lr;
  return tp;
}

// HF's get_warmup_steps: warmup_steps if > 0, else ceil(total * warmup_ratio) in floating point, so
// 0.07 * 100 = 7.000000000000001 gives 8 (what transformers computes too).
TEST(LrSchedule, WarmupStepsFollowTransformers) {
  TrainingParams tp = sched("linear");
  tp.warmup_ratio = 0.03;
  EXPECT_EQ(warmup_steps(tp, 100), 3);
  EXPECT_EQ(warmup_steps(tp, 1000), 30);
  tp.warmup_ratio = 0.07;
  EXPECT_EQ(warmup_steps(tp, 100), 8);
  tp.warmup_steps = 5;  // wins over the ratio
  EXPECT_EQ(warmup_steps(tp, 100), 5);
  tp.warmup_steps = 0;
  tp.warmup_ratio = 0.0;
  EXPECT_EQ(warmup_steps(tp, 100), 0);
}

// linear, warmup 10 of 100: step < 10: s/10; then (100 - s) / 90, floored at 0.
TEST(LrSchedule, Linear) {
  TrainingParams tp = sched("linear");
  tp.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(lr_at(tp, 0, 100), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(tp, 5, 100), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(tp, 10, 100), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(tp, 55, 100), 1e-3 * 45.0 / 90.0);
  EXPECT_DOUBLE_EQ(lr_at(tp, 99, 100), 1e-3 / 90.0);
  EXPECT_DOUBLE_EQ(lr_at(tp, 100, 100), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(tp, 120, 100), 0.0);
  // No warmup: the first update runs at the full rate.
  EXPECT_DOUBLE_EQ(lr_at(sched("linear"), 0, 100), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(sched("linear"), 50, 100), 5e-4);
}

// cosine, warmup_ratio 0.04 of 100 -> w = 4: progress = (s - 4) / 96, factor 0.5 (1 + cos(pi progress)).
//   s = 28: progress 0.25 -> 0.5 (1 + cos(pi/4)) = 0.8535534;  s = 52: 0.5;  s = 76: 0.1464466;  s = 100: 0
TEST(LrSchedule, Cosine) {
  TrainingParams tp = sched("cosine");
  tp.warmup_ratio = 0.04;
  EXPECT_DOUBLE_EQ(lr_at(tp, 0, 100), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(tp, 2, 100), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(tp, 4, 100), 1e-3);
  EXPECT_NEAR(lr_at(tp, 28, 100), 0.0008535533905932737, 1e-15);
  EXPECT_NEAR(lr_at(tp, 52, 100), 0.0005, 1e-15);
  EXPECT_NEAR(lr_at(tp, 76, 100), 0.00014644660940672628, 1e-15);
  EXPECT_NEAR(lr_at(tp, 100, 100), 0.0, 1e-15);
  // num_cycles = 1: a full period, back up to 0.5 at 3/4 of the way.
  TrainingParams c1 = sched("cosine");
  c1.lr_scheduler_kwargs = {{"num_cycles", 1.0}};
  EXPECT_NEAR(lr_at(c1, 25, 100), 0.0005, 1e-15);
  EXPECT_NEAR(lr_at(c1, 50, 100), 0.0, 1e-15);
  EXPECT_NEAR(lr_at(c1, 75, 100), 0.0005, 1e-15);
}

// cosine_with_min_lr (the SFT recipe's schedule): cosine's factor f, then f (1 - rate) + rate.
//   rate 0.1, w = 4: s = 28: 0.8535534*0.9 + 0.1 = 0.8681981; s = 52: 0.55; s = 76: 0.2318019; s = 100: 0.1
//   min_lr 2e-4 (rate 0.2): s = 52: 0.5*0.8 + 0.2 = 0.6
TEST(LrSchedule, CosineWithMinLr) {
  TrainingParams tp = sched("cosine_with_min_lr");
  tp.warmup_steps = 4;
  tp.lr_scheduler_kwargs = {{"min_lr_rate", 0.1}};
  EXPECT_DOUBLE_EQ(lr_at(tp, 2, 100), 5e-4);
  EXPECT_NEAR(lr_at(tp, 4, 100), 1e-3, 1e-15);
  EXPECT_NEAR(lr_at(tp, 28, 100), 0.0008681980515339464, 1e-15);
  EXPECT_NEAR(lr_at(tp, 52, 100), 0.00055, 1e-15);
  EXPECT_NEAR(lr_at(tp, 76, 100), 0.00023180194846605365, 1e-15);
  EXPECT_NEAR(lr_at(tp, 100, 100), 0.0001, 1e-15);
  tp.lr_scheduler_kwargs = {{"min_lr", 2e-4}};
  EXPECT_NEAR(lr_at(tp, 52, 100), 0.0006, 1e-15);
  // Exactly one of min_lr / min_lr_rate.
  tp.lr_scheduler_kwargs = nlohmann::ordered_json::object();
  EXPECT_THROW(lr_at(tp, 0, 100), InputError);
  tp.lr_scheduler_kwargs = {{"min_lr", 2e-4}, {"min_lr_rate", 0.1}};
  EXPECT_THROW(lr_at(tp, 0, 100), InputError);
}

// constant ignores warmup; constant_with_warmup ramps s / w then stays at the rate.
TEST(LrSchedule, ConstantAndConstantWithWarmup) {
  TrainingParams c = sched("constant");
  c.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(lr_at(c, 0, 100), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(c, 99, 100), 1e-3);
  TrainingParams cw = sched("constant_with_warmup");
  cw.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(lr_at(cw, 0, 100), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(cw, 3, 100), 3e-4);
  EXPECT_DOUBLE_EQ(lr_at(cw, 10, 100), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(cw, 500, 100), 1e-3);
}

// The other transformers schedules:
//   cosine_with_restarts, num_cycles 2: 0.5 (1 + cos(pi ((2 progress) mod 1))): s = 25 -> 0.5, s = 50 -> 1
//     (restart), s = 75 -> 0.5, s = 100 -> 0 (progress >= 1).
//   polynomial, w = 10, power 2, lr_end 1e-5: s = 55 -> (1e-3 - 1e-5) * 0.5^2 + 1e-5 = 2.575e-4; past the
//     end: lr_end.
//   inverse_sqrt, w = 10 (timescale 10): s = 40 -> 1 / sqrt(40 / 10) = 0.5; s = 90 -> 1/3.
//     w = 0 (timescale 10000): s = 30000 -> 1 / sqrt(3) ... at 10000: 1/sqrt(2).
TEST(LrSchedule, RestartsPolynomialInverseSqrt) {
  TrainingParams r = sched("cosine_with_restarts");
  r.lr_scheduler_kwargs = {{"num_cycles", 2}};
  EXPECT_NEAR(lr_at(r, 0, 100), 1e-3, 1e-15);
  EXPECT_NEAR(lr_at(r, 25, 100), 5e-4, 1e-15);
  EXPECT_NEAR(lr_at(r, 50, 100), 1e-3, 1e-15);
  EXPECT_NEAR(lr_at(r, 75, 100), 5e-4, 1e-15);
  EXPECT_EQ(lr_at(r, 100, 100), 0.0);

  TrainingParams p = sched("polynomial");
  p.warmup_steps = 10;
  p.lr_scheduler_kwargs = {{"lr_end", 1e-5}, {"power", 2.0}};
  EXPECT_DOUBLE_EQ(lr_at(p, 5, 100), 5e-4);
  EXPECT_NEAR(lr_at(p, 10, 100), 1e-3, 1e-15);
  EXPECT_NEAR(lr_at(p, 55, 100), 2.575e-4, 1e-15);
  EXPECT_NEAR(lr_at(p, 100, 100), 1e-5, 1e-15);
  EXPECT_NEAR(lr_at(p, 150, 100), 1e-5, 1e-15);

  TrainingParams s = sched("inverse_sqrt");
  s.warmup_steps = 10;
  EXPECT_DOUBLE_EQ(lr_at(s, 5, 100), 5e-4);
  EXPECT_NEAR(lr_at(s, 10, 100), 1e-3, 1e-15);
  EXPECT_NEAR(lr_at(s, 40, 100), 5e-4, 1e-15);
  EXPECT_NEAR(lr_at(s, 90, 100), 1e-3 / 3.0, 1e-15);
  s.warmup_steps = 0;
  EXPECT_NEAR(lr_at(s, 10000, 100), 1e-3 / std::sqrt(2.0), 1e-15);
}

TEST(LrSchedule, UnknownNamesAndKwargsAreInputErrors) {
  try {
    lr_at(sched("cosine_annealing"), 0, 10);
    FAIL() << "unknown scheduler accepted";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("training.lr_scheduler_type"), std::string::npos) << m;
    EXPECT_NE(m.find("cosine_annealing"), std::string::npos) << m;
    EXPECT_NE(m.find("cosine_with_min_lr"), std::string::npos) << m;  // lists the accepted names
  }
  TrainingParams tp = sched("linear");
  tp.lr_scheduler_kwargs = {{"num_cycles", 2}};
  try {
    validate_lr_schedule(tp);
    FAIL() << "kwarg for linear accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("training.lr_scheduler_kwargs.num_cycles"), std::string::npos) << e.what();
  }
  tp = sched("cosine");
  tp.lr_scheduler_kwargs = {{"num_cycles", "half"}};
  EXPECT_THROW(validate_lr_schedule(tp), InputError);
}

// norm = sqrt(3^2 + 4^2 + 12^2) = 13 over two tensors; max_norm 6.5 scales by 6.5 / (13 + 1e-6).
TEST(ClipGradNorm, ScalesByGlobalNormAndReturnsItUnclipped) {
  std::vector<float> a = {3.0f, 4.0f}, b = {12.0f};
  const double n = clip_grad_norm({a, b}, 6.5);
  EXPECT_DOUBLE_EQ(n, 13.0);
  const double c = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(a[0], 3.0 * c, 1e-6);
  EXPECT_NEAR(a[1], 4.0 * c, 1e-6);
  EXPECT_NEAR(b[0], 12.0 * c, 1e-6);
  // Now the norm is 6.5 (to f32 rounding): under max_norm 10, the coefficient clamps to 1, nothing changes.
  const std::vector<float> before = {a[0], a[1], b[0]};
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 6.5, 1e-5);
  EXPECT_EQ(a[0], before[0]);
  EXPECT_EQ(b[0], before[2]);
}

TEST(ClipGradNorm, NonPositiveMaxNormOnlyMeasures) {
  std::vector<float> a = {30.0f, 40.0f};
  EXPECT_DOUBLE_EQ(clip_grad_norm({a}, 0.0), 50.0);
  EXPECT_EQ(a[0], 30.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm({a}, -1.0), 50.0);
  EXPECT_EQ(a[1], 40.0f);
  std::vector<float> none;
  EXPECT_EQ(clip_grad_norm({none}, 1.0), 0.0);
}

TEST(ClipGradNorm, NanNormPoisonsGradientsAsTorchDoes) {
  std::vector<float> a = {1.0f, std::nanf("")};
  EXPECT_TRUE(std::isnan(clip_grad_norm({a}, 1.0)));
  EXPECT_TRUE(std::isnan(a[0]));
}

}  // namespace
}  // namespace gptoss::train
