#include "engine/gpt_oss_runner.h"

#include "core/error.h"

namespace gptoss {

GptOssRunner::GptOssRunner(std::unique_ptr<Backend> backend, std::unique_ptr<GptOssModel> model)
    : backend_(std::move(backend)), model_(std::move(model)) {
  GPTOSS_CHECK(backend_ && model_, "GptOssRunner needs a backend and a model");
}

std::unique_ptr<GptOssRunner> GptOssRunner::load(const std::string& model_dir, const std::string& device) {
  auto backend = make_backend(device);
  auto model = GptOssModel::load(model_dir, *backend);
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
  return KvPool::bytes_per_block(model_->config(), block_size);
}

void GptOssRunner::allocate_kv(int num_blocks, int block_size) {
  pool_ = std::make_unique<KvPool>(model_->config(), *backend_, num_blocks, block_size);
}

void GptOssRunner::forward(const ForwardBatch& batch, float* logits) {
  GPTOSS_CHECK(pool_, "forward before allocate_kv");
  model_->forward(batch, *pool_, logits);
}

std::string GptOssRunner::describe() const {
  const auto& c = model_->config();
  return fmt::format("gpt-oss ({} layers, {} experts, vocab {}) on {}", c.num_hidden_layers, c.num_local_experts,
                     c.vocab_size, backend_->device_name());
}

}  // namespace gptoss
