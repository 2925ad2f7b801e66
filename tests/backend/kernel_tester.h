// Helpers for the kernel tests: seeded random fills, outputs poisoned with NaN and followed by a
// sentinel guard region, and the relative-error comparison ‖a − b‖ / ‖b‖.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"

namespace gptoss::cpu::testing {

inline constexpr int64_t kGuard = 64;        // guard elements after every output
inline constexpr uint32_t kSentinel = 0x7fc0beefu;  // a NaN payload no kernel writes by accident

class Rng {
 public:
  explicit Rng(uint32_t seed) : gen_(seed) {}
  std::vector<float> f32(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(gen_);
    return v;
  }
  // Normal with mean 0 (a fresh Rng(seed).normal(n, s) draws what a fresh std::mt19937(seed) would).
  std::vector<float> normal(int64_t n, float stddev = 1.0f) {
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(gen_);
    return v;
  }
  std::vector<uint16_t> bf16(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<uint16_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = f32_to_bf16(d(gen_));
    return v;
  }
  // Uniform bytes in [lo, hi]; the full range takes four bytes per draw (the MoE weights are large).
  std::vector<uint8_t> bytes(int64_t n, int lo = 0, int hi = 255) {
    std::vector<uint8_t> v(static_cast<size_t>(n));
    if (lo == 0 && hi == 255) {
      for (int64_t i = 0; i < n; i += 4) {
        uint32_t r = gen_();
        for (int64_t j = i; j < std::min(n, i + 4); ++j, r >>= 8) v[size_t(j)] = uint8_t(r);
      }
      return v;
    }
    std::uniform_int_distribution<int> d(lo, hi);
    for (auto& x : v) x = uint8_t(d(gen_));
    return v;
  }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }
  std::mt19937& gen() { return gen_; }

 private:
  std::mt19937 gen_;
};

// An f32 output of n elements, poisoned with NaN, followed by kGuard sentinel elements.
class Output {
 public:
  explicit Output(int64_t n) : n_(n), data_(static_cast<size_t>(n + kGuard)) {
    for (int64_t i = 0; i < n; ++i) data_[size_t(i)] = NAN;
    for (int64_t i = n; i < n + kGuard; ++i) std::memcpy(&data_[size_t(i)], &kSentinel, 4);
  }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  int64_t size() const { return n_; }
  float operator[](int64_t i) const { return data_[size_t(i)]; }
  std::vector<float> values() const { return {data_.begin(), data_.begin() + n_}; }
  // Every element written (no NaN left from the poison) and the guard untouched.
  void expect_written_and_guarded(const char* what) const {
    int64_t nan = 0;
    for (int64_t i = 0; i < n_; ++i) nan += std::isnan(data_[size_t(i)]) ? 1 : 0;
    EXPECT_EQ(nan, 0) << what << ": " << nan << " of " << n_ << " elements unwritten or NaN";
    for (int64_t i = n_; i < n_ + kGuard; ++i) {
      uint32_t u;
      std::memcpy(&u, &data_[size_t(i)], 4);
      if (u != kSentinel) {
        ADD_FAILURE() << what << ": write past the end at element " << i << " (size " << n_ << ")";
        break;
      }
    }
  }

 private:
  int64_t n_;
  std::vector<float> data_;
};

// ||a - b|| / ||b|| over n elements (||a - b|| when b is all zeros), in double, for float or double data.
template <typename A, typename B>
double rel_error(const A* a, const B* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

// Checks an optimized output against the reference output: all written, guarded, close.
inline void expect_close(const Output& got, const Output& ref, double tol, const char* what) {
  got.expect_written_and_guarded(what);
  ref.expect_written_and_guarded(what);
  ASSERT_EQ(got.size(), ref.size());
  double e = rel_error(got.data(), ref.data(), got.size());
  EXPECT_LE(e, tol) << what << ": relative error " << e;
}

inline constexpr double kTol = 1e-5;

}  // namespace gptoss::cpu::testing
