// Optimized small ops: rms_norm, rope_yarn, router_topk_softmax, kv_store (see kernels.h). These are
// cheap next to the matmuls; they are vectorized over the row and split over tokens only when there
// are enough rows to pay for waking the pool.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_simd.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace gptoss::cpu {

namespace {
// Rows per parallel_for unit so that a unit is at least ~64K elements of work.
int64_t row_grain(int64_t row_elems) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(row_elems, 1)); }

inline __m256 bf16x8_to_f32(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
}  // namespace

void rms_norm(const float* x, const uint16_t* w_bf16, float* y, int64_t n, int64_t d, float eps) {
  ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * d;
      float* yr = y + t * d;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0;
      int64_t i = 0;
      for (; i + 16 <= d; i += 16) {
        const __m256 v0 = _mm256_loadu_ps(xr + i), v1 = _mm256_loadu_ps(xr + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
      }
      float ss = simd::hsum(_mm256_add_ps(a0, a1));
      for (; i < d; ++i) ss += xr[i] * xr[i];
      const float r = 1.0f / std::sqrt(ss / float(d) + eps);
      const __m256 rv = _mm256_set1_ps(r);
      i = 0;
      for (; i + 8 <= d; i += 8)
        _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), rv), bf16x8_to_f32(w_bf16 + i)));
      for (; i < d; ++i) yr[i] = xr[i] * r * bf16_to_f32(w_bf16[i]);
    }
  }, row_grain(d));
}

void rope_yarn(float* x, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
               float attn_factor) {
  GPTOSS_CHECK(head_dim % 2 == 0, "head_dim {} must be even", head_dim);
  const int half = head_dim / 2;
  ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    float cs[256], sn[256];
    for (int64_t t = t0; t < t1; ++t) {
      for (int i0 = 0; i0 < half; i0 += 256) {
        const int len = std::min(256, half - i0);
        for (int i = 0; i < len; ++i) {
          const float angle = float(positions[t]) * inv_freq[i0 + i];
          cs[i] = float(std::cos(double(angle))) * attn_factor;
          sn[i] = float(std::sin(double(angle))) * attn_factor;
        }
        for (int h = 0; h < heads; ++h) {
          float* x1 = x + (t * heads + h) * head_dim + i0;
          float* x2 = x1 + half;
          int i = 0;
          for (; i + 8 <= len; i += 8) {
            const __m256 a = _mm256_loadu_ps(x1 + i), b = _mm256_loadu_ps(x2 + i);
            const __m256 c = _mm256_loadu_ps(cs + i), s = _mm256_loadu_ps(sn + i);
            _mm256_storeu_ps(x1 + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
            _mm256_storeu_ps(x2 + i, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
          }
          for (; i < len; ++i) {
            const float a = x1[i], b = x2[i];
            x1[i] = a * cs[i] - b * sn[i];
            x2[i] = b * cs[i] + a * sn[i];
          }
        }
      }
    }
  }, row_grain(int64_t(heads) * head_dim * 4));
}

void router_topk_softmax(const float* logits, int64_t n, int E, int k, int32_t* idx, float* w) {
  GPTOSS_CHECK(k >= 1 && k <= E && k <= 64, "top-k {} must be in 1..min({}, 64)", k, E);
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * E;
    int32_t* it = idx + t * k;
    // Insertion into a sorted list of k (descending; a new value goes after equal ones, so ties keep
    // the lower index first).
    int cnt = 0;
    for (int e = 0; e < E; ++e) {
      const float v = l[e];
      if (cnt == k && !(v > l[it[k - 1]])) continue;
      int pos = cnt < k ? cnt++ : k - 1;
      while (pos > 0 && v > l[it[pos - 1]]) {
        it[pos] = it[pos - 1];
        --pos;
      }
      it[pos] = e;
    }
    const float m = l[it[0]];
    float e[64], sum = 0;
    for (int j = 0; j < k; ++j) sum += e[j] = std::exp(l[it[j]] - m);
    for (int j = 0; j < k; ++j) w[t * k + j] = e[j] / sum;
  }
}

void kv_store(const PagedKv& kv, int group_layer, const float* k, const float* v, int64_t n,
              const int32_t* positions, const int32_t* block_table) {
  // K/V rows of all kv heads of one position are contiguous in both the input and a block slot.
  const int64_t row = int64_t(kv.kv_heads) * kv.head_dim;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = positions[t];
    const int64_t block = block_table[p / kv.block_size];
    GPTOSS_CHECK(block >= 0, "position {} maps to an unassigned KV block", p);
    const int64_t slot = p % kv.block_size;
    const int64_t kd = kv.offset(block, group_layer, 0, slot, 0), vd = kv.offset(block, group_layer, 1, slot, 0);
    if (kv.dtype == KvDtype::bf16) {
      uint16_t* pool = static_cast<uint16_t*>(kv.pool);
      for (int64_t i = 0; i < row; ++i) {
        pool[kd + i] = f32_to_bf16(k[t * row + i]);
        pool[vd + i] = f32_to_bf16(v[t * row + i]);
      }
    } else {
      float* pool = static_cast<float*>(kv.pool);
      std::memcpy(pool + kd, k + t * row, size_t(row) * sizeof(float));
      std::memcpy(pool + vd, v + t * row, size_t(row) * sizeof(float));
    }
  }
}

}  // namespace gptoss::cpu
