// Deterministic fake models for tests of everything above the forward pass.
//
// Both fakes keep a real paged "KV cache": every block slot stores the token id and position written
// there, and a logit row is computed only from what the block tables point at (the full group gives
// the whole history, the sliding group the last `sliding_window` positions; each slot's stored
// position is checked). A wrong block table, a prefix-cache block with other contents or a sliding
// block dropped too early therefore throws or changes the output, exactly as it would corrupt the
// real model's attention.
//
//   - PagedHashRunner: logits are a pseudo-random function of (history tokens, position); same
//     prefix => same logits, independent of batch composition, chunking, preemption or caching.
//   - ScriptedRunner: for a sequence whose history starts with a registered prompt, emits a given
//     token script one token per step (logit +100 at the scripted token, 0 elsewhere); used to test
//     harmony parsing of chosen outputs without a real model. Past the end of its script (or with no
//     matching prompt, the default script) it emits `end_token`.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "engine/model_runner.h"

namespace gptoss {

struct FakeModelShape {
  int vocab_size = 1024;
  int sliding_window = 8;  // 0: no sliding group
  bool has_full = true;
  int eos_token_id = -1;
  int max_position = 4096;
};

class PagedFakeRunner : public ModelRunner {
 public:
  explicit PagedFakeRunner(FakeModelShape shape) : shape_(shape) {}
  int vocab_size() const override { return shape_.vocab_size; }
  int sliding_window() const override { return shape_.sliding_window; }
  bool has_full_attention() const override { return shape_.has_full; }
  std::vector<int> eos_token_ids() const override {
    return shape_.eos_token_id >= 0 ? std::vector<int>{shape_.eos_token_id} : std::vector<int>{};
  }
  int max_position() const override { return shape_.max_position; }
  // Pretends to be model-sized so byte budgets give sensible block counts (64 KiB per position).
  size_t kv_bytes_per_block(int block_size) const override { return size_t(block_size) << 16; }
  void allocate_kv(int num_blocks, int block_size) override;
  void forward(const ForwardBatch& batch, float* logits) override;

  // Statistics for tests.
  int64_t forward_calls() const { return forward_calls_; }
  int64_t tokens_computed() const { return tokens_computed_; }
  int64_t max_batch_tokens() const { return max_batch_tokens_; }
  int64_t max_batch_seqs() const { return max_batch_seqs_; }

 protected:
  // One logit row for the token at `pos`, given the history [0, pos] (from the full group when there
  // is one, else the sliding window only) and the sliding window's tokens (empty without one).
  virtual void logits_for(std::span<const int32_t> history, std::span<const int32_t> window, int pos,
                          float* out) = 0;
  FakeModelShape shape_;

 private:
  struct Group {
    std::vector<int32_t> token, pos;  // [num_blocks * block_size]
  };
  void write(Group& g, std::span<const int32_t> table, int pos, int32_t token);
  int32_t read(const Group& g, std::span<const int32_t> table, int pos) const;
  int block_size_ = 0, num_blocks_ = 0;
  Group full_, swa_;
  std::atomic<int64_t> forward_calls_{0}, tokens_computed_{0}, max_batch_tokens_{0}, max_batch_seqs_{0};
};

class PagedHashRunner : public PagedFakeRunner {
 public:
  explicit PagedHashRunner(FakeModelShape shape = {}, uint64_t seed = 1) : PagedFakeRunner(shape), seed_(seed) {}
  std::string describe() const override { return "paged-hash fake model"; }

 protected:
  void logits_for(std::span<const int32_t> history, std::span<const int32_t> window, int pos, float* out) override;

 private:
  uint64_t seed_;
};

class ScriptedRunner : public PagedFakeRunner {
 public:
  // vocab_size defaults to o200k_harmony's 201088 so harmony special tokens are valid ids.
  explicit ScriptedRunner(std::vector<int32_t> default_script = {}, int end_token = 200002,
                          FakeModelShape shape = {201088, 128, true, -1, 131072});
  // A sequence whose tokens start with `prompt` generates `script` (longest matching prompt wins).
  void add_script(std::vector<int32_t> prompt, std::vector<int32_t> script);
  std::string describe() const override { return "scripted fake model"; }

 protected:
  void logits_for(std::span<const int32_t> history, std::span<const int32_t> window, int pos, float* out) override;

 private:
  struct Script {
    std::vector<int32_t> prompt, tokens;
  };
  std::mutex mu_;
  std::vector<Script> scripts_;
  std::vector<int32_t> default_script_;
  int end_token_;
};

}  // namespace gptoss
