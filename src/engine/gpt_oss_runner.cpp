#include "engine/gpt_oss_runner.h"

#include <algorithm>
#include <span>
#include <vector>

#include "core/error.h"

namespace gptoss {

GptOssRunner::GptOssRunner(std::unique_ptr<Backend> backend, std::unique_ptr<GptOssModel> model)
    : backend_(std::move(backend)), model_(std::move(model)) {
  GPTOSS_CHECK(backend_ && model_, "GptOssRunner needs a backend and a model");
}

std::unique_ptr<GptOssRunner> GptOssRunner::load(const std::string& model_dir, const std::string& device,
                                                 const std::string& adapter_dir,
                                                 const std::vector<std::string>& named_adapters,
                                                 const BackendOptions& options) {
  auto backend = make_backend(device, options);
  auto model = GptOssModel::load(model_dir, *backend, adapter_dir);
  for (const std::string& dir : named_adapters) model->add_adapter(LoraAdapter::load(dir, model->config(), *backend));
  return std::make_unique<GptOssRunner>(std::move(backend), std::move(model));
}

int GptOssRunner::vocab_size() const { return int(model_->config().vocab_size); }

int GptOssRunner::sliding_window() const {
  const auto& c = model_->config();
  return c.num_sliding_layers() > 0 ? c.sliding_window : 0;
}

bool GptOssRunner::has_full_attention() const { return model_->config().num_full_layers() > 0; }

std::vector<int> GptOssRunner::eos_token_ids() const { return model_->config().eos_token_ids; }

int GptOssRunner::max_position() const { return int(model_->config().max_position_embeddings); }

size_t GptOssRunner::kv_bytes_per_block(int block_size) const {
  return KvPool::bytes_per_block(model_->config(), block_size, kv_dtype_);
}

void GptOssRunner::allocate_kv(int num_blocks, int block_size) {
  pool_ = std::make_unique<KvPool>(model_->config(), *backend_, num_blocks, block_size, kv_dtype_);
}

void GptOssRunner::forward(const ForwardBatch& batch, float* logits) {
  GPTOSS_CHECK(pool_, "forward before allocate_kv");
  model_->forward(batch, *pool_, logits);
}

std::string GptOssRunner::describe() const {
  const auto& c = model_->config();
  std::string lora = model_->adapter() ? " with " + model_->adapter()->describe() : "";
  if (const int named = model_->num_adapters() - 1; named > 0)
    lora += fmt::format(" ({} more LoRA adapter{} selectable by request)", named, named == 1 ? "" : "s");
  const std::string kv = kv_dtype_ == KvDtype::f32 ? "" : fmt::format(", {} KV cache", kv_dtype_name(kv_dtype_));
  return fmt::format("gpt-oss ({} layers, {} experts, vocab {}){} on {}{}", c.num_hidden_layers, c.num_local_experts,
                     c.vocab_size, lora, backend_->device_name(), kv);
}

std::optional<size_t> GptOssRunner::device_kv_budget(double gpu_memory_utilization, int max_step_tokens,
                                                     int max_step_seqs) {
  if (backend_->memory_info().total == 0) return std::nullopt;  // host memory: kv_cache_bytes decides
  run_largest_step(max_step_tokens, max_step_seqs);
  const Backend::MemoryInfo m = backend_->memory_info();
  // What the largest step did not show: CUDA graphs of decode steps, the allocator's slack.
  const size_t reserve = size_t(256) << 20;
  const double allowed = gpu_memory_utilization * double(m.total);
  const double used = double(m.total - m.free);
  const double budget = allowed - used - double(reserve);
  if (budget <= 0)
    fail_input("gpu_memory_utilization {} allows {:.1f} GB of {:.1f} GB but the weights and a step's activations "
               "already use {:.1f} GB; raise gpu_memory_utilization (or lower max_num_batched_tokens)",
               gpu_memory_utilization, allowed / 1e9, double(m.total) / 1e9, used / 1e9);
  return size_t(budget);
}

void GptOssRunner::run_largest_step(int tokens, int seqs) {
  seqs = std::clamp(seqs, 1, std::max(tokens, 1));
  const int bs = 16;
  const int64_t first = std::max(tokens - (seqs - 1), 1);
  KvPool pool(model_->config(), *backend_,
              SequenceKv::blocks_needed(first, bs) + SequenceKv::blocks_needed(1, bs, seqs - 1) + 1, bs, kv_dtype_);
  LinearBlockAllocator alloc(pool.num_blocks());
  std::vector<SequenceKv> kv(size_t(seqs), SequenceKv(alloc, bs));
  const std::vector<int32_t> ids(size_t(first), 0);
  ForwardBatch batch;
  for (int s = 0; s < seqs; ++s)
    batch.seqs.push_back(kv[size_t(s)].chunk(std::span<const int32_t>(ids).first(s == 0 ? size_t(first) : 1), 0,
                                             /*all_logits=*/false));
  std::vector<float> logits(size_t(seqs) * size_t(model_->config().vocab_size));
  model_->forward(batch, pool, logits.data());
}

}  // namespace gptoss
