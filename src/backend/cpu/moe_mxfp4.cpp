// f32_mxfp4w_moe: the gpt-oss MoE block with MXFP4 expert weights read in the hub layout (see kernels.h),
// and mxfp4_dequantize.
//
// Flow: (1) assignments (token, slot) are grouped by expert; (2) activations are permuted once into the
// AVX2 MXFP4 decoder's order or, where the CPU has AVX-512, into the group order of its kernels (few-token
// dot products and the GEMM's panels, see mxfp4_avx512.h); (3) gate_up: for each active expert, the rows
// (gate/up pairs) are split over the threads by cost; an expert with >= 8 tokens runs the packed GEMM
// (simd::gemm_panel), one with fewer walks its rows in blocks of 8 and for every block runs its tokens in
// small groups (dot-product tiles), so the decoded weights feed several FMAs and a block's bytes are
// reused from L1 across token groups (one token: the VNNI kernel where the CPU has it; with AMX an expert of
// >= 4 tokens runs the AMX pass instead, mxfp4_amx.h); the clamped SwiGLU is fused in the epilogue
// and writes h (already permuted for the down projection); (4) down: the hidden rows are split over the
// threads, each thread loops over the active experts and adds w * (D h + b) into its rows of out, so no
// two threads write the same element. Decode (n = 1) streams each selected expert's bytes exactly once.
#include <algorithm>
#include <cmath>

#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_moe.h"
#include "backend/cpu/kernels_simd.h"
#include "backend/cpu/mxfp4_amx.h"
#include "backend/cpu/mxfp4_avx512.h"
#include "backend/cpu/mxfp4_vnni.h"
#include "core/thread_pool.h"

namespace gptoss::cpu {

namespace {
constexpr int64_t kTokenChunk = 32;  // tokens whose activations stay in L2 while a thread walks its rows
constexpr int64_t kRowUnit = 16;     // rows per work unit (gate_up: 8 gate/up pairs); one GEMM panel
constexpr int32_t kGemmMinTokens = 8;  // an expert with this many tokens uses the packed GEMM
constexpr float kAlpha = 1.702f;
// Up to this many tokens a call packs x and h for the VNNI one-token kernel (mxfp4_vnni.h); a prefill's
// experts nearly all run the GEMM, and packing every token would cost more than it saves.
constexpr int64_t kVnniMaxTokens = 64;
// With AMX, experts with at least this many tokens take the AMX pass (mxfp4_amx.h), which costs 1.6-1.9 ns
// a block of a row at 1-5 tokens against 1.8 / 2.3 for the f32 pass of 2 / 3 (one thread, L2, 2026-12-02
// Xeon VM). From DRAM, where decode batches read their experts, the passes of 2-4 tokens cost about the
// same (2-2.9 ns) and the MoE at 16 tokens measured the same with a threshold of 2, 3 or 4 (kernels_bench
// and the 20b at batch 16, alternated); 4 was as fast as any.
constexpr int32_t kAmxMinTokens = 4;

const std::array<int, simd::kBlock>& mxfp4_inverse_perm() {
  static const std::array<int, simd::kBlock> inv = [] {
    std::array<int, simd::kBlock> v{};
    for (int i = 0; i < simd::kBlock; ++i) v[size_t(simd::kMxfp4Perm[size_t(i)])] = i;
    return v;
  }();
  return inv;
}

simd::Mxfp4Decoder expert_decoder(const Mxfp4Experts& m, int e) {
  const int64_t nb = m.cols / simd::kBlock;
  return simd::Mxfp4Decoder{m.blocks + int64_t(e) * m.rows * nb * 16, m.scales + int64_t(e) * m.rows * nb, nb};
}

// res[i * T + t] = row r0 + i of expert `dec` . xr[t] for i < rows (<= 8), t < T: the AVX2 dot tiles
// (activations in kMxfp4Perm order) or, with `group_order`, the AVX-512 kernel (activations in its group
// order, see mxfp4_avx512.h).
void few_token_dots(bool group_order, const simd::Mxfp4Decoder& dec, int64_t r0, int64_t rows, int64_t total_rows,
                    const float* const* xr, int T, float* res) {
  if (group_order) {
    avx512::mxfp4_dot_rows(dec.blocks, dec.scales, dec.nb, r0, rows, total_rows, xr, T, res);
    return;
  }
  simd::dot_rows_tokens(T, dec, r0, rows, xr, dec.nb, [&](int64_t r, const float* out, int R) {
    for (int i = 0; i < R * T; ++i) res[(r - r0) * T + i] = out[i];
  });
}

// Rows [r_lo, r_hi) of expert e times the n activation rows xr with the packed GEMM (simd::gemm_panel):
// with `group_order` (AVX-512) its panels are packed in group order and xr is in group order too.
template <class Emit>
void expert_gemm(bool group_order, const Mxfp4Experts& m, int e, int64_t r_lo, int64_t r_hi, const float* const* xr,
                 int64_t n, Emit&& emit) {
  static thread_local std::vector<float> panel_tl, c_tl;  // this worker's own
  float* panel = simd::scratch(panel_tl, simd::kPanelScratch);
  float* cbuf = simd::scratch(c_tl, simd::gemm_c_scratch(n));
  const simd::Mxfp4Decoder dec = expert_decoder(m, e);
  for (int64_t rb = r_lo; rb < r_hi; rb += simd::kGemmRows) {
    const int rows = int(std::min<int64_t>(simd::kGemmRows, r_hi - rb));
    if (group_order)
      simd::gemm_panel(simd::Mxfp4GroupDecoder{dec.blocks, dec.scales, dec.nb}, rb, rows, dec.nb, xr, n, panel, cbuf,
                       emit);
    else
      simd::gemm_panel(dec, rb, rows, dec.nb, xr, n, panel, cbuf, emit);
  }
}

// Rows [r_lo, r_hi) of expert e times the activation rows of its sorted assignments [s0, s1) (act(i): the
// row of assignment i, in the order `group_order` selects): the packed GEMM from kGemmMinTokens tokens on,
// else the few-token dot tiles over row blocks of 8 (each block's bytes reused from L1 across token groups).
// emit(r, R, a, M, v) receives rows r .. r+R-1 for assignments a .. a+M-1, v(i, j) the value of row r+i and
// assignment a+j. vnni_of(i): assignment i's activations packed for the VNNI kernel, or nullptr; a pass of
// one token with them runs that kernel.
template <class Act, class Vnni, class Emit>
void expert_rows_f32(bool group_order, const Mxfp4Experts& m, int e, int64_t r_lo, int64_t r_hi, int32_t s0,
                     int32_t s1, Act&& act, Vnni&& vnni_of, Emit&& emit) {
  if (s1 - s0 >= kGemmMinTokens) {
    static thread_local std::vector<const float*> rows_tl;  // this worker's own
    const float** xr = simd::scratch(rows_tl, size_t(s1 - s0));
    for (int32_t i = s0; i < s1; ++i) xr[i - s0] = act(i);
    expert_gemm(group_order, m, e, r_lo, r_hi, xr, s1 - s0, [&](int64_t r, int R, int64_t t, int M, const float* res) {
      emit(r, R, s0 + int32_t(t), M, [res](int i, int j) { return res[j * simd::kPanelRows + i]; });
    });
    return;
  }
  const simd::Mxfp4Decoder dec = expert_decoder(m, e);
  for (int32_t c0 = s0; c0 < s1; c0 += int32_t(kTokenChunk)) {
    const int32_t c1 = std::min<int32_t>(s1, c0 + int32_t(kTokenChunk));
    for (int64_t rb = r_lo; rb < r_hi; rb += 8) {
      const int rows = int(std::min<int64_t>(8, r_hi - rb));
      for (int32_t p = c0; p < c1; p += simd::kMaxTokens) {
        const int T = std::min<int32_t>(simd::kMaxTokens, c1 - p);
        float res[8 * simd::kMaxTokens];  // [row][token]
        if (const avx512::VnniGroup* xl = T == 1 ? vnni_of(p) : nullptr) {
          avx512::mxfp4_dot_rows_vnni(dec.blocks, dec.scales, dec.nb, rb, rows, xl, res);
          emit(rb, rows, p, 1, [&res](int i, int) { return res[i]; });
          continue;
        }
        const float* xr[simd::kMaxTokens];
        for (int i = 0; i < T; ++i) xr[i] = act(p + i);
        few_token_dots(group_order, dec, rb, rows, m.rows, xr, T, res);
        emit(rb, rows, p, T, [&res, T](int i, int j) { return res[i * T + j]; });
      }
    }
  }
}

// expert_rows_f32, except that with AMX an expert of kAmxMinTokens or more tokens runs the AMX pass
// (mxfp4_amx.h) over whole 32-row blocks, up to amx::kMaxPassTokens tokens at a time; the rest rows and
// rows with a scale the tiles cannot take go through expert_rows_f32.
template <class Act, class Vnni, class Emit>
void expert_rows(bool group_order, const Mxfp4Experts& m, int e, int64_t r_lo, int64_t r_hi, int32_t s0, int32_t s1,
                 Act&& act, Vnni&& vnni_of, Emit&& emit) {
  if (s1 - s0 < kAmxMinTokens || cpu_isa() != Isa::amx) {
    expert_rows_f32(group_order, m, e, r_lo, r_hi, s0, s1, act, vnni_of, emit);
    return;
  }
  static thread_local std::vector<uint16_t> b_tl;  // this worker's own
  static thread_local std::vector<float> res_tl;
  const simd::Mxfp4Decoder dec = expert_decoder(m, e);
  const int64_t pcols = avx512::padded_cols(m.cols);
  float* res = simd::scratch(res_tl, size_t(amx::kMxfp4Rows * amx::kMaxPassTokens));
  for (int32_t p = s0; p < s1; p += amx::kMaxPassTokens) {
    const int T = std::min<int32_t>(amx::kMaxPassTokens, s1 - p);
    const float* xr[amx::kMaxPassTokens];
    for (int i = 0; i < T; ++i) xr[i] = act(p + i);
    uint16_t* xp = simd::scratch(b_tl, size_t(amx::mxfp4_packed_size(T, pcols)));
    amx::mxfp4_pack(xr, T, pcols, xp);
    int64_t r = r_lo;
    for (; r + amx::kMxfp4Rows <= r_hi; r += amx::kMxfp4Rows) {
      if (amx::mxfp4_rows(dec.blocks, dec.scales, dec.nb, r, xp, T, res))
        emit(r, amx::kMxfp4Rows, p, T, [res](int i, int j) { return res[i * amx::kMaxPassTokens + j]; });
      else
        expert_rows_f32(group_order, m, e, r, r + amx::kMxfp4Rows, p, p + T, act, vnni_of, emit);
    }
    if (r < r_hi) expert_rows_f32(group_order, m, e, r, r_hi, p, p + T, act, vnni_of, emit);
  }
}

inline float swiglu(float gate, float up, float limit) {
  gate = std::min(gate, limit);
  up = std::clamp(up, -limit, limit);
  return (up + 1.0f) * (gate / (1.0f + std::exp(-kAlpha * gate)));
}
}  // namespace

void f32_mxfp4w_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                    const Mxfp4Experts& gate_up, const Mxfp4Experts& down, float swiglu_limit, float* out,
                    float* gate_up_out) {
  if (n <= 0) return;
  GPTOSS_CHECK(gate_up.cols == hidden && hidden % simd::kBlock == 0 && down.cols % simd::kBlock == 0 &&
                   gate_up.rows == 2 * down.cols && down.rows == hidden && gate_up.experts == down.experts,
               "MXFP4 MoE shapes: gate_up [{}, {}, {}], down [{}, {}, {}], hidden {}", gate_up.experts,
               gate_up.rows, gate_up.cols, down.experts, down.rows, down.cols, hidden);
  const int64_t inter = down.cols;
  const int64_t nb_in = hidden / simd::kBlock;
  // Experts with few tokens run the AVX-512 kernel where there is one; their activations and h rows are
  // then in its group order, padded to whole groups (those of GEMM experts stay in kMxfp4Perm order).
  const bool wide = cpu_isa() >= Isa::avx512;
  const int64_t ldx = wide ? avx512::padded_cols(hidden) : 0;
  const int64_t ldh = wide ? avx512::padded_cols(inter) : inter;

  // Scratch of the calling thread, grown once. Lambdas below must use the local references: a
  // thread_local named inside a lambda would be the worker's own (empty) instance.
  static thread_local moe::Routing rt_tl;
  static thread_local std::vector<float> xp_buf, xq_buf, h_buf;
  moe::Routing& rt = rt_tl;
  rt.build(idx, n, k, gate_up.experts);
  float* hp = simd::scratch(h_buf, size_t(n * k * ldh));  // [sorted assignment][ldh], permuted
  // x in the AVX2 decoder's order without AVX-512; with it, in the group order of its kernels (few-token
  // dot products and the GEMM's group-order panels alike).
  float* xp = nullptr;
  if (!wide) {
    xp = simd::scratch(xp_buf, size_t(n * hidden));
    simd::permute_rows(x, n, hidden, nb_in, simd::kMxfp4Perm, xp);
  }
  float* xq = nullptr;
  if (wide) {
    xq = simd::scratch(xq_buf, size_t(n * ldx));
    avx512::permute_rows(x, n, hidden, hidden, xq);
    // The group order's padding must read as zeros: it lies in each row's last (partial) group, from
    // whole groups on (avx512::permute_rows does the same for x).
    const int64_t tail = inter / avx512::kGroup * avx512::kGroup;
    if (tail < ldh)
      for (int64_t a = 0; a < n * k; ++a) std::fill(hp + a * ldh + tail, hp + (a + 1) * ldh, 0.0f);
  }
  // Decode calls on a CPU with VNNI: x packed for its one-token kernel (h follows after gate_up).
  const bool vnni = n <= kVnniMaxTokens && cpu_isa() >= Isa::vnni;
  static thread_local std::vector<float> xl_buf, hl_buf;
  const int64_t gx = avx512::vnni_groups(hidden), gh = avx512::vnni_groups(inter);
  constexpr int64_t kGroupFloats = int64_t(sizeof(avx512::VnniGroup) / sizeof(float));
  avx512::VnniGroup* xl = nullptr;
  avx512::VnniGroup* hl = nullptr;
  if (vnni) {
    xl = reinterpret_cast<avx512::VnniGroup*>(simd::scratch(xl_buf, size_t(n * gx * kGroupFloats)));
    hl = reinterpret_cast<avx512::VnniGroup*>(simd::scratch(hl_buf, size_t(n * k * gh * kGroupFloats)));
    ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) avx512::pack_vnni(x + t * hidden, hidden, false, xl + t * gx);
    });
  }
  const auto& inv = mxfp4_inverse_perm();
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.size();

  // gate_up + SwiGLU -> h. From DRAM the AMX pass of T tokens costs ~2.25 + 0.13 T ns a block of a row
  // (2.7 at 4, 4.3 at 16) against ~0.45 (T + 2) for the f32 passes of T tokens (one thread, 2026-12-02 Xeon
  // VM), so with it the threads' shares weigh its experts by that instead of by their tokens.
  const bool amx = cpu_isa() == Isa::amx;
  auto unit_cost = [amx](int32_t T) { return amx && T >= kAmxMinTokens ? 5.0 + 0.29 * T : T + 2.0; };
  const int64_t gu_units = (gate_up.rows + kRowUnit - 1) / kRowUnit;
  pool.parallel_for(threads, [&](int64_t th0, int64_t th1, int) {
    for (int64_t th = th0; th < th1; ++th) {
      moe::split_expert_units(rt, gu_units, int(th), threads, [&](int e, int64_t u0, int64_t u1) {
        const uint16_t* bias = gate_up.bias + int64_t(e) * gate_up.rows;
        const int32_t s0 = rt.start[size_t(e)], s1 = rt.start[size_t(e) + 1];
        const int64_t r_lo = u0 * kRowUnit, r_hi = std::min(gate_up.rows, u1 * kRowUnit);
        auto x_of = [&](int32_t a) {
          const int64_t t = rt.tokens[size_t(a)];
          return wide ? xq + t * ldx : xp + t * hidden;
        };
        // SwiGLU of rows [r, r + R) (whole gate/up pairs: units and tiles start at even rows and hold an even
        // count) for assignments a .. a+M-1, written in the order the down projection of this expert reads.
        auto vnni_of = [&](int32_t a) -> const avx512::VnniGroup* {
          return vnni ? xl + int64_t(rt.tokens[size_t(a)]) * gx : nullptr;
        };
        expert_rows(wide, gate_up, e, r_lo, r_hi, s0, s1, x_of, vnni_of, [&](int64_t r, int R, int32_t a, int M, auto v) {
          for (int i = 0; i + 1 < R; i += 2) {
            const float bg = bf16_to_f32(bias[r + i]), bu = bf16_to_f32(bias[r + i + 1]);
            const int64_t c = (r + i) / 2;
            const int64_t pos = wide ? avx512::group_pos(c)
                                 : (c / simd::kBlock) * simd::kBlock + inv[size_t(c % simd::kBlock)];
            for (int j = 0; j < M; ++j) {
              const float g = v(i, j) + bg, u = v(i + 1, j) + bu;
              hp[int64_t(a + j) * ldh + pos] = swiglu(g, u, swiglu_limit);
              if (gate_up_out) {
                float* o = gate_up_out + int64_t(rt.sorted[size_t(a + j)]) * gate_up.rows + r + i;
                o[0] = g, o[1] = u;
              }
            }
          }
        });
      }, unit_cost);
    }
  });

  if (vnni)  // only the h rows of single-token experts: no other pass takes the VNNI kernel
    pool.parallel_for(int64_t(rt.active.size()), [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; ++i) {
        const int e = rt.active[size_t(i)], a = rt.start[size_t(e)];
        if (rt.count(e) == 1) avx512::pack_vnni(hp + a * ldh, inter, true, hl + a * gh);
      }
    });

  // down: out[t, r] = sum over the token's experts of w * (D h + b), rows split over threads.
  const int64_t d_units = (hidden + kRowUnit - 1) / kRowUnit;
  pool.parallel_for(d_units, [&](int64_t u0, int64_t u1, int) {
    const int64_t r_begin = u0 * kRowUnit, r_end = std::min(hidden, u1 * kRowUnit);
    for (int64_t t = 0; t < n; ++t) std::fill(out + t * hidden + r_begin, out + t * hidden + r_end, 0.0f);
    for (int e : rt.active) {
      const uint16_t* bias = down.bias + int64_t(e) * down.rows;
      expert_rows(wide, down, e, r_begin, r_end, rt.start[size_t(e)], rt.start[size_t(e) + 1],
                  [&](int32_t a) { return hp + int64_t(a) * ldh; },
                  [&](int32_t a) -> const avx512::VnniGroup* {  // packed above for single-token experts only
                    return vnni && rt.count(e) == 1 ? hl + int64_t(a) * gh : nullptr;
                  },
                  [&](int64_t r, int R, int32_t a, int M, auto v) {
                    for (int j = 0; j < M; ++j) {
                      const int32_t s = rt.sorted[size_t(a + j)];
                      float* o = out + int64_t(s / k) * hidden + r;
                      for (int i = 0; i < R; ++i) o[i] += w[s] * (v(i, j) + bf16_to_f32(bias[r + i]));
                    }
                  });
    }
  });
}

void mxfp4_dequantize(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t cols, float* out) {
  GPTOSS_CHECK(cols % simd::kBlock == 0, "MXFP4 row length {} is not a multiple of 32", cols);
  const int64_t nb = cols / simd::kBlock;
  const simd::Mxfp4Decoder dec{blocks, scales, nb};
  ThreadPool::global().parallel_for(rows, [&](int64_t r0, int64_t r1, int) {
    alignas(32) float tmp[simd::kBlock];
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t kb = 0; kb < nb; ++kb) {
        __m256 v[4], s;
        dec.decode(r, kb, v, &s);
        for (int q = 0; q < 4; ++q) _mm256_store_ps(tmp + 8 * q, _mm256_mul_ps(v[q], s));
        float* dst = out + r * cols + kb * simd::kBlock;
        for (int i = 0; i < simd::kBlock; ++i) dst[simd::kMxfp4Perm[size_t(i)]] = tmp[i];
      }
  }, 64);
}

}  // namespace gptoss::cpu
