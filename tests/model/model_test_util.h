// Shared helpers of the model tests: fixture paths, reference tensors, relative error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace gptoss::testing {

inline std::string shared_dir() {
  if (const char* env = std::getenv("GPTOSS_SHARED_DIR"); env && *env) return env;
  return GPTOSS_SHARED_DIR;
}
inline std::string tiny_dir() { return shared_dir() + "/fixtures/gpt-oss-tiny"; }

// ‖a − b‖ / ‖b‖ over the first b.size() elements.
inline double rel_err(const float* a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  if (a.size() != b.size()) return INFINITY;
  return rel_err(a.data(), b);
}

template <class T>
std::vector<T> tensor_values(const Checkpoint& c, const std::string& name) {
  const TensorView& t = c.get(name);
  const T* p = t.as<T>();
  return std::vector<T>(p, p + t.numel());
}

inline int argmax(const float* row, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (row[i] > row[best]) best = int(i);
  return best;
}

}  // namespace gptoss::testing
