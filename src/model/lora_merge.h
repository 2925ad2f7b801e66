// `gptoss merge-lora`: a checkpoint with a PEFT LoRA adapter merged into its weights (what PEFT's
// merge_and_unload saves), in the hub layout, so it can be quantized (`gptoss quantize`) or served
// without the adapter. Adapted weights become round_to_dtype(W + scale * B A), the sum in f32 (the
// product in double); every other tensor and side file (tokenizer, generation config) is copied.
#pragma once

#include <cstdint>
#include <string>

namespace gptoss {

struct MergeLoraOptions {
  std::string model, adapter, output;
  bool overwrite = false;
  double max_shard_gb = 5.0;
};

struct MergeLoraReport {
  int merged_tensors = 0;
  int shards = 0;
  uint64_t bytes = 0;
};

MergeLoraReport merge_lora(const MergeLoraOptions& opt);

}  // namespace gptoss
