#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/config.h"

namespace gptoss {

namespace {
double correction_dim(double rotations, int dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (rotations * 2 * M_PI))) / (2 * std::log(base));
}
}  // namespace

RopeTable compute_yarn(const YarnParams& p) {
  GPTOSS_CHECK(p.head_dim > 0 && p.head_dim % 2 == 0, "head_dim {} must be even", p.head_dim);
  const int dim = p.head_dim, half = dim / 2;
  RopeTable t;
  t.inv_freq.resize(half);
  // transformers computes base ** (arange(0, dim, 2) / dim) and the blend in float32.
  std::vector<float> pos_freq(half);
  for (int i = 0; i < half; ++i) {
    float expo = float(2 * i) / float(dim);
    pos_freq[i] = float(std::pow(p.theta, double(expo)));
  }
  if (p.factor <= 1.0) {
    for (int i = 0; i < half; ++i) t.inv_freq[i] = 1.0f / pos_freq[i];
    t.attention_factor = 1.0f;
    return t;
  }
  t.attention_factor = float(0.1 * std::log(p.factor) + 1.0);
  double low = correction_dim(p.beta_fast, dim, p.theta, p.original_max_pos);
  double high = correction_dim(p.beta_slow, dim, p.theta, p.original_max_pos);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;
  // (arange - low) / (high - low): low is rounded to f32, the difference is taken in double first.
  const float flow = float(low), frange = float(high - low), ffactor = float(p.factor);
  for (int i = 0; i < half; ++i) {
    float ramp = std::clamp((float(i) - flow) / frange, 0.0f, 1.0f);
    float extrap_factor = 1.0f - ramp;
    float inv_extrap = 1.0f / pos_freq[i];
    float inv_interp = 1.0f / (ffactor * pos_freq[i]);
    t.inv_freq[i] = inv_interp * (1.0f - extrap_factor) + inv_extrap * extrap_factor;
  }
  return t;
}

YarnParams yarn_params(const GptOssConfig& cfg) {
  YarnParams p;
  p.head_dim = cfg.head_dim;
  p.theta = cfg.rope_theta;
  const RopeScaling& r = cfg.rope_scaling;
  p.factor = r.rope_type == "yarn" ? r.factor : 1.0;
  p.beta_fast = r.beta_fast;
  p.beta_slow = r.beta_slow;
  p.original_max_pos = double(r.original_max_position_embeddings);
  p.truncate = r.truncate;
  return p;
}

}  // namespace gptoss
