// One check for every CUDA runtime call: reports the call, file and line.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define GPTOSS_CUDA_CHECK(call)                                                                    \
  do {                                                                                             \
    cudaError_t err_ = (call);                                                                     \
    if (err_ != cudaSuccess)                                                                       \
      throw ::gptoss::Error(fmt::format("{}:{}: CUDA call `{}` failed: {} ({})", __FILE__, __LINE__, \
                                        #call, cudaGetErrorString(err_), int(err_)));             \
  } while (0)

namespace gptoss::cuda {

// Waits for a stream: the `sync` of an OpProfile scope, so a profiled op's time is its device time.
struct StreamSync {
  cudaStream_t stream;
  void operator()() const { GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream)); }
};

}  // namespace gptoss::cuda
