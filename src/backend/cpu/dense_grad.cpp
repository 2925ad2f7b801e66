// Backward of the dense ops (backend/cpu/grad_ops.h): bf16 linears, RMSNorm, and the cross-entropy loss.
//
// matmul_bf16_backward_x (dx += dy W, a contraction over W's rows): register tiles of 6 tokens x 16
// columns of dx take W's rows in blocks of 64 (kept in L2 while every token tile passes over them); the
// threads split the columns, so no two write the same element. RMSNorm: y_i = w_i x_i r with
// r = (mean(x^2) + eps)^-1/2, so dx_i = r w_i dy_i - x_i r^3 / d * sum_j w_j dy_j x_j. Sums in double.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "backend/cpu/grad_ops.h"

namespace gptoss::cpu {

namespace {
constexpr int64_t kRowBlock = 64;  // rows of W a pass keeps in L2 (64 x 2880 bf16 = 368 KB at most per core)
constexpr int64_t kColTile = 16;   // dx columns of a register tile (two ymm)
constexpr int kTokTile = 6;        // tokens of a register tile: 12 accumulators

// 16 bf16 -> two 8-float vectors, in order.
inline void bf16x16(const uint16_t* p, __m256& lo, __m256& hi) {
  const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  hi = _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

// dx[t0 .. t0+T, c .. c+16] += dy[t0 .. t0+T, o0 .. o1] W[o0 .. o1, c .. c+16] in registers.
template <int T>
void tile(const float* dy, int64_t out, const uint16_t* w, int64_t in, int64_t t0, int64_t o0, int64_t o1, int64_t c,
          float* dx) {
  __m256 acc[T][2];
  for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int64_t o = o0; o < o1; ++o) {
    __m256 w0, w1;
    bf16x16(w + o * in + c, w0, w1);
    for (int t = 0; t < T; ++t) {
      const __m256 g = _mm256_broadcast_ss(dy + (t0 + t) * out + o);
      acc[t][0] = _mm256_fmadd_ps(w0, g, acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(w1, g, acc[t][1]);
    }
  }
  for (int t = 0; t < T; ++t) {
    float* d = dx + (t0 + t) * in + c;
    _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), acc[t][0]));
    _mm256_storeu_ps(d + 8, _mm256_add_ps(_mm256_loadu_ps(d + 8), acc[t][1]));
  }
}

void tile_any(int T, const float* dy, int64_t out, const uint16_t* w, int64_t in, int64_t t0, int64_t o0, int64_t o1,
              int64_t c, float* dx) {
  switch (T) {
    case 1: return tile<1>(dy, out, w, in, t0, o0, o1, c, dx);
    case 2: return tile<2>(dy, out, w, in, t0, o0, o1, c, dx);
    case 3: return tile<3>(dy, out, w, in, t0, o0, o1, c, dx);
    case 4: return tile<4>(dy, out, w, in, t0, o0, o1, c, dx);
    case 5: return tile<5>(dy, out, w, in, t0, o0, o1, c, dx);
    default: return tile<6>(dy, out, w, in, t0, o0, o1, c, dx);
  }
}
}  // namespace

void matmul_bf16_backward_x(const float* dy, int64_t n, int64_t out, const uint16_t* w, int64_t in, float* dx) {
  if (n == 0 || out == 0 || in == 0) return;
  const int64_t tiles = in / kColTile, tail = tiles * kColTile;
  // Threads own column tiles (no two write the same dx element); each walks W in blocks of rows.
  if (tiles > 0)
    ThreadPool::global().parallel_for(tiles, [&](int64_t c0, int64_t c1, int) {
      for (int64_t o0 = 0; o0 < out; o0 += kRowBlock) {
        const int64_t o1 = std::min(out, o0 + kRowBlock);
        for (int64_t ct = c0; ct < c1; ++ct)
          for (int64_t t0 = 0; t0 < n; t0 += kTokTile)
            tile_any(int(std::min<int64_t>(kTokTile, n - t0)), dy, out, w, in, t0, o0, o1, ct * kColTile, dx);
      }
    });
  for (int64_t t = 0; t < n && tail < in; ++t)  // the < 16 columns past the last tile
    for (int64_t o = 0; o < out; ++o) {
      const float g = dy[t * out + o];
      for (int64_t i = tail; i < in; ++i) dx[t * in + i] += g * bf16_to_f32(w[o * in + i]);
    }
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

double cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, float* dlogits,
                     double grad_scale) {
  int64_t count = 0;
  for (int64_t t = 0; t < n; ++t) count += target[t] >= 0;
  std::vector<double> loss(size_t(n), 0.0);
  ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      float* g = dlogits ? dlogits + t * vocab : nullptr;
      if (target[t] < 0 || count == 0) {
        if (g) std::fill(g, g + vocab, 0.0f);
        continue;
      }
      const float* z = logits + t * vocab;
      const float mx = *std::max_element(z, z + vocab);
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(z[v]) - mx);
      const double lse = double(mx) + std::log(sum);
      loss[size_t(t)] = lse - double(z[target[t]]);
      if (!g) continue;
      const double inv = grad_scale / double(count);
      for (int64_t v = 0; v < vocab; ++v) g[v] = float(std::exp(double(z[v]) - lse) * inv);
      g[target[t]] -= float(inv);
    }
  });
  double total = 0;
  for (double l : loss) total += l;
  return count ? total / double(count) : 0.0;
}

}  // namespace gptoss::cpu
