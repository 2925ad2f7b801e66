// YaRN rotary position embedding parameters, computed the way Hugging Face transformers'
// `_compute_yarn_parameters` does (float32 at the same points), so positions rotate exactly as in
// the reference. The rotation itself is a backend op (half-split rotate_half layout); this file only
// produces the table it needs: head_dim/2 inverse frequencies and the attention factor that
// multiplies cos and sin.
#pragma once

#include <vector>

namespace gptoss {

struct GptOssConfig;

struct YarnParams {
  int head_dim = 64;
  double theta = 150000.0;           // rope_theta
  double factor = 32.0;              // rope_scaling.factor (<= 1: plain RoPE)
  double beta_fast = 32.0;           // rope_scaling.beta_fast
  double beta_slow = 1.0;            // rope_scaling.beta_slow
  double original_max_pos = 4096.0;  // rope_scaling.original_max_position_embeddings
  bool truncate = true;              // rope_scaling.truncate (HF default true)
};

struct RopeTable {
  std::vector<float> inv_freq;  // [head_dim / 2]
  float attention_factor = 1.0f;  // 0.1 * ln(factor) + 1 (1 when factor <= 1)
};

RopeTable compute_yarn(const YarnParams& p);
YarnParams yarn_params(const GptOssConfig& cfg);

}  // namespace gptoss
