// Linked instead of backend/cuda when the build has no nvcc: callers need no #ifdef.
#include "backend/backend.h"
#include "core/error.h"

namespace gptoss {

std::unique_ptr<Backend> make_cuda_backend() {
  fail_input(
      "gptoss was built without CUDA support; rebuild with the CUDA toolkit (nvcc on PATH) or use --device cpu");
}

bool cuda_available() { return false; }

}  // namespace gptoss
