// moe_backward: the gradient of the MoE block (backend op `moe`) with respect to its input h and to the
// router logits, for LoRA training on the CPU.
//
// Math, for an assignment a = (token t, slot j) routed to expert e with routing weight w_a = w[t, j]:
//   forward (recomputed here: the model's forward keeps no MoE intermediates)
//     g_p, u_p = rows 2p, 2p+1 of GU h_t + b_gu             (gate_up rows interleave gate and up)
//     g'_p = min(g_p, L), u'_p = clamp(u_p, -L, L)
//     s_p = (u'_p + 1) glu(g'_p), glu(x) = x sigmoid(a x), a = 1.702
//     y_a = D s + b_d,   out_t = sum_j w[t, j] y_(t, j)
//   backward, given dout_t
//     dw_a = dout_t . y_a = (D^T dout_t) . s + dout_t . b_d,   ds = w_a D^T dout_t
//     (one pass over D for both: y_a itself is never recomputed)
//     du_p = ds_p glu(g'_p)                   where -L <= u_p <= L, else 0
//     dg_p = ds_p (u'_p + 1) glu'(g'_p)       where g_p <= L, else 0
//       glu'(x) = sigmoid(a x) + a x sigmoid(a x) (1 - sigmoid(a x))
//     dh_t = sum_j GU^T [dg, du]_(t, j)
//   routing: w = softmax over the k selected logits l, so dl_j = w_j (dw_j - sum_i w_i dw_i); the
//   selection itself is piecewise constant (no gradient to the other logits).
// Clamp boundaries follow torch.clamp's backward (the gpt-oss reference swiglu is x.clamp(max=L) and
// x.clamp(-L, L)): the gradient passes where min <= x <= max, bounds included.
//
// Layouts (backend.h ExpertWeights). MXFP4 stores W [E, rows, cols] row-major in 32-element blocks, so a
// stored row is one output: W x is a dot per stored row, W^T y an axpy of stored rows. bf16 stores W^T
// [E, cols, rows] (input-major), so a stored row is one input and the two roles swap. Either way each
// pass decodes every stored row of the expert once (per chunk of tokens) and applies it to all of that
// expert's tokens, so the decode cost is paid per expert, not per token.
//
// Precision: the recomputed forward rounds where the forward does (pre-activations and s in f32), so
// the gradient is that of the real forward. Products accumulate in f32 over 32 terms (32 elements of a
// dot, 32 stored rows of an axpy) and in double across those partial sums: near double accuracy at
// f32 speed. The SwiGLU derivative and the routing terms run in double.
//
// Threads: experts are handed out dynamically (largest first). Each assignment writes its own dh
// contribution, summed per token at the end in slot order, so results do not depend on the thread count.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <vector>

#include <immintrin.h>

#include "backend/cpu/kernels_moe.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "backend/cpu/grad_ops.h"

namespace gptoss::cpu {

namespace {

// The forward's constant, as the f32 it is there.
constexpr double kAlpha = double(1.702f);
// Tokens per pass over an expert's rows: their activations and accumulators stay in L2.
constexpr int kTokenChunk = 32;

// --- small kernels ---------------------------------------------------------------------------------

// out[t] = sum_i a[i] x[t][i] for t < T: f32 FMAs within each 32-element chunk, double across chunks (a
// 2880-long f32 sum would lose ~1e-6 relative; this keeps double-level error at f32 speed). T tokens
// share each load of a.
template <int T>
void dot_tokens(const float* a, const float* const* x, int64_t n, double* out) {
  int64_t i = 0;
  double s[T] = {};
#if defined(__AVX2__) && defined(__FMA__)
  __m256d acc[T][2];
  for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_pd();
  for (; i + 32 <= n; i += 32) {
    const __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + i + 8), a2 = _mm256_loadu_ps(a + i + 16),
                 a3 = _mm256_loadu_ps(a + i + 24);
    for (int t = 0; t < T; ++t) {
      const float* b = x[t] + i;
      __m256 p = _mm256_mul_ps(a0, _mm256_loadu_ps(b));
      p = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b + 8), p);
      p = _mm256_fmadd_ps(a2, _mm256_loadu_ps(b + 16), p);
      p = _mm256_fmadd_ps(a3, _mm256_loadu_ps(b + 24), p);
      acc[t][0] = _mm256_add_pd(acc[t][0], _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
      acc[t][1] = _mm256_add_pd(acc[t][1], _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
    }
  }
  for (int t = 0; t < T; ++t) {
    alignas(32) double v[4];
    _mm256_store_pd(v, _mm256_add_pd(acc[t][0], acc[t][1]));
    s[t] = (v[0] + v[1]) + (v[2] + v[3]);
  }
#endif
  for (int t = 0; t < T; ++t) {
    for (int64_t j = i; j < n; ++j) s[t] += double(a[j]) * double(x[t][j]);
    out[t] = s[t];
  }
}

// dot_tokens for any count of tokens, four at a time.
void dots(const float* a, const float* const* x, int count, int64_t n, double* out) {
  int t = 0;
  for (; t + 4 <= count; t += 4) dot_tokens<4>(a, x + t, n, out + t);
  switch (count - t) {
    case 3: dot_tokens<3>(a, x + t, n, out + t); break;
    case 2: dot_tokens<2>(a, x + t, n, out + t); break;
    case 1: dot_tokens<1>(a, x + t, n, out + t); break;
    default: break;
  }
}

// y[i] += c[0] r[0][i] + ... + c[3] r[3][i] in f32: four stored rows per load and store of y.
void axpy4(float* y, const float* c, const float* const* r, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 c0 = _mm256_set1_ps(c[0]), c1 = _mm256_set1_ps(c[1]), c2 = _mm256_set1_ps(c[2]),
               c3 = _mm256_set1_ps(c[3]);
  for (; i + 8 <= n; i += 8) {
    __m256 acc = _mm256_loadu_ps(y + i);
    acc = _mm256_fmadd_ps(c0, _mm256_loadu_ps(r[0] + i), acc);
    acc = _mm256_fmadd_ps(c1, _mm256_loadu_ps(r[1] + i), acc);
    acc = _mm256_fmadd_ps(c2, _mm256_loadu_ps(r[2] + i), acc);
    acc = _mm256_fmadd_ps(c3, _mm256_loadu_ps(r[3] + i), acc);
    _mm256_storeu_ps(y + i, acc);
  }
#endif
  for (; i < n; ++i) y[i] += c[0] * r[0][i] + c[1] * r[1][i] + c[2] * r[2][i] + c[3] * r[3][i];
}

// y[i] += part[i] (into double), part[i] = 0.
void flush(double* y, float* part, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; i + 8 <= n; i += 8) {
    const __m256 p = _mm256_loadu_ps(part + i);
    _mm256_storeu_pd(y + i, _mm256_add_pd(_mm256_loadu_pd(y + i), _mm256_cvtps_pd(_mm256_castps256_ps128(p))));
    _mm256_storeu_pd(y + i + 4, _mm256_add_pd(_mm256_loadu_pd(y + i + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1))));
    _mm256_storeu_ps(part + i, _mm256_setzero_ps());
  }
#endif
  for (; i < n; ++i) y[i] += part[i], part[i] = 0.0f;
}

// One MXFP4 row of nb blocks -> f32 (exact: an fp4 value times a power of two). Byte i of a block
// holds element 2i in its low nibble and 2i+1 in its high nibble.
void decode_mxfp4_row(const uint8_t* blocks, const uint8_t* scales, int64_t nb, float* dst) {
#if defined(__AVX2__) && defined(__FMA__)
  // Twice the fp4 values as int8 (all integers), so a byte shuffle decodes 16 codes at once; the
  // factor 2 goes into the scale.
  const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  // Half of each e8m0 scale (ldexp per block is a library call: too slow here).
  static const std::array<float, 256> half_scale = [] {
    std::array<float, 256> v{};
    for (int i = 0; i < 256; ++i) v[size_t(i)] = 0.5f * e8m0_to_f32(uint8_t(i));
    return v;
  }();
  for (int64_t b = 0; b < nb; ++b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + b * 16));
    const __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(q, low4));
    const __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(q, 4), low4));
    const __m128i e0 = _mm_unpacklo_epi8(lo, hi);  // elements 0..15
    const __m128i e1 = _mm_unpackhi_epi8(lo, hi);  // elements 16..31
    const __m256 s = _mm256_set1_ps(half_scale[scales[b]]);
    float* d = dst + b * kMxfp4BlockSize;
    _mm256_storeu_ps(d, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e0)), s));
    _mm256_storeu_ps(d + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e0, 8))), s));
    _mm256_storeu_ps(d + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e1)), s));
    _mm256_storeu_ps(d + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e1, 8))), s));
  }
#else
  for (int64_t b = 0; b < nb; ++b) {
    const float s = e8m0_to_f32(scales[b]);
    for (int i = 0; i < 16; ++i) {
      const uint8_t byte = blocks[b * 16 + i];
      dst[b * kMxfp4BlockSize + 2 * i] = fp4_to_f32(byte & 0xf) * s;
      dst[b * kMxfp4BlockSize + 2 * i + 1] = fp4_to_f32(byte >> 4) * s;
    }
  }
#endif
}

// --- one expert's matrix ----------------------------------------------------------------------------

// Stored row i of expert e -> f32: row i of W (MXFP4, cols elements) or row i of W^T (bf16, rows
// elements).
void decode_stored_row(const ExpertWeights& m, int e, int64_t i, float* dst) {
  if (m.mxfp4) {
    const int64_t nb = m.cols / kMxfp4BlockSize;
    const int64_t row = int64_t(e) * m.rows + i;
    decode_mxfp4_row(m.blocks + row * nb * 16, m.scales + row * nb, nb, dst);
  } else {
    const uint16_t* src = m.w + (int64_t(e) * m.cols + i) * m.rows;
    for (int64_t r = 0; r < m.rows; ++r) dst[r] = bf16_to_f32(src[r]);
  }
}

// Per-thread buffers: decoded rows and f32 partial sums.
struct RowBuffers {
  std::vector<float> rows, part;
};

// Stored rows applied together in the axpy form (one load and store of the accumulator per group),
// and how many go into an f32 partial sum before it is added to the double accumulator.
constexpr int kRowGroup = 4;
constexpr int64_t kFlushRows = 32;

// y[a] = W x[a] (transpose false: x has cols elements, y rows) or W^T x[a] (transpose true: x rows, y
// cols), for a < m, y [m, out] double, without bias.
void expert_product(const ExpertWeights& m, int e, bool transpose, const float* const* x, int count, double* y,
                    RowBuffers& buf) {
  const int64_t out = transpose ? m.cols : m.rows;
  const int64_t in = transpose ? m.rows : m.cols;
  // A stored row is an output when MXFP4 goes forward or bf16 goes backward: dots. Else it is an
  // input and its row adds into every output: axpys.
  const bool stored_is_output = m.mxfp4 != transpose;
  const int64_t stored_rows = stored_is_output ? out : in, stored_len = stored_is_output ? in : out;
  if (stored_is_output) {
    buf.rows.resize(size_t(stored_len));
    for (int a0 = 0; a0 < count; a0 += kTokenChunk) {
      const int a1 = std::min(count, a0 + kTokenChunk);
      double res[kTokenChunk];
      for (int64_t i = 0; i < stored_rows; ++i) {
        decode_stored_row(m, e, i, buf.rows.data());
        dots(buf.rows.data(), x + a0, a1 - a0, in, res);
        for (int a = a0; a < a1; ++a) y[a * out + i] = res[a - a0];
      }
    }
    return;
  }
  buf.rows.resize(size_t(kRowGroup * stored_len));
  buf.part.assign(size_t(std::min(count, kTokenChunk) * out), 0.0f);
  const float* r[kRowGroup];
  for (int g = 0; g < kRowGroup; ++g) r[g] = buf.rows.data() + g * stored_len;
  for (int a0 = 0; a0 < count; a0 += kTokenChunk) {
    const int a1 = std::min(count, a0 + kTokenChunk);
    std::fill(y + a0 * out, y + a1 * out, 0.0);
    for (int64_t i0 = 0; i0 < stored_rows; i0 += kRowGroup) {
      const int rows = int(std::min<int64_t>(kRowGroup, stored_rows - i0));
      for (int g = 0; g < rows; ++g) decode_stored_row(m, e, i0 + g, buf.rows.data() + g * stored_len);
      // A short last group pads with zero rows (zero coefficients too): 0 * an earlier row's inf would
      // be NaN.
      std::fill(buf.rows.begin() + rows * stored_len, buf.rows.end(), 0.0f);
      const bool flush_now = (i0 + rows) % kFlushRows == 0 || i0 + rows == stored_rows;
      for (int a = a0; a < a1; ++a) {
        float c[kRowGroup] = {};
        for (int g = 0; g < rows; ++g) c[g] = x[a][i0 + g];
        float* part = buf.part.data() + (a - a0) * out;
        axpy4(part, c, r, out);
        if (flush_now) flush(y + a * out, part, out);
      }
    }
  }
}

// Scratch of one thread, grown to the largest expert it meets.
struct ExpertScratch {
  RowBuffers rows;
  std::vector<const float*> ptrs;
  std::vector<double> pre, acc;  // [m, 2I] gate_up outputs; [m, max(hidden, I)] products
  std::vector<float> gu, s, dgu;  // [m, 2I] biased pre-activations, [m, I] SwiGLU, [m, 2I] their gradient
};

}  // namespace

void moe_backward(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                  const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, const float* dout,
                  float* dh, float* d_logits, const float* gate_up_pre) {
  const int experts = gate_up.experts;
  const int64_t inter = down.cols;
  GPTOSS_CHECK(gate_up.mxfp4 == down.mxfp4 && gate_up.experts == down.experts && gate_up.cols == hidden &&
                   gate_up.rows == 2 * inter && down.rows == hidden && k >= 1 && k <= experts,
               "MoE backward shapes: gate_up [{}, {}, {}], down [{}, {}, {}], hidden {}, k {}", gate_up.experts,
               gate_up.rows, gate_up.cols, down.experts, down.rows, down.cols, hidden, k);
  GPTOSS_CHECK(!gate_up.mxfp4 || (hidden % kMxfp4BlockSize == 0 && inter % kMxfp4BlockSize == 0),
               "MXFP4 MoE backward: hidden {} and intermediate {} must be multiples of 32", hidden, inter);
  if (n <= 0) return;

  // Assignments a = t*k + j grouped by expert (token order within an expert), as the forward groups them.
  cpu::moe::Routing rt;
  rt.build(idx, n, k, experts);
  // Largest first, so the last experts handed out are small and the threads finish together.
  std::vector<int> order = rt.active;
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return rt.count(x) > rt.count(y); });

  std::vector<float> dx_slot(size_t(n * k * hidden));  // each assignment's GU^T [dg, du]
  std::vector<double> dw(size_t(n * k));                // dout_t . y_a
  const float limit = swiglu_limit;

  auto run_expert = [&](int e, ExpertScratch& sc) {
    const int m = rt.count(e);
    const int32_t* asg = rt.sorted.data() + rt.start[size_t(e)];
    sc.ptrs.resize(size_t(m));
    if (!gate_up_pre) sc.pre.resize(size_t(m * 2 * inter));
    sc.acc.resize(size_t(m * std::max(hidden, inter)));
    sc.gu.resize(size_t(m * 2 * inter));
    sc.s.resize(size_t(m * inter));
    sc.dgu.resize(size_t(m * 2 * inter));
    const uint16_t* gu_bias = gate_up.bias + int64_t(e) * gate_up.rows;
    const uint16_t* d_bias = down.bias + int64_t(e) * down.rows;

    // Forward: gate_up (the forward's own values when given, else recomputed, rounded as the forward kernels
    // round: f32 product + f32 bias) and the SwiGLU.
    if (!gate_up_pre) {
      for (int i = 0; i < m; ++i) sc.ptrs[size_t(i)] = h + (asg[i] / k) * hidden;
      expert_product(gate_up, e, false, sc.ptrs.data(), m, sc.pre.data(), sc.rows);
    }
    for (int i = 0; i < m; ++i) {
      const float* given = gate_up_pre ? gate_up_pre + int64_t(asg[i]) * 2 * inter : nullptr;
      for (int64_t p = 0; p < inter; ++p) {
        const float g = given ? given[2 * p]
                              : float(sc.pre[size_t(i * 2 * inter + 2 * p)]) + bf16_to_f32(gu_bias[2 * p]);
        const float u = given ? given[2 * p + 1]
                              : float(sc.pre[size_t(i * 2 * inter + 2 * p + 1)]) + bf16_to_f32(gu_bias[2 * p + 1]);
        sc.gu[size_t(i * 2 * inter + 2 * p)] = g;
        sc.gu[size_t(i * 2 * inter + 2 * p + 1)] = u;
        const float gc = std::min(g, limit), uc = std::clamp(u, -limit, limit);
        sc.s[size_t(i * inter + p)] = (uc + 1.0f) * (gc / (1.0f + std::exp(-1.702f * gc)));
      }
    }
    // D^T dout serves both the routing weight's gradient, dw = dout . (D s + b) = (D^T dout) . s + dout . b
    // (so the expert's output itself is never recomputed), and ds = w D^T dout below.
    for (int i = 0; i < m; ++i) sc.ptrs[size_t(i)] = dout + (asg[i] / k) * hidden;
    expert_product(down, e, true, sc.ptrs.data(), m, sc.acc.data(), sc.rows);
    for (int i = 0; i < m; ++i) {
      const float* go = dout + (asg[i] / k) * hidden;
      double sum = 0;
      for (int64_t p = 0; p < inter; ++p) sum += sc.acc[size_t(i * inter + p)] * double(sc.s[size_t(i * inter + p)]);
      for (int64_t r = 0; r < hidden; ++r) sum += double(go[r]) * double(bf16_to_f32(d_bias[r]));
      dw[size_t(asg[i])] = sum;
    }

    // Then through the SwiGLU.
    for (int i = 0; i < m; ++i) {
      const double wa = w[asg[i]];
      for (int64_t p = 0; p < inter; ++p) {
        const double ds = wa * sc.acc[size_t(i * inter + p)];
        const float g = sc.gu[size_t(i * 2 * inter + 2 * p)], u = sc.gu[size_t(i * 2 * inter + 2 * p + 1)];
        const double gc = std::min(g, limit), uc = std::clamp(u, -limit, limit);
        const double sig = 1.0 / (1.0 + std::exp(-kAlpha * gc));
        const double glu = gc * sig;
        const double dglu = sig + kAlpha * gc * sig * (1.0 - sig);
        // torch.clamp's convention: the gradient passes at the bounds themselves.
        const bool gate_passes = g <= limit, up_passes = u >= -limit && u <= limit;
        sc.dgu[size_t(i * 2 * inter + 2 * p)] = gate_passes ? float(ds * (uc + 1.0) * dglu) : 0.0f;
        sc.dgu[size_t(i * 2 * inter + 2 * p + 1)] = up_passes ? float(ds * glu) : 0.0f;
      }
    }
    // dx = GU^T [dg, du].
    for (int i = 0; i < m; ++i) sc.ptrs[size_t(i)] = sc.dgu.data() + i * 2 * inter;
    expert_product(gate_up, e, true, sc.ptrs.data(), m, sc.acc.data(), sc.rows);
    for (int i = 0; i < m; ++i) {
      float* dst = dx_slot.data() + int64_t(asg[i]) * hidden;
      const double* src = sc.acc.data() + i * hidden;
      for (int64_t c = 0; c < hidden; ++c) dst[c] = float(src[c]);
    }
  };

  ThreadPool& pool = ThreadPool::global();
  std::atomic<size_t> next{0};
  pool.parallel_for(pool.size(), [&](int64_t, int64_t, int) {
    ExpertScratch sc;
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < order.size();) run_expert(order[i], sc);
  });

  // dh_t = sum over the token's slots, in slot order (deterministic).
  pool.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    std::vector<double> sum(static_cast<size_t>(hidden));
    for (int64_t t = t0; t < t1; ++t) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int j = 0; j < k; ++j) {
        const float* src = dx_slot.data() + (t * k + j) * hidden;
        for (int64_t c = 0; c < hidden; ++c) sum[size_t(c)] += src[c];
      }
      for (int64_t c = 0; c < hidden; ++c) dh[t * hidden + c] = float(sum[size_t(c)]);
    }
  });

  // Routing softmax: dl_j = w_j (dw_j - sum_i w_i dw_i) on the selected logits, 0 elsewhere.
  for (int64_t t = 0; t < n; ++t) {
    float* dl = d_logits + t * experts;
    std::fill(dl, dl + experts, 0.0f);
    double mean = 0;
    for (int j = 0; j < k; ++j) mean += double(w[t * k + j]) * dw[size_t(t * k + j)];
    // += so that a (malformed) repeated expert still gets the sum of its slots' gradients.
    for (int j = 0; j < k; ++j)
      dl[idx[t * k + j]] += float(double(w[t * k + j]) * (dw[size_t(t * k + j)] - mean));
  }
}

}  // namespace gptoss::cpu
