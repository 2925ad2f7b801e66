#include "train/optim.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/ranges.h>

#include "core/error.h"

namespace gptoss::train {
namespace {

// Python's float % 1.0 for the restarts schedule (the result takes the divisor's sign, so it is in [0, 1)).
double py_mod1(double x) { return x - std::floor(x); }

// The keys each schedule takes from lr_scheduler_kwargs (transformers passes them to the schedule's
// function, which rejects any other with a TypeError).
const std::vector<std::string>& scheduler_kwargs(const std::string& name) {
  static const std::vector<std::string> none, cosine = {"num_cycles"},
                                              cosine_min = {"num_cycles", "min_lr", "min_lr_rate"},
                                              polynomial = {"lr_end", "power"}, inv_sqrt = {"timescale"};
  if (name == "cosine" || name == "cosine_with_restarts") return cosine;
  if (name == "cosine_with_min_lr") return cosine_min;
  if (name == "polynomial") return polynomial;
  if (name == "inverse_sqrt") return inv_sqrt;
  return none;
}

// A numeric lr_scheduler_kwargs value (or fallback when absent or null).
double kwarg(const TrainingParams& tp, const char* key, double fallback) {
  const auto& kw = tp.lr_scheduler_kwargs;
  if (!kw.is_object() || !kw.contains(key) || kw[key].is_null()) return fallback;
  if (!kw[key].is_number())
    fail_input("training.lr_scheduler_kwargs.{} is {}; expected a number", key, kw[key].dump());
  return kw[key].get<double>();
}

bool has_kwarg(const TrainingParams& tp, const char* key) {
  const auto& kw = tp.lr_scheduler_kwargs;
  return kw.is_object() && kw.contains(key) && !kw[key].is_null();
}

// cosine_with_min_lr's floor as a fraction of learning_rate (transformers: exactly one of min_lr and
// min_lr_rate must be given).
double min_lr_rate(const TrainingParams& tp) {
  const bool rate = has_kwarg(tp, "min_lr_rate"), abs = has_kwarg(tp, "min_lr");
  if (rate && abs)
    fail_input("training.lr_scheduler_kwargs sets both min_lr and min_lr_rate; cosine_with_min_lr takes one of "
               "them (min_lr_rate: a fraction of learning_rate, e.g. 0.1)");
  if (!rate && !abs)
    fail_input("training.lr_scheduler_type is 'cosine_with_min_lr' but training.lr_scheduler_kwargs has neither "
               "min_lr_rate nor min_lr; add one, e.g. lr_scheduler_kwargs: {{min_lr_rate: 0.1}}");
  if (rate) return kwarg(tp, "min_lr_rate", 0.0);
  if (tp.learning_rate == 0.0)
    fail_input("training.lr_scheduler_kwargs.min_lr is set but training.learning_rate is 0; min_lr is relative "
               "to it (use min_lr_rate, or a non-zero learning_rate)");
  return kwarg(tp, "min_lr", 0.0) / tp.learning_rate;
}

void check_range(double v, double lo, double hi, bool hi_open, const char* key) {
  if (!(v >= lo && (hi_open ? v < hi : v <= hi)))
    fail_input("training.{} is {}; expected a value in [{}, {}{}", key, v, lo, hi, hi_open ? ")" : "]");
}

}  // namespace

AdamW::AdamW(const TrainingParams& tp, const std::vector<size_t>& sizes)
    : beta1(tp.adam_beta1), beta2(tp.adam_beta2), eps(tp.adam_epsilon), weight_decay(tp.weight_decay) {
  // torch.optim.AdamW's own checks (its ValueErrors), so a bad config fails before the first forward.
  check_range(beta1, 0.0, 1.0, true, "adam_beta1");
  check_range(beta2, 0.0, 1.0, true, "adam_beta2");
  if (!(eps >= 0.0)) fail_input("training.adam_epsilon is {}; expected a value >= 0 (e.g. 1e-8)", eps);
  if (!(weight_decay >= 0.0))
    fail_input("training.weight_decay is {}; expected a value >= 0 (0 disables it)", weight_decay);
  exp_avg.reserve(sizes.size());
  exp_avg_sq.reserve(sizes.size());
  for (size_t n : sizes) {
    exp_avg.emplace_back(n, 0.0f);
    exp_avg_sq.emplace_back(n, 0.0f);
  }
}

void AdamW::step(const std::vector<std::span<float>>& params, const std::vector<std::span<const float>>& grads,
                 double lr) {
  GPTOSS_CHECK(params.size() == exp_avg.size() && grads.size() == exp_avg.size(),
               "AdamW::step got {} parameters and {} gradients for an optimizer of {} tensors", params.size(),
               grads.size(), exp_avg.size());
  ++t;
  // Scalars as torch computes them in Python (double), then used as f32 by the tensor ops.
  const float decay = float(1.0 - lr * weight_decay);
  const float w1 = float(1.0 - beta1);  // lerp weight
  const float b2 = float(beta2), w2 = float(1.0 - beta2);
  const double bias_correction1 = 1.0 - std::pow(beta1, double(t));
  const double bias_correction2 = 1.0 - std::pow(beta2, double(t));
  const float step_size = float(lr / bias_correction1);
  const float bc2_sqrt = float(std::sqrt(bias_correction2));
  const float e = float(eps);
  for (size_t i = 0; i < params.size(); ++i) {
    float* p = params[i].data();
    const float* g = grads[i].data();
    float* m = exp_avg[i].data();
    float* v = exp_avg_sq[i].data();
    const size_t n = exp_avg[i].size();
    GPTOSS_CHECK(params[i].size() == n && grads[i].size() == n,
                 "AdamW::step: tensor {} has {} parameters and {} gradients; the optimizer was built for {}", i,
                 params[i].size(), grads[i].size(), n);
    for (size_t j = 0; j < n; ++j) {
      if (weight_decay != 0.0) p[j] *= decay;
      // torch.lerp's formula for weight < 0.5 (the usual beta1 > 0.5): self + weight * (end - self).
      m[j] = w1 < 0.5f ? m[j] + w1 * (g[j] - m[j]) : g[j] - (g[j] - m[j]) * (1.0f - w1);
      v[j] = v[j] * b2 + w2 * g[j] * g[j];  // addcmul_: self + value * t1 * t2, left to right
      const float denom = std::sqrt(v[j]) / bc2_sqrt + e;
      p[j] = p[j] + -step_size * m[j] / denom;  // addcdiv_: self + value * t1 / t2
    }
  }
}

const std::vector<std::string>& lr_scheduler_names() {
  static const std::vector<std::string> names = {"linear",       "cosine",       "cosine_with_min_lr",
                                                 "cosine_with_restarts", "polynomial", "constant",
                                                 "constant_with_warmup", "inverse_sqrt"};
  return names;
}

int64_t warmup_steps(const TrainingParams& tp, int64_t total_steps) {
  if (tp.warmup_steps > 0) return tp.warmup_steps;
  return int64_t(std::ceil(double(total_steps) * tp.warmup_ratio));
}

void validate_lr_schedule(const TrainingParams& tp) {
  const std::string& name = tp.lr_scheduler_type;
  const auto& names = lr_scheduler_names();
  if (std::find(names.begin(), names.end(), name) == names.end())
    fail_input("training.lr_scheduler_type is '{}'; expected one of {}", name, fmt::join(names, ", "));
  if (tp.warmup_steps < 0) fail_input("training.warmup_steps is {}; expected a value >= 0", tp.warmup_steps);
  if (!(tp.warmup_ratio >= 0.0 && tp.warmup_ratio <= 1.0))
    fail_input("training.warmup_ratio is {}; expected a value in [0, 1]", tp.warmup_ratio);
  const auto& kw = tp.lr_scheduler_kwargs;
  if (!kw.is_null() && !kw.is_object())
    fail_input("training.lr_scheduler_kwargs is {}; expected a mapping of keyword arguments", kw.dump());
  const auto& allowed = scheduler_kwargs(name);
  if (kw.is_object())
    for (const auto& [key, value] : kw.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        if (allowed.empty())
          fail_input("training.lr_scheduler_kwargs.{}: the '{}' schedule takes no keyword arguments; remove it",
                     key, name);
        fail_input("training.lr_scheduler_kwargs.{}: the '{}' schedule does not take it; expected {}", key, name,
                   fmt::join(allowed, ", "));
      }
      kwarg(tp, key.c_str(), 0.0);  // the type check
    }
  if (name == "cosine_with_min_lr") min_lr_rate(tp);
  if (name == "polynomial" && !(tp.learning_rate > kwarg(tp, "lr_end", 1e-7)))
    fail_input("training.lr_scheduler_kwargs.lr_end ({}) must be smaller than training.learning_rate ({}) for the "
               "polynomial schedule",
               kwarg(tp, "lr_end", 1e-7), tp.learning_rate);
}

double lr_at(const TrainingParams& tp, int64_t step, int64_t total_steps) {
  validate_lr_schedule(tp);
  const std::string& name = tp.lr_scheduler_type;
  const double lr = tp.learning_rate;
  if (name == "constant") return lr;
  const int64_t w = warmup_steps(tp, total_steps);
  if (step < w) return lr * double(step) / double(std::max<int64_t>(1, w));
  if (name == "constant_with_warmup") return lr;
  const double progress = double(step - w) / double(std::max<int64_t>(1, total_steps - w));
  constexpr double pi = std::numbers::pi;
  if (name == "linear")
    return lr * std::max(0.0, double(total_steps - step) / double(std::max<int64_t>(1, total_steps - w)));
  if (name == "cosine" || name == "cosine_with_min_lr") {
    const double cycles = kwarg(tp, "num_cycles", 0.5);
    double f = 0.5 * (1.0 + std::cos(pi * cycles * 2.0 * progress));
    if (name == "cosine_with_min_lr") {
      const double rate = min_lr_rate(tp);
      f = f * (1.0 - rate) + rate;
    }
    return lr * std::max(0.0, f);
  }
  if (name == "cosine_with_restarts") {
    if (progress >= 1.0) return 0.0;
    const double cycles = kwarg(tp, "num_cycles", 1.0);
    return lr * std::max(0.0, 0.5 * (1.0 + std::cos(pi * py_mod1(cycles * progress))));
  }
  if (name == "polynomial") {
    const double lr_end = kwarg(tp, "lr_end", 1e-7), power = kwarg(tp, "power", 1.0);
    if (step > total_steps) return lr * (lr_end / lr);
    const double pct_remaining = 1.0 - double(step - w) / double(std::max<int64_t>(1, total_steps - w));
    return lr * (((lr - lr_end) * std::pow(pct_remaining, power) + lr_end) / lr);
  }
  // inverse_sqrt (validate_lr_schedule admitted nothing else)
  const double timescale = kwarg(tp, "timescale", w > 0 ? double(w) : 10000.0);
  return lr / std::sqrt((double(step) + (timescale - double(w))) / timescale);
}

double clip_grad_norm(const std::vector<std::span<float>>& grads, double max_norm) {
  double sum = 0.0;
  for (const auto& g : grads)
    for (float x : g) sum += double(x) * double(x);
  const double norm = std::sqrt(sum);
  if (max_norm <= 0.0) return norm;
  // torch: clip_coef = max_norm / (total_norm + 1e-6) on an f32 tensor, clamped to 1, then mul_.
  // torch.clamp keeps a nan coefficient (a nan norm), which std::min would turn into 1.
  const float raw = float(max_norm) / (float(norm) + 1e-6f);
  const float coef = std::isnan(raw) ? raw : std::min(1.0f, raw);
  if (coef != 1.0f)
    for (const auto& g : grads)
      for (float& x : g) x *= coef;
  return norm;
}

}  // namespace gptoss::train
