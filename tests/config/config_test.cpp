#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "core/dtype.h"
#include "config/recipes.h"
#include "config/yaml_tree.h"
#include "core/error.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace gptoss {
namespace {


const char* kMinimal = "model:\n  model_name: openai/gpt-oss-20b\n";

TEST(Config, EveryBundledRecipeLoadsAndValidates) {
  auto recipes = list_recipes();
  ASSERT_GE(recipes.size(), 11u) << "bundled configs dir: " << bundled_configs_dir();
  int inference = 0, sft = 0, quant = 0;
  for (const auto& r : recipes) {
    SCOPED_TRACE(r.name);
    EXPECT_FALSE(r.description.empty());
    if (r.kind == "inference") {
      InferenceConfig c = load_inference_config(r.name);
      EXPECT_TRUE(c.model.model_name.rfind("openai/gpt-oss-", 0) == 0);
      EXPECT_GE(c.generation.max_new_tokens, 1);
      ++inference;
    } else if (r.kind == "sft") {
      TrainingConfig c = load_training_config(r.name);
      EXPECT_TRUE(c.training.use_peft);
      EXPECT_EQ(c.peft.lora_r, 8);
      EXPECT_EQ(c.peft.lora_alpha, 16);
      EXPECT_EQ(c.data.train.datasets.at(0).dataset_name, "HuggingFaceH4/Multilingual-Thinking");
      ++sft;
    } else if (r.kind == "quantization") {
      QuantizeConfig c = load_quantization_config(r.name);
      EXPECT_EQ(c.method, "mxfp4");
      ++quant;
    } else {
      ADD_FAILURE() << "unexpected recipe kind " << r.kind;
    }
  }
  EXPECT_EQ(inference, 5);
  EXPECT_GE(sft, 3);
  EXPECT_EQ(quant, 1);
}

TEST(Config, RecipeValuesMirrorOumi) {
  InferenceConfig c = load_inference_config("oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml");
  EXPECT_EQ(c.model.model_name, "openai/gpt-oss-20b");
  EXPECT_EQ(c.engine, "NATIVE");
  EXPECT_EQ(c.generation.max_new_tokens, 8192);
  EXPECT_EQ(c.model.model_max_length.value(), 131072);
  EXPECT_FALSE(c.engine_params.max_model_len);  // the engine takes model_max_length (as an upper bound)
  // Oumi defaults for everything the file does not set.
  EXPECT_EQ(c.generation.temperature, 0.0);
  EXPECT_EQ(c.generation.top_p, 1.0);
  EXPECT_EQ(c.generation.reasoning_effort, "medium");
  EXPECT_TRUE(c.generation.skip_special_tokens);
  EXPECT_EQ(c.remote_params.max_retries, 3);
  EXPECT_EQ(c.remote_params.connection_timeout, 300.0);

  InferenceConfig t = load_inference_config("configs/recipes/gpt_oss/inference/120b_together_infer.yaml");
  EXPECT_EQ(t.engine, "TOGETHER");
  EXPECT_FALSE(is_local_engine(t.engine));
  EXPECT_EQ(t.remote_params.api_key_env_varname, "TOGETHER_API_KEY");
  EXPECT_EQ(load_inference_config("oumi://configs/recipes/gpt_oss/inference/20b_vllm_infer.yaml").engine, "VLLM");
}

TEST(Config, AliasesResolveToBundledRecipes) {
  EXPECT_EQ(load_inference_config("gpt-oss-20b").model.model_name, "openai/gpt-oss-20b");
  EXPECT_EQ(load_inference_config("gpt-oss-120b").model.model_name, "openai/gpt-oss-120b");
  TrainingConfig t = load_training_config("gpt-oss-20b-lora");
  EXPECT_EQ(t.training.trainer_type, "TRL_SFT");
  EXPECT_EQ(fs::path(resolve_config_path("gpt-oss-20b")).filename(), "20b_infer.yaml");
  auto recipes = list_recipes();
  int with_alias = 0;
  for (const auto& r : recipes) with_alias += int(r.aliases.size());
  EXPECT_EQ(with_alias, 3);
}

TEST(Config, UnknownNamesListWhatIsBundled) {
  std::string e = input_error_of([] { resolve_config_path("oumi://configs/recipes/llama3_1/inference/8b_infer.yaml"); });
  EXPECT_NE(e.find("no such config file, bundled recipe or alias"), std::string::npos) << e;
  EXPECT_NE(e.find("oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml"), std::string::npos) << e;
  e = input_error_of([] { resolve_config_path("gpt-oss-20"); });
  EXPECT_NE(e.find("did you mean gpt-oss-20b?"), std::string::npos) << e;
}

TEST(Config, OverridesWinOverTheFile) {
  auto ov = parse_override_args({"--model.model_name", "my/model", "--generation.temperature=0.7", "--engine",
                                 "vllm", "--generation.stop_strings", "[END, STOP]",
                                 "--engine_params.device=cpu", "--generation.seed", "7"});
  ASSERT_EQ(ov.size(), 6u);
  EXPECT_EQ(ov[1].first, "generation.temperature");
  EXPECT_EQ(ov[1].second, "0.7");
  InferenceConfig c = load_inference_config("gpt-oss-20b", ov);
  EXPECT_EQ(c.model.model_name, "my/model");
  EXPECT_DOUBLE_EQ(c.generation.temperature, 0.7);
  EXPECT_EQ(c.engine, "VLLM");  // enum names are case-insensitive
  EXPECT_EQ(c.generation.stop_strings, (std::vector<std::string>{"END", "STOP"}));
  EXPECT_EQ(c.engine_params.device, "cpu");
  EXPECT_EQ(c.generation.seed.value(), 7);
  EXPECT_EQ(c.generation.max_new_tokens, 8192);  // untouched file value survives

  EXPECT_NE(input_error_of([] { parse_override_args({"stray"}); }).find("unexpected argument 'stray'"), std::string::npos);
  EXPECT_NE(input_error_of([] { parse_override_args({"--engine"}); }).find("missing value"), std::string::npos);
  std::string e = input_error_of([] { load_inference_config("gpt-oss-20b", {{"generation.temprature", "1"}}); });
  EXPECT_NE(e.find("command line (--generation.temprature): unknown key generation.temprature; did you mean "
                   "generation.temperature?"),
            std::string::npos)
      << e;
  e = input_error_of([] { load_inference_config("gpt-oss-20b", {{"generation.temperature", "hot"}}); });
  EXPECT_NE(e.find("generation.temperature is 'hot'; expected a number"), std::string::npos) << e;
}

TEST(Config, UnknownKeysSuggestTheNearestValidKey) {
  std::string e = input_error_of([] {
    parse_inference_config("model:\n  model_name: x\ngeneration:\n  max_new_token: 10\n", "my.yaml");
  });
  EXPECT_EQ(e, "my.yaml:4: unknown key generation.max_new_token; did you mean generation.max_new_tokens?");
  e = input_error_of([] { parse_inference_config("model:\n  model_nme: x\n", "a.yaml"); });
  EXPECT_EQ(e, "a.yaml:2: unknown key model.model_nme; did you mean model.model_name?");
  e = input_error_of([] { parse_inference_config("modle:\n  model_name: x\n", "a.yaml"); });
  EXPECT_EQ(e, "a.yaml:1: unknown key modle; did you mean model?");
  e = input_error_of([] { parse_inference_config(std::string(kMinimal) + "zzzzzz: 1\n", "a.yaml"); });
  EXPECT_NE(e.find("unknown key zzzzzz; valid keys are: engine, engine_params, generation, input_path, model,"),
            std::string::npos)
      << e;
  e = input_error_of([] { parse_inference_config(std::string(kMinimal) + "engine: TOGTHER\n", "a.yaml"); });
  EXPECT_NE(e.find("a.yaml:3: engine is 'TOGTHER'; expected one of NATIVE, VLLM"), std::string::npos) << e;
  EXPECT_NE(e.find("(did you mean TOGETHER?)"), std::string::npos) << e;
  e = input_error_of([] {
    parse_training_config("model: {model_name: x}\ndata: {train: {datasets: [{dataset_name: d}]}}\n"
                          "peft:\n  lora_rank: 8\n",
                          "t.yaml");
  });
  EXPECT_EQ(e, "t.yaml:4: unknown key peft.lora_rank; did you mean peft.lora_r?");
}

TEST(Config, TypeAndRangeErrorsNameKeyAndValue) {
  auto err = [](const std::string& gen) {
    return input_error_of([&] { parse_inference_config(std::string(kMinimal) + "generation:\n" + gen, "c.yaml"); });
  };
  EXPECT_EQ(err("  temperature: -1\n"), "c.yaml:4: generation.temperature is -1; expected a number >= 0");
  EXPECT_EQ(err("  top_p: 0\n"), "c.yaml:4: generation.top_p is 0; expected a number > 0 and <= 1");
  EXPECT_EQ(err("  max_new_tokens: 0\n"), "c.yaml:4: generation.max_new_tokens is 0; expected an integer >= 1");
  EXPECT_EQ(err("  max_new_tokens: 1.5\n"), "c.yaml:4: generation.max_new_tokens is 1.5; expected an integer");
  EXPECT_EQ(err("  max_new_tokens: \"12\"\n"),
            "c.yaml:4: generation.max_new_tokens is '12'; expected an integer");  // quoted stays a string
  EXPECT_EQ(err("  skip_special_tokens: maybe\n"),
            "c.yaml:4: generation.skip_special_tokens is 'maybe'; expected true or false");
  EXPECT_EQ(err("  num_beams: 4\n"), "c.yaml:4: generation.num_beams is 4; expected an integer in 1..1");
  EXPECT_NE(err("  reasoning_effort: extreme\n").find("expected one of low, medium, high"), std::string::npos);
  EXPECT_NE(err("  logit_bias: {abc: 1}\n").find("expected token ids"), std::string::npos);
  EXPECT_EQ(input_error_of([] { parse_inference_config("generation: {}\n", "c.yaml"); }),
            "c.yaml: model.model_name is empty; set it to a hub id (openai/gpt-oss-20b) or a model directory, "
            "e.g. --model.model_name openai/gpt-oss-20b");
  EXPECT_NE(input_error_of([] { parse_inference_config("model: [1]\n", "c.yaml"); }).find("model is [1]; expected a mapping"),
            std::string::npos);
  EXPECT_NE(input_error_of([] { parse_inference_config("model: {model_name: x\n", "c.yaml"); }).find("c.yaml:"),
            std::string::npos);
}

TEST(Config, SamplingFieldsAreRead) {
  InferenceConfig c = parse_inference_config(std::string(kMinimal) +
                                                 "generation:\n"
                                                 "  temperature: 0.6\n  top_p: 0.9\n  min_p: 0.05\n"
                                                 "  frequency_penalty: 0.5\n  presence_penalty: -0.25\n"
                                                 "  logit_bias: {200012: -100, 7: 2.5}\n  seed: 1234\n"
                                                 "  stop_strings: DONE\n  stop_token_ids: [200002, 200012]\n"
                                                 "  max_new_tokens: 77\n  skip_special_tokens: false\n",
                                             "s.yaml");
  const auto& g = c.generation;
  EXPECT_DOUBLE_EQ(g.temperature, 0.6);
  EXPECT_DOUBLE_EQ(g.top_p, 0.9);
  EXPECT_DOUBLE_EQ(g.min_p, 0.05);
  EXPECT_DOUBLE_EQ(g.frequency_penalty, 0.5);
  EXPECT_DOUBLE_EQ(g.presence_penalty, -0.25);
  ASSERT_EQ(g.logit_bias.size(), 2u);
  EXPECT_DOUBLE_EQ(g.logit_bias.at(200012), -100.0);
  EXPECT_DOUBLE_EQ(g.logit_bias.at(7), 2.5);
  EXPECT_EQ(g.seed.value(), 1234);
  EXPECT_EQ(g.stop_strings, std::vector<std::string>{"DONE"});
  EXPECT_EQ(g.stop_token_ids, (std::vector<int64_t>{200002, 200012}));
  EXPECT_EQ(g.max_new_tokens, 77);
  EXPECT_FALSE(g.skip_special_tokens);
}

TEST(Config, ReasoningEffortFromEitherPlace) {
  auto effort = [](const std::string& extra) {
    return parse_inference_config(std::string(kMinimal) + extra, "r.yaml").generation.reasoning_effort;
  };
  EXPECT_EQ(effort(""), "medium");
  EXPECT_EQ(effort("  chat_template_kwargs: {reasoning_effort: high}\n"), "high");  // Oumi's way
  EXPECT_EQ(effort("generation: {reasoning_effort: LOW}\n"), "low");
  EXPECT_EQ(effort("  chat_template_kwargs: {reasoning_effort: high}\ngeneration: {reasoning_effort: low}\n"), "low");
  EXPECT_NE(input_error_of([&] { effort("  chat_template_kwargs: {reasoning_effort: max}\n"); })
                .find("model.chat_template_kwargs.reasoning_effort is 'max'; expected low, medium or high"),
            std::string::npos);
}

TEST(Config, ToolUseInlineAndFromFile) {
  fs::path dir = fs::temp_directory_path() / ("gptoss_config_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "tools.json") << R"([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"name": "bare_tool"}])";
  }
  std::string yaml = std::string(kMinimal) + "tool_use:\n  enabled: true\n  tools: tools.json\n  executor: ./run.sh\n";
  {
    std::ofstream(dir / "c.yaml") << yaml;
  }
  InferenceConfig c = load_inference_config((dir / "c.yaml").string());
  EXPECT_TRUE(c.tool_use.enabled);
  ASSERT_EQ(c.tool_use.tools.size(), 2u);
  EXPECT_EQ(c.tool_use.tools[0]["function"]["name"], "get_weather");
  EXPECT_EQ(c.tool_use.tools[1]["type"], "function");  // a bare definition is wrapped
  EXPECT_EQ(c.tool_use.tools[1]["function"]["name"], "bare_tool");
  EXPECT_EQ(c.tool_use.executor, "./run.sh");

  InferenceConfig inl = parse_inference_config(
      std::string(kMinimal) + "tool_use:\n  tools:\n    - type: function\n      function: {name: add}\n", "i.yaml");
  EXPECT_EQ(inl.tool_use.tools[0]["function"]["name"], "add");
  EXPECT_TRUE(inl.tool_use.enabled);  // listing tools turns them on unless enabled: false
  EXPECT_FALSE(parse_inference_config(std::string(kMinimal) + "tool_use:\n  enabled: false\n  tools: [{name: a}]\n", "i.yaml")
                   .tool_use.enabled);
  // Key order of a tool's JSON Schema is kept (properties render in that order).
  InferenceConfig ord = parse_inference_config(
      std::string(kMinimal) + "tool_use:\n  tools:\n    - name: f\n      parameters:\n        type: object\n"
                              "        properties:\n          zeta: {type: string}\n          alpha: {type: number}\n",
      "o.yaml");
  EXPECT_EQ(ord.tool_use.tools[0]["function"]["parameters"]["properties"].dump(),
            R"({"zeta":{"type":"string"},"alpha":{"type":"number"}})");
  std::string e = input_error_of([] {
    parse_inference_config(std::string(kMinimal) + "tool_use:\n  max_tools: 1\n  tools: [{name: a}, {name: b}]\n",
                           "i.yaml");
  });
  EXPECT_NE(e.find("tool_use.tools has 2 tools; expected at most tool_use.max_tools = 1"), std::string::npos) << e;
  e = input_error_of([] { parse_inference_config(std::string(kMinimal) + "tool_use:\n  tools: [{type: function}]\n", "i.yaml"); });
  EXPECT_NE(e.find("tools[0]"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(Config, EngineParams) {
  InferenceConfig c = parse_inference_config(std::string(kMinimal) +
                                                 "engine_params:\n  max_num_seqs: 8\n  gpu_memory_utilization: 0.5\n"
                                                 "  max_model_len: 4096\n  device: CUDA\n  cpu_offload: true\n",
                                             "e.yaml");
  EXPECT_EQ(c.engine_params.max_num_seqs, 8);
  EXPECT_DOUBLE_EQ(c.engine_params.gpu_memory_utilization, 0.5);
  EXPECT_EQ(c.engine_params.max_model_len.value(), 4096);
  EXPECT_EQ(c.engine_params.device, "cuda");
  EXPECT_TRUE(c.engine_params.cpu_offload);
  EXPECT_TRUE(c.engine_params.use_mmap);  // the default
  EXPECT_FALSE(parse_inference_config(std::string(kMinimal) + "engine_params: {use_mmap: false}\n", "e.yaml")
                   .engine_params.use_mmap);
  EXPECT_NE(input_error_of([] {
              parse_inference_config(std::string(kMinimal) + "engine_params: {use_mmap: copy}\n", "e.yaml");
            }).find("engine_params.use_mmap is 'copy'; expected true or false"),
            std::string::npos);
  EXPECT_NE(input_error_of([] {
              parse_inference_config(std::string(kMinimal) + "engine_params: {gpu_memory_utilization: 1.5}\n", "e.yaml");
            }).find("engine_params.gpu_memory_utilization is 1.5"),
            std::string::npos);
  EXPECT_EQ(c.engine_params.kv_cache_dtype, "auto");
  c = parse_inference_config(std::string(kMinimal) + "engine_params: {kv_cache_dtype: bfloat16, device: CUDA}\n",
                             "e.yaml");
  EXPECT_EQ(c.engine_params.kv_cache_dtype, "bfloat16");
  KvDtype kv = KvDtype::f32;
  EXPECT_TRUE(parse_kv_dtype(c.engine_params.kv_cache_dtype, &kv));
  EXPECT_EQ(kv, KvDtype::bf16);
  const std::string kv_error = input_error_of([] {
    parse_inference_config(std::string(kMinimal) + "engine_params: {kv_cache_dtype: fp8}\n", "e.yaml");
  });
  EXPECT_NE(kv_error.find("kv_cache_dtype"), std::string::npos) << kv_error;
  EXPECT_NE(kv_error.find("bfloat16"), std::string::npos) << kv_error;
  ConfigJson j = to_json(c);
  EXPECT_EQ(j["engine_params"]["kv_cache_dtype"], "bfloat16");
  EXPECT_EQ(j["engine_params"]["device"], "cuda");
  EXPECT_EQ(j["model"]["model_name"], "openai/gpt-oss-20b");
  // (gptoss) lora_modules: name -> adapter, in the file's order.
  c = parse_inference_config(std::string(kMinimal) + "engine_params:\n  lora_modules:\n    zeta: ./z\n    alpha: org/a\n",
                             "e.yaml");
  ASSERT_EQ(c.engine_params.lora_modules.size(), 2u);
  EXPECT_EQ(c.engine_params.lora_modules[0], (std::pair<std::string, std::string>{"zeta", "./z"}));
  EXPECT_EQ(c.engine_params.lora_modules[1], (std::pair<std::string, std::string>{"alpha", "org/a"}));
  EXPECT_EQ(to_json(c)["engine_params"]["lora_modules"]["alpha"], "org/a");
  EXPECT_NE(input_error_of([] {
              parse_inference_config(std::string(kMinimal) + "engine_params: {lora_modules: {x: 3}}\n", "e.yaml");
            }).find("engine_params.lora_modules.x is 3; expected the adapter's directory or hub id"),
            std::string::npos);
}

TEST(Config, TrainingAndQuantizationOverrides) {
  TrainingConfig t = load_training_config("gpt-oss-20b-lora", {{"training.max_steps", "10"}, {"peft.lora_r", "16"}});
  EXPECT_EQ(t.training.max_steps, 10);
  EXPECT_EQ(t.peft.lora_r, 16);
  EXPECT_DOUBLE_EQ(t.training.learning_rate, 2e-4);
  EXPECT_EQ(t.peft.lora_target_modules.size(), 4u);
  // A list item by index: the recipe's one dataset gets a local path, index 1 appends a second.
  t = load_training_config("gpt-oss-20b-lora", {{"data.train.datasets[0].dataset_path", "/data/a.jsonl"},
                                                {"data.train.datasets[1].dataset_path", "/data/b.jsonl"}});
  ASSERT_EQ(t.data.train.datasets.size(), 2u);
  EXPECT_EQ(t.data.train.datasets[0].dataset_name, "HuggingFaceH4/Multilingual-Thinking");
  EXPECT_EQ(t.data.train.datasets[0].dataset_path, "/data/a.jsonl");
  EXPECT_EQ(t.data.train.datasets[1].dataset_path, "/data/b.jsonl");
  EXPECT_NE(input_error_of([] { load_training_config("gpt-oss-20b-lora", {{"data.train.datasets[5].dataset_path", "x"}}); })
                .find("data.train.datasets has 1 items; index 5 is past its end"),
            std::string::npos);
  EXPECT_NE(input_error_of([] { load_training_config("gpt-oss-20b-lora", {{"data.train[0].x", "x"}}); })
                .find("data.train is not a list"),
            std::string::npos);
  QuantizeConfig q = load_quantization_config("oumi://configs/recipes/gpt_oss/quantization/20b_mxfp4.yaml",
                                                  {{"output_path", "/tmp/q"}});
  EXPECT_EQ(q.output_path, "/tmp/q");
  EXPECT_NE(input_error_of([] { load_quantization_config("oumi://configs/recipes/gpt_oss/quantization/20b_mxfp4.yaml",
                                                   {{"method", "awq_q4_0"}}); })
                .find("method is 'awq_q4_0'; expected one of mxfp4"),
            std::string::npos);
}

TEST(YamlTree, ScalarsAreTypedLikeYaml12) {
  ConfigJson j = yaml_to_json("a: 1\nb: 2.5e-4\nc: True\nd: ~\ne: '3'\nf: hello\ng: -7\nh: [1, x]\n", "t");
  EXPECT_TRUE(j["a"].is_number_integer());
  EXPECT_DOUBLE_EQ(j["b"].get<double>(), 2.5e-4);
  EXPECT_EQ(j["c"], true);
  EXPECT_TRUE(j["d"].is_null());
  EXPECT_EQ(j["e"], "3");
  EXPECT_EQ(j["f"], "hello");
  EXPECT_EQ(j["g"], -7);
  EXPECT_EQ(j["h"][1], "x");
  EXPECT_EQ(parse_scalar_value("0.7"), 0.7);
  EXPECT_EQ(parse_scalar_value("openai/gpt-oss-20b"), "openai/gpt-oss-20b");
  EXPECT_EQ(parse_scalar_value("'12'"), "12");
  EXPECT_EQ(parse_scalar_value("a: b"), "a: b");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(nearest("temprature", {"top_p", "temperature"}), "temperature");
  EXPECT_EQ(nearest("qqqqqq", {"top_p", "temperature"}), "");
}

}  // namespace
}  // namespace gptoss
