// Machine probes for the benchmarks' rooflines (gptoss bench, bench/kernels_bench): the FMA peak in the
// widest vectors the CPU kernels use. Internal to the CPU backend and its benchmarks.
#pragma once

#include <cstdint>

namespace gptoss::cpu {

// Runs `iters` steps of ten independent FMA chains in the vectors of cpu_isa() (ymm for AVX2, zmm for
// AVX-512: on a core with full-width 512-bit FMA units, such as Zen 5, zmm doubles the peak; on one that
// splits them, such as Zen 4, it does not) and returns a value derived from the result (keep it, so the
// work is not optimized away).
float fma_chains(int64_t iters, float seed);

// The FLOPs of one step of fma_chains now: 10 chains x lanes x 2.
double fma_chain_step_flops();

}  // namespace gptoss::cpu
