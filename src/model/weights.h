// The weights of a gpt-oss checkpoint in the Hugging Face hub layout, as views into the memory-mapped
// safetensors files (prepared by the backend: the CPU backend keeps the mapped pointers, so loading
// copies nothing; a GPU backend uploads). Only the attention sinks are converted (to f32, tiny).
//
// Expert weights come in one of two layouts, chosen by the tensors present:
//  - MXFP4 (the hub's quantized checkpoints): *_blocks [E, rows, cols/32, 16] u8, *_scales
//    [E, rows, cols/32] u8 (e8m0), *_bias [E, rows] bf16; they stay packed.
//  - bf16: gate_up_proj [E, H, 2I], down_proj [E, I, H] (input-major), biases [E, rows].
//
// Every tensor is checked for presence, dtype and shape against the config; an error names the file,
// the tensor, the found and the expected shape.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace gptoss {

struct LayerWeights {
  const uint16_t* attn_norm = nullptr;  // [hidden] bf16 (input_layernorm)
  const uint16_t* q_w = nullptr;        // [heads*head_dim, hidden] bf16
  const uint16_t* q_b = nullptr;        // [heads*head_dim] bf16 (all four biases: nullptr when !attention_bias)
  const uint16_t* k_w = nullptr;        // [kv_heads*head_dim, hidden] bf16
  const uint16_t* k_b = nullptr;        // [kv_heads*head_dim] bf16
  const uint16_t* v_w = nullptr;        // [kv_heads*head_dim, hidden] bf16
  const uint16_t* v_b = nullptr;        // [kv_heads*head_dim] bf16
  const uint16_t* o_w = nullptr;        // [hidden, heads*head_dim] bf16
  const uint16_t* o_b = nullptr;        // [hidden] bf16
  const float* sinks = nullptr;         // [heads] f32 (converted from bf16 at load)
  const uint16_t* mlp_norm = nullptr;   // [hidden] bf16 (post_attention_layernorm)
  const uint16_t* router_w = nullptr;   // [experts, hidden] bf16
  const uint16_t* router_b = nullptr;   // [experts] bf16
  ExpertWeights gate_up;                // rows 2*intermediate (even = gate, odd = up), cols hidden
  ExpertWeights down;                   // rows hidden, cols intermediate
};

class Weights {
 public:
  // Opens the checkpoint in model_dir (single file or sharded) and checks it against cfg.
  static std::unique_ptr<Weights> load(const std::string& model_dir, const GptOssConfig& cfg, Backend& backend);
  // The same from an already opened checkpoint (tests); takes ownership of it.
  static std::unique_ptr<Weights> from_checkpoint(Checkpoint ckpt, const GptOssConfig& cfg, Backend& backend);
  ~Weights();

  const uint16_t* embed = nullptr;    // [vocab, hidden] bf16
  const uint16_t* norm = nullptr;     // [hidden] bf16 (final norm)
  const uint16_t* lm_head = nullptr;  // [vocab, hidden] bf16 (embed when tie_word_embeddings)
  std::vector<LayerWeights> layers;   // [num_hidden_layers]
  bool mxfp4_experts = true;

  const Checkpoint& checkpoint() const { return ckpt_; }
  uint64_t mapped_bytes() const { return ckpt_.total_bytes(); }

 private:
  Weights(Checkpoint ckpt, Backend& backend) : ckpt_(std::move(ckpt)), backend_(backend) {}
  Checkpoint ckpt_;
  Backend& backend_;
  std::vector<void*> owned_;  // backend buffers holding converted tensors (sinks)
};

}  // namespace gptoss
