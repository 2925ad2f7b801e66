// How far ahead the CPU decode streams prefetch their weights into L2: the bf16 one-row stream and the
// AVX2 tiles (kernels_simd.h), the AVX-512 few-token MXFP4 kernel (mxfp4_avx512.cpp), the VNNI one-token
// kernel (mxfp4_vnni.cpp) and the bandwidth probes' loop (simd::stream_sum). Each also prefetches 1-2 KB
// ahead into L1, at a distance of its own. Internal to the CPU kernels.
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

}  // namespace gptoss::cpu
