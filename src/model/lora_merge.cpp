#include "model/lora_merge.h"

#include <cstring>
#include <regex>

#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/lora.h"

namespace gptoss {
namespace {

// The adapter module a checkpoint tensor is the weight of, if any.
bool adapted_module(const std::string& name, int& layer, LoraModule& m) {
  static const std::regex kWeight(R"(^model\.layers\.(\d+)\.(self_attn\.(q|k|v|o)_proj|mlp\.router)\.weight$)");
  std::smatch s;
  if (!std::regex_match(name, s, kWeight)) return false;
  layer = std::stoi(s[1].str());
  const std::string which = s[3].str();
  m = which == "q" ? LoraModule::kQ : which == "k" ? LoraModule::kK : which == "v" ? LoraModule::kV
      : which == "o" ? LoraModule::kO : LoraModule::kRouter;
  return true;
}

}  // namespace

MergeLoraReport merge_lora(const MergeLoraOptions& opt) {
  const GptOssConfig cfg = GptOssConfig::load(opt.model);
  Checkpoint ck = Checkpoint::open(opt.model);
  auto backend = make_cpu_backend();  // the adapter's limbs stay in host memory
  auto adapter = LoraAdapter::load(opt.adapter, cfg, *backend);

  std::vector<TensorSpec> specs;
  for (const std::string& name : ck.names()) {
    const TensorView& t = ck.get(name);
    specs.push_back({name, t.dtype, t.shape});
  }
  StagedDir out(opt.output, opt.overwrite);
  write_file_atomic(out.file("config.json"), cfg.raw.dump(2) + "\n");
  copy_side_files(opt.model, out.path());
  ShardedWriter writer(out.path(), specs, uint64_t(opt.max_shard_gb * 1e9), {{"format", "pt"}});
  MergeLoraReport rep;
  rep.shards = writer.num_shards();
  rep.bytes = writer.total_bytes();
  int adapted = 0;
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    for (int m = 0; m < kLoraModules; ++m) adapted += adapter->get(l, LoraModule(m)).rank > 0;
  for (const std::string& name : ck.names()) {
    const TensorView& t = ck.get(name);
    int layer = 0;
    LoraModule m{};
    std::vector<float> delta;
    if (adapted_module(name, layer, m) && layer < cfg.num_hidden_layers) delta = adapter->delta(layer, m);
    if (delta.empty()) {
      writer.write_next(t.data, t.nbytes);
      continue;
    }
    if (size_t(t.numel()) != delta.size())
      fail_input("{}: tensor '{}' has shape {}, which does not match the adapter's [{}] values", t.file, name,
                 t.shape_str(), delta.size());
    std::vector<uint8_t> buf(t.nbytes);
    if (t.dtype == DType::BF16) {
      const uint16_t* w = t.as<uint16_t>();
      auto* o = reinterpret_cast<uint16_t*>(buf.data());
      for (size_t i = 0; i < delta.size(); ++i) o[i] = f32_to_bf16(bf16_to_f32(w[i]) + delta[i]);
    } else if (t.dtype == DType::F32) {
      const float* w = t.as<float>();
      auto* o = reinterpret_cast<float*>(buf.data());
      for (size_t i = 0; i < delta.size(); ++i) o[i] = w[i] + delta[i];
    } else {
      fail_input("{}: tensor '{}' is {}; LoRA merges into BF16 or F32 weights", t.file, name, dtype_name(t.dtype));
    }
    writer.write_next(buf.data(), buf.size());
    ++rep.merged_tensors;
  }
  writer.finish();
  GPTOSS_CHECK(rep.merged_tensors == adapted, "merge-lora: merged {} of the adapter's {} linears", rep.merged_tensors,
               adapted);
  out.commit();
  return rep;
}

}  // namespace gptoss
