// gptoss merge-lora --model DIR --adapter DIR --output DIR [--overwrite] [--max-shard-gb 5]
#include <fmt/format.h>

#include "cli/command.h"
#include "model/lora_merge.h"

namespace gptoss {
namespace {

const cli::Registrar reg{
    "merge-lora", "Merge a PEFT LoRA adapter into a checkpoint's weights (PEFT's merge_and_unload)",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<MergeLoraOptions>();
      app.add_option("--model", o->model, "base checkpoint directory")->required();
      app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory")->required();
      app.add_option("--output", o->output, "output directory (written under a temporary name, then renamed)")
          ->required();
      app.add_flag("--overwrite", o->overwrite, "replace an existing output directory");
      app.add_option("--max-shard-gb", o->max_shard_gb, "shard size limit in GB")->capture_default_str();
      return [o] {
        const MergeLoraReport r = merge_lora(*o);
        fmt::print("merged the adapter into {} weights; wrote {} ({:.2f} GB in {} file(s))\n", r.merged_tensors,
                   o->output, double(r.bytes) / 1e9, r.shards);
        return 0;
      };
    }};

}  // namespace
}  // namespace gptoss
