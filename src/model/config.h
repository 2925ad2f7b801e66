// gpt-oss model configuration: the Hugging Face config.json of openai/gpt-oss-20b / -120b.
//
// from_json reads every key the real configs have; a missing key takes the transformers default
// (GptOssConfig in transformers), except model_type, which must be "gpt_oss". Every value is
// validated, and an error names the source, the key, the value and the expected range:
//   "config.json: num_experts_per_tok is 0; expected 1..num_local_experts (8)".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace gptoss {

struct RopeScaling {
  std::string rope_type = "yarn";  // "yarn" or "default" (no scaling)
  double factor = 32.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  int64_t original_max_position_embeddings = 4096;
  bool truncate = false;
};

struct QuantizationConfig {
  std::string quant_method;  // "mxfp4"
  std::vector<std::string> modules_to_not_convert;
};

struct GptOssConfig {
  std::string model_type = "gpt_oss";
  int64_t vocab_size = 201088;
  int64_t hidden_size = 2880;
  int num_hidden_layers = 36;
  int num_attention_heads = 64;
  int num_key_value_heads = 8;
  int head_dim = 64;
  int num_local_experts = 128;
  int num_experts_per_tok = 4;  // also spelled experts_per_token in the hub configs
  int64_t intermediate_size = 2880;
  int sliding_window = 128;
  int64_t initial_context_length = 4096;
  int64_t max_position_embeddings = 131072;
  double rms_norm_eps = 1e-5;
  double rope_theta = 150000.0;
  double swiglu_limit = 7.0;
  RopeScaling rope_scaling;
  std::vector<std::string> layer_types;  // "sliding_attention" | "full_attention", one per layer
  int eos_token_id = 200002;             // the first of eos_token_ids
  std::vector<int> eos_token_ids = {200002};
  std::optional<int> pad_token_id = 199999;
  bool tie_word_embeddings = false;
  bool attention_bias = true;
  std::string hidden_act = "silu";
  double router_aux_loss_coef = 0.9;
  double attention_dropout = 0.0;
  double initializer_range = 0.02;
  std::optional<QuantizationConfig> quantization_config;
  std::string torch_dtype = "bfloat16";
  nlohmann::json raw;  // the parsed file as it was

  // source names the file in error messages ("<dir>/config.json").
  static GptOssConfig from_json(const nlohmann::json& j, const std::string& source);
  static GptOssConfig load(const std::string& model_dir);  // <model_dir>/config.json
  // "tiny" (the shape of fixtures/gpt-oss-tiny), "20b", "120b" (the hub's config.json values, MXFP4).
  static GptOssConfig preset(std::string_view shape);

  // The hub's config.json keys (with quantization_config when set).
  nlohmann::json to_json() const;
  // Re-checks every value; from_json calls it. Throws InputError naming `source` and the key.
  void validate(const std::string& source) const;

  bool is_sliding(int layer) const { return layer_types.at(size_t(layer)) == "sliding_attention"; }
  bool mxfp4() const { return quantization_config && quantization_config->quant_method == "mxfp4"; }
  int64_t q_dim() const { return int64_t(num_attention_heads) * head_dim; }
  int64_t kv_dim() const { return int64_t(num_key_value_heads) * head_dim; }
  int num_sliding_layers() const;
  int num_full_layers() const { return num_hidden_layers - num_sliding_layers(); }
};

// The modules the hub leaves in bf16 in its MXFP4 checkpoints.
std::vector<std::string> default_modules_to_not_convert();

// Parameter counts (elements; MXFP4 elements count once, scales are not parameters).
struct ParameterCounts {
  int64_t embedding = 0;     // embed_tokens
  int64_t unembedding = 0;   // lm_head (0 when tied)
  int64_t attention = 0;     // all layers: q/k/v/o weights + biases + sinks
  int64_t norms = 0;         // input/post-attention norms of all layers + final norm
  int64_t router = 0;        // all layers
  int64_t experts = 0;       // all layers, all experts: weights + biases
  int64_t expert_one = 0;    // one expert of one layer
  int64_t total = 0;
  // Per token: everything except the embedding table and the experts not selected.
  int64_t active = 0;
};
ParameterCounts parameter_counts(const GptOssConfig& c);

// Bytes of weights read to decode one token at batch 1: attention, router, norms, the top-k experts
// of every layer (MXFP4 blocks + scales + bf16 biases, or bf16), one embedding row, lm_head.
// The bandwidth roofline of decode is this divided by the memory bandwidth. 20b MXFP4: 3.71e9;
// 120b: 5.00e9.
uint64_t decode_bytes_per_token(const GptOssConfig& c, bool mxfp4_experts);

// The tensors of a checkpoint in the Hugging Face hub layout, in a streaming-friendly order
// (embeddings, then layer by layer, then the final norm and lm_head). Experts are
// *_blocks/*_scales (U8) + bf16 biases when mxfp4_experts, else bf16 gate_up_proj [E, H, 2I] and
// down_proj [E, I, H]. Everything else is BF16.
std::vector<TensorSpec> hub_tensor_specs(const GptOssConfig& c, bool mxfp4_experts);

}  // namespace gptoss
