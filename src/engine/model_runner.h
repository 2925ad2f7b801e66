// The engine's view of a model: something that owns a paged KV pool and runs a ragged batch.
//
// The engine never touches weights or KV memory; it only decides which physical block holds which
// positions of which sequence (see model/batch.h for the layout rules) and hands the model a
// ForwardBatch. Implementations:
//   - GptOssRunner (gpt_oss_runner.h): the real model (GptOssModel + KvPool) on any backend.
//   - ScriptedRunner, PagedHashRunner (fake_runners.h): deterministic fakes for tests.
//
// Contract:
//   - allocate_kv() is called exactly once, before the first forward(), by the engine.
//   - forward() writes batch.logit_rows() rows of vocab_size() floats, in batch order; for a
//     sequence with all_logits == false the row belongs to its last token.
//   - forward() is only ever called from one thread at a time (the engine thread).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "model/batch.h"

namespace gptoss {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual int vocab_size() const = 0;
  // Tokens a sliding-window layer sees, its own position included (HF `sliding_window`); 0 when
  // the model has no sliding-window layers (then blocks_swa tables stay empty).
  virtual int sliding_window() const = 0;
  // False when every layer is sliding-window (then blocks_full tables stay empty).
  virtual bool has_full_attention() const { return true; }
  // End-of-sequence ids from the model config (generation stops there unless ignore_eos).
  virtual std::vector<int> eos_token_ids() const { return {}; }
  // Longest context the model supports (max_position_embeddings).
  virtual int max_position() const = 0;

  // Bytes one KV block of `block_size` positions takes (one layer group).
  virtual size_t kv_bytes_per_block(int block_size) const = 0;
  // Bytes available for the KV pool on a GPU at this memory utilisation, after the weights and the
  // activations of the engine's largest step (max_step_tokens tokens of max_step_seqs sequences, which a
  // runner may run once to measure, as vLLM profiles a step); nullopt on backends without a fixed device
  // memory (CPU: the engine uses EngineConfig::kv_cache_bytes).
  virtual std::optional<size_t> device_kv_budget(double gpu_memory_utilization, int max_step_tokens,
                                                 int max_step_seqs) {
    return std::nullopt;
  }

  // LoRA adapters a request may name (Request::adapter): index 0 is the default one (or none).
  virtual int num_adapters() const { return 1; }

  virtual void allocate_kv(int num_blocks, int block_size) = 0;
  virtual void forward(const ForwardBatch& batch, float* logits) = 0;

  virtual std::string describe() const { return "model"; }
};

}  // namespace gptoss
