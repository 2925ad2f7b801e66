// The fixture of the CUDA op tests: a CPU and a CUDA backend, random inputs, device copies (outputs
// poisoned with NaN) and the relative error of a result against the CPU's. Skips without a GPU (CI).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"

namespace gptoss::testing {

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU in this build/machine";
    cpu_ = make_cpu_backend();
    gpu_ = make_cuda_backend();
  }

  std::vector<float> rand_f32(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng_);
    return v;
  }
  std::vector<uint16_t> rand_bf16(size_t n, float scale = 1.0f) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = f32_to_bf16(std::normal_distribution<float>(0.f, scale)(rng_));
    return v;
  }
  std::vector<uint8_t> rand_u8(size_t n, int lo = 0, int hi = 255) {
    std::uniform_int_distribution<int> d(lo, hi);
    std::vector<uint8_t> v(n);
    for (auto& x : v) x = uint8_t(d(rng_));
    return v;
  }

  // A device copy of host data on backend b (poisoned with NaN when `poison`).
  template <class T>
  T* put(Backend& b, const std::vector<T>& host) {
    void* p = b.alloc(host.size() * sizeof(T));
    b.to_device(p, host.data(), host.size() * sizeof(T));
    owned_.push_back({&b, p});
    return static_cast<T*>(p);
  }
  float* out(Backend& b, size_t n) { return put(b, std::vector<float>(n, NAN)); }
  std::vector<float> get(Backend& b, const float* p, size_t n) {
    std::vector<float> h(n);
    b.to_host(h.data(), p, n * sizeof(float));
    return h;
  }
  // Random MXFP4 experts in the hub layout (gate_up [E, 2 inter, hidden], down [E, hidden, inter]; scales
  // 2^-9 .. 2^-3; biases N(0, bias_scale), or zero for bias_scale 0) and their copies on a backend.
  struct Mxfp4Experts {
    int64_t hidden, inter;
    int experts;
    std::vector<uint8_t> gu_blocks, gu_scales, dn_blocks, dn_scales;
    std::vector<uint16_t> gu_bias, dn_bias;
    std::pair<ExpertWeights, ExpertWeights> on(Backend& b) const {  // gate_up, down
      auto u8 = [&](const auto& v) { return static_cast<const uint8_t*>(b.prepare_weight(v.data(), v.size())); };
      auto bf16 = [&](const auto& v) { return static_cast<const uint16_t*>(b.prepare_weight(v.data(), v.size() * 2)); };
      return {{true, u8(gu_blocks), u8(gu_scales), nullptr, bf16(gu_bias), 2 * inter, hidden, experts},
              {true, u8(dn_blocks), u8(dn_scales), nullptr, bf16(dn_bias), hidden, inter, experts}};
    }
  };
  Mxfp4Experts rand_mxfp4_experts(int64_t hidden, int64_t inter, int experts, float bias_scale) {
    Mxfp4Experts e{hidden, inter, experts, {}, {}, {}, {}, {}, {}};
    e.gu_blocks = rand_u8(size_t(experts) * 2 * inter * hidden / 2);
    e.gu_scales = rand_u8(size_t(experts) * 2 * inter * hidden / 32, 118, 124);
    e.gu_bias = rand_bf16(size_t(experts) * 2 * inter, bias_scale > 0 ? bias_scale : 1.0f);
    e.dn_blocks = rand_u8(size_t(experts) * hidden * inter / 2);
    e.dn_scales = rand_u8(size_t(experts) * hidden * inter / 32, 118, 124);
    e.dn_bias = rand_bf16(size_t(experts) * hidden, bias_scale > 0 ? bias_scale : 1.0f);
    if (bias_scale == 0) {
      std::fill(e.gu_bias.begin(), e.gu_bias.end(), uint16_t(0));
      std::fill(e.dn_bias.begin(), e.dn_bias.end(), uint16_t(0));
    }
    return e;
  }
  static double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!std::isfinite(a[i])) return INFINITY;
      num += double(a[i] - ref[i]) * (a[i] - ref[i]);
      den += double(ref[i]) * ref[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
  }
  void TearDown() override {
    for (auto& [b, p] : owned_) b->free(p);
  }

  std::mt19937 rng_{1234};
  std::unique_ptr<Backend> cpu_, gpu_;
  std::vector<std::pair<Backend*, void*>> owned_;
};

}  // namespace gptoss::testing
