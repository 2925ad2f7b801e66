// `gptoss train`: supervised LoRA fine-tuning (TRL's SFTTrainer with PEFT, as Oumi runs it) on the CPU or a GPU.
//
// One optimizer step takes per_device_train_batch_size x gradient_accumulation_steps examples, in
// micro-batches of per_device_train_batch_size sequences (one forward and backward each); the loss is
// the mean cross-entropy over all their labelled tokens (transformers' num_items_in_batch rule), the
// gradients are clipped to max_grad_norm, AdamW updates the LoRA weights at the schedule's learning rate,
// and the model's adapter is rebuilt from them for the next step. Examples are shuffled per epoch
// (seeded). The adapter is saved in PEFT's layout every save_steps under output_dir/checkpoint-<step> and
// at the end in output_dir, each written to a temporary directory and renamed into place; a checkpoint
// also holds trainer_state.json and optimizer.safetensors (AdamW's moments), from which
// training.resume_from_checkpoint (or try_resume_from_last_checkpoint) continues the run exactly.
// eval_strategy steps (every eval_steps) or epoch logs the mean loss over data.validation's labelled tokens.
#pragma once

#include <cstdio>
#include <string>

#include "config/config.h"

namespace gptoss::train {

struct TrainSummary {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;
  double last_eval_loss = 0;  // the last evaluation's (0 without eval_strategy)
  std::string adapter_dir;  // the final adapter
};

// Checks what gptoss trains (LoRA SFT; refused options are InputErrors naming the key), loads the model on
// `device` (cpu, cuda, auto), the tokenizer and the data, then runs the steps. Progress lines go to `log`;
// with `profile`, also the time of each backend op over the whole run at the end.
TrainSummary run_sft_lora(const TrainingConfig& cfg, const std::string& device, std::FILE* log, bool profile = false);

}  // namespace gptoss::train
