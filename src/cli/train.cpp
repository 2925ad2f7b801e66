// gptoss train -c CONFIG [--section.key VALUE ...]
// LoRA SFT of gpt-oss on harmony conversations (Oumi's `oumi train` with TRL_SFT + PEFT), on the CPU;
// see train/trainer.h.
#include <cstdio>

#include "cli/command.h"
#include "config/config.h"
#include "core/error.h"
#include "train/trainer.h"

namespace gptoss {
namespace {

struct Options {
  std::string config, device = "auto";
  bool profile = false;
};

int run(const Options& o, const std::vector<std::string>& extras) {
  if (o.config.empty())
    fail_input("no config: pass -c FILE or -c oumi://configs/recipes/gpt_oss/sft/20b_lora_train.yaml (with "
               "data.train.datasets[0].dataset_path set to a local JSONL of conversations)");
  const TrainingConfig cfg = load_training_config(o.config, parse_override_args(extras));
  const train::TrainSummary s = train::run_sft_lora(cfg, o.device, stderr, o.profile);
  std::printf("trained %lld steps: loss %.4f -> %.4f; adapter in %s\n", (long long)s.steps, s.first_loss,
              s.last_loss, s.adapter_dir.empty() ? "(not saved: training.save_final_model is false)"
                                                 : s.adapter_dir.c_str());
  return 0;
}

const cli::Registrar reg{
    "train", "LoRA fine-tuning (SFT on harmony conversations, Oumi/TRL configs) on the CPU or a GPU",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<Options>();
      app.add_option("-c,--config", o->config, "training config file or oumi://configs/recipes/gpt_oss/sft/... name");
      app.add_option("--device", o->device, "cpu, cuda, or auto (CUDA when a GPU is present)")->capture_default_str();
      app.add_flag("--profile", o->profile,
                   "time every backend op (synchronizing around each) and print the table at the end");
      app.allow_extras();
      app.footer("Config overrides: any key as --section.key VALUE, e.g. --training.max_steps 10 "
                 "--data.train.datasets[0].dataset_path data.jsonl --model.model_name ./model");
      CLI::App* a = &app;
      return [o, a] { return run(*o, a->remaining()); };
    }};

}  // namespace
}  // namespace gptoss
