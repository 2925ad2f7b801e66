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

}  // namespace gptoss::testing
