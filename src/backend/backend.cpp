#include "backend/backend.h"

#include "core/error.h"

namespace gptoss {

std::unique_ptr<Backend> make_backend(const std::string& device, const BackendOptions& options) {
  if (device == "cpu") return make_cpu_backend(options);
  if (device == "cuda") return make_cuda_backend();
  if (device == "auto") return cuda_available() ? make_cuda_backend() : make_cpu_backend(options);
  fail_input("--device is '{}'; expected cpu, cuda or auto", device);
}

TrainOps& Backend::require_train_ops() {
  TrainOps* ops = train_ops();
  if (!ops) fail_input("the {} backend cannot train (use --device cpu or cuda)", name());
  return *ops;
}

void Backend::moe_keep_gate_up(const float*, int64_t, int64_t, const int32_t*, const float*, int, const ExpertWeights&,
                               const ExpertWeights&, float, float*, float*) {
  fail("the {} backend cannot train: it does not keep the MoE's intermediate values", name());
}

}  // namespace gptoss
