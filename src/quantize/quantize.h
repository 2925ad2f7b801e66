// bf16 gpt-oss checkpoint -> the hub's MXFP4 checkpoint layout (what `oumi quantize --quantization-method
// mxfp4` produces and every gpt-oss engine loads).
//
// Input: a directory in the hub bf16 layout (one model.safetensors or shards + index), experts as
// gate_up_proj [E, H, 2I] and down_proj [E, I, H] (input-major). Output: the same tensors except that
// every expert weight becomes *_blocks [E, rows, cols/32, 16] u8 + *_scales [E, rows, cols/32] u8
// (rows = output features, blocks along the input); biases, attention, router, embeddings, norms and
// lm_head are copied byte for byte. Shards model-0000i-of-0000N.safetensors + model.safetensors.index.json
// (always, as the hub does), config.json = the input's plus quantization_config {quant_method: mxfp4,
// modules_to_not_convert}, and every non-weight file of the input (tokenizer, generation config, chat
// template) copied.
//
// Streaming: tensor by tensor (experts expert by expert) from the memory-mapped input; pages of the
// input are dropped from the process once converted, so resident memory stays bounded (a few hundred
// MB) whatever the model size. The output is built in "<output>.tmp-<pid>" and renamed only when
// complete; an existing output is refused unless overwrite is set (then replaced at the very end).
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "quantize/mxfp4.h"

namespace gptoss {

struct QuantizeOptions {
  std::string model;   // input directory (hub ids are resolved by the caller)
  std::string output;  // output directory
  std::string method = "mxfp4";
  bool overwrite = false;
  Mxfp4Rounding rounding = Mxfp4Rounding::Best;
  double max_shard_gb = 5.0;  // the size transformers' save_pretrained shards at
  bool verbose = true;        // per-tensor error lines on stdout
  const std::atomic<bool>* cancel = nullptr;  // set (e.g. by a signal handler) to stop cleanly
};

struct TensorError {
  std::string name;
  double sq_err = 0;  // sum (x - q)^2
  double sq_ref = 0;  // sum x^2
  double rel_rms() const { return sq_ref > 0 ? std::sqrt(sq_err / sq_ref) : 0.0; }
};

struct QuantizeReport {
  std::vector<TensorError> tensors;  // each quantized expert weight
  TensorError total;                 // over all of them
  uint64_t blocks = 0, triton_blocks = 0;  // Best: blocks where the Triton scale won
  uint64_t bytes_in = 0, bytes_out = 0;
  int shards = 0;
  double seconds = 0;
};

// The methods `quantize` supports ("mxfp4").
const std::vector<std::string>& supported_quantization_methods();

QuantizeReport quantize_checkpoint(const QuantizeOptions& opt);

// Reads an Oumi QuantizationConfig YAML (model.model_name, method, output_path, output_format) into
// options. Unknown keys are errors naming the key and the valid ones; output_format must be safetensors.
QuantizeOptions load_quantize_config(const std::string& yaml_path);

}  // namespace gptoss
