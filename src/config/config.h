// Oumi-compatible configs: inference, training (SFT/LoRA) and quantization.
// (Type names avoid model/config.h QuantizationConfig and remote/remote_params.h RemoteParams: the
// `remote_params` section is RemoteParamsConfig, a quantization recipe is QuantizeConfig.)
//
// The schemas follow Oumi's dataclasses (oumi.core.configs: InferenceConfig, ModelParams,
// GenerationParams, RemoteParamsConfig, TrainingConfig, DataParams, TrainingParams, PeftParams,
// QuantizeConfig): same keys, same defaults. Our additions are documented in docs/configs.md:
// generation.reasoning_effort, tool_use, engine_params.
//
// Contract for every load_*():
//  - `name` is a file path, a bundled recipe name (`oumi://configs/...`, `configs/...`) or an alias
//    (`gpt-oss-20b`); see config/recipes.h.
//  - `overrides` are dotted key/value pairs from the command line (`model.model_name`, "X"); they are
//    applied to the YAML tree before validation, so they win over the file and are validated the same way.
//  - Unknown keys throw InputError with the nearest valid key; type/range errors name file:line, the
//    dotted key, the value and the expected type or range.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace gptoss {

using Override = std::pair<std::string, std::string>;  // dotted key, raw value text

// Splits leftover command-line arguments into overrides: "--a.b=v", "--a.b v", "--engine NATIVE".
// Throws InputError for an argument that is not an option or lacks a value.
std::vector<Override> parse_override_args(const std::vector<std::string>& args);

struct ModelParams {
  std::string model_name;                  // hub id ("openai/gpt-oss-20b") or a local directory
  std::string adapter_model;               // LoRA adapter directory (empty: none)
  std::string tokenizer_name;              // empty: the model's own tokenizer
  std::string tokenizer_pad_token;
  nlohmann::ordered_json tokenizer_kwargs = nlohmann::ordered_json::object();
  nlohmann::ordered_json processor_kwargs = nlohmann::ordered_json::object();
  std::optional<int64_t> model_max_length;  // context limit; empty: the model's max_position_embeddings
  bool load_pretrained_weights = true;
  bool trust_remote_code = false;
  std::string torch_dtype_str = "float32";  // float32|bfloat16|float16 (also the "torch." spellings)
  bool compile = false;
  std::string chat_template;                // accepted for compatibility; gpt-oss always renders harmony
  std::string attn_implementation;          // accepted for compatibility; ignored
  std::string device_map = "auto";
  nlohmann::ordered_json model_kwargs = nlohmann::ordered_json::object();
  bool enable_liger_kernel = false;
  bool enable_hf_kernels = false;
  bool shard_for_eval = false;
  std::vector<std::string> freeze_layers;
  std::string model_revision;               // hub revision; empty: "main"
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();  // reasoning_effort honoured
};

struct GenerationParams {
  int64_t max_new_tokens = 1024;
  int64_t batch_size = 1;
  bool exclude_prompt_from_response = true;
  std::optional<int64_t> seed;
  double temperature = 0.0;
  double top_p = 1.0;
  double min_p = 0.0;
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
  std::vector<std::string> stop_strings;
  std::vector<int64_t> stop_token_ids;
  std::map<int64_t, double> logit_bias;     // token id -> additive bias
  bool use_cache = false;
  int64_t num_beams = 1;                    // only 1 is supported
  bool use_sampling = false;
  nlohmann::ordered_json guided_decoding;           // null; anything else is rejected (not supported)
  bool skip_special_tokens = true;          // false: show the raw harmony text
  // Ours. Resolved at load: generation.reasoning_effort if given, else
  // model.chat_template_kwargs.reasoning_effort, else "medium".
  std::string reasoning_effort = "medium";
};

struct RemoteParamsConfig {
  std::string api_url;
  std::string api_key;
  std::string api_key_env_varname;
  int64_t max_retries = 3;
  double retry_backoff_base = 1.0;
  double retry_backoff_max = 30.0;
  double connection_timeout = 300.0;
  int64_t num_workers = 1;
  double politeness_policy = 0.0;
  std::string batch_completion_window = "24h";
  bool use_adaptive_concurrency = false;
  // Rate limits (gptoss; see src/remote/): unset = unlimited.
  std::optional<int64_t> requests_per_minute;
  std::optional<int64_t> input_tokens_per_minute;
  std::optional<int64_t> output_tokens_per_minute;
};

// Ours: tool definitions offered to the model in every conversation.
struct ToolUseParams {
  bool enabled = false;
  int64_t max_tools = 64;                   // more tools than this is an error
  nlohmann::ordered_json tools = nlohmann::ordered_json::array();  // OpenAI function definitions (normalised)
  std::string executor;                     // command: gets the call as JSON on stdin, answers on stdout
};

// Ours: limits of the local engine (NATIVE / VLLM).
struct EngineParams {
  int64_t max_num_seqs = 64;                // sequences decoded together
  double gpu_memory_utilization = 0.9;      // fraction of GPU memory for weights + KV cache
  std::optional<int64_t> max_model_len;     // empty: model.model_max_length, else the model's context
  std::string device = "auto";              // auto|cpu|cuda
  bool cpu_offload = false;                 // keep expert weights in host memory
  // CPU: compute from the memory-mapped checkpoint (true), or copy the weights into 2 MiB pages (false:
  // llama.cpp's --no-mmap; private memory the size of the weights, a slower load).
  bool use_mmap = true;
  std::optional<int64_t> num_threads;       // CPU threads; empty: all cores
  double kv_cache_gb = 4.0;                 // CPU: memory for the paged KV cache (GPU: from gpu_memory_utilization)
  // KV cache element type, as vLLM's kv_cache_dtype: auto (= float32, exact) | float32 | bfloat16 (half the
  // memory per token: twice the context or the concurrent sequences in the same budget).
  std::string kv_cache_dtype = "auto";
  // (gptoss) LoRA adapters a request selects by naming them as its model: name -> directory or hub id,
  // as vLLM's --lora-modules; in the YAML order.
  std::vector<std::pair<std::string, std::string>> lora_modules;
};

// Engines Oumi knows. NATIVE and VLLM run our local engine; the rest are remote (src/remote/).
const std::vector<std::string>& known_engines();
bool is_local_engine(const std::string& engine);

struct InferenceConfig {
  ModelParams model;
  GenerationParams generation;
  std::string engine = "NATIVE";
  std::string input_path;
  std::string output_path;
  RemoteParamsConfig remote_params;
  ToolUseParams tool_use;
  EngineParams engine_params;
  std::string source;                       // the file it was loaded from
};

struct DatasetParams {
  std::string dataset_name;
  std::string dataset_path;
  std::string subset;
  std::string split = "train";
  std::optional<int64_t> sample_count;
  std::optional<double> mixture_proportion;
  bool shuffle = false;
  int64_t seed = 42;
  std::optional<int64_t> shuffle_buffer_size;
  bool trust_remote_code = false;
  std::optional<int64_t> transform_num_workers;
  nlohmann::ordered_json dataset_kwargs = nlohmann::ordered_json::object();
};

struct DatasetSplitParams {
  std::vector<DatasetParams> datasets;
  std::string collator_name;
  nlohmann::ordered_json collator_kwargs = nlohmann::ordered_json::object();
  bool pack = false;
  bool stream = false;
  std::string target_col;
  std::string mixture_strategy = "first_exhausted";
  std::optional<int64_t> seed;
  bool use_torchdata = false;
};

struct DataParams {
  DatasetSplitParams train, validation, test;
};

struct TrainingParams {
  std::string trainer_type = "TRL_SFT";
  std::string output_dir = "output";
  int64_t per_device_train_batch_size = 8;
  int64_t per_device_eval_batch_size = 8;
  int64_t gradient_accumulation_steps = 1;
  int64_t num_train_epochs = 3;
  int64_t max_steps = -1;
  double learning_rate = 5e-5;
  std::string lr_scheduler_type = "linear";
  nlohmann::ordered_json lr_scheduler_kwargs = nlohmann::ordered_json::object();
  double warmup_ratio = 0.0;
  int64_t warmup_steps = 0;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  std::string optimizer = "adamw_torch";
  double max_grad_norm = 1.0;
  int64_t save_steps = 500;
  bool save_epoch = false;
  bool save_final_model = true;
  int64_t logging_steps = 50;
  std::string logging_strategy = "steps";
  std::string log_level = "info";
  std::string logging_dir;
  bool logging_first_step = false;
  std::string eval_strategy = "no";
  int64_t eval_steps = 500;
  bool enable_gradient_checkpointing = false;
  nlohmann::ordered_json gradient_checkpointing_kwargs = nlohmann::ordered_json::object();
  bool use_peft = false;
  int64_t seed = 42;
  std::optional<int64_t> data_seed;
  std::string mixed_precision_dtype = "none";
  bool compile = false;
  bool include_performance_metrics = false;
  bool include_alternative_mfu_metrics = false;
  bool log_model_summary = false;
  std::string resume_from_checkpoint;
  bool try_resume_from_last_checkpoint = false;
  int64_t dataloader_num_workers = 0;
  std::optional<int64_t> dataloader_prefetch_factor;
  bool dataloader_main_process_only = false;
  bool ddp_find_unused_parameters = false;
  bool enable_wandb = false;
  bool enable_mlflow = false;
  bool enable_tensorboard = true;
  std::string run_name;
  nlohmann::ordered_json trainer_kwargs = nlohmann::ordered_json::object();
  std::optional<int64_t> empty_device_cache_steps;
  std::optional<int64_t> nccl_default_timeout_minutes;
  int64_t label_ignore_index = -100;
  nlohmann::ordered_json profiler, telemetry;
};

struct PeftParams {
  std::string peft_method = "lora";
  int64_t lora_r = 8;
  int64_t lora_alpha = 8;
  double lora_dropout = 0.0;
  std::vector<std::string> lora_target_modules;     // names, or the single item "all-linear"
  std::vector<std::string> lora_target_parameters;  // parameter names (MoE expert weights)
  std::vector<std::string> lora_modules_to_save;
  std::string lora_bias = "none";
  std::string lora_init_weights = "DEFAULT";
  std::string lora_task_type = "CAUSAL_LM";
  bool use_rslora = false;
  bool use_dora = false;
  bool q_lora = false;
  int64_t q_lora_bits = 4;
  std::string bnb_4bit_quant_type = "fp4";
  bool use_bnb_nested_quant = false;
  std::string bnb_4bit_quant_storage = "uint8";
  std::string bnb_4bit_compute_dtype = "float32";
};

struct TrainingConfig {
  ModelParams model;
  DataParams data;
  TrainingParams training;
  PeftParams peft;
  nlohmann::ordered_json fsdp = nlohmann::ordered_json::object();
  nlohmann::ordered_json deepspeed = nlohmann::ordered_json::object();
  std::string source;
};

struct QuantizeConfig {
  ModelParams model;
  std::string method = "mxfp4";             // only mxfp4
  std::string output_path = "quantized_model";
  std::string output_format = "safetensors";
  int64_t calibration_samples = 512;        // unused by mxfp4 (no calibration); accepted
  int64_t batch_size = 8;
  bool verbose = false;
  std::string source;
};

InferenceConfig load_inference_config(const std::string& name, const std::vector<Override>& overrides = {});
TrainingConfig load_training_config(const std::string& name, const std::vector<Override>& overrides = {});
QuantizeConfig load_quantization_config(const std::string& name,
                                            const std::vector<Override>& overrides = {});

// From YAML text directly (source names it in messages; relative paths resolve against base_dir).
InferenceConfig parse_inference_config(const std::string& yaml, const std::string& source,
                                       const std::vector<Override>& overrides = {},
                                       const std::string& base_dir = ".");
TrainingConfig parse_training_config(const std::string& yaml, const std::string& source,
                                     const std::vector<Override>& overrides = {});
QuantizeConfig parse_quantization_config(const std::string& yaml, const std::string& source,
                                             const std::vector<Override>& overrides = {});

// The config as YAML-equivalent JSON (every key with its effective value), for `--print-config`.
nlohmann::ordered_json to_json(const InferenceConfig& c);

}  // namespace gptoss
