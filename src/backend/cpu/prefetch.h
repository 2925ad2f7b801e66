// How far ahead the CPU decode streams prefetch their weights into L2: the bf16 one-row stream and the
// AVX2 MXFP4 tiles (kernels_simd.h), the AVX-512 few-token MXFP4 kernel (mxfp4_avx512.cpp), the VNNI
// one-token kernel (mxfp4_vnni.cpp) and the bandwidth probes' loop (simd::stream_sum). Each also prefetches
// 1-2 KB ahead into L1, at a distance of its own. (The bf16 tiles of several rows, AVX2 and AVX-512,
// prefetch into L2 the same line of their next tile instead, R rows on.) Internal to the CPU kernels.
//
// Measured on the 2026-12-02 Xeon VM, each against the same kernel without it, alternated:
// - the lm_head at one token: 51.2-51.8 -> 43.1-44.9 ms;
// - with the VNNI kernel's too, the 20b at batch 1: 4.61 -> 5.00-5.06 tok/s (weights in slower memory);
// - two threads streaming 200 MB of MXFP4 rows with the VNNI kernel: 0.71-0.81 -> 0.88 of a bare read
//   loop (4 KB was as good, 16 KB worse);
// - the MoE at 16 tokens (AVX-512 kernel): 27.0-28.1 -> 26.1-26.8 ms;
// - the AVX2 MoE at one token: 3.63-3.87 -> 3.39-3.43 ms.
#pragma once

namespace gptoss::cpu {

inline constexpr int kPrefetchL2Bytes = 8192;

// How far ahead the bf16 row streams prefetch their lines into L1: the one-token stream and the tiles of
// several rows, AVX2 (kernels_simd.h) and AVX-512 (bf16_avx512.cpp). On the 2026-12-02 Xeon VM a two-thread
// one-token stream of bf16 rows went from 26 to 31 GB/s with 2 KB (1 KB: 29), and the whole 20b model at
// batch 1 from 6.18 to 6.31 tok/s (four alternating pairs, faster in each); an AMD Zen 4 VM had shown no
// gain at 1 KB (mxfp4_avx512.cpp). With it and the L2 prefetch of the next tile, the AVX-512 tiles took the
// lm_head at 2 / 4 / 16 tokens from 51.5 / 53.4 / 138.7 to 43.4 / 45.8 / 119.5 ms (no AMX).
inline constexpr int kBf16PrefetchBytes = 2048;

}  // namespace gptoss::cpu
