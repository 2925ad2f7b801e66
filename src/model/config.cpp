#include "model/config.h"

#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "core/atomic_file.h"
#include "core/error.h"

namespace gptoss {

using json = nlohmann::json;

namespace {

// Typed getters: a present key of the wrong JSON type is an error naming the key; an absent one
// (or null) keeps the default.
int64_t get_int(const json& j, const char* key, int64_t def, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const json& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9e15) return int64_t(d);
  }
  fail_input("{}: {} is {}; expected an integer", src, key, v.dump());
}

double get_num(const json& j, const char* key, double def, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const json& v = j[key];
  if (!v.is_number()) fail_input("{}: {} is {}; expected a number", src, key, v.dump());
  return v.get<double>();
}

bool get_bool(const json& j, const char* key, bool def, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const json& v = j[key];
  if (!v.is_boolean()) fail_input("{}: {} is {}; expected true or false", src, key, v.dump());
  return v.get<bool>();
}

std::string get_str(const json& j, const char* key, const std::string& def, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return def;
  const json& v = j[key];
  if (!v.is_string()) fail_input("{}: {} is {}; expected a string", src, key, v.dump());
  return v.get<std::string>();
}

int to_int(int64_t v, const char* key, const std::string& src) {
  if (v < -(int64_t(1) << 31) || v >= (int64_t(1) << 31))
    fail_input("{}: {} is {}; expected a value that fits in 32 bits", src, key, v);
  return int(v);
}

std::vector<std::string> alternating_layer_types(int n) {
  std::vector<std::string> t;
  for (int i = 0; i < n; ++i) t.push_back(i % 2 == 0 ? "sliding_attention" : "full_attention");
  return t;
}

}  // namespace

std::vector<std::string> default_modules_to_not_convert() {
  return {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"};
}

int GptOssConfig::num_sliding_layers() const {
  int n = 0;
  for (const auto& t : layer_types) n += t == "sliding_attention";
  return n;
}

GptOssConfig GptOssConfig::from_json(const json& j, const std::string& src) {
  if (!j.is_object()) fail_input("{}: expected a JSON object, got {}", src, j.type_name());
  GptOssConfig c;
  c.raw = j;
  if (!j.contains("model_type"))
    fail_input("{}: model_type is missing; expected \"gpt_oss\" (is this a gpt-oss config.json?)", src);
  c.model_type = get_str(j, "model_type", "", src);
  if (c.model_type != "gpt_oss")
    fail_input("{}: model_type is \"{}\"; expected \"gpt_oss\" (only gpt-oss models are supported)", src,
               c.model_type);
  c.vocab_size = get_int(j, "vocab_size", c.vocab_size, src);
  c.hidden_size = get_int(j, "hidden_size", c.hidden_size, src);
  c.num_hidden_layers = to_int(get_int(j, "num_hidden_layers", c.num_hidden_layers, src), "num_hidden_layers", src);
  c.num_attention_heads =
      to_int(get_int(j, "num_attention_heads", c.num_attention_heads, src), "num_attention_heads", src);
  c.num_key_value_heads =
      to_int(get_int(j, "num_key_value_heads", c.num_key_value_heads, src), "num_key_value_heads", src);
  c.head_dim = to_int(get_int(j, "head_dim", c.head_dim, src), "head_dim", src);
  c.num_local_experts = to_int(get_int(j, "num_local_experts", c.num_local_experts, src), "num_local_experts", src);
  {
    bool has_a = j.contains("num_experts_per_tok") && !j["num_experts_per_tok"].is_null();
    bool has_b = j.contains("experts_per_token") && !j["experts_per_token"].is_null();
    int64_t a = get_int(j, "num_experts_per_tok", c.num_experts_per_tok, src);
    int64_t b = get_int(j, "experts_per_token", a, src);
    if (has_a && has_b && a != b)
      fail_input("{}: num_experts_per_tok is {} but experts_per_token is {}; expected the same value", src, a, b);
    c.num_experts_per_tok = to_int(has_a ? a : b, "num_experts_per_tok", src);
  }
  c.intermediate_size = get_int(j, "intermediate_size", c.intermediate_size, src);
  c.sliding_window = to_int(get_int(j, "sliding_window", c.sliding_window, src), "sliding_window", src);
  c.initial_context_length = get_int(j, "initial_context_length", c.initial_context_length, src);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", c.max_position_embeddings, src);
  c.rms_norm_eps = get_num(j, "rms_norm_eps", c.rms_norm_eps, src);
  c.swiglu_limit = get_num(j, "swiglu_limit", c.swiglu_limit, src);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", c.tie_word_embeddings, src);
  c.attention_bias = get_bool(j, "attention_bias", c.attention_bias, src);
  c.hidden_act = get_str(j, "hidden_act", c.hidden_act, src);
  c.router_aux_loss_coef = get_num(j, "router_aux_loss_coef", c.router_aux_loss_coef, src);
  c.attention_dropout = get_num(j, "attention_dropout", c.attention_dropout, src);
  c.initializer_range = get_num(j, "initializer_range", c.initializer_range, src);
  c.torch_dtype = get_str(j, "torch_dtype", get_str(j, "dtype", c.torch_dtype, src), src);

  // RoPE: transformers 4.x writes rope_theta + rope_scaling; 5.x may write rope_parameters holding both.
  const json* rope = nullptr;
  std::string rope_key = "rope_scaling";
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) rope = &j["rope_scaling"];
  else if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    rope = &j["rope_parameters"];
    rope_key = "rope_parameters";
  }
  c.rope_theta = get_num(j, "rope_theta", c.rope_theta, src);
  if (rope) {
    if (!rope->is_object()) fail_input("{}: {} is {}; expected an object", src, rope_key, rope->dump());
    const std::string rs = src + ": " + rope_key;
    const json& r = *rope;
    c.rope_scaling.rope_type = get_str(r, "rope_type", get_str(r, "type", "yarn", rs), rs);
    c.rope_scaling.factor = get_num(r, "factor", c.rope_scaling.factor, rs);
    c.rope_scaling.beta_fast = get_num(r, "beta_fast", c.rope_scaling.beta_fast, rs);
    c.rope_scaling.beta_slow = get_num(r, "beta_slow", c.rope_scaling.beta_slow, rs);
    c.rope_scaling.original_max_position_embeddings =
        get_int(r, "original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings, rs);
    c.rope_scaling.truncate = get_bool(r, "truncate", c.rope_scaling.truncate, rs);
    if (rope_key == "rope_parameters") c.rope_theta = get_num(r, "rope_theta", c.rope_theta, rs);
  } else if (j.contains("rope_scaling")) {  // explicit null: plain RoPE
    c.rope_scaling.rope_type = "default";
    c.rope_scaling.factor = 1.0;
  }

  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const json& lt = j["layer_types"];
    if (!lt.is_array()) fail_input("{}: layer_types is {}; expected a list of strings", src, lt.dump());
    for (size_t i = 0; i < lt.size(); ++i) {
      if (!lt[i].is_string())
        fail_input("{}: layer_types[{}] is {}; expected \"sliding_attention\" or \"full_attention\"", src, i,
                   lt[i].dump());
      c.layer_types.push_back(lt[i].get<std::string>());
    }
  } else {
    c.layer_types = alternating_layer_types(c.num_hidden_layers);
  }

  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    c.eos_token_ids.clear();
    if (e.is_array()) {
      for (const json& x : e) {
        if (!x.is_number_integer()) fail_input("{}: eos_token_id entry {} is not an integer", src, x.dump());
        c.eos_token_ids.push_back(to_int(x.get<int64_t>(), "eos_token_id", src));
      }
      if (c.eos_token_ids.empty()) fail_input("{}: eos_token_id is an empty list; expected a token id", src);
    } else {
      c.eos_token_ids.push_back(to_int(get_int(j, "eos_token_id", 0, src), "eos_token_id", src));
    }
    c.eos_token_id = c.eos_token_ids.front();
  }
  if (j.contains("pad_token_id")) {
    if (j["pad_token_id"].is_null()) c.pad_token_id.reset();
    else c.pad_token_id = to_int(get_int(j, "pad_token_id", 0, src), "pad_token_id", src);
  }

  if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
    const json& q = j["quantization_config"];
    if (!q.is_object()) fail_input("{}: quantization_config is {}; expected an object", src, q.dump());
    QuantizationConfig qc;
    qc.quant_method = get_str(q, "quant_method", "", src + ": quantization_config");
    if (q.contains("modules_to_not_convert") && !q["modules_to_not_convert"].is_null()) {
      const json& m = q["modules_to_not_convert"];
      if (!m.is_array()) fail_input("{}: quantization_config.modules_to_not_convert is {}; expected a list", src, m.dump());
      for (const json& x : m) {
        if (!x.is_string())
          fail_input("{}: quantization_config.modules_to_not_convert entry {} is not a string", src, x.dump());
        qc.modules_to_not_convert.push_back(x.get<std::string>());
      }
    }
    c.quantization_config = qc;
  }
  c.validate(src);
  return c;
}

void GptOssConfig::validate(const std::string& src) const {
  auto need = [&](bool ok, const char* key, const auto& value, const std::string& expected) {
    if (!ok) fail_input("{}: {} is {}; expected {}", src, key, value, expected);
  };
  need(vocab_size >= 1 && vocab_size < (int64_t(1) << 31), "vocab_size", vocab_size, "1..2^31-1");
  need(hidden_size >= 1 && hidden_size <= (1 << 20), "hidden_size", hidden_size, "1..1048576");
  need(num_hidden_layers >= 1 && num_hidden_layers <= 4096, "num_hidden_layers", num_hidden_layers, "1..4096");
  need(num_attention_heads >= 1, "num_attention_heads", num_attention_heads, "at least 1");
  need(num_key_value_heads >= 1 && num_key_value_heads <= num_attention_heads, "num_key_value_heads",
       num_key_value_heads, fmt::format("1..num_attention_heads ({})", num_attention_heads));
  need(num_attention_heads % num_key_value_heads == 0, "num_attention_heads", num_attention_heads,
       fmt::format("a multiple of num_key_value_heads ({})", num_key_value_heads));
  need(head_dim >= 2 && head_dim % 2 == 0 && head_dim <= 1024, "head_dim", head_dim,
       "an even number in 2..1024 (RoPE rotates half-pairs)");
  need(num_local_experts >= 1 && num_local_experts <= 65536, "num_local_experts", num_local_experts, "1..65536");
  need(num_experts_per_tok >= 1 && num_experts_per_tok <= num_local_experts, "num_experts_per_tok",
       num_experts_per_tok, fmt::format("1..num_local_experts ({})", num_local_experts));
  need(intermediate_size >= 1 && intermediate_size <= (1 << 20), "intermediate_size", intermediate_size,
       "1..1048576");
  need(int64_t(layer_types.size()) == num_hidden_layers, "layer_types length", layer_types.size(),
       fmt::format("num_hidden_layers ({}) entries", num_hidden_layers));
  for (size_t i = 0; i < layer_types.size(); ++i)
    if (layer_types[i] != "sliding_attention" && layer_types[i] != "full_attention")
      fail_input("{}: layer_types[{}] is \"{}\"; expected \"sliding_attention\" or \"full_attention\"", src, i,
                 layer_types[i]);
  need(sliding_window >= 1 || num_sliding_layers() == 0, "sliding_window", sliding_window,
       "at least 1 (the window includes the current token)");
  need(initial_context_length >= 1, "initial_context_length", initial_context_length, "at least 1");
  need(max_position_embeddings >= 1, "max_position_embeddings", max_position_embeddings, "at least 1");
  need(rms_norm_eps > 0 && rms_norm_eps < 1, "rms_norm_eps", rms_norm_eps, "a number in (0, 1), e.g. 1e-05");
  need(rope_theta > 0 && std::isfinite(rope_theta), "rope_theta", rope_theta, "a positive number, e.g. 150000");
  need(swiglu_limit > 0 && std::isfinite(swiglu_limit), "swiglu_limit", swiglu_limit, "a positive number, e.g. 7.0");
  need(rope_scaling.rope_type == "yarn" || rope_scaling.rope_type == "default", "rope_scaling.rope_type",
       "\"" + rope_scaling.rope_type + "\"", "\"yarn\" (or \"default\")");
  if (rope_scaling.rope_type == "yarn") {
    need(rope_scaling.factor >= 1 && std::isfinite(rope_scaling.factor), "rope_scaling.factor", rope_scaling.factor,
         "a number >= 1, e.g. 32.0");
    need(rope_scaling.beta_slow > 0, "rope_scaling.beta_slow", rope_scaling.beta_slow, "a positive number, e.g. 1.0");
    need(rope_scaling.beta_fast > rope_scaling.beta_slow, "rope_scaling.beta_fast", rope_scaling.beta_fast,
         fmt::format("a number greater than beta_slow ({}), e.g. 32.0", rope_scaling.beta_slow));
    need(rope_scaling.original_max_position_embeddings >= 1, "rope_scaling.original_max_position_embeddings",
         rope_scaling.original_max_position_embeddings, "at least 1, e.g. 4096");
  }
  for (int e : eos_token_ids)
    need(e >= 0 && e < vocab_size, "eos_token_id", e, fmt::format("0..vocab_size-1 ({})", vocab_size - 1));
  if (pad_token_id)
    need(*pad_token_id >= 0 && *pad_token_id < vocab_size, "pad_token_id", *pad_token_id,
         fmt::format("0..vocab_size-1 ({}) or null", vocab_size - 1));
  need(hidden_act == "silu", "hidden_act", "\"" + hidden_act + "\"", "\"silu\" (gpt-oss uses its clamped SwiGLU)");
  need(router_aux_loss_coef >= 0, "router_aux_loss_coef", router_aux_loss_coef, "a non-negative number");
  need(attention_dropout >= 0 && attention_dropout < 1, "attention_dropout", attention_dropout, "0..1");
  if (quantization_config) {
    need(quantization_config->quant_method == "mxfp4", "quantization_config.quant_method",
         "\"" + quantization_config->quant_method + "\"",
         "\"mxfp4\" (or no quantization_config for bf16 experts)");
    need(hidden_size % 32 == 0, "hidden_size", hidden_size, "a multiple of 32 (MXFP4 blocks are 32 wide)");
    need(intermediate_size % 32 == 0, "intermediate_size", intermediate_size,
         "a multiple of 32 (MXFP4 blocks are 32 wide)");
  }
}

GptOssConfig GptOssConfig::load(const std::string& model_dir) {
  std::filesystem::path p(model_dir);
  if (std::filesystem::is_directory(p)) p /= "config.json";
  const std::string src = p.string();
  if (!std::filesystem::exists(p))
    fail_input("{}: not found; expected the model's Hugging Face config.json", src);
  json j;
  try {
    j = json::parse(read_file(src));
  } catch (const json::exception& e) {
    fail_input("{}: not valid JSON ({})", src, e.what());
  }
  return from_json(j, src);
}

json GptOssConfig::to_json() const {
  json j;
  j["architectures"] = {"GptOssForCausalLM"};
  j["model_type"] = model_type;
  j["attention_bias"] = attention_bias;
  j["attention_dropout"] = attention_dropout;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_id;
  else j["eos_token_id"] = eos_token_ids;
  j["pad_token_id"] = pad_token_id ? json(*pad_token_id) : json(nullptr);
  j["hidden_act"] = hidden_act;
  j["initial_context_length"] = initial_context_length;
  j["initializer_range"] = initializer_range;
  j["max_position_embeddings"] = max_position_embeddings;
  j["output_router_logits"] = false;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.rope_type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {{"beta_fast", rope_scaling.beta_fast},
                         {"beta_slow", rope_scaling.beta_slow},
                         {"factor", rope_scaling.factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings},
                         {"rope_type", rope_scaling.rope_type},
                         {"truncate", rope_scaling.truncate}};
  }
  j["router_aux_loss_coef"] = router_aux_loss_coef;
  j["swiglu_limit"] = swiglu_limit;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["use_cache"] = true;
  j["torch_dtype"] = torch_dtype;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["num_local_experts"] = num_local_experts;
  j["num_experts_per_tok"] = num_experts_per_tok;
  j["experts_per_token"] = num_experts_per_tok;
  j["intermediate_size"] = intermediate_size;
  j["sliding_window"] = sliding_window;
  j["vocab_size"] = vocab_size;
  j["layer_types"] = layer_types;
  if (quantization_config)
    j["quantization_config"] = {{"quant_method", quantization_config->quant_method},
                                {"modules_to_not_convert", quantization_config->modules_to_not_convert}};
  return j;
}

GptOssConfig GptOssConfig::preset(std::string_view shape) {
  GptOssConfig c;
  c.quantization_config = QuantizationConfig{"mxfp4", default_modules_to_not_convert()};
  if (shape == "tiny") {
    c.vocab_size = 1024;
    c.hidden_size = 128;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.num_local_experts = 8;
    c.num_experts_per_tok = 2;
    c.intermediate_size = 96;
    c.sliding_window = 8;
    c.eos_token_id = 1022;
    c.eos_token_ids = {1022};
    c.pad_token_id = 1023;
  } else if (shape == "20b") {
    c.num_hidden_layers = 24;
    c.num_local_experts = 32;
  } else if (shape == "120b") {
    c.num_hidden_layers = 36;
    c.num_local_experts = 128;
  } else {
    fail_input("model shape '{}' is unknown; expected tiny, 20b or 120b", shape);
  }
  c.layer_types = alternating_layer_types(c.num_hidden_layers);
  c.raw = c.to_json();
  c.validate(fmt::format("preset {}", shape));
  return c;
}

ParameterCounts parameter_counts(const GptOssConfig& c) {
  ParameterCounts p;
  const int64_t H = c.hidden_size, L = c.num_hidden_layers, E = c.num_local_experts, I = c.intermediate_size;
  const int64_t q = c.q_dim(), kv = c.kv_dim();
  const int64_t bias = c.attention_bias ? 1 : 0;
  p.embedding = c.vocab_size * H;
  p.unembedding = c.tie_word_embeddings ? 0 : c.vocab_size * H;
  const int64_t attn_layer = H * q + q * bias + 2 * (H * kv + kv * bias) + q * H + H * bias + c.num_attention_heads;
  p.attention = L * attn_layer;
  p.norms = L * 2 * H + H;
  p.router = L * (E * H + E);
  p.expert_one = H * 2 * I + 2 * I + I * H + H;
  p.experts = L * E * p.expert_one;
  p.total = p.embedding + p.unembedding + p.attention + p.norms + p.router + p.experts;
  p.active = (c.tie_word_embeddings ? p.embedding : p.unembedding) + p.attention + p.norms + p.router +
             L * int64_t(c.num_experts_per_tok) * p.expert_one;
  return p;
}

uint64_t decode_bytes_per_token(const GptOssConfig& c, bool mxfp4_experts) {
  const uint64_t H = uint64_t(c.hidden_size), I = uint64_t(c.intermediate_size), L = uint64_t(c.num_hidden_layers);
  const ParameterCounts p = parameter_counts(c);
  uint64_t bytes = 0;
  bytes += 2 * uint64_t(p.attention + p.norms + p.router);  // bf16
  bytes += 2 * H;                                             // one embedding row
  bytes += 2 * uint64_t(c.vocab_size) * H;                    // lm_head (the embedding table when tied)
  const uint64_t w = H * 2 * I + I * H;                       // expert weight elements
  const uint64_t expert = mxfp4_experts ? w / 2 + w / 32 + 2 * (2 * I + H) : 2 * (w + 2 * I + H);
  bytes += L * uint64_t(c.num_experts_per_tok) * expert;
  return bytes;
}

std::vector<TensorSpec> hub_tensor_specs(const GptOssConfig& c, bool mxfp4_experts) {
  const int64_t H = c.hidden_size, E = c.num_local_experts, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q = c.q_dim(), kv = c.kv_dim();
  std::vector<TensorSpec> t;
  auto add = [&](std::string name, std::vector<int64_t> shape, DType d = DType::BF16) {
    t.push_back({std::move(name), d, std::move(shape)});
  };
  add("model.embed_tokens.weight", {V, H});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {H});
    for (const char* n : {"q", "k", "v"}) {
      const int64_t out = std::string(n) == "q" ? q : kv;
      add(p + "self_attn." + n + "_proj.weight", {out, H});
      if (c.attention_bias) add(p + "self_attn." + n + "_proj.bias", {out});
    }
    add(p + "self_attn.o_proj.weight", {H, q});
    if (c.attention_bias) add(p + "self_attn.o_proj.bias", {H});
    add(p + "self_attn.sinks", {c.num_attention_heads});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "mlp.router.weight", {E, H});
    add(p + "mlp.router.bias", {E});
    const std::string x = p + "mlp.experts.";
    if (mxfp4_experts) {
      add(x + "gate_up_proj_blocks", {E, 2 * I, H / 32, 16}, DType::U8);
      add(x + "gate_up_proj_scales", {E, 2 * I, H / 32}, DType::U8);
      add(x + "gate_up_proj_bias", {E, 2 * I});
      add(x + "down_proj_blocks", {E, H, I / 32, 16}, DType::U8);
      add(x + "down_proj_scales", {E, H, I / 32}, DType::U8);
      add(x + "down_proj_bias", {E, H});
    } else {
      add(x + "gate_up_proj", {E, H, 2 * I});
      add(x + "gate_up_proj_bias", {E, 2 * I});
      add(x + "down_proj", {E, I, H});
      add(x + "down_proj_bias", {E, H});
    }
  }
  add("model.norm.weight", {H});
  if (!c.tie_word_embeddings) add("lm_head.weight", {V, H});
  return t;
}

}  // namespace gptoss
