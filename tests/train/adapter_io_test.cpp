// train/adapter_io.h: an adapter saved by save_peft_adapter loads with model/lora.h LoraAdapter::load and
// gives delta = scale * B A (plain and rsLoRA scale), its adapter_config.json carries PEFT's keys, saving
// is all-or-nothing, init_lora follows PEFT's initialisation, and the peft section is validated.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/lora.h"
#include "train/adapter_io.h"
#include "test_util.h"

namespace gptoss::train {
namespace {

namespace fs = std::filesystem;

// The tiny preset reshaped so that every module has a different [out, in]: q [3*32, 96], k/v [32, 96],
// o [96, 96], router [6, 96], over 3 layers.
GptOssConfig odd_config() {
  GptOssConfig c = GptOssConfig::preset("tiny");
  c.hidden_size = 96;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;
  c.head_dim = 32;
  c.num_local_experts = 6;
  c.layer_types = {"sliding_attention", "full_attention", "sliding_attention"};
  c.validate("odd_config");
  return c;
}

PeftParams peft_params(int r, int alpha, std::vector<std::string> targets) {
  PeftParams p;
  p.lora_r = r;
  p.lora_alpha = alpha;
  p.lora_target_modules = std::move(targets);
  return p;
}

class AdapterIo : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = make_cpu_backend(); }
  std::string path(const std::string& name) const { return dir_ / name; }

  // Random A and B (B non-zero, unlike init_lora's) for every module of init_lora's list.
  static std::vector<LoraWeights> random_modules(const PeftParams& p, const GptOssConfig& cfg, unsigned seed) {
    std::vector<LoraWeights> mods = init_lora(p, cfg, seed);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (auto& t : mods) {
      for (float& v : t.a) v = u(rng);
      for (float& v : t.b) v = u(rng);
    }
    return mods;
  }

  // delta() of every saved module against scale * B A computed here in double.
  void expect_deltas(const LoraAdapter& ad, const std::vector<LoraWeights>& mods, double scale) {
    for (const auto& t : mods) {
      const std::vector<float> d = ad.delta(t.layer, t.module);
      const auto [out, in] = lora_module_shape(odd_config(), t.module);
      const int64_t rank = int64_t(t.a.size()) / in;
      ASSERT_EQ(d.size(), size_t(out * in));
      double worst = 0;
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double want = 0, mag = 0;  // mag: the size of the terms, the scale of their rounding errors
          for (int64_t k = 0; k < rank; ++k) {
            const double term = double(t.b[size_t(o * rank + k)]) * t.a[size_t(k * in + i)];
            want += term;
            mag += std::abs(term);
          }
          worst = std::max(worst, std::abs(double(d[size_t(o * in + i)]) - scale * want) / (scale * mag + 1e-30));
        }
      // The loader keeps A and scale * B to f32 precision (three bf16 limbs): errors at f32 rounding level.
      EXPECT_LT(worst, 1e-6) << "layer " << t.layer << " " << lora_module_name(t.module);
    }
  }

  TempDir dir_{"adapter_io"};
  std::unique_ptr<Backend> backend_;
};

TEST_F(AdapterIo, SavedAdapterLoadsWithDeltaEqualScaleBA) {
  const GptOssConfig cfg = odd_config();
  const PeftParams p = peft_params(4, 12, {"q_proj", "k_proj", "v_proj", "o_proj", "router"});
  const auto mods = random_modules(p, cfg, 5);
  ASSERT_EQ(mods.size(), 15u);  // 3 layers x 5 modules
  save_peft_adapter(path("adapter"), p, cfg, mods, "openai/gpt-oss-20b");
  auto ad = LoraAdapter::load(path("adapter"), cfg, *backend_);
  EXPECT_EQ(ad->max_rank(), 4);
  expect_deltas(*ad, mods, 12.0 / 4.0);
  EXPECT_NE(ad->describe().find("q_proj, k_proj, v_proj, o_proj, router of 3 layers"), std::string::npos)
      << ad->describe();
  // The file holds exactly the PEFT names, F32, at the right shapes.
  Checkpoint ck = Checkpoint::open(path("adapter") + "/adapter_model.safetensors");
  EXPECT_EQ(ck.size(), 30u);
  const TensorView& a = ck.get("base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 96}));
  EXPECT_EQ(ck.get("base_model.model.model.layers.0.mlp.router.lora_B.weight").shape, (std::vector<int64_t>{6, 4}));
  EXPECT_EQ(ck.get("base_model.model.model.layers.1.self_attn.o_proj.lora_A.weight").shape,
            (std::vector<int64_t>{4, 96}));
  EXPECT_EQ(ck.get("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight").shape,
            (std::vector<int64_t>{32, 4}));
}

TEST_F(AdapterIo, RsLoraScalesBySqrtRank) {
  const GptOssConfig cfg = odd_config();
  PeftParams p = peft_params(4, 6, {"v_proj"});
  p.use_rslora = true;
  const auto mods = random_modules(p, cfg, 9);
  save_peft_adapter(path("rs"), p, cfg, mods);
  auto ad = LoraAdapter::load(path("rs"), cfg, *backend_);
  expect_deltas(*ad, mods, 6.0 / std::sqrt(4.0));
  EXPECT_TRUE(ad->delta(0, LoraModule::kQ).empty());  // not targeted
}

TEST_F(AdapterIo, AdapterConfigHasPeftKeys) {
  const GptOssConfig cfg = odd_config();
  PeftParams p = peft_params(8, 16, {"all-linear"});
  p.lora_dropout = 0.05;
  save_peft_adapter(path("cfg"), p, cfg, init_lora(p, cfg, 1), "openai/gpt-oss-20b");
  const auto c = nlohmann::json::parse(read_file(path("cfg") + "/adapter_config.json"));
  EXPECT_EQ(c["peft_type"], "LORA");
  EXPECT_EQ(c["r"], 8);
  EXPECT_EQ(c["lora_alpha"], 16);
  EXPECT_DOUBLE_EQ(c["lora_dropout"].get<double>(), 0.05);
  EXPECT_EQ(c["target_modules"], nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj"}));
  EXPECT_EQ(c["bias"], "none");
  EXPECT_EQ(c["task_type"], "CAUSAL_LM");
  EXPECT_EQ(c["use_rslora"], false);
  EXPECT_EQ(c["use_dora"], false);
  EXPECT_EQ(c["fan_in_fan_out"], false);
  EXPECT_EQ(c["inference_mode"], true);
  EXPECT_EQ(c["init_lora_weights"], true);
  EXPECT_EQ(c["base_model_name_or_path"], "openai/gpt-oss-20b");
  EXPECT_TRUE(c.contains("modules_to_save") && c["modules_to_save"].is_null());
  // Written with sorted keys, as PEFT does.
  std::vector<std::string> keys;
  const auto ordered = nlohmann::ordered_json::parse(read_file(path("cfg") + "/adapter_config.json"));
  for (const auto& [k, v] : ordered.items()) keys.push_back(k);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  // No base model: null.
  save_peft_adapter(path("cfg2"), p, cfg, init_lora(p, cfg, 1));
  EXPECT_TRUE(nlohmann::json::parse(read_file(path("cfg2") + "/adapter_config.json"))["base_model_name_or_path"]
                  .is_null());
}

TEST_F(AdapterIo, SaveIntoExistingDirReplacesOnlyTheAdapterFiles) {
  const GptOssConfig cfg = odd_config();
  const PeftParams p = peft_params(2, 4, {"q_proj"});
  fs::create_directories(path("out/checkpoint-10"));
  write_file_atomic(path("out/trainer_state.json"), "{}");
  save_peft_adapter(path("out") + "/", p, cfg, random_modules(p, cfg, 1));
  const auto mods2 = random_modules(p, cfg, 2);
  save_peft_adapter(path("out"), p, cfg, mods2);
  EXPECT_TRUE(fs::exists(path("out/checkpoint-10")));
  EXPECT_TRUE(fs::exists(path("out/trainer_state.json")));
  expect_deltas(*LoraAdapter::load(path("out"), cfg, *backend_), mods2, 2.0);
  // Nothing but the final directory is left beside it.
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_.str())) names.insert(e.path().filename().string());
  EXPECT_EQ(names, std::set<std::string>{"out"});
}

TEST_F(AdapterIo, BadModulesWriteNothing) {
  const GptOssConfig cfg = odd_config();
  const PeftParams p = peft_params(2, 4, {"q_proj", "o_proj"});
  auto mods = random_modules(p, cfg, 3);
  auto expect_refused = [&](std::vector<LoraWeights> m, const std::string& needle) {
    try {
      save_peft_adapter(path("bad"), p, cfg, m);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what() << " (looked for: " << needle << ")";
    }
    EXPECT_FALSE(fs::exists(path("bad")));
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_.str()), fs::directory_iterator()), 0);
  };
  auto m = mods;
  m[1].b[3] = std::nanf("");
  expect_refused(m, "diverged");
  m = mods;
  m.push_back(m[0]);
  expect_refused(m, "twice");
  m = mods;
  m[0].layer = 3;
  expect_refused(m, "3 layers");
  m = mods;  // rank 3 against peft.lora_r 2
  m[0].a.resize(m[0].a.size() / 2 * 3);
  m[0].b.resize(m[0].b.size() / 2 * 3);
  expect_refused(m, "layer 0 q_proj: lora_A has 288 values and lora_B 288; expected [2, 96] and [96, 2] (peft.lora_r 2");
  m = mods;
  m[1].a.pop_back();
  expect_refused(m, "lora_A has");
  m = mods;
  m[0].module = LoraModule::kRouter;  // q's shape under the router's name
  expect_refused(m, "layer 0 router: lora_A has 192 values and lora_B 192; expected [2, 96] and [6, 2]");
}

// init_lora: B = 0; A within kaiming-uniform(a = sqrt(5))'s bound 1/sqrt(in) and spread over it; deterministic
// per seed; a module's draw does not depend on which other modules are targeted.
TEST(InitLora, PeftDefaultInitialisation) {
  const GptOssConfig cfg = odd_config();
  const PeftParams p = peft_params(8, 16, {"router", "o_proj", "self_attn.q_proj"});
  const auto mods = init_lora(p, cfg, 42);
  ASSERT_EQ(mods.size(), 9u);
  const LoraModule order[3] = {LoraModule::kQ, LoraModule::kO, LoraModule::kRouter};
  for (size_t i = 0; i < mods.size(); ++i) {
    const auto& t = mods[i];
    EXPECT_EQ(t.layer, int(i / 3));
    EXPECT_EQ(t.module, order[i % 3]);
    const auto [out, in] = lora_module_shape(cfg, t.module);
    ASSERT_EQ(t.a.size(), size_t(8 * in));
    ASSERT_EQ(t.b.size(), size_t(out * 8));
    for (float v : t.b) ASSERT_EQ(v, 0.0f);
    const double bound = 1.0 / std::sqrt(double(in));
    double lo = 0, hi = 0, sum = 0, sq = 0;
    for (float v : t.a) {
      ASSERT_LE(std::abs(v), bound);
      lo = std::min(lo, double(v));
      hi = std::max(hi, double(v));
      sum += v;
      sq += double(v) * v;
    }
    const double n = double(t.a.size());
    EXPECT_GT(hi, 0.9 * bound);
    EXPECT_LT(lo, -0.9 * bound);
    EXPECT_NEAR(sum / n, 0.0, 0.1 * bound);
    EXPECT_NEAR(sq / n, bound * bound / 3.0, 0.15 * bound * bound / 3.0);  // U(-b, b) has variance b^2 / 3
  }
  EXPECT_EQ(init_lora(p, cfg, 42)[4].a, mods[4].a);
  EXPECT_NE(init_lora(p, cfg, 43)[4].a, mods[4].a);
  EXPECT_NE(mods[0].a, mods[3].a);  // layers differ
  // Layer 1 o_proj with only o_proj targeted: the same values.
  const auto only_o = init_lora(peft_params(8, 16, {"o_proj"}), cfg, 42);
  EXPECT_EQ(only_o[1].a, mods[4].a);
}

TEST(InitLora, GaussianHasStdOneOverR) {
  const GptOssConfig cfg = odd_config();
  PeftParams p = peft_params(4, 8, {"q_proj"});
  p.lora_init_weights = "GAUSSIAN";
  double sum = 0, sq = 0, n = 0;
  for (const auto& t : init_lora(p, cfg, 7))
    for (float v : t.a) {
      sum += v;
      sq += double(v) * v;
      n += 1;
    }
  EXPECT_NEAR(sum / n, 0.0, 0.02);
  EXPECT_NEAR(std::sqrt(sq / n), 0.25, 0.01);
}

TEST(LoraTargets, AcceptedNamesAndErrors) {
  using M = LoraModule;
  EXPECT_EQ(lora_target_modules(peft_params(8, 16, {"all-linear"})), (std::vector<M>{M::kQ, M::kK, M::kV, M::kO}));
  EXPECT_EQ(lora_target_modules(peft_params(8, 16, {"mlp.router", "v_proj", "q_proj", "v_proj"})),
            (std::vector<M>{M::kQ, M::kV, M::kRouter}));
  auto error_of = [](const PeftParams& p) -> std::string {
    try {
      lora_target_modules(p);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  std::string e = error_of(peft_params(8, 16, {"q_proj", "gate_up_proj"}));
  EXPECT_NE(e.find("peft.lora_target_modules[1]"), std::string::npos) << e;
  EXPECT_NE(e.find("gate_up_proj"), std::string::npos) << e;
  EXPECT_NE(e.find("experts"), std::string::npos) << e;
  EXPECT_NE(error_of(peft_params(8, 16, {})).find("peft.lora_target_modules is empty"), std::string::npos);
  EXPECT_NE(error_of(peft_params(8, 16, {"all-linear", "router"})).find("only item"), std::string::npos);
  EXPECT_NE(error_of(peft_params(0, 16, {"q_proj"})).find("peft.lora_r"), std::string::npos);
  PeftParams p = peft_params(8, 16, {"q_proj"});
  p.use_dora = true;
  EXPECT_NE(error_of(p).find("peft.use_dora"), std::string::npos);
  p = peft_params(8, 16, {"q_proj"});
  p.lora_target_parameters = {"mlp.experts.gate_up_proj"};
  EXPECT_NE(error_of(p).find("peft.lora_target_parameters"), std::string::npos);
  p = peft_params(8, 16, {"q_proj"});
  p.lora_init_weights = "PISSA";
  EXPECT_NE(error_of(p).find("peft.lora_init_weights"), std::string::npos);
}

TEST(LoraNames, PeftTensorNames) {
  EXPECT_EQ(lora_tensor_name(7, LoraModule::kK, 'A'), "base_model.model.model.layers.7.self_attn.k_proj.lora_A.weight");
  EXPECT_EQ(lora_tensor_name(0, LoraModule::kRouter, 'B'), "base_model.model.model.layers.0.mlp.router.lora_B.weight");
  // The loader's base-weight names agree with our module paths.
  for (LoraModule m : {LoraModule::kQ, LoraModule::kK, LoraModule::kV, LoraModule::kO, LoraModule::kRouter})
    EXPECT_EQ(lora_base_weight_name(3, m), "model.layers.3." + std::string(lora_module_path(m)) + ".weight");
}

}  // namespace
}  // namespace gptoss::train
