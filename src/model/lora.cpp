#include "model/lora.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kModuleNames[kLoraModules] = {"q_proj", "k_proj", "v_proj", "o_proj", "router"};
constexpr const char* kModulePaths[kLoraModules] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                    "self_attn.o_proj", "mlp.router"};

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  switch (t.dtype) {
    case DType::F32: {
      const float* p = t.as<float>();
      std::copy(p, p + v.size(), v.begin());
      break;
    }
    case DType::BF16: {
      const uint16_t* p = t.as<uint16_t>();
      for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_to_f32(p[i]);
      break;
    }
    case DType::F16: {
      const uint16_t* p = t.as<uint16_t>();
      for (size_t i = 0; i < v.size(); ++i) v[i] = f16_to_f32(p[i]);
      break;
    }
    default:
      fail_input("{}: LoRA tensor '{}' is {}; expected F32, BF16 or F16", t.file, t.name, dtype_name(t.dtype));
  }
  return v;
}

// Refuses a config key whose value changes the math when it is set to anything but its neutral value.
void refuse_if(bool set, const std::string& path, const char* key, const std::string& value, const char* why) {
  if (set)
    fail_input("{}: '{}' is {}; gptoss does not apply {} (train or save the adapter without it)", path, key, value,
               why);
}

// The adapter's rank, alpha and scale from adapter_config.json; options that change the math are refused.
struct AdapterParams {
  int r = 0;
  double alpha = 0, scale = 0;
  bool rslora = false;
};

AdapterParams read_adapter_config(const std::string& cfg_path) {
  json c;
  try {
    std::ifstream f(cfg_path);
    c = json::parse(f);
  } catch (const json::exception& e) {
    fail_input("{}: not valid JSON ({})", cfg_path, e.what());
  }
  if (!c.is_object()) fail_input("{}: expected a JSON object", cfg_path);
  auto get = [&](const char* key, auto fallback) {
    using T = decltype(fallback);
    if (!c.contains(key) || c[key].is_null()) return fallback;
    try {
      return c[key].get<T>();
    } catch (const json::exception&) {
      fail_input("{}: '{}' is {}; expected a {}", cfg_path, key, c[key].dump(),
                 std::is_same_v<T, bool> ? "boolean" : std::is_same_v<T, std::string> ? "string" : "number");
    }
  };
  const std::string peft_type = get("peft_type", std::string("LORA"));
  if (peft_type != "LORA")
    fail_input("{}: 'peft_type' is '{}'; gptoss applies LORA adapters only", cfg_path, peft_type);
  AdapterParams a;
  a.r = get("r", 0);
  a.alpha = get("lora_alpha", double(a.r));
  if (a.r <= 0) fail_input("{}: 'r' is {}; expected the adapter's rank, a positive integer", cfg_path, a.r);
  a.rslora = get("use_rslora", false);
  refuse_if(get("use_dora", false), cfg_path, "use_dora", "true", "DoRA");
  refuse_if(get("fan_in_fan_out", false), cfg_path, "fan_in_fan_out", "true", "transposed (Conv1D) weights");
  refuse_if(get("lora_bias", false), cfg_path, "lora_bias", "true", "a bias on lora_B");
  const std::string bias = get("bias", std::string("none"));
  refuse_if(bias != "none", cfg_path, "bias", "'" + bias + "'", "LoRA biases");
  // Keys whose non-empty value changes which weights exist or how they scale.
  const std::pair<const char*, const char*> kRefusedWhenSet[] = {
      {"modules_to_save", "fully trained module copies"}, {"target_parameters", "LoRA on expert parameters"},
      {"rank_pattern", "per-module ranks or alphas"}, {"alpha_pattern", "per-module ranks or alphas"},
      {"layer_replication", "replicated layers"}, {"trainable_token_indices", "trainable token embeddings"}};
  for (const auto& [key, why] : kRefusedWhenSet) {
    const bool set = c.contains(key) && !c[key].is_null() && !c[key].empty();
    refuse_if(set, cfg_path, key, set ? c[key].dump() : "", why);
  }
  a.scale = lora_scale(a.alpha, a.r, a.rslora);
  return a;
}

// The lora_A / lora_B tensors of each (layer, module index) in the adapter's file.
using FoundTensors = std::map<std::pair<int, int>, std::pair<const TensorView*, const TensorView*>>;

FoundTensors find_lora_tensors(const Checkpoint& ckpt, const std::string& weights_path, const GptOssConfig& cfg) {
  FoundTensors found;
  static const std::regex kName(R"(^base_model\.model\.model\.layers\.(\d+)\.)"
                                R"((self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(router)))"
                                R"(\.lora_(A|B)(\.[A-Za-z0-9_-]+)?\.weight$)");
  for (const std::string& name : ckpt.names()) {
    std::smatch m;
    if (!std::regex_match(name, m, kName))
      fail_input("{}: tensor '{}' is not a LoRA weight gptoss applies (lora_A / lora_B of q_proj, k_proj, v_proj, "
                 "o_proj or mlp.router in base_model.model.model.layers.<i>)",
                 weights_path, name);
    const int layer = std::stoi(m[1].str());
    if (layer >= cfg.num_hidden_layers)
      fail_input("{}: tensor '{}' is for layer {}, but the model has {} layers", weights_path, name, layer,
                 cfg.num_hidden_layers);
    const std::string mod = m[3].matched ? m[3].str() : m[4].str();
    const int mi = int(std::find(kModuleNames, kModuleNames + kLoraModules, mod) - kModuleNames);
    auto& slot = found[{layer, mi}];
    (m[5].str() == "A" ? slot.first : slot.second) = &ckpt.get(name);
  }
  if (found.empty()) fail_input("{}: no LoRA tensors", weights_path);
  return found;
}

}  // namespace

std::unique_ptr<LoraAdapter> LoraAdapter::load(const std::string& dir, const GptOssConfig& cfg, Backend& backend) {
  const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
  const std::string weights_path = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!fs::is_directory(dir))
    fail_input("LoRA adapter '{}' is not a directory; expected a PEFT adapter directory (adapter_config.json and "
               "adapter_model.safetensors)",
               dir);
  if (!fs::exists(cfg_path)) fail_input("{}: no such file; '{}' is not a PEFT LoRA adapter directory", cfg_path, dir);
  if (!fs::exists(weights_path)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin"))
      fail_input("{}: the adapter is saved as adapter_model.bin (pickle); save it with safe_serialization=True "
                 "(adapter_model.safetensors)",
                 dir);
    fail_input("{}: no such file; the adapter's weights are missing", weights_path);
  }

  const AdapterParams p = read_adapter_config(cfg_path);
  const int r = p.r;

  Checkpoint ckpt = Checkpoint::open(weights_path);
  const FoundTensors found = find_lora_tensors(ckpt, weights_path, cfg);
  std::unique_ptr<LoraAdapter> ad(new LoraAdapter());
  ad->layers_.resize(size_t(cfg.num_hidden_layers));
  ad->host_first_.assign(size_t(cfg.num_hidden_layers), {-1, -1, -1, -1, -1});

  for (const auto& [key, ab] : found) {
    const auto [layer, mi] = key;
    const LoraModule mod = LoraModule(mi);
    const auto [out, in] = lora_module_shape(cfg, mod);
    const TensorView* A = ab.first;
    const TensorView* B = ab.second;
    const std::string what = fmt::format("layer {} {}", layer, kModuleNames[mi]);
    if (!A || !B) fail_input("{}: {} has lora_{} but no lora_{}", weights_path, what, A ? "A" : "B", A ? "B" : "A");
    if (A->shape != std::vector<int64_t>{r, in})
      fail_input("{}: '{}' has shape {}; expected [{}, {}] (r, in) for this model", weights_path, A->name,
                 A->shape_str(), r, in);
    if (B->shape != std::vector<int64_t>{out, r})
      fail_input("{}: '{}' has shape {}; expected [{}, {}] (out, r) for this model", weights_path, B->name,
                 B->shape_str(), out, r);
    ad->add_module(layer, mod, r, in, out, to_f32(*A), to_f32(*B), p.scale, backend);
  }
  ad->finish(r, p.alpha, p.rslora);
  return ad;
}

std::unique_ptr<LoraAdapter> LoraAdapter::create(const GptOssConfig& cfg, Backend& backend, int r, double alpha,
                                                 bool rslora, const std::vector<LoraWeights>& modules) {
  GPTOSS_CHECK(r > 0 && !modules.empty(), "LoRA adapter: rank {} with {} modules", r, modules.size());
  std::unique_ptr<LoraAdapter> ad(new LoraAdapter());
  ad->layers_.resize(size_t(cfg.num_hidden_layers));
  ad->host_first_.assign(size_t(cfg.num_hidden_layers), {-1, -1, -1, -1, -1});
  const double scale = lora_scale(alpha, r, rslora);
  for (const LoraWeights& w : modules) {
    const auto [out, in] = lora_module_shape(cfg, w.module);
    GPTOSS_CHECK(w.layer >= 0 && w.layer < cfg.num_hidden_layers && int64_t(w.a.size()) == r * in &&
                     int64_t(w.b.size()) == out * r,
                 "LoRA adapter: layer {} {}: A has {} and B {} values; expected {} x {} and {} x {}", w.layer,
                 kModuleNames[int(w.module)], w.a.size(), w.b.size(), r, in, out, r);
    ad->add_module(w.layer, w.module, r, in, out, w.a, w.b, scale, backend);
  }
  ad->finish(r, alpha, rslora);
  return ad;
}

void LoraAdapter::add_module(int layer, LoraModule m, int r, int64_t in, int64_t out, std::vector<float> a,
                             std::vector<float> b, double scale, Backend& backend) {
  for (float& v : b) v = float(double(v) * scale);
  LoraLinear& L = layers_[size_t(layer)][size_t(m)];
  L.rank = r;
  L.in = in;
  L.out = out;
  auto limbs = [&](std::vector<float>& v, std::array<const uint16_t*, 3>& dst) {
    auto parts = split_bf16_limbs(std::move(v));
    for (int l = 0; l < 3; ++l) {
      auto& h = host_.emplace_back(std::move(parts[size_t(l)]));
      dst[size_t(l)] = static_cast<const uint16_t*>(backend.prepare_weight(h.data(), h.size() * 2));
    }
  };
  host_first_[size_t(layer)][size_t(m)] = int(host_.size());
  limbs(a, L.a);
  limbs(b, L.b);
  max_out_ = std::max(max_out_, out);
}

void LoraAdapter::finish(int r, double alpha, bool rslora) {
  max_rank_ = r;
  std::vector<std::string> modules_seen;
  std::set<int> layers;
  for (int m = 0; m < kLoraModules; ++m)
    for (size_t l = 0; l < layers_.size(); ++l)
      if (layers_[l][size_t(m)].rank > 0) {
        layers.insert(int(l));
        if (modules_seen.empty() || modules_seen.back() != kModuleNames[m]) modules_seen.push_back(kModuleNames[m]);
      }
  describe_ = fmt::format("LoRA r={} alpha={}{} on {} of {} layer{}", r, alpha, rslora ? " (rsLoRA)" : "",
                          fmt::join(modules_seen, ", "), layers.size(), layers.size() == 1 ? "" : "s");
}

std::string LoraAdapter::describe() const { return describe_; }

std::string_view lora_module_name(LoraModule m) { return kModuleNames[int(m)]; }
std::string_view lora_module_path(LoraModule m) { return kModulePaths[int(m)]; }

std::pair<int64_t, int64_t> lora_module_shape(const GptOssConfig& c, LoraModule m) {
  switch (m) {
    case LoraModule::kQ: return {c.q_dim(), c.hidden_size};
    case LoraModule::kK:
    case LoraModule::kV: return {c.kv_dim(), c.hidden_size};
    case LoraModule::kO: return {c.hidden_size, c.q_dim()};
    case LoraModule::kRouter: return {c.num_local_experts, c.hidden_size};
  }
  return {0, 0};
}

std::string lora_base_weight_name(int layer, LoraModule m) {
  return fmt::format("model.layers.{}.{}.weight", layer, kModulePaths[int(m)]);
}

std::vector<float> LoraAdapter::delta(int layer, LoraModule m) const {
  const LoraLinear& L = get(layer, m);
  if (L.rank == 0) return {};
  const int first = host_first_.at(size_t(layer))[size_t(m)];
  auto joined = [&](int start, size_t n) {  // l0 + l1 + l2: the f32 value, exactly
    std::vector<float> v(n, 0.f);
    for (int l = 0; l < 3; ++l)
      for (size_t i = 0; i < n; ++i) v[i] += bf16_to_f32(host_[size_t(start + l)][i]);
    return v;
  };
  const std::vector<float> a = joined(first, size_t(L.rank * L.in)), b = joined(first + 3, size_t(L.out * L.rank));
  std::vector<float> d(size_t(L.out * L.in));
  std::vector<double> row(size_t(L.in));
  for (int64_t o = 0; o < L.out; ++o) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int k = 0; k < L.rank; ++k) {
      const double bk = b[size_t(o * L.rank + k)];
      const float* ak = a.data() + size_t(k) * size_t(L.in);
      for (int64_t i = 0; i < L.in; ++i) row[size_t(i)] += bk * ak[i];
    }
    for (int64_t i = 0; i < L.in; ++i) d[size_t(o * L.in + i)] = float(row[size_t(i)]);
  }
  return d;
}

double lora_scale(double alpha, int r, bool rslora) {
  return rslora ? alpha / std::sqrt(double(r)) : alpha / double(r);
}

std::array<std::vector<uint16_t>, 3> split_bf16_limbs(std::vector<float> v) {
  std::array<std::vector<uint16_t>, 3> limbs;
  for (auto& h : limbs) {
    h.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      h[i] = f32_to_bf16(v[i]);
      v[i] -= bf16_to_f32(h[i]);
    }
  }
  return limbs;
}

void apply_lora(Backend& backend, const LoraLinear& L, const float* x, int64_t n, float* y, float* const t[3],
                float* u) {
  if (L.rank == 0 || n == 0) return;
  const Backend::Linear a[3] = {
      {L.a[0], nullptr, t[0], L.rank}, {L.a[1], nullptr, t[1], L.rank}, {L.a[2], nullptr, t[2], L.rank}};
  backend.matmul_bf16_multi(x, n, L.in, a, 3);
  backend.add(t[0], t[1], n * L.rank);
  backend.add(t[0], t[2], n * L.rank);
  for (int l = 0; l < 3; ++l) {
    backend.matmul_bf16(t[0], n, L.rank, L.b[size_t(l)], nullptr, u, L.out);
    backend.add(y, u, n * L.out);
  }
}

}  // namespace gptoss
