// A seeded random-weight checkpoint (config.json + model.safetensors in the hub layout) of any config,
// for tests on shapes no fixture has: norms near 1, other bf16 weights in +-0.3, MXFP4 blocks random
// with scales 2^-5 .. 2^-1.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace gptoss::testing {

inline void write_random_model(const std::string& dir, const GptOssConfig& c, bool mxfp4, unsigned seed = 42) {
  GptOssConfig cfg = c;
  if (!mxfp4) cfg.quantization_config.reset();
  std::filesystem::create_directories(dir);
  write_file_atomic(dir + "/config.json", cfg.to_json().dump(2));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorData> tensors;
  const auto specs = hub_tensor_specs(cfg, mxfp4);
  storage.reserve(specs.size());
  for (const auto& s : specs) {
    auto& buf = storage.emplace_back(s.nbytes());
    const bool norm = s.name.find("norm") != std::string::npos;
    const bool scales = s.name.find("_scales") != std::string::npos;
    if (s.dtype == DType::U8) {
      for (auto& b : buf) b = scales ? uint8_t(122 + rng() % 5) : uint8_t(rng());
    } else {
      auto* p = reinterpret_cast<uint16_t*>(buf.data());
      for (size_t i = 0; i < buf.size() / 2; ++i) p[i] = f32_to_bf16(norm ? 1.0f + 0.1f * u(rng) : 0.3f * u(rng));
    }
    tensors.push_back({s.name, s.dtype, s.shape, buf.data()});
  }
  write_safetensors(dir + "/model.safetensors", tensors);
}

// A PEFT LoRA adapter directory with seeded random F32 lora_A / lora_B (N(0, 0.05)) of rank r on q_proj,
// k_proj, v_proj, o_proj and the router of every layer of cfg (lora_alpha = 2 r).
inline void write_random_adapter(const std::string& dir, const GptOssConfig& cfg, int r, unsigned seed = 7) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir + "/adapter_config.json",
                    "{\"peft_type\": \"LORA\", \"r\": " + std::to_string(r) + ", \"lora_alpha\": " +
                        std::to_string(2 * r) + ", \"bias\": \"none\"}");
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 0.05f);
  std::vector<std::vector<float>> storage;
  std::vector<TensorData> tensors;
  const int64_t H = cfg.hidden_size;
  const std::pair<const char*, std::pair<int64_t, int64_t>> modules[] = {
      {"self_attn.q_proj", {cfg.q_dim(), H}}, {"self_attn.k_proj", {cfg.kv_dim(), H}},
      {"self_attn.v_proj", {cfg.kv_dim(), H}}, {"self_attn.o_proj", {H, cfg.q_dim()}},
      {"mlp.router", {cfg.num_local_experts, H}}};
  storage.reserve(size_t(cfg.num_hidden_layers) * 10);
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    for (const auto& [name, shape] : modules) {
      const auto [out, in] = shape;
      const std::string base = "base_model.model.model.layers." + std::to_string(l) + "." + name;
      for (const auto& [suffix, dims] : {std::pair{".lora_A.weight", std::vector<int64_t>{r, in}},
                                         std::pair{".lora_B.weight", std::vector<int64_t>{out, r}}}) {
        auto& v = storage.emplace_back(size_t(dims[0] * dims[1]));
        for (float& x : v) x = d(rng);
        tensors.push_back({base + suffix, DType::F32, dims, v.data()});
      }
    }
  write_safetensors(dir + "/adapter_model.safetensors", tensors);
}

}  // namespace gptoss::testing
