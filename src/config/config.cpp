#include "config/config.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/recipes.h"
#include "config/yaml_tree.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace fs = std::filesystem;

namespace gptoss {

namespace {

const std::vector<std::string> kEfforts = {"low", "medium", "high"};

// Sets tree[a][b][c] = value for "a.b.c"; intermediate nulls become mappings. Lines of overridden keys
// are marked -1 so messages say "command line" instead of a file line.
void apply_overrides(ConfigJson& tree, const std::vector<Override>& overrides, LineMap& lines) {
  if (tree.is_null()) tree = ConfigJson::object();
  for (const auto& [key, value] : overrides) {
    ConfigJson* node = &tree;
    std::string path;
    size_t start = 0;
    while (true) {
      size_t dot = key.find('.', start);
      std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (part.empty()) fail_input("command line: --{} is not a valid config key (empty component)", key);
      // "name[i]": item i of the list `name` (i == its length appends one).
      std::optional<size_t> index;
      if (const size_t open = part.find('['); open != std::string::npos) {
        const std::string digits = part.substr(open + 1, part.size() - open - 2);
        if (part.back() != ']' || digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
          fail_input("command line: --{}: '{}' is not a key or key[index]", key, part);
        index = std::stoul(digits);
        part.resize(open);
      }
      const std::string parent = path;
      path = path.empty() ? part : path + "." + part;
      if (node->is_null()) *node = ConfigJson::object();
      if (!node->is_object())
        fail_input("command line: --{}: {} is not a mapping in the config, so it has no key {}", key, parent, part);
      node = &(*node)[part];
      if (index) {
        if (node->is_null()) *node = ConfigJson::array();
        if (!node->is_array()) fail_input("command line: --{}: {} is not a list in the config", key, path);
        if (*index > node->size())
          fail_input("command line: --{}: {} has {} items; index {} is past its end (at most {} adds one)", key, path,
                     node->size(), *index, node->size());
        if (*index == node->size()) node->push_back(ConfigJson());
        node = &(*node)[*index];
        path += "[" + std::to_string(*index) + "]";
      }
      lines[path] = -1;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    *node = parse_scalar_value(value);
  }
}

struct Doc {
  ConfigJson tree;
  LineMap lines;
  std::string source, base_dir;
};

Doc parse_doc(const std::string& yaml, const std::string& source, const std::vector<Override>& overrides) {
  Doc d;
  d.source = source;
  d.tree = yaml_to_json(yaml, source, &d.lines);
  apply_overrides(d.tree, overrides, d.lines);
  return d;
}

void read_model(FieldReader r, ModelParams& m) {
  r.get("model_name", m.model_name);
  r.get("adapter_model", m.adapter_model);
  r.get("tokenizer_name", m.tokenizer_name);
  r.get("tokenizer_pad_token", m.tokenizer_pad_token);
  r.get_object("tokenizer_kwargs", m.tokenizer_kwargs);
  r.get_object("processor_kwargs", m.processor_kwargs);
  r.get("model_max_length", m.model_max_length, 1);
  r.get("load_pretrained_weights", m.load_pretrained_weights);
  r.get("trust_remote_code", m.trust_remote_code);
  r.get_enum("torch_dtype_str", m.torch_dtype_str,
             {"float32", "bfloat16", "float16", "f32", "bf16", "fp16", "torch.float32", "torch.bfloat16",
              "torch.float16", "auto"});
  r.get("compile", m.compile);
  r.get("chat_template", m.chat_template);
  r.get("attn_implementation", m.attn_implementation);
  r.get("device_map", m.device_map);
  r.get_object("model_kwargs", m.model_kwargs);
  r.get("enable_liger_kernel", m.enable_liger_kernel);
  r.get("enable_hf_kernels", m.enable_hf_kernels);
  r.get("shard_for_eval", m.shard_for_eval);
  r.get("freeze_layers", m.freeze_layers);
  r.get("model_revision", m.model_revision);
  r.get_object("chat_template_kwargs", m.chat_template_kwargs);
  if (auto it = m.chat_template_kwargs.find("reasoning_effort"); it != m.chat_template_kwargs.end()) {
    if (!it->is_string() || std::find(kEfforts.begin(), kEfforts.end(), it->get<std::string>()) == kEfforts.end())
      r.fail_type("chat_template_kwargs.reasoning_effort", *it, "low, medium or high");
  }
  r.finish();
}

void read_generation(FieldReader r, GenerationParams& g, const ModelParams& m) {
  r.get("max_new_tokens", g.max_new_tokens, 1);
  r.get("batch_size", g.batch_size, 1);
  r.get("exclude_prompt_from_response", g.exclude_prompt_from_response);
  r.get("seed", g.seed, 0);
  r.get("temperature", g.temperature, 0.0);
  r.get("top_p", g.top_p, 0.0, 1.0, /*lo_open=*/true);
  r.get("min_p", g.min_p, 0.0, 1.0);
  r.get("frequency_penalty", g.frequency_penalty, -2.0, 2.0);
  r.get("presence_penalty", g.presence_penalty, -2.0, 2.0);
  r.get("stop_strings", g.stop_strings);
  r.get("stop_token_ids", g.stop_token_ids, 0);
  ConfigJson bias;
  r.get_object("logit_bias", bias);
  for (auto it = bias.begin(); it != bias.end(); ++it) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(it.key(), &used);
    } catch (...) {
      used = 0;
    }
    if (used != it.key().size() || id < 0)
      r.fail_type("logit_bias", ConfigJson(it.key()), "token ids (non-negative integers) as keys");
    if (!it->is_number()) r.fail_type("logit_bias." + it.key(), *it, "a number (an additive bias)");
    g.logit_bias[id] = it->get<double>();
  }
  r.get("use_cache", g.use_cache);
  r.get("num_beams", g.num_beams, 1, 1);
  r.get("use_sampling", g.use_sampling);
  r.get_json("guided_decoding", g.guided_decoding);
  if (!g.guided_decoding.is_null())
    r.fail_type("guided_decoding", g.guided_decoding, "null: guided decoding is not supported by gptoss");
  r.get("skip_special_tokens", g.skip_special_tokens);
  // Oumi's way (model.chat_template_kwargs) first, ours overrides it when given.
  if (auto it = m.chat_template_kwargs.find("reasoning_effort"); it != m.chat_template_kwargs.end())
    g.reasoning_effort = it->get<std::string>();
  r.get_enum("reasoning_effort", g.reasoning_effort, kEfforts, /*case_insensitive=*/true);
  r.finish();
}

void read_remote(FieldReader r, RemoteParamsConfig& p) {
  r.get("api_url", p.api_url);
  r.get("api_key", p.api_key);
  r.get("api_key_env_varname", p.api_key_env_varname);
  r.get("max_retries", p.max_retries, 0);
  r.get("retry_backoff_base", p.retry_backoff_base, 0.0);
  r.get("retry_backoff_max", p.retry_backoff_max, 0.0);
  r.get("connection_timeout", p.connection_timeout, 0.0, 1e300, true);
  r.get("num_workers", p.num_workers, 1);
  r.get("politeness_policy", p.politeness_policy, 0.0);
  r.get("batch_completion_window", p.batch_completion_window);
  r.get("use_adaptive_concurrency", p.use_adaptive_concurrency);
  r.get("requests_per_minute", p.requests_per_minute, 1);
  r.get("input_tokens_per_minute", p.input_tokens_per_minute, 1);
  r.get("output_tokens_per_minute", p.output_tokens_per_minute, 1);
  r.finish();
}

// OpenAI function definitions: {"type": "function", "function": {name, description, parameters}}; a bare
// {name, description, parameters} is wrapped.
ConfigJson normalise_tools(const ConfigJson& tools, const std::string& where) {
  if (!tools.is_array()) fail_input("{}: tools is {}; expected a list of OpenAI function definitions", where, tools.dump());
  ConfigJson out = ConfigJson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    ConfigJson t = tools[i];
    if (!t.is_object()) fail_input("{}: tools[{}] is {}; expected a mapping", where, i, t.dump());
    if (!t.contains("type") && t.contains("name")) t = ConfigJson{{"type", "function"}, {"function", t}};
    if (t.value("type", "") != "function" || !t.contains("function") || !t["function"].is_object())
      fail_input("{}: tools[{}] is {}; expected {{type: function, function: {{name, description, parameters}}}}",
                 where, i, t.dump());
    const ConfigJson& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty())
      fail_input("{}: tools[{}].function.name is missing; every tool needs a name", where, i);
    if (f.contains("parameters") && !f["parameters"].is_object())
      fail_input("{}: tools[{}].function.parameters is {}; expected a JSON Schema object", where, i,
                 f["parameters"].dump());
    out.push_back(t);
  }
  return out;
}

void read_tool_use(FieldReader r, ToolUseParams& t, const std::string& base_dir) {
  r.get("enabled", t.enabled);
  r.get("max_tools", t.max_tools, 1);
  r.get("executor", t.executor);
  ConfigJson tools;
  r.get_json("tools", tools);
  std::string where = r.where("tools") + ": tool_use";
  if (tools.is_string()) {
    std::string path = tools.get<std::string>();
    std::error_code ec;
    if (!fs::exists(path, ec) && fs::exists(fs::path(base_dir) / path, ec)) path = (fs::path(base_dir) / path).string();
    std::string text = read_file(path);
    try {
      tools = ConfigJson::parse(text);
    } catch (const ConfigJson::exception& e) {
      fail_input("{}: tool_use.tools file {} is not valid JSON: {}", r.where("tools"), path, e.what());
    }
    if (tools.is_object() && tools.contains("tools")) tools = tools["tools"];
    where = path;
  }
  if (!tools.is_null()) t.tools = normalise_tools(tools, where);
  // Listing tools without `enabled` means using them; `enabled: false` keeps them off.
  if (!r.has("enabled") && !t.tools.empty()) t.enabled = true;
  if (int64_t(t.tools.size()) > t.max_tools)
    fail_input("{}: tool_use.tools has {} tools; expected at most tool_use.max_tools = {}", r.where("tools"),
               t.tools.size(), t.max_tools);
  r.finish();
}

void read_engine_params(FieldReader r, EngineParams& e) {
  r.get("max_num_seqs", e.max_num_seqs, 1, 4096);
  r.get("gpu_memory_utilization", e.gpu_memory_utilization, 0.0, 1.0, true);
  r.get("max_model_len", e.max_model_len, 1);
  r.get_enum("device", e.device, {"auto", "cpu", "cuda"}, true);
  r.get("cpu_offload", e.cpu_offload);
  r.get("use_mmap", e.use_mmap);
  r.get("num_threads", e.num_threads, 1, ThreadPool::kMaxThreads);
  r.get("kv_cache_gb", e.kv_cache_gb, 0.0, 1e6, true);
  r.get_enum("kv_cache_dtype", e.kv_cache_dtype,
             std::vector<std::string>(std::begin(kKvDtypeSettings), std::end(kKvDtypeSettings)), true);
  ConfigJson modules;
  r.get_object("lora_modules", modules);
  for (const auto& [name, path] : modules.items()) {
    if (!path.is_string() || path.get<std::string>().empty())
      fail_input("{}: engine_params.lora_modules.{} is {}; expected the adapter's directory or hub id (a string)",
                 r.where("lora_modules"), name, path.dump());
    e.lora_modules.emplace_back(name, path.get<std::string>());
  }
  r.finish();
}

void read_dataset(FieldReader r, DatasetParams& d) {
  r.get("dataset_name", d.dataset_name);
  r.get("dataset_path", d.dataset_path);
  r.get("subset", d.subset);
  r.get("split", d.split);
  r.get("sample_count", d.sample_count, 1);
  double mp = -1;
  r.get("mixture_proportion", mp, 0.0, 1.0);
  if (mp >= 0) d.mixture_proportion = mp;
  r.get("shuffle", d.shuffle);
  r.get("seed", d.seed, 0);
  r.get("shuffle_buffer_size", d.shuffle_buffer_size, 1);
  r.get("trust_remote_code", d.trust_remote_code);
  r.get("transform_num_workers", d.transform_num_workers, 1);
  r.get_object("dataset_kwargs", d.dataset_kwargs);
  if (d.dataset_name.empty() && d.dataset_path.empty())
    fail_input("{}: {} needs dataset_name (a hub dataset) or dataset_path (a local file)", r.where(""), r.dotted(""));
  r.finish();
}

void read_split(FieldReader r, DatasetSplitParams& s) {
  if (const ConfigJson* ds = r.raw("datasets"); ds && !ds->is_null()) {
    if (!ds->is_array()) r.fail_type("datasets", *ds, "a list of datasets");
    for (size_t i = 0; i < ds->size(); ++i) {
      DatasetParams d;
      read_dataset(r.child((*ds)[i], r.dotted("datasets") + "[" + std::to_string(i) + "]"), d);
      s.datasets.push_back(std::move(d));
    }
  }
  ConfigJson unused;
  r.get_json("datasets", unused);
  r.get("collator_name", s.collator_name);
  r.get_object("collator_kwargs", s.collator_kwargs);
  r.get("pack", s.pack);
  r.get("stream", s.stream);
  r.get("target_col", s.target_col);
  r.get_enum("mixture_strategy", s.mixture_strategy, {"first_exhausted", "all_exhausted"});
  r.get("seed", s.seed, 0);
  r.get("use_torchdata", s.use_torchdata);
  r.finish();
}

void read_training(FieldReader r, TrainingParams& t) {
  r.get_enum("trainer_type", t.trainer_type, {"TRL_SFT", "TRL_DPO", "TRL_GRPO", "TRL_KTO", "HF", "OUMI"}, true);
  r.get("output_dir", t.output_dir);
  r.get("per_device_train_batch_size", t.per_device_train_batch_size, 1);
  r.get("per_device_eval_batch_size", t.per_device_eval_batch_size, 1);
  r.get("gradient_accumulation_steps", t.gradient_accumulation_steps, 1);
  r.get("num_train_epochs", t.num_train_epochs, 0);
  r.get("max_steps", t.max_steps, -1);
  r.get("learning_rate", t.learning_rate, 0.0, 1e300, true);
  r.get_enum("lr_scheduler_type", t.lr_scheduler_type,
             {"linear", "cosine", "cosine_with_min_lr", "cosine_with_restarts", "constant", "constant_with_warmup",
              "polynomial", "inverse_sqrt", "warmup_stable_decay"});
  r.get_object("lr_scheduler_kwargs", t.lr_scheduler_kwargs);
  r.get("warmup_ratio", t.warmup_ratio, 0.0, 1.0);
  r.get("warmup_steps", t.warmup_steps, 0);
  r.get("weight_decay", t.weight_decay, 0.0);
  r.get("adam_beta1", t.adam_beta1, 0.0, 1.0);
  r.get("adam_beta2", t.adam_beta2, 0.0, 1.0);
  r.get("adam_epsilon", t.adam_epsilon, 0.0, 1e300, true);
  r.get_enum("optimizer", t.optimizer, {"adamw_torch", "adamw_torch_fused", "adamw", "adamw_8bit", "paged_adamw_8bit",
                                        "paged_adamw_32bit", "adafactor", "sgd"});
  r.get("max_grad_norm", t.max_grad_norm, 0.0);
  r.get("save_steps", t.save_steps, 0);
  r.get("save_epoch", t.save_epoch);
  r.get("save_final_model", t.save_final_model);
  r.get("logging_steps", t.logging_steps, 1);
  r.get_enum("logging_strategy", t.logging_strategy, {"steps", "epoch", "no"});
  r.get_enum("log_level", t.log_level, {"debug", "info", "warning", "error", "critical"}, true);
  r.get("logging_dir", t.logging_dir);
  r.get("logging_first_step", t.logging_first_step);
  r.get_enum("eval_strategy", t.eval_strategy, {"no", "steps", "epoch"});
  r.get("eval_steps", t.eval_steps, 1);
  r.get("enable_gradient_checkpointing", t.enable_gradient_checkpointing);
  r.get_object("gradient_checkpointing_kwargs", t.gradient_checkpointing_kwargs);
  r.get("use_peft", t.use_peft);
  r.get("seed", t.seed, 0);
  r.get("data_seed", t.data_seed, 0);
  r.get_enum("mixed_precision_dtype", t.mixed_precision_dtype, {"none", "fp16", "bf16"}, true);
  r.get("compile", t.compile);
  r.get("include_performance_metrics", t.include_performance_metrics);
  r.get("include_alternative_mfu_metrics", t.include_alternative_mfu_metrics);
  r.get("log_model_summary", t.log_model_summary);
  r.get("resume_from_checkpoint", t.resume_from_checkpoint);
  r.get("try_resume_from_last_checkpoint", t.try_resume_from_last_checkpoint);
  r.get("dataloader_num_workers", t.dataloader_num_workers, 0);
  r.get("dataloader_prefetch_factor", t.dataloader_prefetch_factor, 1);
  r.get("dataloader_main_process_only", t.dataloader_main_process_only);
  r.get("ddp_find_unused_parameters", t.ddp_find_unused_parameters);
  r.get("enable_wandb", t.enable_wandb);
  r.get("enable_mlflow", t.enable_mlflow);
  r.get("enable_tensorboard", t.enable_tensorboard);
  r.get("run_name", t.run_name);
  r.get_object("trainer_kwargs", t.trainer_kwargs);
  r.get("empty_device_cache_steps", t.empty_device_cache_steps, 1);
  r.get("nccl_default_timeout_minutes", t.nccl_default_timeout_minutes, 1);
  r.get("label_ignore_index", t.label_ignore_index);
  r.get_json("profiler", t.profiler);
  r.get_json("telemetry", t.telemetry);
  r.finish();
}

void read_peft(FieldReader r, PeftParams& p) {
  r.get_enum("peft_method", p.peft_method, {"lora"}, true);
  r.get("lora_r", p.lora_r, 1, 4096);
  r.get("lora_alpha", p.lora_alpha, 1);
  double dropout = p.lora_dropout;
  r.get("lora_dropout", dropout, 0.0, 1.0);
  if (dropout >= 1.0) r.fail_type("lora_dropout", dropout, "a number in [0, 1)");
  p.lora_dropout = dropout;
  r.get("lora_target_modules", p.lora_target_modules);
  r.get("lora_target_parameters", p.lora_target_parameters);
  r.get("lora_modules_to_save", p.lora_modules_to_save);
  r.get_enum("lora_bias", p.lora_bias, {"none", "all", "lora_only"});
  r.get("lora_init_weights", p.lora_init_weights);
  r.get("lora_task_type", p.lora_task_type);
  r.get("use_rslora", p.use_rslora);
  r.get("use_dora", p.use_dora);
  r.get("q_lora", p.q_lora);
  r.get("q_lora_bits", p.q_lora_bits, 4, 8);
  r.get("bnb_4bit_quant_type", p.bnb_4bit_quant_type);
  r.get("use_bnb_nested_quant", p.use_bnb_nested_quant);
  r.get("bnb_4bit_quant_storage", p.bnb_4bit_quant_storage);
  r.get("bnb_4bit_compute_dtype", p.bnb_4bit_compute_dtype);
  r.finish();
}

std::string read_text(const std::string& name, std::string* resolved) {
  *resolved = resolve_config_path(name);
  return read_file(*resolved);
}

}  // namespace

std::vector<Override> parse_override_args(const std::vector<std::string>& args) {
  std::vector<Override> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2)
      fail_input("unexpected argument '{}'; config overrides look like --generation.temperature=0.7 or "
                 "--model.model_name NAME",
                 a);
    std::string body = a.substr(2);
    size_t eq = body.find('=');
    if (eq != std::string::npos) {
      out.emplace_back(body.substr(0, eq), body.substr(eq + 1));
    } else {
      if (i + 1 >= args.size()) fail_input("{}: missing value; write {} VALUE or {}=VALUE", a, a, a);
      out.emplace_back(body, args[++i]);
    }
  }
  return out;
}

const std::vector<std::string>& known_engines() {
  static const std::vector<std::string> kEngines = {
      "NATIVE",  "VLLM",     "LLAMACPP",  "SGLANG",    "REMOTE",        "REMOTE_VLLM", "OPENAI",
      "TOGETHER", "ANTHROPIC", "DEEPSEEK", "PARASAIL", "SAMBANOVA", "GOOGLE_GEMINI", "GOOGLE_VERTEX",
      "LAMBDA",  "OPENROUTER", "BEDROCK"};
  return kEngines;
}

bool is_local_engine(const std::string& engine) { return engine == "NATIVE" || engine == "VLLM"; }

InferenceConfig parse_inference_config(const std::string& yaml, const std::string& source,
                                       const std::vector<Override>& overrides, const std::string& base_dir) {
  Doc d = parse_doc(yaml, source, overrides);
  InferenceConfig c;
  c.source = source;
  FieldReader top(d.tree, "", source, &d.lines);
  read_model(top.sub("model"), c.model);
  read_generation(top.sub("generation"), c.generation, c.model);
  top.get_enum("engine", c.engine, known_engines(), /*case_insensitive=*/true);
  top.get("input_path", c.input_path);
  top.get("output_path", c.output_path);
  read_remote(top.sub("remote_params"), c.remote_params);
  read_tool_use(top.sub("tool_use"), c.tool_use, base_dir);
  read_engine_params(top.sub("engine_params"), c.engine_params);
  top.finish();
  if (c.model.model_name.empty())
    fail_input("{}: model.model_name is empty; set it to a hub id (openai/gpt-oss-20b) or a model directory, "
               "e.g. --model.model_name openai/gpt-oss-20b",
               source);
  return c;
}

TrainingConfig parse_training_config(const std::string& yaml, const std::string& source,
                                     const std::vector<Override>& overrides) {
  Doc d = parse_doc(yaml, source, overrides);
  TrainingConfig c;
  c.source = source;
  FieldReader top(d.tree, "", source, &d.lines);
  read_model(top.sub("model"), c.model);
  FieldReader data = top.sub("data");
  read_split(data.sub("train"), c.data.train);
  read_split(data.sub("validation"), c.data.validation);
  read_split(data.sub("test"), c.data.test);
  data.finish();
  read_training(top.sub("training"), c.training);
  read_peft(top.sub("peft"), c.peft);
  top.get_object("fsdp", c.fsdp);
  top.get_object("deepspeed", c.deepspeed);
  top.finish();
  if (c.model.model_name.empty()) fail_input("{}: model.model_name is empty; set it to a hub id or a model directory", source);
  if (c.data.train.datasets.empty())
    fail_input("{}: data.train.datasets is empty; list at least one dataset (dataset_name or dataset_path)", source);
  return c;
}

QuantizeConfig parse_quantization_config(const std::string& yaml, const std::string& source,
                                             const std::vector<Override>& overrides) {
  Doc d = parse_doc(yaml, source, overrides);
  QuantizeConfig c;
  c.source = source;
  FieldReader top(d.tree, "", source, &d.lines);
  read_model(top.sub("model"), c.model);
  top.get_enum("method", c.method, {"mxfp4"}, true);
  top.get("output_path", c.output_path);
  top.get_enum("output_format", c.output_format, {"safetensors"});
  top.get("calibration_samples", c.calibration_samples, 0);
  top.get("batch_size", c.batch_size, 1);
  top.get("verbose", c.verbose);
  top.finish();
  if (c.model.model_name.empty()) fail_input("{}: model.model_name is empty; set it to a hub id or a model directory", source);
  if (c.output_path.empty()) fail_input("{}: output_path is empty; set the directory to write", source);
  return c;
}

InferenceConfig load_inference_config(const std::string& name, const std::vector<Override>& overrides) {
  std::string path;
  std::string text = read_text(name, &path);
  return parse_inference_config(text, path, overrides, fs::path(path).parent_path().string());
}

TrainingConfig load_training_config(const std::string& name, const std::vector<Override>& overrides) {
  std::string path;
  std::string text = read_text(name, &path);
  return parse_training_config(text, path, overrides);
}

QuantizeConfig load_quantization_config(const std::string& name, const std::vector<Override>& overrides) {
  std::string path;
  std::string text = read_text(name, &path);
  return parse_quantization_config(text, path, overrides);
}

namespace {
ConfigJson lora_modules_json(const EngineParams& e) {
  ConfigJson m = ConfigJson::object();
  for (const auto& [name, path] : e.lora_modules) m[name] = path;
  return m;
}
}  // namespace

nlohmann::ordered_json to_json(const InferenceConfig& c) {
  auto opt = [](const auto& o) -> ConfigJson { return o ? ConfigJson(*o) : ConfigJson(nullptr); };
  ConfigJson bias = ConfigJson::object();
  for (const auto& [id, b] : c.generation.logit_bias) bias[std::to_string(id)] = b;
  const auto& m = c.model;
  const auto& g = c.generation;
  const auto& r = c.remote_params;
  const auto& e = c.engine_params;
  return ConfigJson{
      {"model",
       {{"model_name", m.model_name}, {"adapter_model", m.adapter_model}, {"tokenizer_name", m.tokenizer_name},
        {"model_max_length", opt(m.model_max_length)}, {"torch_dtype_str", m.torch_dtype_str},
        {"trust_remote_code", m.trust_remote_code}, {"model_revision", m.model_revision},
        {"chat_template_kwargs", m.chat_template_kwargs}}},
      {"generation",
       {{"max_new_tokens", g.max_new_tokens}, {"batch_size", g.batch_size}, {"seed", opt(g.seed)},
        {"temperature", g.temperature}, {"top_p", g.top_p}, {"min_p", g.min_p},
        {"frequency_penalty", g.frequency_penalty}, {"presence_penalty", g.presence_penalty},
        {"stop_strings", g.stop_strings}, {"stop_token_ids", g.stop_token_ids}, {"logit_bias", bias},
        {"skip_special_tokens", g.skip_special_tokens}, {"reasoning_effort", g.reasoning_effort}}},
      {"engine", c.engine},
      {"input_path", c.input_path},
      {"output_path", c.output_path},
      {"remote_params",
       {{"api_url", r.api_url}, {"api_key_env_varname", r.api_key_env_varname}, {"max_retries", r.max_retries},
        {"retry_backoff_base", r.retry_backoff_base}, {"retry_backoff_max", r.retry_backoff_max},
        {"connection_timeout", r.connection_timeout}, {"num_workers", r.num_workers},
        {"politeness_policy", r.politeness_policy}}},
      {"tool_use",
       {{"enabled", c.tool_use.enabled}, {"max_tools", c.tool_use.max_tools}, {"tools", c.tool_use.tools},
        {"executor", c.tool_use.executor}}},
      {"engine_params",
       {{"max_num_seqs", e.max_num_seqs}, {"gpu_memory_utilization", e.gpu_memory_utilization},
        {"max_model_len", opt(e.max_model_len)}, {"device", e.device}, {"cpu_offload", e.cpu_offload},
        {"use_mmap", e.use_mmap}, {"num_threads", opt(e.num_threads)}, {"kv_cache_gb", e.kv_cache_gb},
        {"kv_cache_dtype", e.kv_cache_dtype},
        {"lora_modules", lora_modules_json(e)}}},
  };
}

}  // namespace gptoss
