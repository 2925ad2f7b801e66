// Every kernel goes through cuda::launch: programmatic dependent launch (Hopper). A kernel may then be
// scheduled while the one before it in the stream still runs; it starts with what needs no earlier
// kernel's output (weight prefetches), then grid_wait() (common.cuh) holds it until its predecessor has
// finished and its writes are visible. Every kernel calls grid_wait() before reading or writing
// activations, and before it ends, so completion stays in stream order (each kernel waits for the
// previous one, which waited for its own). GPTOSS_CUDA_PDL=0 launches plainly (A/B runs).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <utility>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"

namespace gptoss::cuda {

inline bool pdl_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("GPTOSS_CUDA_PDL");
    return !(env && env[0] == '0' && env[1] == 0);
  }();
  return on;
}

// Set per forward by the backend: prefill-sized forwards launch plainly (H200, 20b, pp512: 6860-6900 tok/s
// with PDL against 7023-7037 without; decode at batch 1 / 2 / 4: 365 / 520 / 720 against 356 / 501 / 704).
inline bool& pdl_this_forward() {
  static thread_local bool on = true;
  return on;
}
constexpr int64_t kPdlMaxTokens = 64;

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() && pdl_this_forward() ? 1 : 0;
  GPTOSS_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace gptoss::cuda
