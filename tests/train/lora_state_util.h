// Test helper: a random LoRA training state.
#pragma once

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/lora.h"
#include "train/backward.h"

namespace gptoss::testing {

// Rank r on q, k, v, o and the router of every layer, A and B uniform in +-0.3 (seeded), alpha 2r (scale
// 2); gradients zero.
inline train::LoraState random_lora_state(const GptOssConfig& cfg, int r, uint32_t seed) {
  train::LoraState st;
  st.rank = r;
  st.alpha = 2.0 * r;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    for (LoraModule m : {LoraModule::kQ, LoraModule::kK, LoraModule::kV, LoraModule::kO, LoraModule::kRouter}) {
      const auto [out, in] = lora_module_shape(cfg, m);
      LoraWeights w{l, m, std::vector<float>(size_t(r * in)), std::vector<float>(size_t(out * r))};
      for (float& v : w.a) v = u(rng);
      for (float& v : w.b) v = u(rng);
      st.weights.push_back(w);
      std::fill(w.a.begin(), w.a.end(), 0.0f);
      std::fill(w.b.begin(), w.b.end(), 0.0f);
      st.grads.push_back(std::move(w));
    }
  return st;
}

}  // namespace gptoss::testing
