// Attention with sinks and RoPE, forward and backward, for LoRA training on the CPU (see grad_ops.h).
//
// Math. For query token t and query head h (KV head h / G, G = heads / kv_heads), keys j in [lo, t]
// with lo = window > 0 ? max(0, t - window + 1) : 0:
//   s_j = scale * q_t · k_j,   p_j = exp(s_j) / (exp(sink_h) + Σ_j' exp(s_j')),   out_t = Σ_j p_j v_j.
// The sink takes part in the normalization only (its "value" is zero), so Σ_j p_j = 1 - p_sink < 1.
// Backward, given dout_t: dp_j = dout_t · v_j, D = Σ_j p_j dp_j (the sink column has dp = 0, so it
// adds nothing here but still shrinks every p_j), ds_j = p_j (dp_j - D), and
//   dq_t = scale Σ_j ds_j k_j,   dk_j += scale ds_j q_t,   dv_j += p_j dout_t,
// summed over the G query heads that share a KV head. The probabilities are recomputed from q and k.
// RoPE rotates each pair (x[i], x[i + hd/2]) by angle pos * inv_freq[i] and scales it by attn_factor:
// y = a R(θ) x, so its transpose is a R(-θ): (dx1, dx2) -> (dx1 c + dx2 s, dx2 c - dx1 s).
//
// Layout and precision. Work is split over KV heads (ThreadPool::global()): a task owns that head's dk
// and dv outright and the dq rows of its G query heads, so nothing is shared between tasks. It first
// copies its K and V columns into contiguous rows padded to a multiple of 8 floats (zero padding leaves
// every dot product unchanged), so the inner loops are whole 8-float vectors for any head_dim. Dot
// products and per-key updates run in f32; sums that run over many keys or query tokens (softmax
// denominators, D, and out/dq/dk/dv) gather f32 partials of at most kKeyChunk keys / kQueryBlock query
// tokens into double, which keeps the error independent of T at a negligible cost.
//
// Like the backend's kernels, these call ThreadPool::global().parallel_for, so they must not be called
// from inside a parallel_for body.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "backend/cpu/grad_ops.h"

namespace gptoss::cpu {

namespace {

// GCC/Clang vector extension: AVX with -march=x86-64-v3, pairs of SSE (or NEON) registers otherwise.
using v8 = float __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int64_t kKeyChunk = 64;    // keys per f32 partial of out / dq before it joins the double sum
constexpr int64_t kQueryBlock = 32;  // query tokens per f32 partial of dk / dv

inline v8 load(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

// a · b over n floats (n a multiple of 8); two accumulators so consecutive FMAs do not wait on each other.
inline float dot(const float* a, const float* b, int n) {
  v8 acc0 = {}, acc1 = {};
  int i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    acc0 += load(a + i) * load(b + i);
    acc1 += load(a + i + kLanes) * load(b + i + kLanes);
  }
  if (i < n) acc0 += load(a + i) * load(b + i);
  const v8 s = acc0 + acc1;
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// y += a * x over n floats (n a multiple of 8).
inline void axpy(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; i += kLanes) store(y + i, load(y + i) + a * load(x + i));
}

struct Shape {
  int64_t T;
  int heads, kv_heads, hd;
  int hdp;    // hd rounded up to a multiple of 8
  int group;  // G: query heads per KV head
  int window;
  float scale;

  Shape(int64_t T_, int heads_, int kv_heads_, int hd_, int window_, float scale_)
      : T(T_), heads(heads_), kv_heads(kv_heads_), hd(hd_), hdp((hd_ + kLanes - 1) / kLanes * kLanes),
        group(kv_heads_ > 0 ? heads_ / kv_heads_ : 0), window(window_), scale(scale_) {
    GPTOSS_CHECK(T >= 0 && hd > 0 && kv_heads > 0 && heads % kv_heads == 0,
                 "attention shape: T {} heads {} kv_heads {} head_dim {}", T, heads, kv_heads, hd);
  }
  int64_t lo(int64_t t) const { return window > 0 ? std::max<int64_t>(0, t - window + 1) : 0; }
};

// Column kvh of x [T, kv_heads, hd] as padded rows [T, hdp].
std::vector<float> pack_kv_head(const float* x, const Shape& s, int kvh) {
  std::vector<float> out(size_t(s.T * s.hdp), 0.0f);
  for (int64_t t = 0; t < s.T; ++t)
    std::memcpy(&out[size_t(t * s.hdp)], x + (t * s.kv_heads + kvh) * s.hd, size_t(s.hd) * sizeof(float));
  return out;
}

// Rows of query heads h0 .. h0+G-1 of token t of x [T, heads, hd] into dst [G, hdp] (padding stays 0).
void pack_group_rows(const float* x, const Shape& s, int64_t t, int h0, float* dst) {
  for (int g = 0; g < s.group; ++g)
    std::memcpy(dst + g * s.hdp, x + (t * s.heads + h0 + g) * s.hd, size_t(s.hd) * sizeof(float));
}

// Softmax of query token t's G heads (packed rows qg [G, hdp]) over its n = t - lo + 1 keys:
// p[g * n + j] for key lo + j, with the sink in the denominator. If dog (dout rows [G, hdp]) is given,
// also dp[g * n + j] = dout_g · v_{lo+j}. kh, vh: the KV head's packed rows.
void row_softmax(const Shape& s, const float* qg, const float* dog, const float* kh, const float* vh,
                 const float* group_sinks, int64_t lo, int64_t n, float* p, float* dp) {
  for (int64_t j = 0; j < n; ++j) {
    // Key-major so each K (and V) row is read once for all G heads.
    const float* kr = kh + (lo + j) * s.hdp;
    for (int g = 0; g < s.group; ++g) p[g * n + j] = s.scale * dot(qg + g * s.hdp, kr, s.hdp);
    if (dog) {
      const float* vr = vh + (lo + j) * s.hdp;
      for (int g = 0; g < s.group; ++g) dp[g * n + j] = dot(dog + g * s.hdp, vr, s.hdp);
    }
  }
  for (int g = 0; g < s.group; ++g) {
    float* pr = p + g * n;
    const float sink = group_sinks[g];
    float m = sink;  // the sink joins the max too, so no exponent can overflow
    for (int64_t j = 0; j < n; ++j) m = std::max(m, pr[j]);
    double denom = std::exp(double(sink) - double(m));
    for (int64_t j = 0; j < n; ++j) {
      pr[j] = std::exp(pr[j] - m);
      denom += pr[j];
    }
    const float inv = float(1.0 / denom);
    for (int64_t j = 0; j < n; ++j) pr[j] *= inv;
  }
}

// Adds the f32 partials src[0, n) to the double sums dst and zeroes them.
void flush(float* src, double* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dst[i] += src[i];
    src[i] = 0.0f;
  }
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads, int hd,
                       const float* sinks, int window, float scale, float* out) {
  const Shape s(T, heads, kv_heads, hd, window, scale);
  ThreadPool::global().parallel_for(kv_heads, [&](int64_t b, int64_t e, int) {
    const int G = s.group, P = s.hdp;
    std::vector<float> qg(size_t(G * P), 0.0f), p(size_t(G * T)), acc_f(size_t(G * P));
    std::vector<double> acc(size_t(G * P));
    for (int kvh = int(b); kvh < int(e); ++kvh) {
      const std::vector<float> kh = pack_kv_head(k, s, kvh), vh = pack_kv_head(v, s, kvh);
      const int h0 = kvh * G;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t lo = s.lo(t), n = t - lo + 1;
        pack_group_rows(q, s, t, h0, qg.data());
        row_softmax(s, qg.data(), nullptr, kh.data(), vh.data(), sinks + h0, lo, n, p.data(), nullptr);
        std::fill(acc.begin(), acc.end(), 0.0);
        std::fill(acc_f.begin(), acc_f.end(), 0.0f);
        for (int64_t j0 = 0; j0 < n; j0 += kKeyChunk) {
          const int64_t j1 = std::min(n, j0 + kKeyChunk);
          for (int64_t j = j0; j < j1; ++j) {
            const float* vr = vh.data() + (lo + j) * P;
            for (int g = 0; g < G; ++g) axpy(&acc_f[size_t(g * P)], p[size_t(g * n + j)], vr, P);
          }
          flush(acc_f.data(), acc.data(), G * P);
        }
        for (int g = 0; g < G; ++g) {
          float* o = out + (t * heads + h0 + g) * hd;
          for (int i = 0; i < hd; ++i) o[i] = float(acc[size_t(g * P + i)]);
        }
      }
    }
  });
}

void attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads, int hd,
                        const float* sinks, int window, float scale, const float* dout, float* dq, float* dk,
                        float* dv) {
  const Shape s(T, heads, kv_heads, hd, window, scale);
  ThreadPool::global().parallel_for(kv_heads, [&](int64_t b, int64_t e, int) {
    const int G = s.group, P = s.hdp;
    std::vector<float> qg(size_t(G * P), 0.0f), dog(size_t(G * P), 0.0f), p(size_t(G * T)), dp(size_t(G * T));
    std::vector<float> dq_f(size_t(G * P)), dk_f(size_t(T * P)), dv_f(size_t(T * P));
    std::vector<double> dq_d(size_t(G * P)), dk_d(size_t(T * P)), dv_d(size_t(T * P));
    for (int kvh = int(b); kvh < int(e); ++kvh) {
      const std::vector<float> kh = pack_kv_head(k, s, kvh), vh = pack_kv_head(v, s, kvh);
      const int h0 = kvh * G;
      std::fill(dk_f.begin(), dk_f.end(), 0.0f);
      std::fill(dv_f.begin(), dv_f.end(), 0.0f);
      std::fill(dk_d.begin(), dk_d.end(), 0.0);
      std::fill(dv_d.begin(), dv_d.end(), 0.0);
      int64_t block_lo = 0;  // first key touched by the current block of query tokens
      for (int64_t t = 0; t < T; ++t) {
        const int64_t lo = s.lo(t), n = t - lo + 1;
        if (t % kQueryBlock == 0) block_lo = lo;
        pack_group_rows(q, s, t, h0, qg.data());
        pack_group_rows(dout, s, t, h0, dog.data());
        row_softmax(s, qg.data(), dog.data(), kh.data(), vh.data(), sinks + h0, lo, n, p.data(), dp.data());
        // dp -> scale * ds, in place.
        for (int g = 0; g < G; ++g) {
          const float* pr = &p[size_t(g * n)];
          float* dr = &dp[size_t(g * n)];
          double D = 0;
          for (int64_t j = 0; j < n; ++j) D += double(pr[j]) * dr[j];
          for (int64_t j = 0; j < n; ++j) dr[j] = scale * float(double(pr[j]) * (double(dr[j]) - D));
        }
        std::fill(dq_d.begin(), dq_d.end(), 0.0);
        std::fill(dq_f.begin(), dq_f.end(), 0.0f);
        for (int64_t j0 = 0; j0 < n; j0 += kKeyChunk) {
          const int64_t j1 = std::min(n, j0 + kKeyChunk);
          for (int64_t j = j0; j < j1; ++j) {
            const float* kr = kh.data() + (lo + j) * P;
            float* dkr = &dk_f[size_t((lo + j) * P)];
            float* dvr = &dv_f[size_t((lo + j) * P)];
            for (int g = 0; g < G; ++g) {
              const float c = dp[size_t(g * n + j)], pj = p[size_t(g * n + j)];
              axpy(&dq_f[size_t(g * P)], c, kr, P);
              axpy(dkr, c, &qg[size_t(g * P)], P);
              axpy(dvr, pj, &dog[size_t(g * P)], P);
            }
          }
          flush(dq_f.data(), dq_d.data(), G * P);
        }
        for (int g = 0; g < G; ++g) {
          float* o = dq + (t * heads + h0 + g) * hd;
          for (int i = 0; i < hd; ++i) o[i] = float(dq_d[size_t(g * P + i)]);
        }
        // Keys touched by this block's tokens are [block_lo, t] (lo only grows with t).
        if ((t + 1) % kQueryBlock == 0 || t + 1 == T) {
          flush(&dk_f[size_t(block_lo * P)], &dk_d[size_t(block_lo * P)], (t + 1 - block_lo) * P);
          flush(&dv_f[size_t(block_lo * P)], &dv_d[size_t(block_lo * P)], (t + 1 - block_lo) * P);
        }
      }
      for (int64_t j = 0; j < T; ++j) {
        float* dkr = dk + (j * kv_heads + kvh) * hd;
        float* dvr = dv + (j * kv_heads + kvh) * hd;
        for (int i = 0; i < hd; ++i) {
          dkr[i] = float(dk_d[size_t(j * P + i)]);
          dvr[i] = float(dv_d[size_t(j * P + i)]);
        }
      }
    }
  });
}

void rope_backward(float* dx, int64_t n, int heads, int hd, const int32_t* positions, const float* inv_freq,
                   float attn_factor) {
  GPTOSS_CHECK(hd % 2 == 0, "head_dim {} must be even", hd);
  const int half = hd / 2;
  ThreadPool::global().parallel_for(
      n,
      [&](int64_t t0, int64_t t1, int) {
        std::vector<float> c(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
        for (int64_t t = t0; t < t1; ++t) {
          // cos/sin exactly as the forward op forms them (f32 angle, double cos/sin, f32 result), so this is
          // the transpose of the very matrix the forward applied.
          for (int i = 0; i < half; ++i) {
            const float angle = float(positions[t]) * inv_freq[i];
            c[size_t(i)] = float(std::cos(double(angle))) * attn_factor;
            sn[size_t(i)] = float(std::sin(double(angle))) * attn_factor;
          }
          for (int h = 0; h < heads; ++h) {
            float* d = dx + (t * heads + h) * hd;
            for (int i = 0; i < half; ++i) {
              const float d1 = d[i], d2 = d[i + half];
              d[i] = d1 * c[size_t(i)] + d2 * sn[size_t(i)];
              d[i + half] = d2 * c[size_t(i)] - d1 * sn[size_t(i)];
            }
          }
        }
      },
      16);
}

}  // namespace gptoss::cpu
