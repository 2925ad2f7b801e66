// attention_sinks_paged (see kernels.h): causal / sliding-window attention with per-head sink logits over
// the paged KV pool.
//
// Work items are (kv head, query token) pairs, kv head major, split over the threads: the q heads that
// share a kv head are processed together, so every K and V row read serves all of them. Keys are visited
// in runs of consecutive slots of one physical block (at most kChunk); per run: scores for all heads
// (vectorized over head_dim), an online-softmax update (running max m, denominator l, rescaled
// accumulator), then the V rows are accumulated. The sink starts the softmax as (m = sink, l = 1).
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_simd.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace gptoss::cpu {

namespace {
constexpr int kChunk = 64;      // keys per softmax update
constexpr int kMaxDim = 256;    // head_dim handled by the vector path (multiple of 8)
constexpr int kMaxGroup = 64;   // q heads per kv head handled by the vector path

// r[j] = horizontal sum of s[j], j < 8.
inline __m256 hsum8(const __m256* s) {
  const __m256 t0 = _mm256_hadd_ps(s[0], s[1]), t1 = _mm256_hadd_ps(s[2], s[3]);
  const __m256 t2 = _mm256_hadd_ps(s[4], s[5]), t3 = _mm256_hadd_ps(s[6], s[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Eight K/V elements as f32: f32 as they are, bf16 widened (exact).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

struct RowSeq {
  int32_t seq;
  int32_t t;  // index within the sequence
};

template <int D8, class E>  // head_dim / 8 (0: a runtime value); E the KV element type (float, bf16 bits)
void attend_one(const float* q, int group, int d, const PagedKv& kv, int g_layer, const AttnSeq& sq, int64_t t,
                int kvh, const float* sinks, int window, float scale, float* out, float* scratch) {
  const int d8 = D8 > 0 ? D8 : d / 8;
  const int64_t p = sq.start_pos + t;
  const int64_t lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
  const int64_t row_stride = int64_t(kv.kv_heads) * d;
  const E* pool = static_cast<const E*>(kv.pool);
  constexpr int kLine = 64 / int(sizeof(E));  // elements a cache line
  float* acc = scratch;                      // [group][d]
  float* scores = acc + group * d;           // [group][kChunk]
  float* m = scores + group * kChunk;        // [group]
  float* l = m + group;                      // [group]
  const int h0 = kvh * group;
  for (int g = 0; g < group; ++g) {
    m[g] = sinks[h0 + g];
    l[g] = 1.0f;
    std::fill(acc + g * d, acc + (g + 1) * d, 0.0f);
  }
  for (int64_t kp = lo; kp <= p;) {
    const int64_t lblock = kp / kv.block_size;
    const int64_t block = sq.block_table[lblock];
    GPTOSS_CHECK(block >= 0, "position {} maps to an unassigned KV block", kp);
    const int64_t slot0 = kp % kv.block_size;
    const int nk = int(std::min<int64_t>({p + 1 - kp, kv.block_size - slot0, kChunk}));
    const E* kbase = pool + kv.offset(block, g_layer, 0, slot0, kvh);
    const E* vbase = kbase + int64_t(kv.block_size) * row_stride;
    // The rows of one kv head are 256 B, 2 KB apart, in blocks scattered over the pool: too irregular
    // for the hardware prefetcher. Ask for this run's V rows now (used after the scores) and for the
    // next run's K rows.
    for (int j = 0; j < nk; ++j)
      for (int i = 0; i < d; i += kLine) _mm_prefetch(reinterpret_cast<const char*>(vbase + j * row_stride + i), _MM_HINT_T0);
    if (kp + nk <= p) {
      const int64_t nkp = kp + nk;
      const int64_t nblock = sq.block_table[nkp / kv.block_size];
      if (nblock >= 0) {
        const int64_t nslot = nkp % kv.block_size;
        const int nn = int(std::min<int64_t>({p + 1 - nkp, kv.block_size - nslot, kChunk}));
        const E* nk_base = pool + kv.offset(nblock, g_layer, 0, nslot, kvh);
        for (int j = 0; j < nn; ++j)
          for (int i = 0; i < d; i += kLine)
            _mm_prefetch(reinterpret_cast<const char*>(nk_base + j * row_stride + i), _MM_HINT_T0);
      }
    }
    // Scores.
    for (int g = 0; g < group; ++g) {
      const float* qg = q + int64_t(h0 + g) * d;
      __m256 qv[kMaxDim / 8];
#pragma GCC unroll 32
      for (int i = 0; i < d8; ++i) qv[i] = _mm256_loadu_ps(qg + 8 * i);
      int j = 0;
      // Eight keys at a time: eight dot products reduced together (one transposing reduction).
      for (; j + 8 <= nk; j += 8) {
        __m256 acc8[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) acc8[u] = _mm256_mul_ps(qv[0], load8(kbase + (j + u) * row_stride));
#pragma GCC unroll 32
        for (int i = 1; i < d8; ++i)
#pragma GCC unroll 8
          for (int u = 0; u < 8; ++u)
            acc8[u] = _mm256_fmadd_ps(qv[i], load8(kbase + (j + u) * row_stride + 8 * i), acc8[u]);
        _mm256_storeu_ps(scores + g * kChunk + j, _mm256_mul_ps(hsum8(acc8), _mm256_set1_ps(scale)));
      }
      for (; j < nk; ++j) {
        const E* kr = kbase + j * row_stride;
        __m256 s0 = _mm256_mul_ps(qv[0], load8(kr));
        __m256 s1 = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int i = 1; i + 1 < d8; i += 2) {
          s1 = _mm256_fmadd_ps(qv[i], load8(kr + 8 * i), s1);
          s0 = _mm256_fmadd_ps(qv[i + 1], load8(kr + 8 * i + 8), s0);
        }
        if (d8 % 2 == 0) s1 = _mm256_fmadd_ps(qv[d8 - 1], load8(kr + 8 * (d8 - 1)), s1);
        scores[g * kChunk + j] = simd::hsum(_mm256_add_ps(s0, s1)) * scale;
      }
    }
    // Online softmax update and V accumulation, one head at a time.
    for (int g = 0; g < group; ++g) {
      float* sg = scores + g * kChunk;
      float mx = m[g];
      for (int j = 0; j < nk; ++j) mx = std::max(mx, sg[j]);
      const float corr = std::exp(m[g] - mx);
      m[g] = mx;
      const __m256 mv = _mm256_set1_ps(mx);
      __m256 lsum = _mm256_setzero_ps();
      int j = 0;
      for (; j + 8 <= nk; j += 8) {
        const __m256 e = simd::exp256(_mm256_sub_ps(_mm256_loadu_ps(sg + j), mv));
        _mm256_storeu_ps(sg + j, e);
        lsum = _mm256_add_ps(lsum, e);
      }
      float ls = simd::hsum(lsum);
      for (; j < nk; ++j) ls += sg[j] = std::exp(sg[j] - mx);
      l[g] = l[g] * corr + ls;
      float* ag = acc + g * d;
      __m256 av[kMaxDim / 8];
      const __m256 cv = _mm256_set1_ps(corr);
#pragma GCC unroll 32
      for (int i = 0; i < d8; ++i) av[i] = _mm256_mul_ps(_mm256_loadu_ps(ag + 8 * i), cv);
      for (j = 0; j < nk; ++j) {
        const __m256 pj = _mm256_set1_ps(sg[j]);
        const E* vr = vbase + j * row_stride;
#pragma GCC unroll 32
        for (int i = 0; i < d8; ++i) av[i] = _mm256_fmadd_ps(pj, load8(vr + 8 * i), av[i]);
      }
#pragma GCC unroll 32
      for (int i = 0; i < d8; ++i) _mm256_storeu_ps(ag + 8 * i, av[i]);
    }
    kp += nk;
  }
  for (int g = 0; g < group; ++g) {
    const float inv = 1.0f / l[g];
    float* o = out + int64_t(h0 + g) * d;
    for (int i = 0; i < d; ++i) o[i] = acc[g * d + i] * inv;
  }
}
}  // namespace

void attention_sinks_paged(const float* q, int64_t n_tokens, int heads, const PagedKv& kv, int group_layer,
                           const AttnSeq* seqs, int n_seqs, const float* sinks, int window, float scale,
                           float* out) {
  const int d = kv.head_dim;
  GPTOSS_CHECK(kv.kv_heads > 0 && heads % kv.kv_heads == 0, "{} q heads not a multiple of {} kv heads", heads,
               kv.kv_heads);
  const int group = heads / kv.kv_heads;
  if (d % 8 != 0 || d > kMaxDim || group > kMaxGroup) {
    // Shapes gpt-oss never has: the reference is fine.
    attention_sinks_paged_ref(q, n_tokens, heads, kv, group_layer, seqs, n_seqs, sinks, window, scale, out);
    return;
  }
  static thread_local std::vector<RowSeq> rows_tl;
  std::vector<RowSeq>& rows = rows_tl;
  rows.assign(size_t(n_tokens), RowSeq{-1, 0});
  for (int s = 0; s < n_seqs; ++s)
    for (int64_t t = 0; t < seqs[s].n_tokens; ++t) {
      const int64_t r = seqs[s].token_offset + t;
      GPTOSS_CHECK(r >= 0 && r < n_tokens, "sequence {} row {} outside 0..{}", s, r, n_tokens - 1);
      rows[size_t(r)] = RowSeq{s, int32_t(t)};
    }
  const size_t scratch_floats = size_t(group) * (d + kChunk + 2);
  // attend_one for this pool's element type, with head_dim 64 unrolled.
  using Attend = void (*)(const float*, int, int, const PagedKv&, int, const AttnSeq&, int64_t, int, const float*, int,
                          float, float*, float*);
  static constexpr Attend kAttend[2][2] = {{attend_one<0, float>, attend_one<8, float>},
                                           {attend_one<0, uint16_t>, attend_one<8, uint16_t>}};
  const Attend attend = kAttend[kv.dtype == KvDtype::bf16][d == 64];
  ThreadPool::global().parallel_for(int64_t(kv.kv_heads) * n_tokens, [&](int64_t i0, int64_t i1, int) {
    static thread_local std::vector<float> scratch_tl;
    float* scratch = simd::scratch(scratch_tl, scratch_floats);
    for (int64_t i = i0; i < i1; ++i) {
      const int kvh = int(i / n_tokens);
      const int64_t r = i % n_tokens;
      const RowSeq rs = rows[size_t(r)];
      if (rs.seq < 0) continue;  // a row no sequence owns is left as it is
      const float* qr = q + r * heads * d;
      float* orow = out + r * heads * d;
      attend(qr, group, d, kv, group_layer, seqs[rs.seq], rs.t, kvh, sinks, window, scale, orow, scratch);
    }
  });
}

}  // namespace gptoss::cpu
