// Backward of the dense ops (train/grad_ops.h): bf16 linears, RMSNorm, and the cross-entropy loss.
//
// matmul_bf16_backward_x walks W once per block of tokens: the threads split `in` into column chunks (each
// owns its slice of dx, so no two write the same element), and for every output row o adds dy[t, o] times
// the row's chunk into each token's dx. RMSNorm: y_i = w_i x_i r with r = (mean(x^2) + eps)^-1/2, so
// dx_i = r w_i dy_i - x_i r^3 / d * sum_j w_j dy_j x_j. Sums in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "train/grad_ops.h"

namespace gptoss::train {

namespace {
constexpr int64_t kCols = 256;   // columns of dx a work item owns
constexpr int64_t kTokens = 16;  // tokens whose dx slices stay in L1 while W streams by
}  // namespace

void matmul_bf16_backward_x(const float* dy, int64_t n, int64_t out, const uint16_t* w, int64_t in, float* dx) {
  if (n == 0 || out == 0 || in == 0) return;
  const int64_t chunks = (in + kCols - 1) / kCols;
  ThreadPool::global().parallel_for(chunks, [&](int64_t c0, int64_t c1, int) {
    std::vector<float> wrow(static_cast<size_t>(kCols));
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i0 = c * kCols, m = std::min(kCols, in - i0);
      for (int64_t t0 = 0; t0 < n; t0 += kTokens) {
        const int64_t t1 = std::min(n, t0 + kTokens);
        for (int64_t o = 0; o < out; ++o) {
          const uint16_t* wr = w + o * in + i0;
          bool any = false;
          for (int64_t t = t0; t < t1; ++t) any |= dy[t * out + o] != 0.0f;
          if (!any) continue;
          for (int64_t i = 0; i < m; ++i) wrow[size_t(i)] = bf16_to_f32(wr[i]);
          for (int64_t t = t0; t < t1; ++t) {
            const float g = dy[t * out + o];
            if (g == 0.0f) continue;
            float* d = dx + t * in + i0;
            for (int64_t i = 0; i < m; ++i) d[i] += g * wrow[size_t(i)];
          }
        }
      }
    }
  });
}

void rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                       float* dx) {
  ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * d;
      const float* gr = dy + t * d;
      double ss = 0, dot = 0;
      for (int64_t i = 0; i < d; ++i) {
        ss += double(xr[i]) * xr[i];
        dot += double(bf16_to_f32(w[i])) * gr[i] * xr[i];
      }
      const double r = 1.0 / std::sqrt(ss / double(d) + double(eps));
      const double c = r * r * r / double(d) * dot;
      float* o = dx + t * d;
      for (int64_t i = 0; i < d; ++i) o[i] += float(r * bf16_to_f32(w[i]) * gr[i] - double(xr[i]) * c);
    }
  });
}

double cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, float* dlogits) {
  int64_t count = 0;
  for (int64_t t = 0; t < n; ++t) count += target[t] >= 0;
  std::vector<double> loss(size_t(n), 0.0);
  ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* g = dlogits + t * vocab;
      if (target[t] < 0 || count == 0) {
        std::fill(g, g + vocab, 0.0f);
        continue;
      }
      const float* z = logits + t * vocab;
      const float mx = *std::max_element(z, z + vocab);
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(z[v]) - mx);
      const double lse = double(mx) + std::log(sum);
      loss[size_t(t)] = lse - double(z[target[t]]);
      const double inv = 1.0 / double(count);
      for (int64_t v = 0; v < vocab; ++v) g[v] = float(std::exp(double(z[v]) - lse) * inv);
      g[target[t]] -= float(inv);
    }
  });
  double total = 0;
  for (double l : loss) total += l;
  return count ? total / double(count) : 0.0;
}

}  // namespace gptoss::train
