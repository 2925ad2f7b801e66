// The optimizer side of `gptoss train`: AdamW, the learning-rate schedules of Hugging Face transformers'
// Trainer, and gradient-norm clipping, each with the semantics of its PyTorch / transformers original so
// that a run here follows the same trajectory as the same config under Oumi / TRL.
//
// Step counting: `step` is the number of optimizer updates already taken (0 for the first update), as
// transformers' LambdaLR counts: the Trainer applies lr_lambda(0) * learning_rate to the first update and
// calls scheduler.step() after each one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "config/config.h"

namespace gptoss::train {

// torch.optim.AdamW (the single-tensor path, amsgrad=False, maximize=False) over a flat list of f32
// parameter tensors. One update with gradient g at learning rate lr, t counting from 1:
//   p  <- p * (1 - lr * weight_decay)              (decoupled weight decay, before the Adam update)
//   m  <- lerp(m, g, 1 - beta1)                   (= beta1 m + (1 - beta1) g)
//   v  <- beta2 v + (1 - beta2) g^2
//   p  <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Elementwise arithmetic is f32 in PyTorch's operation order; the scalar factors are computed in double
// (as Python floats) and rounded to f32 where PyTorch does. The moments are f32, zero-initialised.
struct AdamW {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t t = 0;                            // updates taken (torch's state["step"])
  std::vector<std::vector<float>> exp_avg;  // m, one per parameter tensor (torch's state names)
  std::vector<std::vector<float>> exp_avg_sq;  // v

  // sizes: the element count of each parameter tensor, in the order step() receives them. Betas, eps and
  // weight decay come from training.adam_beta1 / adam_beta2 / adam_epsilon / weight_decay; out-of-range
  // values (betas outside [0, 1), eps or weight decay negative) are an InputError naming the key.
  AdamW(const TrainingParams& tp, const std::vector<size_t>& sizes);

  // One update of every tensor: params[i] -= ... from grads[i] (same sizes as given to the constructor,
  // else an Error). lr is this update's learning rate (lr_at()).
  void step(const std::vector<std::span<float>>& params, const std::vector<std::span<const float>>& grads,
            double lr);
};

// The names lr_at accepts (transformers' SchedulerType values that make sense without an eval loop).
const std::vector<std::string>& lr_scheduler_names();

// Warmup updates as transformers' TrainingArguments.get_warmup_steps: warmup_steps when > 0, else
// ceil(warmup_ratio * total_steps).
int64_t warmup_steps(const TrainingParams& tp, int64_t total_steps);

// Checks training.lr_scheduler_type and training.lr_scheduler_kwargs (unknown scheduler or kwarg, missing
// or conflicting min_lr / min_lr_rate, ...) without computing anything: InputError naming the key, the
// value and the accepted values. lr_at() checks the same; call this to fail before loading a model.
void validate_lr_schedule(const TrainingParams& tp);

// The learning rate of update `step` (0-based) of `total_steps`, as transformers' get_scheduler(
// lr_scheduler_type, num_warmup_steps = warmup_steps(tp, total_steps), num_training_steps = total_steps,
// scheduler_specific_kwargs = lr_scheduler_kwargs) applies it: learning_rate * lr_lambda(step). With
// w = warmup updates, every schedule but "constant" starts with the linear warmup step / max(1, w) for
// step < w; after it, with progress = (step - w) / max(1, total_steps - w):
//   constant, constant_with_warmup:  1
//   linear:              max(0, (total_steps - step) / max(1, total_steps - w))
//   cosine:              max(0, 0.5 (1 + cos(2 pi num_cycles progress)))         num_cycles = 0.5
//   cosine_with_min_lr:  cosine's factor f, then max(0, f (1 - rate) + rate) with rate = min_lr_rate, or
//                        min_lr / learning_rate (exactly one of the two in lr_scheduler_kwargs)
//   cosine_with_restarts: 0 once progress >= 1, else max(0, 0.5 (1 + cos(pi ((num_cycles progress) mod 1))))
//                        num_cycles = 1
//   polynomial:          lr_end / lr past total_steps, else ((lr - lr_end) (1 - (step - w) / (total - w))^power
//                        + lr_end) / lr                                       lr_end = 1e-7, power = 1
//   inverse_sqrt:        1 / sqrt((step + timescale - w) / timescale)       timescale = w, or 10000 if w = 0
// Unknown names or kwargs: InputError (see validate_lr_schedule).
double lr_at(const TrainingParams& tp, int64_t step, int64_t total_steps);

// torch.nn.utils.clip_grad_norm_(norm_type=2, error_if_nonfinite=False, foreach=False): the global L2 norm
// over all tensors; when max_norm > 0 every gradient is multiplied by min(1, max_norm / (norm + 1e-6))
// (in f32, as torch's mul_ by the clamped coefficient). max_norm <= 0 clips nothing (transformers' Trainer
// skips clipping then). Returns the norm before clipping (summed in double; inf or nan when a gradient
// is; the gradients are then scaled as torch scales them, to nan or 0: the caller should skip that update).
double clip_grad_norm(const std::vector<std::span<float>>& grads, double max_norm);

}  // namespace gptoss::train
