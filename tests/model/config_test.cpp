// GptOssConfig: the fixture configs, the presets, every validation message, parameter counts and
// the decode bytes per token.
#include "model/config.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "core/error.h"

namespace gptoss {
namespace {

using json = nlohmann::json;

std::string fixture_dir(const std::string& variant) {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return std::string(e ? e : GPTOSS_SHARED_DIR) + "/fixtures/gpt-oss-tiny/" + variant;
}

TEST(Config, FixtureMxfp4) {
  GptOssConfig c = GptOssConfig::load(fixture_dir("mxfp4"));
  EXPECT_EQ(c.vocab_size, 1024);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_local_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.eos_token_id, 1022);
  EXPECT_EQ(c.pad_token_id, 1023);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 150000.0);
  EXPECT_DOUBLE_EQ(c.swiglu_limit, 7.0);
  EXPECT_EQ(c.rope_scaling.rope_type, "yarn");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_slow, 1.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_FALSE(c.rope_scaling.truncate);
  EXPECT_TRUE(c.is_sliding(0));
  EXPECT_FALSE(c.is_sliding(1));
  EXPECT_TRUE(c.is_sliding(2));
  EXPECT_FALSE(c.is_sliding(3));
  EXPECT_EQ(c.num_sliding_layers(), 2);
  ASSERT_TRUE(c.mxfp4());
  EXPECT_EQ(c.quantization_config->modules_to_not_convert, default_modules_to_not_convert());
  EXPECT_EQ(c.raw["initializer_range"], 0.02);
}

TEST(Config, FixtureBf16AndPresetTinyMatch) {
  GptOssConfig c = GptOssConfig::load(fixture_dir("bf16"));
  EXPECT_FALSE(c.quantization_config.has_value());
  EXPECT_FALSE(c.mxfp4());
  // The tiny preset writes exactly the fixture's mxfp4 config.json (keys and values).
  GptOssConfig m = GptOssConfig::load(fixture_dir("mxfp4"));
  EXPECT_EQ(GptOssConfig::preset("tiny").to_json(), m.raw);
  json bj = GptOssConfig::preset("tiny").to_json();
  bj.erase("quantization_config");
  EXPECT_EQ(bj, c.raw);
}

TEST(Config, Presets) {
  GptOssConfig c20 = GptOssConfig::preset("20b");
  EXPECT_EQ(c20.num_hidden_layers, 24);
  EXPECT_EQ(c20.num_local_experts, 32);
  EXPECT_EQ(c20.vocab_size, 201088);
  EXPECT_EQ(c20.eos_token_id, 200002);
  EXPECT_EQ(c20.pad_token_id, 199999);
  EXPECT_EQ(c20.layer_types.size(), 24u);
  EXPECT_TRUE(c20.is_sliding(22));
  EXPECT_FALSE(c20.is_sliding(23));
  GptOssConfig c120 = GptOssConfig::preset("120b");
  EXPECT_EQ(c120.num_hidden_layers, 36);
  EXPECT_EQ(c120.num_local_experts, 128);
  // Round trip through JSON.
  GptOssConfig back = GptOssConfig::from_json(c120.to_json(), "x");
  EXPECT_EQ(back.to_json(), c120.to_json());
  EXPECT_THROW(GptOssConfig::preset("7b"), InputError);
}

TEST(Config, ParameterCountsMatchTheModelCards) {
  // openai: 20b has 20.9B parameters, 3.6B active; 120b 116.8B, 5.1B active.
  ParameterCounts p20 = parameter_counts(GptOssConfig::preset("20b"));
  EXPECT_NEAR(double(p20.total) / 1e9, 20.91, 0.05);
  EXPECT_NEAR(double(p20.active) / 1e9, 3.61, 0.05);
  ParameterCounts p120 = parameter_counts(GptOssConfig::preset("120b"));
  EXPECT_NEAR(double(p120.total) / 1e9, 116.83, 0.1);
  EXPECT_NEAR(double(p120.active) / 1e9, 5.13, 0.05);
  // The tiny fixture: count its tensors' elements by hand.
  ParameterCounts t = parameter_counts(GptOssConfig::preset("tiny"));
  const int64_t per_layer_attn = 128 * 256 + 256 + 2 * (128 * 128 + 128) + 256 * 128 + 128 + 4;
  EXPECT_EQ(t.attention, 4 * per_layer_attn);
  EXPECT_EQ(t.expert_one, 128 * 192 + 192 + 96 * 128 + 128);
  EXPECT_EQ(t.total, 2 * 1024 * 128 + 4 * per_layer_attn + 4 * 256 + 128 + 4 * (8 * 128 + 8) + 4 * 8 * t.expert_one);
}

TEST(Config, DecodeBytesPerToken) {
  double b20 = double(decode_bytes_per_token(GptOssConfig::preset("20b"), true));
  double b120 = double(decode_bytes_per_token(GptOssConfig::preset("120b"), true));
  EXPECT_NEAR(b20 / 3.71e9, 1.0, 0.02);
  EXPECT_NEAR(b120 / 5.00e9, 1.0, 0.02);
  // bf16 experts read ~3.76x more expert bytes.
  EXPECT_GT(decode_bytes_per_token(GptOssConfig::preset("20b"), false), uint64_t(b20 + 3.5e9));
}

json tiny_json() { return GptOssConfig::preset("tiny").to_json(); }

struct BadCase {
  const char* key;
  json value;
  std::vector<std::string> expect;
};

TEST(Config, ValidationMessages) {
  std::vector<BadCase> cases = {
      {"model_type", "llama", {"model_type", "\"llama\"", "gpt_oss"}},
      {"vocab_size", 0, {"vocab_size is 0", "expected 1.."}},
      {"hidden_size", 100, {"hidden_size is 100", "multiple of 32"}},
      {"hidden_size", "128", {"hidden_size is \"128\"", "integer"}},
      {"num_hidden_layers", 0, {"num_hidden_layers is 0"}},
      {"num_attention_heads", 3, {"num_attention_heads is 3", "multiple of num_key_value_heads (2)"}},
      {"num_key_value_heads", 8, {"num_key_value_heads is 8", "1..num_attention_heads (4)"}},
      {"head_dim", 63, {"head_dim is 63", "even"}},
      {"num_local_experts", 0, {"num_local_experts is 0"}},
      {"num_experts_per_tok", 0, {"num_experts_per_tok is 0", "expected 1..num_local_experts (8)"}},
      {"num_experts_per_tok", 9, {"num_experts_per_tok is 9"}},
      {"experts_per_token", 3, {"num_experts_per_tok is 2 but experts_per_token is 3"}},
      {"intermediate_size", 100, {"intermediate_size is 100", "multiple of 32"}},
      {"sliding_window", 0, {"sliding_window is 0"}},
      {"rms_norm_eps", 0, {"rms_norm_eps is 0"}},
      {"rope_theta", -1, {"rope_theta is -1"}},
      {"swiglu_limit", 0, {"swiglu_limit is 0"}},
      {"eos_token_id", 5000, {"eos_token_id is 5000", "0..vocab_size-1 (1023)"}},
      {"pad_token_id", -1, {"pad_token_id is -1"}},
      {"max_position_embeddings", 0, {"max_position_embeddings is 0"}},
      {"initial_context_length", 0, {"initial_context_length is 0"}},
      {"hidden_act", "gelu", {"hidden_act is \"gelu\""}},
      {"tie_word_embeddings", 1, {"tie_word_embeddings is 1", "true or false"}},
      {"layer_types", json::array({"sliding_attention"}), {"layer_types length is 1", "num_hidden_layers (4)"}},
      {"layer_types", json::array({"sliding_attention", "full_attention", "global", "full_attention"}),
       {"layer_types[2] is \"global\""}},
      {"rope_scaling", json{{"rope_type", "linear"}, {"factor", 2.0}}, {"rope_scaling.rope_type is \"linear\""}},
      {"rope_scaling", json{{"rope_type", "yarn"}, {"factor", 0.5}}, {"rope_scaling.factor is 0.5"}},
      {"rope_scaling", json{{"rope_type", "yarn"}, {"beta_fast", 0.5}}, {"rope_scaling.beta_fast is 0.5"}},
      {"quantization_config", json{{"quant_method", "gptq"}}, {"quantization_config.quant_method is \"gptq\"", "mxfp4"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.key) + " = " + c.value.dump());
    json j = tiny_json();
    j[c.key] = c.value;
    if (std::string(c.key) == "num_experts_per_tok") j["experts_per_token"] = c.value;
    try {
      GptOssConfig::from_json(j, "dir/config.json");
      ADD_FAILURE() << "accepted";
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind("dir/config.json: ", 0), 0u) << msg;
      for (const auto& p : c.expect) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
    }
  }
  json j = tiny_json();
  j.erase("model_type");
  EXPECT_THROW(GptOssConfig::from_json(j, "x"), InputError);
  EXPECT_THROW(GptOssConfig::load("/nonexistent/dir"), InputError);
}

TEST(Config, DefaultsAndAlternateSpellings) {
  // Missing keys take the transformers defaults (the 120b shape); eos as a list; rope_parameters.
  json j = {{"model_type", "gpt_oss"},
            {"eos_token_id", {200002, 199999}},
            {"rope_parameters", {{"rope_type", "yarn"}, {"factor", 32.0}, {"rope_theta", 10000.0}}},
            {"experts_per_token", 2}};
  GptOssConfig c = GptOssConfig::from_json(j, "x");
  EXPECT_EQ(c.num_hidden_layers, 36);
  EXPECT_EQ(c.layer_types.size(), 36u);
  EXPECT_TRUE(c.is_sliding(0));
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.eos_token_id, 200002);
  EXPECT_EQ(c.eos_token_ids.size(), 2u);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.mxfp4());
  // hidden 100 is fine without MXFP4.
  j["hidden_size"] = 100;
  EXPECT_EQ(GptOssConfig::from_json(j, "x").hidden_size, 100);
}

}  // namespace
}  // namespace gptoss
