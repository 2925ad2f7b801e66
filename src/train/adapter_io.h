// LoRA adapters as `gptoss train` creates and saves them: PEFT-style initialisation, and the PEFT directory
// layout (adapter_config.json + adapter_model.safetensors) that model/lora.h LoraAdapter::load, PEFT's
// PeftModel.from_pretrained and vLLM read back.
//
// Target modules: q_proj, k_proj, v_proj, o_proj (self_attn) and router (mlp.router), the modules
// model/lora.cpp applies. "all-linear" means q_proj, k_proj, v_proj and o_proj, as PEFT expands it for
// gpt-oss in transformers (the experts are fused parameters and the router is not an nn.Linear there).
// An adapter on the router loads here but not in PEFT or vLLM, for the same reason.
//
// Tensor names, as PEFT saves them (the adapter name "default" stripped):
//   base_model.model.model.layers.<i>.self_attn.q_proj.lora_A.weight   [r, in]
//   base_model.model.model.layers.<i>.self_attn.q_proj.lora_B.weight   [out, r]
//   base_model.model.model.layers.<i>.mlp.router.lora_A.weight          ...
// stored F32 (the trained values, unrounded). The forward is y = W x + scale * B (A x), scale =
// lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "model/config.h"
#include "model/lora.h"

namespace gptoss::train {

// The PEFT tensor name of lora_A (which = 'A') or lora_B (which = 'B') of a module.
std::string lora_tensor_name(int layer, LoraModule m, char which);

// Checks the peft section for what gptoss trains (peft_method lora, lora_r > 0, lora_alpha > 0, bias none,
// task CAUSAL_LM, lora_init_weights DEFAULT or GAUSSIAN; no DoRA, q_lora, modules_to_save or
// target_parameters) and returns the target modules in the order q, k, v, o, router. lora_target_modules
// items: a module name ("q_proj", "router"), its path ("self_attn.q_proj", "mlp.router"), or the single
// item "all-linear". Anything else is an InputError naming the key (peft.lora_target_modules[i]), the
// value and the accepted values.
std::vector<LoraModule> lora_target_modules(const PeftParams& peft);

// The initial adapter, PEFT's way: for each target module of every layer (layer-major, modules in the
// order above), B = 0 and A of rank lora_r drawn from U(-1/sqrt(in), 1/sqrt(in)) (DEFAULT: torch's
// kaiming_uniform_(a = sqrt(5)) on [r, in]) or N(0, (1/r)^2) (GAUSSIAN). Each (layer, module) gets its own
// stream derived from `seed`, so the values do not depend on which other modules are targeted. The draws
// are deterministic but not torch's (its generator is not reproduced).
std::vector<LoraWeights> init_lora(const PeftParams& peft, const GptOssConfig& cfg, uint64_t seed);

// The adapter_config.json of an adapter of these modules: PEFT's LoraConfig keys (those every PEFT release
// since 0.10 reads; newer keys take their defaults): peft_type LORA, r, lora_alpha, lora_dropout,
// target_modules (the module names present, q/k/v/o/router order), bias "none", task_type CAUSAL_LM,
// use_rslora, use_dora false, fan_in_fan_out false, init_lora_weights, base_model_name_or_path (null when
// empty), inference_mode true, modules_to_save null, ... Keys sorted, as PEFT writes them.
nlohmann::ordered_json peft_adapter_config(const PeftParams& peft, const std::vector<LoraWeights>& modules,
                                           const std::string& base_model_name_or_path = "");

// Writes <dir>/adapter_config.json and <dir>/adapter_model.safetensors. Every module is checked against
// cfg and peft first (layer in range, shape [out, in] of the module, rank == lora_r, a and b sized
// rank * in and out * rank, no (layer, module) twice, all values finite): a failed check is an Error and
// writes nothing. Both files are written complete into "<dir>.tmp-<pid>" beside dir; then a new dir is
// that directory renamed into place, while into an existing directory (a training output_dir that also
// holds checkpoints) the two files are renamed in one after the other (weights first). A crash leaves
// either the previous files or the new ones under the final names, never a partial file.
void save_peft_adapter(const std::string& dir, const PeftParams& peft, const GptOssConfig& cfg,
                       const std::vector<LoraWeights>& modules, const std::string& base_model_name_or_path = "");

}  // namespace gptoss::train
