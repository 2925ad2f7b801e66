// gptoss inspect --model DIR: what a checkpoint holds, without loading it (headers only).
#include <cstdio>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace gptoss {
namespace {

struct Options {
  std::string model;
};

std::string billions(int64_t n) {
  if (n >= 1000000000) return fmt::format("{:.3f} B", double(n) / 1e9);
  if (n >= 1000000) return fmt::format("{:.3f} M", double(n) / 1e6);
  return fmt::format("{}", n);
}
std::string gb(uint64_t n) {
  if (n >= 1000000000) return fmt::format("{:.3f} GB", double(n) / 1e9);
  if (n >= 1000000) return fmt::format("{:.3f} MB", double(n) / 1e6);
  return fmt::format("{:.1f} kB", double(n) / 1e3);
}

int run(const Options& o) {
  GptOssConfig c = GptOssConfig::load(o.model);
  Checkpoint ck = Checkpoint::open(o.model);
  bool mxfp4_experts = ck.find("model.layers.0.mlp.experts.gate_up_proj_blocks") != nullptr;
  fmt::print("model          {}\n", o.model);
  fmt::print("type           {} ({} layers: {} sliding (window {}), {} full)\n", c.model_type, c.num_hidden_layers,
             c.num_sliding_layers(), c.sliding_window, c.num_full_layers());
  fmt::print("hidden         {}  heads {} q / {} kv x {}  vocab {}\n", c.hidden_size, c.num_attention_heads,
             c.num_key_value_heads, c.head_dim, c.vocab_size);
  fmt::print("experts        {} per layer, top-{}, intermediate {}, swiglu_limit {}\n", c.num_local_experts,
             c.num_experts_per_tok, c.intermediate_size, c.swiglu_limit);
  fmt::print("rope           theta {}, {} factor {} over {} (beta_fast {}, beta_slow {}), max positions {}\n",
             c.rope_theta, c.rope_scaling.rope_type, c.rope_scaling.factor,
             c.rope_scaling.original_max_position_embeddings, c.rope_scaling.beta_fast, c.rope_scaling.beta_slow,
             c.max_position_embeddings);
  fmt::print("tokens         eos {}  pad {}\n", c.eos_token_id, c.pad_token_id ? std::to_string(*c.pad_token_id) : "none");
  fmt::print("quantization   {}\n", c.quantization_config ? c.quantization_config->quant_method : "none (bf16)");
  fmt::print("expert format  {}\n", mxfp4_experts ? "MXFP4 (blocks + E8M0 scales)" : "bf16");

  ParameterCounts p = parameter_counts(c);
  fmt::print("\nparameters     total {}  active per token {}\n", billions(p.total), billions(p.active));
  fmt::print("  embedding {}  unembedding {}  attention {}  router {}  experts {}  norms {}\n",
             billions(p.embedding), billions(p.unembedding), billions(p.attention), billions(p.router),
             billions(p.experts), billions(p.norms));

  std::map<std::string, std::pair<uint64_t, int>> by_dtype;
  for (const auto& name : ck.names()) {
    const TensorView& t = ck.get(name);
    auto& e = by_dtype[std::string(dtype_name(t.dtype))];
    e.first += t.nbytes;
    e.second += 1;
  }
  fmt::print("\ntensors        {} in {} file(s), {}\n", ck.size(), ck.files().size(), gb(ck.total_bytes()));
  for (const auto& [d, e] : by_dtype) fmt::print("  {:<6} {:>6} tensors  {}\n", d, e.second, gb(e.first));
  const uint64_t dec = decode_bytes_per_token(c, mxfp4_experts);
  fmt::print("\ndecode reads   {} ({} bytes) of weights per token at batch 1 (the bandwidth roofline's numerator)\n",
             gb(dec), dec);
  return 0;
}

const cli::Registrar reg{"inspect", "Print a checkpoint's config, parameter counts and bytes by dtype",
                         [](CLI::App& app) -> cli::Runner {
                           auto o = std::make_shared<Options>();
                           app.add_option("--model", o->model, "model directory")->required();
                           return [o] { return run(*o); };
                         }};

}  // namespace
}  // namespace gptoss
