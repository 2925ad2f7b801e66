#include "model/lora_merge.h"

#include <map>
#include <utility>

#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/lora.h"

namespace gptoss {

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
  // The base weights the adapter changes, by checkpoint name.
  std::map<std::string, std::pair<int, LoraModule>> adapted;
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    for (int mi = 0; mi < kLoraModules; ++mi) {
      const LoraModule m = LoraModule(mi);
      if (adapter->get(l, m).rank > 0) adapted[lora_base_weight_name(l, m)] = {l, m};
    }
  for (const std::string& name : ck.names()) {
    const TensorView& t = ck.get(name);
    const auto it = adapted.find(name);
    const std::vector<float> delta =
        it == adapted.end() ? std::vector<float>{} : adapter->delta(it->second.first, it->second.second);
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
  if (rep.merged_tensors != int(adapted.size()))
    fail_input("{}: the checkpoint holds {} of the {} weights the adapter changes", opt.model, rep.merged_tensors,
               adapted.size());
  out.commit();
  return rep;
}

}  // namespace gptoss
