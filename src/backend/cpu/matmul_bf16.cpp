// bf16w_matmul: y[n, out] = x[n, in] · W^T + bias with W [out, in] bf16 (see kernels.h).
//
// Activations are permuted once into the decoder's order (simd::kBf16Perm); output rows are split over
// the threads in contiguous ranges, so each thread streams its part of W.
// - With AMX, every batch of 2+ tokens: whole 32-row blocks on the tiles (bf16_amx.h), 64 tokens a pass;
//   the last out % 32 rows by the paths below.
// - Decode batches with AVX-512 (2..64 tokens): its dot-product tiles (bf16_avx512.h), x unpermuted.
// - Few tokens (n < kGemmMinTokens; decode batches): dot-product tiles (simd::dot_tile) of R rows x T
//   tokens keep R*T ymm accumulators over the whole row; a decoded weight vector feeds T FMAs, an
//   activation vector R; blocks of kDotRowBlock rows stay in L2 while every group of 4 tokens passes.
// - Many tokens (prefill): 16 rows at a time are decoded into an f32 panel in K chunks that stay in L1,
//   and a 6 x 16 (AVX2) or 12 x 16 (AVX-512) outer-product tile runs every token over it (simd::gemm_panel).
#include <algorithm>
#include <vector>

#include "backend/cpu/bf16_amx.h"
#include "backend/cpu/bf16_avx512.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_simd.h"
#include "core/thread_pool.h"

namespace gptoss::cpu {

namespace {
constexpr int64_t kTokenChunk = 32;
constexpr int64_t kRowGrain = 16;  // rows per parallel_for unit (one GEMM panel)
// From this many tokens on, the packed GEMM (AVX2; with AVX-512 from kAvx512MaxTokens + 1). The lm_head
// shape with 20480 rows, two threads, GFLOP/s of the dot tiles against the GEMM: 107 / 42 at 16 tokens,
// 135 / 86 at 32, 133 / 124 at 64, 123 / 134 at 96 (2026-12-02 Xeon VM, AVX2 forced).
constexpr int64_t kGemmMinTokens = 80;
constexpr int64_t kDotRowBlock = 24;  // rows whose weights stay in L2 while every token group of a chunk passes
// With AVX-512, decode batches of 2 .. this many tokens take its dot-product tiles (bf16_avx512.h): x of
// up to 64 tokens (737 KB at in = 2880) stays in L2 while every row block passes over it. The lm_head
// (2880 -> 201088) at 64 tokens: 237 ms with the tiles against 364 ms with the packed GEMM (Zen 5, 2
// threads); at 128 tokens the two are even (560 ms).
constexpr int64_t kAvx512MaxTokens = 64;

// AVX-512 decode batches: 6-row blocks, every group of 4 tokens over each (the block's weights stay in
// L1); finish(t, r, acc) completes token t of row r.
template <class Finish>
void avx512_batch(const float* x, int64_t n, int64_t in, const uint16_t* w, int64_t k_main, int64_t out,
                  int64_t row_grain, Finish&& finish) {
  const int64_t units = (out + row_grain - 1) / row_grain;
  static thread_local std::vector<float> xq_tl;
  float* xq = simd::scratch(xq_tl, size_t(n * k_main));
  simd::permute_rows(x, n, in, k_main / simd::kBlock, avx512::kBf16PairPerm, xq);
  ThreadPool::global().parallel_for(units, [&](int64_t u0, int64_t u1, int) {
    const int64_t r_end = std::min(out, u1 * row_grain);
    for (int64_t rb = u0 * row_grain; rb < r_end; rb += avx512::kBf16MaxRows) {
      const int rows = int(std::min<int64_t>(avx512::kBf16MaxRows, r_end - rb));
      for (int64_t t = 0; t < n; t += avx512::kBf16MaxTokens) {
        const int T = int(std::min<int64_t>(avx512::kBf16MaxTokens, n - t));
        const float* xr[avx512::kBf16MaxTokens];
        for (int i = 0; i < T; ++i) xr[i] = xq + (t + i) * k_main;
        float res[avx512::kBf16MaxRows * avx512::kBf16MaxTokens];
        avx512::bf16_dot_rows(w, in, k_main, rb, rows, xr, T, res);
        for (int i = 0; i < rows; ++i)
          for (int j = 0; j < T; ++j) finish(t + j, rb + i, res[i * T + j]);
      }
    }
  });
}
// With AMX, tokens per pass over W: their packed activations (three bf16 terms, 1.1 MB at 64 tokens and
// in = 2880) and a 32-row block of W (184 KB) fit in L2 together.
constexpr int64_t kAmxTokenChunk = 64;

// AMX batches (bf16_amx.h), n <= kAmxTokenChunk: x packed once into the B tiles (in parallel), then the
// whole 32-row blocks (out rounded down to 32) split over the threads; finish(t, r, acc) completes token t
// of row r.
template <class Finish>
void amx_batch(const float* x, int64_t n, int64_t in, const uint16_t* w, int64_t k_main, int64_t out,
                  Finish&& finish) {
  const int64_t blocks = out / amx::kRows;
  static thread_local std::vector<uint16_t> xp_tl;
  std::vector<uint16_t>& xp = xp_tl;  // lambdas must not name the thread_local
  xp.resize(size_t(amx::packed_size(n, k_main)));
  const int64_t n_pad = (n + amx::kTokens - 1) / amx::kTokens * amx::kTokens;
  ThreadPool::global().parallel_for(n_pad * (k_main / 32), [&](int64_t i0, int64_t i1, int) {
    amx::pack_x(x, n, in, k_main, xp.data(), i0, i1);
  });
  ThreadPool::global().parallel_for(blocks, [&](int64_t b0, int64_t b1, int) {
    static thread_local std::vector<float> res_tl;
    float* res = simd::scratch(res_tl, size_t(amx::kRows * n_pad));
    for (int64_t b = b0; b < b1; ++b) {
      amx::bf16_rows(w, in, k_main, b * amx::kRows, b + 1 < b1 ? (b + 1) * amx::kRows : -1, xp.data(), n, res);
      for (int i = 0; i < amx::kRows; ++i)
        for (int64_t t = 0; t < n; ++t) finish(t, b * amx::kRows + i, res[i * n_pad + t]);
    }
  });
}
}  // namespace

void bf16w_matmul(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                  int64_t out) {
  if (n <= 0 || out <= 0) return;
  const int64_t nb = in / simd::kBlock;
  const int64_t k_main = nb * simd::kBlock;
  // K tail (in % 32) and bias, added to a tile result of row r, token t.
  auto finish = [&](int64_t t, int64_t r, float acc) {
    const uint16_t* wr = w + r * in;
    const float* xt = x + t * in;
    for (int64_t c = k_main; c < in; ++c) acc += xt[c] * bf16_to_f32(wr[c]);
    y[t * out + r] = acc + (bias ? bf16_to_f32(bias[r]) : 0.0f);
  };
  if (n >= 2 && nb > 0 && out >= amx::kRows && cpu_isa() == Isa::amx) {
    // Whole 32-row blocks on the AMX tiles, kAmxTokenChunk tokens at a time (their packed activations
    // and a row block's weights stay in L2); the last out % 32 rows by the other paths, into a buffer.
    for (int64_t t0 = 0; t0 < n; t0 += kAmxTokenChunk)
      amx_batch(x + t0 * in, std::min(kAmxTokenChunk, n - t0), in, w, k_main, out,
                [&](int64_t t, int64_t r, float acc) { finish(t0 + t, r, acc); });
    const int64_t done = out / amx::kRows * amx::kRows, rest = out - done;
    if (rest > 0) {
      std::vector<float> yr(size_t(n * rest));
      bf16w_matmul(x, n, in, w + done * in, bias ? bias + done : nullptr, yr.data(), rest);
      for (int64_t t = 0; t < n; ++t)
        std::copy_n(yr.data() + t * rest, rest, y + t * out + done);
    }
    return;
  }
  if (n >= 2 && n <= kAvx512MaxTokens && nb > 0 && cpu_isa() >= Isa::avx512) {
    avx512_batch(x, n, in, w, k_main, out, kRowGrain * 3, finish);
    return;
  }
  static thread_local std::vector<float> xp_buf;
  float* xp = simd::scratch(xp_buf, size_t(n * std::max<int64_t>(k_main, 1)));
  simd::permute_rows(x, n, in, nb, simd::kBf16Perm, xp);
  const simd::Bf16Decoder dec{w, in};

  const int64_t units = (out + kRowGrain - 1) / kRowGrain;
  if (n >= (cpu_isa() >= Isa::avx512 ? kAvx512MaxTokens + 1 : kGemmMinTokens) && nb > 0) {
    // Prefill: packed panels of 16 rows, every token over each panel (see kernels_simd.h).
    static thread_local std::vector<const float*> rows_tl;
    std::vector<const float*>& xrows = rows_tl;  // lambdas must not name the thread_local
    xrows.resize(size_t(n));
    for (int64_t t = 0; t < n; ++t) xrows[size_t(t)] = xp + t * k_main;
    ThreadPool::global().parallel_for(units, [&](int64_t u0, int64_t u1, int) {
      static thread_local std::vector<float> panel_tl, c_tl;
      float* panel = simd::scratch(panel_tl, simd::kPanelScratch);
      float* cbuf = simd::scratch(c_tl, simd::gemm_c_scratch(n));
      const int64_t r_end = std::min(out, u1 * kRowGrain);
      for (int64_t rb = u0 * kRowGrain; rb < r_end; rb += simd::kGemmRows) {
        const int rows = int(std::min<int64_t>(simd::kGemmRows, r_end - rb));
        simd::gemm_panel(dec, rb, rows, nb, xrows.data(), n, panel, cbuf,
                         [&](int64_t r, int R, int64_t t, int M, const float* res) {
                           for (int m = 0; m < M; ++m)
                             for (int i = 0; i < R; ++i) finish(t + m, r + i, res[m * simd::kPanelRows + i]);
                         });
      }
    });
    return;
  }
  ThreadPool::global().parallel_for(units, [&](int64_t u0, int64_t u1, int) {
    const int64_t r_begin = u0 * kRowGrain, r_end = std::min(out, u1 * kRowGrain);
    for (int64_t t0 = 0; t0 < n; t0 += kTokenChunk) {
      const int64_t t_end = std::min(n, t0 + kTokenChunk);
      // Row blocks outer, token groups inner: the block's weights are reused from L2.
      for (int64_t rb = r_begin; rb < r_end; rb += kDotRowBlock) {
        const int64_t rows = std::min<int64_t>(kDotRowBlock, r_end - rb);
        for (int64_t t = t0; t < t_end; t += simd::kBf16MaxTokens) {
          const int T = int(std::min<int64_t>(simd::kBf16MaxTokens, t_end - t));
          const float* xr[simd::kBf16MaxTokens];
          for (int i = 0; i < T; ++i) xr[i] = xp + (t + i) * k_main;
          simd::dot_rows_tokens(T, dec, rb, rows, xr, nb, [&](int64_t r, const float* res, int R) {
            for (int i = 0; i < R; ++i)
              for (int j = 0; j < T; ++j) finish(t + j, r + i, res[i * T + j]);
          });
        }
      }
    }
  });
}

}  // namespace gptoss::cpu
