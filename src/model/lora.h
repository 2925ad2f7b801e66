// LoRA adapters in the PEFT layout (adapter_config.json + adapter_model.safetensors), applied at run time
// on top of the base model's linears: y = W x + b + scale * B (A x), scale = lora_alpha / r (or
// lora_alpha / sqrt(r) with use_rslora), as PEFT computes it.
//
// Adapted modules: q_proj, k_proj, v_proj, o_proj (self_attn) and the router (mlp.router) of any layer,
// found from the tensor names (base_model.model.model.layers.<i>.<module>.lora_{A,B}[.<adapter>].weight).
// Options PEFT has that change the math (DoRA, fan_in_fan_out, LoRA biases, modules_to_save, per-module
// rank or alpha patterns, LoRA on the experts' parameters) are refused with an error naming the key.
//
// Precision: A and scale * B are kept in f32 precision as three bf16 limbs each (x = l0 + l1 + l2 holds
// 24 significant bits), so the backends' bf16 matmuls compute the adapter's products to f32 level without
// an f32 matmul op: t = A x is the sum of three matmuls, and each limb of B adds its product into y.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace gptoss {

enum class LoraModule { kQ, kK, kV, kO, kRouter };
inline constexpr int kLoraModules = 5;

// "q_proj", "k_proj", "v_proj", "o_proj", "router".
std::string_view lora_module_name(LoraModule m);
// "self_attn.q_proj", ..., "mlp.router": the module's path inside a decoder layer.
std::string_view lora_module_path(LoraModule m);
// [out, in] of the module's base weight in this model.
std::pair<int64_t, int64_t> lora_module_shape(const GptOssConfig& cfg, LoraModule m);
// The checkpoint name of the base weight a module adapts: "model.layers.<layer>.self_attn.q_proj.weight", ...
std::string lora_base_weight_name(int layer, LoraModule m);

// One adapted linear [out, in] of rank r: the limbs of A [r, in] and of scale * B [out, r] (backend memory).
struct LoraLinear {
  int rank = 0;  // 0: not adapted
  int64_t in = 0, out = 0;
  std::array<const uint16_t*, 3> a{};
  std::array<const uint16_t*, 3> b{};
};

// One adapted module's weights in f32, as PEFT keeps them (before the scale).
struct LoraWeights {
  int layer = 0;
  LoraModule module = LoraModule::kQ;
  std::vector<float> a;  // [r, in]
  std::vector<float> b;  // [out, r]
};

class LoraAdapter {
 public:
  // Reads <dir>/adapter_config.json and <dir>/adapter_model.safetensors and checks them against cfg.
  static std::unique_ptr<LoraAdapter> load(const std::string& dir, const GptOssConfig& cfg, Backend& backend);
  // From weights in memory (the trainer's current ones): rank r, scale = alpha / r (alpha / sqrt(r) with
  // rslora). Shapes are checked against cfg.
  static std::unique_ptr<LoraAdapter> create(const GptOssConfig& cfg, Backend& backend, int r, double alpha,
                                             bool rslora, const std::vector<LoraWeights>& modules);

  const LoraLinear& get(int layer, LoraModule m) const { return layers_.at(size_t(layer))[size_t(m)]; }
  int max_rank() const { return max_rank_; }
  int64_t max_out() const { return max_out_; }  // the widest adapted linear's outputs
  // scale * B A of module m of layer `layer`, [out, in] f32 (summed in double), for merging into the base
  // weight; empty when the module is not adapted.
  std::vector<float> delta(int layer, LoraModule m) const;
  std::string describe() const;  // e.g. "LoRA r=8 alpha=16 on q_proj, k_proj, v_proj, o_proj of 24 layers"

 private:
  LoraAdapter() = default;
  // Adds module m of `layer` (a [r, in], b [out, r], unscaled) as limbs in backend memory.
  void add_module(int layer, LoraModule m, int r, int64_t in, int64_t out, std::vector<float> a,
                  std::vector<float> b, double scale, Backend& backend);
  void finish(int r, double alpha, bool rslora);  // max_rank_, describe_
  std::vector<std::array<LoraLinear, kLoraModules>> layers_;
  std::vector<std::vector<uint16_t>> host_;  // the limbs (the CPU backend reads them in place)
  std::vector<std::array<int, kLoraModules>> host_first_;  // where a linear's 3 A and 3 B limbs start in host_
  int max_rank_ = 0;
  int64_t max_out_ = 0;
  std::string describe_;
};

// PEFT's scale of the LoRA term: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
double lora_scale(double alpha, int r, bool rslora);

// v = l0 + l1 + l2 as three bf16 limbs (to f32 precision: 24 significant bits).
std::array<std::vector<uint16_t>, 3> split_bf16_limbs(std::vector<float> v);

// y[n, out] += L(x[n, in]) with the backend's ops. t: backend scratch of at least n * L.rank floats for
// each of t[0..2]; u: n * L.out floats.
void apply_lora(Backend& backend, const LoraLinear& L, const float* x, int64_t n, float* y, float* const t[3],
                float* u);

}  // namespace gptoss
