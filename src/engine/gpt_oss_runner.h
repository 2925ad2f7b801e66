// ModelRunner over the real model: GptOssModel + its KvPool on one backend (CPU or CUDA).
//
// The runner owns the backend, the model and (after allocate_kv) the pool. On a GPU the KV budget is
// device_kv_budget(): gpu_memory_utilization x device memory, less what is in use after one forward of
// the engine's largest step (weights, the backend's and the model's scratch at their largest) and a small
// reserve; the CPU backend sizes the pool from EngineConfig::kv_cache_bytes.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "engine/model_runner.h"
#include "model/gpt_oss.h"
#include "model/kv_pool.h"

namespace gptoss {

class GptOssRunner : public ModelRunner {
 public:
  GptOssRunner(std::unique_ptr<Backend> backend, std::unique_ptr<GptOssModel> model);
  // make_backend(device, options) ("cpu", "cuda", "auto") + GptOssModel::load(model_dir).
  // adapter_dir: the default PEFT LoRA adapter, applied to every request that names no other ("" for
  // none); named_adapters: adapters 1, 2, ... that a request selects with Request::adapter.
  static std::unique_ptr<GptOssRunner> load(const std::string& model_dir, const std::string& device,
                                            const std::string& adapter_dir = "",
                                            const std::vector<std::string>& named_adapters = {},
                                            const BackendOptions& options = {});

  int vocab_size() const override;
  int sliding_window() const override;
  bool has_full_attention() const override;
  std::vector<int> eos_token_ids() const override;
  int max_position() const override;
  size_t kv_bytes_per_block(int block_size) const override;
  std::optional<size_t> device_kv_budget(double gpu_memory_utilization, int max_step_tokens,
                                         int max_step_seqs) override;
  int num_adapters() const override { return model_->num_adapters(); }
  void allocate_kv(int num_blocks, int block_size) override;
  void forward(const ForwardBatch& batch, float* logits) override;
  std::string describe() const override;

  GptOssModel& model() { return *model_; }
  Backend& backend() { return *backend_; }
  // Element type of the KV pool (f32 unless set; set it before the engine sizes and allocates the pool).
  void set_kv_dtype(KvDtype dtype) { kv_dtype_ = dtype; }
  KvDtype kv_dtype() const { return kv_dtype_; }

 private:
  // One forward of `tokens` tokens over `seqs` sequences (a prefill chunk and single tokens, as a mixed
  // step): the scratch buffers grow to the engine's largest step before the KV budget is measured.
  void run_largest_step(int tokens, int seqs);

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<GptOssModel> model_;
  std::unique_ptr<KvPool> pool_;
  KvDtype kv_dtype_ = KvDtype::f32;
};

}  // namespace gptoss
