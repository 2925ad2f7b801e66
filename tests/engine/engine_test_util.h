// Request builders shared by the engine tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "engine/engine.h"

namespace gptoss::testing {

// n token ids in [0, vocab), reproducible from the seed.
inline std::vector<int32_t> random_prompt(int n, uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(size_t(n), 0);
  for (auto& x : t) x = int32_t(rng() % uint32_t(vocab));
  return t;
}

// A greedy request for at most max_new tokens; ignore_eos keeps going past the model's end token.
inline Request greedy(std::vector<int32_t> prompt, int max_new, bool ignore_eos = false) {
  Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_new_tokens = max_new;
  r.params.ignore_eos = ignore_eos;
  return r;
}

}  // namespace gptoss::testing
