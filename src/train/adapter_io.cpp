#include "train/adapter_io.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numbers>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/safetensors.h"

namespace gptoss::train {
namespace {

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;

constexpr LoraModule kAllModules[kLoraModules] = {LoraModule::kQ, LoraModule::kK, LoraModule::kV, LoraModule::kO,
                                                  LoraModule::kRouter};

// splitmix64: a small, well-mixed generator whose output is fixed by its definition (std::
// distributions are not specified bit for bit across standard libraries; this keeps seeds portable).
struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

std::string accepted_targets() { return "q_proj, k_proj, v_proj, o_proj, router, or the single item all-linear"; }

}  // namespace

std::string lora_tensor_name(int layer, LoraModule m, char which) {
  return fmt::format("base_model.model.model.layers.{}.{}.lora_{}.weight", layer, lora_module_path(m), which);
}

std::vector<LoraModule> lora_target_modules(const PeftParams& p) {
  if (p.peft_method != "lora")
    fail_input("peft.peft_method is '{}'; gptoss train trains LoRA adapters only (set it to lora)", p.peft_method);
  if (p.lora_r <= 0)
    fail_input("peft.lora_r is {}; expected the adapter's rank, a positive integer (e.g. 8)", p.lora_r);
  if (p.lora_alpha <= 0)
    fail_input("peft.lora_alpha is {}; expected a positive integer (e.g. 2 * lora_r)", p.lora_alpha);
  if (p.use_dora) fail_input("peft.use_dora is true; gptoss trains and applies plain LoRA only (set it false)");
  if (p.q_lora)
    fail_input("peft.q_lora is true; gptoss trains LoRA over the checkpoint's own weights (MXFP4 experts, bf16 "
               "attention) without bitsandbytes quantization (set it false)");
  if (p.lora_bias != "none")
    fail_input("peft.lora_bias is '{}'; gptoss trains no biases (set it to none)", p.lora_bias);
  if (p.lora_task_type != "CAUSAL_LM")
    fail_input("peft.lora_task_type is '{}'; gpt-oss fine-tuning is CAUSAL_LM", p.lora_task_type);
  if (!p.lora_modules_to_save.empty())
    fail_input("peft.lora_modules_to_save is [{}]; gptoss trains LoRA matrices only, no full module copies "
               "(remove it)",
               fmt::join(p.lora_modules_to_save, ", "));
  if (!p.lora_target_parameters.empty())
    fail_input("peft.lora_target_parameters is [{}]; gptoss does not train LoRA on the experts' parameters "
               "(remove it; adapt {} instead)",
               fmt::join(p.lora_target_parameters, ", "), accepted_targets());
  if (p.lora_init_weights != "DEFAULT" && p.lora_init_weights != "GAUSSIAN")
    fail_input("peft.lora_init_weights is '{}'; gptoss initialises DEFAULT (kaiming-uniform A, B = 0) or GAUSSIAN",
               p.lora_init_weights);
  if (p.lora_target_modules.empty())
    fail_input("peft.lora_target_modules is empty; list the modules to adapt: {}", accepted_targets());

  std::set<LoraModule> picked;
  for (size_t i = 0; i < p.lora_target_modules.size(); ++i) {
    const std::string& name = p.lora_target_modules[i];
    if (name == "all-linear") {
      if (p.lora_target_modules.size() != 1)
        fail_input("peft.lora_target_modules[{}] is all-linear, which must be the only item (it stands for q_proj, "
                   "k_proj, v_proj and o_proj)",
                   i);
      picked.insert({LoraModule::kQ, LoraModule::kK, LoraModule::kV, LoraModule::kO});
      continue;
    }
    bool found = false;
    for (LoraModule m : kAllModules)
      if (name == lora_module_name(m) || name == lora_module_path(m)) {
        picked.insert(m);
        found = true;
      }
    if (found) continue;
    const bool expert = name.find("expert") != std::string::npos || name.find("gate_up") != std::string::npos ||
                        name.find("down_proj") != std::string::npos;
    fail_input("peft.lora_target_modules[{}] is '{}'; expected {}{}", i, name, accepted_targets(),
               expert ? " (the MoE experts are fused parameters, not linears: gptoss does not adapt them)" : "");
  }
  return {picked.begin(), picked.end()};  // LoraModule's order: q, k, v, o, router
}

std::vector<LoraWeights> init_lora(const PeftParams& peft, const GptOssConfig& cfg, uint64_t seed) {
  const std::vector<LoraModule> targets = lora_target_modules(peft);
  const int r = int(peft.lora_r);
  const bool gaussian = peft.lora_init_weights == "GAUSSIAN";
  std::vector<LoraWeights> out;
  out.reserve(size_t(cfg.num_hidden_layers) * targets.size());
  for (int layer = 0; layer < cfg.num_hidden_layers; ++layer)
    for (LoraModule m : targets) {
      const auto [rows, in] = lora_module_shape(cfg, m);
      LoraWeights t{layer, m, std::vector<float>(size_t(r) * size_t(in)), {}};
      t.b.assign(size_t(rows) * size_t(r), 0.0f);  // B = 0: the adapter starts as the identity update
      // One stream per (seed, layer, module): mix them through the generator so nearby seeds differ.
      SplitMix64 rng{seed};
      rng.s = rng.next() ^ (uint64_t(layer) * 0x100000001b3ull + uint64_t(m) + 1);
      rng.s = rng.next();
      if (gaussian) {
        // PEFT's "gaussian": normal_(lora_A, std = 1 / r). Box-Muller, one value per pair of draws.
        const double sd = 1.0 / double(r);
        for (float& v : t.a) {
          const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();  // u1 in (0, 1]: log is finite
          v = float(sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
        }
      } else {
        // kaiming_uniform_(a = sqrt(5)) on [r, in]: gain sqrt(2 / (1 + 5)), bound = gain * sqrt(3 / in)
        // = 1 / sqrt(in).
        const double bound = 1.0 / std::sqrt(double(in));
        for (float& v : t.a) v = float(bound * (2.0 * rng.uniform() - 1.0));
      }
      out.push_back(std::move(t));
    }
  return out;
}

OJson peft_adapter_config(const PeftParams& peft, const std::vector<LoraWeights>& modules,
                          const std::string& base_model_name_or_path) {
  std::set<LoraModule> present;
  for (const auto& t : modules) present.insert(t.module);
  OJson targets = OJson::array();
  for (LoraModule m : present) targets.push_back(std::string(lora_module_name(m)));
  OJson init = true;  // PEFT: init_lora_weights=True is the kaiming-uniform default
  if (peft.lora_init_weights == "GAUSSIAN") init = "gaussian";
  // Sorted keys, as PEFT's save_pretrained writes them.
  OJson c = OJson::object();
  c["alpha_pattern"] = OJson::object();
  c["auto_mapping"] = nullptr;
  c["base_model_name_or_path"] = base_model_name_or_path.empty() ? OJson(nullptr) : OJson(base_model_name_or_path);
  c["bias"] = "none";
  c["fan_in_fan_out"] = false;
  c["inference_mode"] = true;
  c["init_lora_weights"] = init;
  c["layer_replication"] = nullptr;
  c["layers_pattern"] = nullptr;
  c["layers_to_transform"] = nullptr;
  c["loftq_config"] = OJson::object();
  c["lora_alpha"] = peft.lora_alpha;
  c["lora_dropout"] = peft.lora_dropout;
  c["megatron_config"] = nullptr;
  c["megatron_core"] = "megatron.core";
  c["modules_to_save"] = nullptr;
  c["peft_type"] = "LORA";
  c["r"] = peft.lora_r;
  c["rank_pattern"] = OJson::object();
  c["revision"] = nullptr;
  c["target_modules"] = targets;
  c["task_type"] = "CAUSAL_LM";
  c["use_dora"] = false;
  c["use_rslora"] = peft.use_rslora;
  return c;
}

void save_peft_adapter(const std::string& dir, const PeftParams& peft, const GptOssConfig& cfg,
                       const std::vector<LoraWeights>& modules, const std::string& base_model_name_or_path) {
  // Check everything before touching the disk: a bad module is a bug in the trainer, not user input.
  GPTOSS_CHECK(!modules.empty(), "save_peft_adapter('{}'): no LoRA modules to save", dir);
  std::set<std::pair<int, int>> seen;
  std::vector<TensorData> tensors;
  tensors.reserve(modules.size() * 2);
  const int64_t r = peft.lora_r;  // adapter_config.json has one r
  for (const LoraWeights& t : modules) {
    const std::string what = fmt::format("layer {} {}", t.layer, lora_module_name(t.module));
    GPTOSS_CHECK(t.layer >= 0 && t.layer < cfg.num_hidden_layers, "{}: the model has {} layers", what,
                 cfg.num_hidden_layers);
    GPTOSS_CHECK(seen.insert({t.layer, int(t.module)}).second, "{} appears twice", what);
    const auto [out, in] = lora_module_shape(cfg, t.module);
    GPTOSS_CHECK(t.a.size() == size_t(r * in) && t.b.size() == size_t(out * r),
                 "{}: lora_A has {} values and lora_B {}; expected [{}, {}] and [{}, {}] (peft.lora_r {}, the "
                 "model's module [{}, {}])",
                 what, t.a.size(), t.b.size(), r, in, out, r, r, out, in);
    auto finite = [](const std::vector<float>& v) {
      return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
    };
    if (!finite(t.a) || !finite(t.b))
      fail("{}: the LoRA weights hold inf or nan (training diverged); not saving them to {}", what, dir);
    tensors.push_back({lora_tensor_name(t.layer, t.module, 'A'), DType::F32, {r, in}, t.a.data()});
    tensors.push_back({lora_tensor_name(t.layer, t.module, 'B'), DType::F32, {out, r}, t.b.data()});
  }
  std::sort(tensors.begin(), tensors.end(), [](const TensorData& x, const TensorData& y) { return x.name < y.name; });
  const OJson config = peft_adapter_config(peft, modules, base_model_name_or_path);

  fs::path final_path = fs::path(dir).lexically_normal();
  if (!final_path.has_filename()) final_path = final_path.parent_path();  // "out/" -> "out"
  std::error_code ec;
  if (fs::exists(final_path, ec) && !fs::is_directory(final_path, ec))
    fail_input("{} exists and is not a directory; the adapter needs a directory there (move the file away)", dir);
  const fs::path parent = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) fail_input("cannot create {}: {}", parent.string(), ec.message());

  // Staged beside the final directory (removed unless committed); overwrite: an existing directory is
  // not refused, but only its two adapter files are replaced (below), never the whole directory.
  StagedDir stage(final_path.string(), /*overwrite=*/true);
  write_safetensors(stage.file("adapter_model.safetensors"), tensors);
  write_file_atomic(stage.file("adapter_config.json"), config.dump(2) + "\n");
  if (!fs::exists(final_path, ec) || fs::is_empty(final_path, ec)) return stage.commit();
  // An existing directory (a checkpoint or output_dir with other contents): replace the two files only.
  for (const char* name : {"adapter_model.safetensors", "adapter_config.json"}) {
    fs::rename(stage.file(name), final_path / name, ec);
    if (ec) fail_input("cannot rename {} into {}: {}", stage.file(name), dir, ec.message());
  }
}

}  // namespace gptoss::train
