// Internal building blocks of the optimized CPU kernels (AVX2/FMA): weight decoders that turn 32
// consecutive elements of a weight row into four f32 vectors, the matching permutation of the
// activations, a register-blocked dot-product tile, and a vectorized exp. Not a public interface.
//
// Why the permutation: bf16 -> f32 and fp4 -> f32 are cheapest with in-lane shifts and byte shuffles,
// which leave the decoded elements in a fixed scrambled order inside each 32-element block. Instead of
// unscrambling every weight (read once), the activations (reused by every output row) are permuted once
// per call into the same order, so the dot products come out right.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/cpu/gemm_avx512.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/mxfp4_avx512.h"
#include "backend/cpu/prefetch.h"
#include "core/dtype.h"

namespace gptoss::cpu::simd {

inline constexpr int kBlock = 32;  // elements per decoded block (= one MXFP4 block)

// A checksum of p[begin, end) read with aligned 32-float strides (end - begin a multiple of 32, p 32-byte
// aligned): the bandwidth probes' streaming read, kept in one place so both benches measure the same loop.
// Integer adds: the bytes may be anything (the weight probe reads bf16 pairs and MXFP4 codes as floats,
// and denormal or NaN operands must not slow the read down). It prefetches as the decode kernels do (1 KB
// ahead into L1, kPrefetchL2Bytes into L2), so the roofline is the fastest stream they could reach: on the 2026-12-02
// Xeon VM two threads read a 1 GiB buffer at 34.2-34.5 GB/s that way against 31.4-32.2 with the bare loop.
inline float stream_sum(const float* p, int64_t begin, int64_t end) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  const auto* q = reinterpret_cast<const __m256i*>(p);
  for (int64_t i = begin / 8; i < end / 8; i += 4) {
    const char* line = reinterpret_cast<const char*>(q + i);  // prefetches past the end are harmless
    _mm_prefetch(line + 1024, _MM_HINT_T0);
    _mm_prefetch(line + 1024 + 64, _MM_HINT_T0);
    _mm_prefetch(line + kPrefetchL2Bytes, _MM_HINT_T1);
    _mm_prefetch(line + kPrefetchL2Bytes + 64, _MM_HINT_T1);
    a0 = _mm256_add_epi32(a0, _mm256_load_si256(q + i));
    a1 = _mm256_add_epi32(a1, _mm256_load_si256(q + i + 1));
    a2 = _mm256_add_epi32(a2, _mm256_load_si256(q + i + 2));
    a3 = _mm256_add_epi32(a3, _mm256_load_si256(q + i + 3));
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
  return float(uint32_t(_mm256_extract_epi32(s, 0)) + uint32_t(_mm256_extract_epi32(s, 7)));
}

// Fills p[begin, end) with values that differ on every page, for the bandwidth probes: a buffer of equal
// pages (zeros, or a pattern repeating every 4 KiB, as the probes used) could be merged into one physical
// page by the host's same-page merging and then read from cache. (It was not the cause of the 30 vs
// 60 GB/s swings this VM shows; those come with the minute, for random data too.)
inline void probe_fill(float* p, int64_t begin, int64_t end) {
  uint64_t x = 0x9e3779b97f4a7c15ull * uint64_t(begin + 1);
  for (int64_t i = begin; i < end; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    p[i] = float(x >> 40) * 0x1p-24f;
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- bf16 rows --------------------------------------------------------------------------------
// 32 bf16 = two 256-bit loads; (v << 16) gives the even elements, (v & 0xffff0000) the odd ones.
// Decoded order: w0 = even of 0..15, w1 = odd of 0..15, w2 = even of 16..31, w3 = odd of 16..31.
inline constexpr std::array<int, kBlock> kBf16Perm = [] {
  std::array<int, kBlock> p{};
  for (int q = 0; q < 4; ++q)
    for (int l = 0; l < 8; ++l) p[size_t(q * 8 + l)] = (q / 2) * 16 + 2 * l + (q % 2);
  return p;
}();

// The L1 prefetch distance of the MXFP4 rows of the AVX2 few-token tiles (one prefetch per 64 bytes).
inline constexpr int kMxfp4PrefetchBytes = 2048;

struct Bf16Decoder {
  static constexpr bool kHasScale = false;
  const uint16_t* w;  // row-major [rows, ld]
  int64_t ld;
  const std::array<int, kBlock>& perm() const { return kBf16Perm; }
  // Elements [32*kb, 32*kb + 32) of row r.
  inline void decode(int64_t r, int64_t kb, __m256* out, __m256* /*scale*/) const {
    const __m256i* p = reinterpret_cast<const __m256i*>(w + r * ld + kb * kBlock);
    const __m256i a = _mm256_loadu_si256(p), b = _mm256_loadu_si256(p + 1);
    const __m256i hi = _mm256_set1_epi32(int(0xffff0000u));
    out[0] = _mm256_castsi256_ps(_mm256_slli_epi32(a, 16));
    out[1] = _mm256_castsi256_ps(_mm256_and_si256(a, hi));
    out[2] = _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
    out[3] = _mm256_castsi256_ps(_mm256_and_si256(b, hi));
  }
};

// ---- MXFP4 rows -------------------------------------------------------------------------------
// A 16-byte block is broadcast to both 128-bit lanes; lane 0 keeps the low nibbles (even elements),
// lane 1 the high nibbles (odd elements). Two byte shuffles give the low and high bytes of each code's
// bf16 value (every e2m1 value is exact in bf16, -0 included), interleaving them gives bf16 words, and
// shift/mask turn the words into f32 — all exact. The block scale 2^(s-127) comes from a table.
inline constexpr std::array<int, kBlock> kMxfp4Perm = [] {
  std::array<int, kBlock> p{};
  for (int q = 0; q < 4; ++q)
    for (int l = 0; l < 8; ++l) p[size_t(q * 8 + l)] = (q / 2) * 16 + 4 * (l % 4) + 2 * (q % 2) + l / 4;
  return p;
}();

// 2^(s-127) for every e8m0 byte (s = 0 is the subnormal 2^-127; 255 is NaN).
inline const float* e8m0_table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> v{};
    for (int s = 0; s < 256; ++s) v[size_t(s)] = e8m0_to_f32(uint8_t(s));
    return v;
  }();
  return t.data();
}

struct Mxfp4Decoder {
  static constexpr bool kHasScale = true;
  const uint8_t* blocks;  // [rows, cols/32, 16]
  const uint8_t* scales;  // [rows, cols/32]
  int64_t nb;             // blocks per row
  const float* scale_table = e8m0_table();
  const std::array<int, kBlock>& perm() const { return kMxfp4Perm; }
  // Unscaled values of elements [32*kb, 32*kb + 32) of row r, and the block scale broadcast.
  inline void decode(int64_t r, int64_t kb, __m256* out, __m256* scale) const {
    const int64_t b = r * nb + kb;
    const __m256i lo_lut = _mm256_setr_epi8(0, 0, char(0x80), char(0xc0), 0, 0x40, char(0x80), char(0xc0), 0, 0,
                                            char(0x80), char(0xc0), 0, 0x40, char(0x80), char(0xc0), 0, 0,
                                            char(0x80), char(0xc0), 0, 0x40, char(0x80), char(0xc0), 0, 0,
                                            char(0x80), char(0xc0), 0, 0x40, char(0x80), char(0xc0));
    const __m256i hi_lut = _mm256_setr_epi8(
        0, 0x3f, 0x3f, 0x3f, 0x40, 0x40, 0x40, 0x40, char(0x80), char(0xbf), char(0xbf), char(0xbf), char(0xc0),
        char(0xc0), char(0xc0), char(0xc0), 0, 0x3f, 0x3f, 0x3f, 0x40, 0x40, 0x40, 0x40, char(0x80), char(0xbf),
        char(0xbf), char(0xbf), char(0xc0), char(0xc0), char(0xc0), char(0xc0));
    const __m256i bytes =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + b * 16)));
    const __m256i codes =
        _mm256_and_si256(_mm256_srlv_epi32(bytes, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
    const __m256i lo = _mm256_shuffle_epi8(lo_lut, codes), hi = _mm256_shuffle_epi8(hi_lut, codes);
    const __m256i w0 = _mm256_unpacklo_epi8(lo, hi), w1 = _mm256_unpackhi_epi8(lo, hi);
    const __m256i himask = _mm256_set1_epi32(int(0xffff0000u));
    out[0] = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
    out[1] = _mm256_castsi256_ps(_mm256_and_si256(w0, himask));
    out[2] = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
    out[3] = _mm256_castsi256_ps(_mm256_and_si256(w1, himask));
    *scale = _mm256_broadcast_ss(scale_table + scales[b]);
  }
};

// Permutes the first nb*32 elements of each of n rows of x (stride ld) into xp (stride nb*32).
inline void permute_rows(const float* x, int64_t n, int64_t ld, int64_t nb, const std::array<int, kBlock>& perm,
                         float* xp) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t kb = 0; kb < nb; ++kb) {
      const float* src = x + t * ld + kb * kBlock;
      float* dst = xp + t * nb * kBlock + kb * kBlock;
      for (int i = 0; i < kBlock; ++i) dst[i] = src[perm[size_t(i)]];
    }
}

// Sum of a decoded block's four products with the activations at xb, as a short tree (two chains of two,
// then an add), so the result does not wait on a chain of four dependent FMAs.
inline __m256 block_sum(const __m256* w, const float* xb) {
  const __m256 p01 = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xb + 8), _mm256_mul_ps(w[0], _mm256_loadu_ps(xb)));
  const __m256 p23 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), _mm256_mul_ps(w[2], _mm256_loadu_ps(xb + 16)));
  return _mm256_add_ps(p01, p23);
}

// out[r*T + t] = dot(row r0 + r of the decoder, xp[t]) over nb blocks, for R rows and T tokens (xp[t] are
// permuted activation rows). The accumulators stay in registers for the whole row.
template <int R, int T, class Dec>
inline void dot_tile(const Dec& dec, int64_t r0, const float* const* xp, int64_t nb, float* out) {
  // Constant-trip loops are unrolled explicitly (-O2 would leave them rolled and keep acc on the stack).
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  if constexpr (R == 1 && T == 1 && Dec::kHasScale) {
    // One row, one token (MXFP4 decode): a single sequential stream, which the hardware prefetcher
    // follows better than several interleaved rows; four accumulators break the FMA latency chain.
    __m256 a4[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const char* row = reinterpret_cast<const char*>(dec.blocks + r0 * nb * 16);
    int64_t kb = 0;
    for (; kb + 4 <= nb; kb += 4) {
      _mm_prefetch(row + kb * 16 + kMxfp4PrefetchBytes, _MM_HINT_T0);  // past the row: the next row's
      _mm_prefetch(row + kb * 16 + kPrefetchL2Bytes, _MM_HINT_T1);
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        __m256 w[4], s;
        dec.decode(r0, kb + u, w, &s);
        const float* xb = xp[0] + (kb + u) * kBlock;
        __m256 p = _mm256_mul_ps(w[0], _mm256_loadu_ps(xb));
        p = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xb + 8), p);
        p = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb + 16), p);
        p = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), p);
        a4[u] = _mm256_fmadd_ps(p, s, a4[u]);
      }
    }
    for (; kb < nb; ++kb) {
      __m256 w[4], s;
      dec.decode(r0, kb, w, &s);
      a4[0] = _mm256_fmadd_ps(block_sum(w, xp[0] + kb * kBlock), s, a4[0]);
    }
    out[0] = hsum(_mm256_add_ps(_mm256_add_ps(a4[0], a4[1]), _mm256_add_ps(a4[2], a4[3])));
    return;
  }
  if constexpr (R == 1 && T == 1 && !Dec::kHasScale) {
    // One bf16 row, one token (decode): a single sequential stream (interleaved rows stream ~25 % slower
    // from DRAM), one accumulator per decoded vector so no FMA waits for another.
    __m256 a4[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const char* row = reinterpret_cast<const char*>(dec.w + r0 * dec.ld);
    for (int64_t kb = 0; kb < nb; ++kb) {
      __m256 w[4], s;
      // Past the row's end these are the next row's lines, which follow it in memory.
      const char* line = row + kb * kBlock * int64_t(sizeof(uint16_t));
      _mm_prefetch(line + kBf16PrefetchBytes, _MM_HINT_T0);
      _mm_prefetch(line + kPrefetchL2Bytes, _MM_HINT_T1);
      dec.decode(r0, kb, w, &s);
      const float* xb = xp[0] + kb * kBlock;
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) a4[q] = _mm256_fmadd_ps(w[q], _mm256_loadu_ps(xb + 8 * q), a4[q]);
    }
    out[0] = hsum(_mm256_add_ps(_mm256_add_ps(a4[0], a4[1]), _mm256_add_ps(a4[2], a4[3])));
    return;
  }
  if constexpr (!Dec::kHasScale) {
    // bf16, several rows or tokens: each decoded vector of every row meets every token's activations,
    // which are loaded once for all R rows (one row at a time re-read them per row, from L2 at 8 tokens, and
    // ran at a third of the FMA peak). A vector is decoded from a fresh load when it is needed, so the
    // registers hold only the R x T accumulators, R vectors and one activation vector. The lines are
    // prefetched into L1 and, into L2, the same line of the next tile (R rows on: rows follow each other).
    const __m256i hi = _mm256_set1_epi32(int(0xffff0000u));
    for (int64_t kb = 0; kb < nb; ++kb) {
      const float* xb[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) xb[t] = xp[t] + kb * kBlock;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const char* line = reinterpret_cast<const char*>(dec.w + (r0 + r) * dec.ld + kb * kBlock);
        _mm_prefetch(line + kBf16PrefetchBytes, _MM_HINT_T0);
        _mm_prefetch(line + R * dec.ld * int64_t(sizeof(uint16_t)), _MM_HINT_T1);
      }
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        __m256 w[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m256i raw =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(dec.w + (r0 + r) * dec.ld + kb * kBlock) + q / 2);
          w[r] = _mm256_castsi256_ps(q % 2 == 0 ? _mm256_slli_epi32(raw, 16) : _mm256_and_si256(raw, hi));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256 xv = _mm256_loadu_ps(xb[t] + 8 * q);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(w[r], xv, acc[r][t]);
        }
      }
    }
  } else {
    // MXFP4, several tokens: each (row, token) sums a block's four products in a short tree and then adds
    // it, scaled, to its accumulator, so an accumulator waits for one operation per block, not four (a
    // chain of four FMAs per block made T = 2 as slow as two separate calls), and the scheduler can keep
    // several blocks in flight.
    for (int64_t kb = 0; kb < nb; ++kb) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (kb % 4 == 0) {
          const char* line = reinterpret_cast<const char*>(dec.blocks + ((r0 + r) * nb + kb) * 16);
          _mm_prefetch(line + kMxfp4PrefetchBytes, _MM_HINT_T0);
          _mm_prefetch(line + kPrefetchL2Bytes, _MM_HINT_T1);
        }
        __m256 w[4], s;
        dec.decode(r0 + r, kb, w, &s);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(block_sum(w, xp[t] + kb * kBlock), s, acc[r][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) out[r * T + t] = hsum(acc[r][t]);
}

// Runs dot_tile for `rows` rows starting at r0 and T tokens, R rows at a time (R a multiple of `step`
// where the caller needs whole pairs), with tails handled by smaller R. emit(r, out[R*T], R) gets the
// results of rows r .. r+R-1.
template <int R, int T, class Dec, class Emit>
inline void dot_rows(const Dec& dec, int64_t r0, int64_t rows, const float* const* xp, int64_t nb, Emit&& emit) {
  float out[R * T];
  int64_t r = r0;
  for (; r + R <= r0 + rows; r += R) {
    dot_tile<R, T>(dec, r, xp, nb, out);
    emit(r, out, R);
  }
  if constexpr (R > 2) {
    for (; r + 2 <= r0 + rows; r += 2) {
      dot_tile<2, T>(dec, r, xp, nb, out);
      emit(r, out, 2);
    }
  }
  for (; r < r0 + rows; ++r) {
    dot_tile<1, T>(dec, r, xp, nb, out);
    emit(r, out, 1);
  }
}

inline constexpr int kMaxTokens = 8;  // most tokens a dot_rows_tokens call takes

// The MXFP4 side of dot_rows_tokens: one row at a time, passes of at most 3 tokens. Kept out of line:
// inlined into the MoE's work lambdas it changed the code generated for their GEMM path (prefill MoE
// 25 % slower).
template <class Dec, class Emit>
[[gnu::noinline]] void dot_rows_scaled(int T, const Dec& dec, int64_t r0, int64_t rows, const float* const* xp,
                                       int64_t nb, Emit& emit) {
  float res[kMaxTokens];
  for (int64_t r = r0; r < r0 + rows; ++r) {
    for (int t = 0; t < T; t += 3) {
      switch (std::min(3, T - t)) {
        case 1: dot_tile<1, 1>(dec, r, xp + t, nb, res + t); break;
        case 2: dot_tile<1, 2>(dec, r, xp + t, nb, res + t); break;
        default: dot_tile<1, 3>(dec, r, xp + t, nb, res + t); break;
      }
    }
    emit(r, res, 1);
  }
}

inline constexpr int kBf16MaxTokens = 4;  // most tokens a dot_rows_tokens call takes for bf16 rows

// Dispatches dot_rows on the token count with a row blocking that fits the 16 ymm registers.
// bf16 (1..kBf16MaxTokens): one token is one sequential stream; more take R x T tiles whose R decoded
// vectors meet each activation vector loaded once (R x T accumulators, R vectors, one activation). Per
// thread from L2 (2026-12-02 Xeon VM, AVX2 peak ~111 GFLOP/s a core): 68 / 72 / 79 GFLOP/s for 4x2, 3x3
// and 3x4, against 45-50 for the one-row tiles of 2-8 tokens that reloaded every activation per row.
// MXFP4 (1..kMaxTokens): always one row (a single sequential stream) and at most 3 tokens per pass over the row: the
// decode is paid once per pass, and past 3 tokens the registers run out (measured: 4.3, 3.8, 2.7 and
// 3.6 cycles per block and token for T = 1, 2, 3, 4 in one pass); more tokens take several passes over
// the row, whose bytes then come from L1.
template <class Dec, class Emit>
inline void dot_rows_tokens(int T, const Dec& dec, int64_t r0, int64_t rows, const float* const* xp, int64_t nb,
                            Emit&& emit) {
  if constexpr (Dec::kHasScale) {
    dot_rows_scaled(T, dec, r0, rows, xp, nb, emit);
    return;
  }
  switch (T) {
    case 1: dot_rows<1, 1>(dec, r0, rows, xp, nb, emit); break;  // see dot_tile: one sequential stream
    case 2: dot_rows<4, 2>(dec, r0, rows, xp, nb, emit); break;
    case 3: dot_rows<3, 3>(dec, r0, rows, xp, nb, emit); break;
    default: dot_rows<3, 4>(dec, r0, rows, xp, nb, emit); break;
  }
}

// ---- packed outer-product GEMM (prefill) -------------------------------------------------------
// For many tokens, 16 weight rows are decoded once into an f32 panel [k][16] (k in the decoder's permuted
// order, scale applied) and a 6 x 16 register tile runs over it for every group of 6 tokens: per k, two
// panel loads and six broadcasts feed 12 FMAs. The decode cost is paid once per weight per call.
inline constexpr int kPanelRows = 16;
inline constexpr int kTileTokens = 6;

// Packs blocks [kb0, kb1) of rows [r0, r0 + rows) (rows <= 16; missing rows are zero) into
// panel[(kb1-kb0)*32][16].
template <class Dec>
inline void pack_panel(const Dec& dec, int64_t r0, int rows, int64_t kb0, int64_t kb1, float* panel) {
  alignas(32) float tmp[kPanelRows][kBlock];
  for (int64_t kb = kb0; kb < kb1; ++kb) {
    for (int r = 0; r < kPanelRows; ++r) {
      if (r >= rows) {
        for (int q = 0; q < 4; ++q) _mm256_store_ps(tmp[r] + 8 * q, _mm256_setzero_ps());
        continue;
      }
      __m256 w[4], s;
      dec.decode(r0 + r, kb, w, &s);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        if constexpr (Dec::kHasScale) w[q] = _mm256_mul_ps(w[q], s);
        _mm256_store_ps(tmp[r] + 8 * q, w[q]);
      }
    }
    // Transpose 16 x 32 -> 32 x 16 with 8x8 blocks.
    float* dst = panel + (kb - kb0) * kBlock * kPanelRows;
    for (int rb = 0; rb < kPanelRows; rb += 8)
      for (int cb = 0; cb < kBlock; cb += 8) {
        __m256 v[8];
        for (int i = 0; i < 8; ++i) v[i] = _mm256_load_ps(tmp[rb + i] + cb);
        const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
        const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
        const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
        const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
        const __m256 o[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                             _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                             _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                             _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
        for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + (cb + i) * kPanelRows + rb, o[i]);
      }
  }
}

// c[m*16 + i] (+)= sum_{k < K} a[m][k0 + k] * panel[k][i] for m < M.
template <int M, bool kAccumulate>
inline void gemm_tile(const float* panel, const float* const* a, int64_t k0, int64_t K, float* c) {
  __m256 acc[M][2];
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
    if constexpr (kAccumulate) {
      acc[m][0] = _mm256_loadu_ps(c + m * kPanelRows);
      acc[m][1] = _mm256_loadu_ps(c + m * kPanelRows + 8);
    } else {
      acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    }
  }
  const float* ap[M];
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) ap[m] = a[m] + k0;
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_load_ps(panel + k * kPanelRows), b1 = _mm256_load_ps(panel + k * kPanelRows + 8);
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      const __m256 av = _mm256_broadcast_ss(ap[m] + k);
      acc[m][0] = _mm256_fmadd_ps(av, b0, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(av, b1, acc[m][1]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < M; ++m) {
    _mm256_storeu_ps(c + m * kPanelRows, acc[m][0]);
    _mm256_storeu_ps(c + m * kPanelRows + 8, acc[m][1]);
  }
}

// K is walked in chunks of kChunkBlocks blocks: the chunk's packed panel (16 KB) stays in L1 while
// every token tile passes over it, accumulating into c[ntok][16] (in L2); the activations stream.
inline constexpr int64_t kChunkBlocks = 8;

template <int M>
inline void gemm_tile_chunk(bool first, const float* panel, const float* const* a, int64_t k0, int64_t K, float* c) {
  if (first)
    gemm_tile<M, false>(panel, a, k0, K, c);
  else
    gemm_tile<M, true>(panel, a, k0, K, c);
}

// Up to kPanels panels of 16 rows are packed per K chunk (kPanels * 16 KB, in L2), and every token tile
// runs over all of them before the next: its activations (tile tokens x 1 KB) stay in L1 across the
// panels. With one panel a pass, every 16 rows re-read all tokens' activations of the whole K from L3
// (5.9 MB for 512 tokens at 2880). Zen 5 (kernels_bench, AVX-512 tile): bf16 2880 -> 5120 at 512 tokens
// 63 -> 56 ms, the MXFP4 MoE at 512 tokens 637 -> 560 ms.
inline constexpr int kPanels = 8;
inline constexpr int kGemmRows = kPanels * kPanelRows;  // most rows one gemm_panel call takes

// Sizes of the `panel` and `c` scratch buffers of gemm_panel for ntok tokens.
inline constexpr size_t kPanelScratch = size_t(kChunkBlocks) * kBlock * kPanelRows * kPanels;
inline size_t gemm_c_scratch(int64_t ntok) { return size_t(ntok) * kPanelRows * kPanels; }

// An MXFP4 expert whose panels the AVX-512 group-order decoder packs (avx512::mxfp4_pack_panel): with it
// gemm_panel takes activations in group order (avx512::permute_rows, rows padded to whole groups) and
// walks K in whole groups. AVX-512 only. Its decode costs about half the AVX2 decode + 8 x 8 transposes
// (Zen 5, the MoE at 512 tokens: pack_panel was a quarter of the time; with this 440 -> 398 ms).
struct Mxfp4GroupDecoder {
  const uint8_t* blocks;  // [rows, nb, 16]
  const uint8_t* scales;  // [rows, nb]
  int64_t nb;
};

// pack_panel for the group-order decoder: groups [g0, g1) instead of blocks.
inline void pack_panel(const Mxfp4GroupDecoder& dec, int64_t r0, int rows, int64_t g0, int64_t g1, float* panel) {
  avx512::mxfp4_pack_panel(dec.blocks, dec.scales, dec.nb, r0, rows, g0, g1, panel);
}

// Rows [r0, r0 + rows) (rows <= kGemmRows) of the decoder times all `ntok` activation rows (permuted,
// nb*32 long). `panel` holds kPanelScratch floats (64-byte aligned), `c` gemm_c_scratch(ntok).
// emit(r, R, t, M, res) gets rows r .. r+R-1 (R <= 16) for tokens t .. t+M-1 (M <= 6), res[m*16 + i] =
// row r + i of token t + m.
template <class Dec, class Emit>
inline void gemm_panel(const Dec& dec, int64_t r0, int rows, int64_t nb, const float* const* xrows, int64_t ntok,
                       float* panel, float* c, Emit&& emit) {
  constexpr bool kGroups = std::is_same_v<Dec, Mxfp4GroupDecoder>;
  const bool wide = kGroups || cpu_isa() >= Isa::avx512;  // the zmm tile (gemm_avx512.h), not the ymm one
  const int panels = (rows + kPanelRows - 1) / kPanelRows;
  constexpr int64_t kPanelFloats = kChunkBlocks * kBlock * kPanelRows;
  // K is walked in chunks of kChunkBlocks blocks (or, in group order, the same number of elements).
  constexpr int64_t kUnit = kGroups ? avx512::kGroup : kBlock, kChunkUnits = kChunkBlocks * kBlock / kUnit;
  const int64_t units = kGroups ? (nb * kBlock + kUnit - 1) / kUnit : nb;
  // Token tiles: as even as possible (a short last tile leaves FMA chains idle).
  const int64_t tile = wide ? avx512::kGemmTileTokens : kTileTokens;
  const int64_t n_tiles = (ntok + tile - 1) / tile;
  auto tile_begin = [&](int64_t i) { return i * ntok / n_tiles; };
  for (int64_t u0 = 0; u0 < units; u0 += kChunkUnits) {
    const int64_t u1 = std::min(units, u0 + kChunkUnits);
    for (int p = 0; p < panels; ++p)
      pack_panel(dec, r0 + p * kPanelRows, std::min(kPanelRows, rows - p * kPanelRows), u0, u1, panel + p * kPanelFloats);
    const int64_t k0 = u0 * kUnit, K = (u1 - u0) * kUnit;
    const bool first = u0 == 0;
    for (int64_t i = 0; i < n_tiles; ++i) {
      const int64_t t = tile_begin(i);
      const int M = int(tile_begin(i + 1) - t);
      for (int p = 0; p < panels; ++p) {
        const float* pp = panel + p * kPanelFloats;
        float* ct = c + (p * ntok + t) * kPanelRows;
        if (wide) {
          avx512::gemm_tile(M, !first, pp, xrows + t, k0, K, ct);
          continue;
        }
        switch (M) {
          case 1: gemm_tile_chunk<1>(first, pp, xrows + t, k0, K, ct); break;
          case 2: gemm_tile_chunk<2>(first, pp, xrows + t, k0, K, ct); break;
          case 3: gemm_tile_chunk<3>(first, pp, xrows + t, k0, K, ct); break;
          case 4: gemm_tile_chunk<4>(first, pp, xrows + t, k0, K, ct); break;
          case 5: gemm_tile_chunk<5>(first, pp, xrows + t, k0, K, ct); break;
          default: gemm_tile_chunk<6>(first, pp, xrows + t, k0, K, ct); break;
        }
      }
    }
  }
  for (int p = 0; p < panels; ++p)
    for (int64_t t = 0; t < ntok; t += kTileTokens)
      emit(r0 + p * kPanelRows, std::min(kPanelRows, rows - p * kPanelRows), t,
           int(std::min<int64_t>(kTileTokens, ntok - t)), static_cast<const float*>(c + (p * ntok + t) * kPanelRows));
}

// exp(x) for f32 lanes: Cody-Waite range reduction and a degree-6 polynomial; relative error ~2e-7 over
// the range that matters (x <= 0 in softmax); underflows to 0 below -87.
inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  x = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// A per-thread scratch buffer that only grows (no allocation per call once warm), 64-byte aligned: a
// vector load that straddles two cache lines is slow while the weights stream from DRAM (an MXFP4 row
// decoded against activations 16 bytes off a line ran at 9 GB/s on one Zen 5 thread, 19 GB/s aligned).
// Contents do not survive a call that grows the buffer.
template <typename T>
T* scratch(std::vector<T>& buf, size_t n) {
  static_assert(64 % sizeof(T) == 0 && alignof(T) <= 64);
  constexpr size_t pad = 64 / sizeof(T);
  if (buf.size() < n + pad) buf.resize(n + pad);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<T*>((p + 63) & ~uintptr_t(63));
}

}  // namespace gptoss::cpu::simd
