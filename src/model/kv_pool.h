// The paged KV pool of one model: `num_blocks` physical blocks in backend memory, each holding
// `block_size` positions of K and V (f32, or bf16 to halve the memory) for the Lg layers of one layer group (layout in
// model/batch.h and backend/backend.h). Lg = max(#full-attention layers, #sliding layers); a layer's
// index g inside its group selects its slice of a block.
//
// Who maps positions to blocks is not this class's business: the engine's KvCacheManager does it
// for serving; SequenceKv below is the trivial allocator for score / generate / bench / tests.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "model/batch.h"
#include "model/config.h"

namespace gptoss {

class KvPool {
 public:
  KvPool(const GptOssConfig& cfg, Backend& backend, int num_blocks, int block_size, KvDtype dtype = KvDtype::f32);

  static size_t bytes_per_block(const GptOssConfig& cfg, int block_size, KvDtype dtype = KvDtype::f32);
  static int layers_per_group(const GptOssConfig& cfg);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  KvDtype dtype() const { return view_.dtype; }
  size_t bytes() const { return size_t(num_blocks_) * bytes_per_block_; }
  // The view the backend ops take (pool pointer is backend memory).
  const KvView& view() const { return view_; }
  // Index of `layer` inside its group (full or sliding).
  int group_layer(int layer) const { return group_layer_.at(size_t(layer)); }

 private:
  int num_blocks_, block_size_;
  size_t bytes_per_block_;
  BackendBuffer buf_;
  KvView view_;
  std::vector<int> group_layer_;
};

// Hands out block ids 0, 1, 2, ... of a pool and never takes them back.
class LinearBlockAllocator {
 public:
  explicit LinearBlockAllocator(int num_blocks) : total_(num_blocks) {}
  int take();  // throws InputError when the pool is exhausted
  int used() const { return next_; }

 private:
  int total_, next_ = 0;
};

// Block tables of one sequence whose blocks come from a LinearBlockAllocator (no prefix sharing, no
// freeing, both groups fully mapped).
class SequenceKv {
 public:
  SequenceKv(LinearBlockAllocator& alloc, int block_size) : alloc_(&alloc), block_size_(block_size) {}

  // Maps every logical block that positions [0, num_positions) fall in, in both groups.
  void ensure(int64_t num_positions);
  // A chunk of this sequence at start_pos; maps its blocks first. `tokens` must outlive the batch.
  SeqChunk chunk(std::span<const int32_t> tokens, int32_t start_pos, bool all_logits);

  std::span<const int32_t> blocks_full() const { return full_; }
  std::span<const int32_t> blocks_swa() const { return swa_; }

  // Blocks needed for `num_seqs` sequences of `num_positions` each (both groups).
  static int blocks_needed(int64_t num_positions, int block_size, int num_seqs = 1) {
    return int(2 * ((num_positions + block_size - 1) / block_size) * num_seqs);
  }

 private:
  LinearBlockAllocator* alloc_;
  int block_size_;
  std::vector<int32_t> full_, swa_;
};

}  // namespace gptoss
