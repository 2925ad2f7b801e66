// bf16w_matmul: y[n, out] = x[n, in] · W^T + bias with W [out, in] bf16 (see kernels.h).
//
// Blocking: activations are permuted once into the decoder's order (simd::kBf16Perm). Output rows are
// split over the threads in contiguous ranges (each thread streams its part of W exactly once per token
// chunk). Tokens go in chunks of kTokenChunk (their activations stay in L2 while the thread walks its
// rows); inside a chunk, a tile of R rows x T tokens (T <= 4) keeps R*T ymm accumulators over the whole
// row, so a decoded weight vector feeds T FMAs and a row block (R rows, ~23 KB at in = 2880) stays in L1
// while all the chunk's token groups pass over it. Decode (n = 1) is then a pure stream of W.
#include <algorithm>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_simd.h"
#include "core/thread_pool.h"

namespace gptoss::cpu {

namespace {
constexpr int64_t kTokenChunk = 32;
constexpr int64_t kRowGrain = 16;  // rows per parallel_for unit
}  // namespace

void bf16w_matmul(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                  int64_t out) {
  if (n <= 0 || out <= 0) return;
  const int64_t nb = in / simd::kBlock;
  const int64_t k_main = nb * simd::kBlock;
  static thread_local std::vector<float> xp_buf;
  float* xp = simd::scratch(xp_buf, size_t(n * std::max<int64_t>(k_main, 1)));
  simd::permute_rows(x, n, in, nb, simd::kBf16Perm, xp);
  const simd::Bf16Decoder dec{w, in};

  const int64_t units = (out + kRowGrain - 1) / kRowGrain;
  ThreadPool::global().parallel_for(units, [&](int64_t u0, int64_t u1, int) {
    const int64_t r_begin = u0 * kRowGrain, r_end = std::min(out, u1 * kRowGrain);
    for (int64_t t0 = 0; t0 < n; t0 += kTokenChunk) {
      const int64_t t_end = std::min(n, t0 + kTokenChunk);
      // Row blocks of 8 rows outer, token groups inner: the block's weights are reused from L1.
      for (int64_t rb = r_begin; rb < r_end; rb += 8) {
        const int64_t rows = std::min<int64_t>(8, r_end - rb);
        for (int64_t t = t0; t < t_end; t += simd::kMaxTokens) {
          const int T = int(std::min<int64_t>(simd::kMaxTokens, t_end - t));
          const float* xr[simd::kMaxTokens];
          for (int i = 0; i < T; ++i) xr[i] = xp + (t + i) * k_main;
          simd::dot_rows_tokens(T, dec, rb, rows, xr, nb, [&](int64_t r, const float* res, int R) {
            for (int i = 0; i < R; ++i) {
              const float b = bias ? bf16_to_f32(bias[r + i]) : 0.0f;
              const uint16_t* wr = w + (r + i) * in;
              for (int j = 0; j < T; ++j) {
                float acc = res[i * T + j];
                const float* xt = x + (t + j) * in;
                for (int64_t c = k_main; c < in; ++c) acc += xt[c] * bf16_to_f32(wr[c]);  // in % 32 tail
                y[(t + j) * out + r + i] = acc + b;
              }
            }
          });
        }
      }
    }
  });
}

}  // namespace gptoss::cpu
