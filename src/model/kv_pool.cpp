#include "model/kv_pool.h"

#include <algorithm>

#include "core/error.h"

namespace gptoss {

int KvPool::layers_per_group(const GptOssConfig& cfg) {
  return std::max(cfg.num_full_layers(), cfg.num_sliding_layers());
}

size_t KvPool::bytes_per_block(const GptOssConfig& cfg, int block_size, KvDtype dtype) {
  return size_t(block_size) * size_t(layers_per_group(cfg)) * 2 * size_t(cfg.num_key_value_heads) *
         size_t(cfg.head_dim) * kv_dtype_bytes(dtype);
}

KvPool::KvPool(const GptOssConfig& cfg, Backend& backend, int num_blocks, int block_size, KvDtype dtype)
    : num_blocks_(num_blocks), block_size_(block_size), bytes_per_block_(bytes_per_block(cfg, block_size, dtype)),
      buf_(backend) {
  if (num_blocks <= 0) fail_input("KV pool: num_blocks is {}; expected > 0", num_blocks);
  if (block_size <= 0) fail_input("KV pool: block_size is {}; expected > 0", block_size);
  buf_.reserve(bytes());
  view_ = KvView{buf_.get(), block_size, layers_per_group(cfg), cfg.num_key_value_heads, cfg.head_dim, dtype};
  int n_full = 0, n_swa = 0;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) group_layer_.push_back(cfg.is_sliding(l) ? n_swa++ : n_full++);
}

int LinearBlockAllocator::take() {
  if (next_ >= total_)
    fail_input("KV pool exhausted: all {} blocks are in use; give the pool more blocks (or use fewer/shorter sequences)",
               total_);
  return next_++;
}

void SequenceKv::ensure(int64_t num_positions) {
  const size_t need = size_t((num_positions + block_size_ - 1) / block_size_);
  while (full_.size() < need) full_.push_back(alloc_->take());
  while (swa_.size() < need) swa_.push_back(alloc_->take());
}

SeqChunk SequenceKv::chunk(std::span<const int32_t> tokens, int32_t start_pos, bool all_logits) {
  ensure(int64_t(start_pos) + int64_t(tokens.size()));
  SeqChunk c;
  c.tokens = tokens;
  c.start_pos = start_pos;
  c.blocks_full = full_;
  c.blocks_swa = swa_;
  c.all_logits = all_logits;
  return c;
}

}  // namespace gptoss
