// f32_bf16w_moe: the MoE block with bf16 experts in the hub's input-major layout w [E, in, out]
// (see kernels.h).
//
// The layout makes a weight row of 16 consecutive outputs contiguous for each input c, so the kernel is
// an outer-product tile: per input c, 16 bf16 weights (one 32-byte load, decoded by shift/mask into even
// and odd outputs) times the broadcast activation of up to 6 tokens, 12 ymm accumulators. Routing,
// thread split and the fused SwiGLU follow moe_mxfp4.cpp: gate_up panels split over threads by cost,
// down panels (hidden outputs) split over threads with each thread owning its output columns.
#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_moe.h"
#include "backend/cpu/kernels_simd.h"
#include "core/thread_pool.h"

namespace gptoss::cpu {

namespace {
constexpr int kPanel = 16;
constexpr int kMaxM = 6;
constexpr float kAlpha = 1.702f;

// out[m*16 + o] = sum_c x[m][c] * w[c*ld + o] for o < 16, m < M.
template <int M>
void bcast_tile(const uint16_t* w, int64_t ld, int64_t K, const float* const* x, float* out) {
  __m256 acc[M][2];
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  const __m256i hi = _mm256_set1_epi32(int(0xffff0000u));
  for (int64_t c = 0; c < K; ++c) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c * ld));
    const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(a, 16));  // outputs 0, 2, ..., 14
    const __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(a, hi));   // outputs 1, 3, ..., 15
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      const __m256 xb = _mm256_broadcast_ss(x[m] + c);
      acc[m][0] = _mm256_fmadd_ps(we, xb, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(wo, xb, acc[m][1]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
    alignas(32) float e[8], o[8];
    _mm256_store_ps(e, acc[m][0]);
    _mm256_store_ps(o, acc[m][1]);
    for (int i = 0; i < 8; ++i) {
      out[m * kPanel + 2 * i] = e[i];
      out[m * kPanel + 2 * i + 1] = o[i];
    }
  }
}

// Outputs [r0, r0 + cnt) (cnt <= 16) of rows x[0..M) through W (input-major, ld = rows); a partial
// panel (cnt < 16) is computed with scalar code so no load reads past the end of W.
void panel(const uint16_t* w, int64_t ld, int64_t K, int64_t r0, int cnt, const float* const* x, int M,
           float* out) {
  if (cnt < kPanel) {
    for (int m = 0; m < M; ++m)
      for (int o = 0; o < cnt; ++o) {
        float s = 0;
        for (int64_t c = 0; c < K; ++c) s += x[m][c] * bf16_to_f32(w[c * ld + r0 + o]);
        out[m * kPanel + o] = s;
      }
    return;
  }
  switch (M) {
    case 1: bcast_tile<1>(w + r0, ld, K, x, out); break;
    case 2: bcast_tile<2>(w + r0, ld, K, x, out); break;
    case 3: bcast_tile<3>(w + r0, ld, K, x, out); break;
    case 4: bcast_tile<4>(w + r0, ld, K, x, out); break;
    case 5: bcast_tile<5>(w + r0, ld, K, x, out); break;
    default: bcast_tile<6>(w + r0, ld, K, x, out); break;
  }
}
}  // namespace

void f32_bf16w_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                   const Bf16Experts& gate_up, const Bf16Experts& down, float swiglu_limit, float* out,
                   float* gate_up_out) {
  if (n <= 0) return;
  GPTOSS_CHECK(gate_up.cols == hidden && gate_up.rows == 2 * down.cols && down.rows == hidden &&
                   gate_up.experts == down.experts,
               "bf16 MoE shapes: gate_up [{}, in {}, out {}], down [{}, in {}, out {}], hidden {}", gate_up.experts,
               gate_up.cols, gate_up.rows, down.experts, down.cols, down.rows, hidden);
  const int64_t inter = down.cols;
  static thread_local moe::Routing rt_tl;
  static thread_local std::vector<float> h_buf;
  moe::Routing& rt = rt_tl;  // lambdas must not name the thread_local (workers have their own)
  rt.build(idx, n, k, gate_up.experts);
  float* hb = simd::scratch(h_buf, size_t(n * k * inter));  // [sorted assignment][inter]
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.size();

  const int64_t gu_panels = (gate_up.rows + kPanel - 1) / kPanel;
  pool.parallel_for(threads, [&](int64_t th0, int64_t th1, int) {
    for (int64_t th = th0; th < th1; ++th) {
      moe::split_expert_units(rt, gu_panels, int(th), threads, [&](int e, int64_t u0, int64_t u1) {
        const uint16_t* we = gate_up.w + int64_t(e) * gate_up.cols * gate_up.rows;
        const uint16_t* bias = gate_up.bias + int64_t(e) * gate_up.rows;
        const int32_t s0 = rt.start[size_t(e)], s1 = rt.start[size_t(e) + 1];
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t r0 = u * kPanel;
          const int cnt = int(std::min<int64_t>(kPanel, gate_up.rows - r0));
          for (int32_t p = s0; p < s1; p += kMaxM) {
            const int M = std::min<int32_t>(kMaxM, s1 - p);
            const float* xr[kMaxM];
            for (int i = 0; i < M; ++i) xr[i] = x + int64_t(rt.tokens[size_t(p + i)]) * hidden;
            float res[kMaxM * kPanel];
            panel(we, gate_up.rows, hidden, r0, cnt, xr, M, res);
            for (int m = 0; m < M; ++m)
              for (int i = 0; i + 1 < cnt; i += 2) {
                const float g = res[m * kPanel + i] + bf16_to_f32(bias[r0 + i]);
                const float u = res[m * kPanel + i + 1] + bf16_to_f32(bias[r0 + i + 1]);
                if (gate_up_out) {
                  float* o = gate_up_out + int64_t(rt.sorted[size_t(p + m)]) * gate_up.rows + r0 + i;
                  o[0] = g, o[1] = u;
                }
                float gate = std::min(g, swiglu_limit);
                float up = std::clamp(u, -swiglu_limit, swiglu_limit);
                hb[int64_t(p + m) * inter + (r0 + i) / 2] = (up + 1.0f) * (gate / (1.0f + std::exp(-kAlpha * gate)));
              }
          }
        }
      });
    }
  });

  const int64_t d_panels = (hidden + kPanel - 1) / kPanel;
  pool.parallel_for(d_panels, [&](int64_t u0, int64_t u1, int) {
    const int64_t r_begin = u0 * kPanel, r_end = std::min(hidden, u1 * kPanel);
    for (int64_t t = 0; t < n; ++t) std::fill(out + t * hidden + r_begin, out + t * hidden + r_end, 0.0f);
    for (int e : rt.active) {
      const uint16_t* we = down.w + int64_t(e) * down.cols * down.rows;
      const uint16_t* bias = down.bias + int64_t(e) * down.rows;
      const int32_t s0 = rt.start[size_t(e)], s1 = rt.start[size_t(e) + 1];
      for (int64_t r0 = r_begin; r0 < r_end; r0 += kPanel) {
        const int cnt = int(std::min<int64_t>(kPanel, r_end - r0));
        for (int32_t p = s0; p < s1; p += kMaxM) {
          const int M = std::min<int32_t>(kMaxM, s1 - p);
          const float* hr[kMaxM];
          for (int i = 0; i < M; ++i) hr[i] = hb + int64_t(p + i) * inter;
          float res[kMaxM * kPanel];
          panel(we, down.rows, inter, r0, cnt, hr, M, res);
          for (int m = 0; m < M; ++m) {
            const int32_t a = rt.sorted[size_t(p + m)];
            float* o = out + int64_t(a / k) * hidden + r0;
            for (int i = 0; i < cnt; ++i) o[i] += w[a] * (res[m * kPanel + i] + bf16_to_f32(bias[r0 + i]));
          }
        }
      }
    }
  });
}

}  // namespace gptoss::cpu
