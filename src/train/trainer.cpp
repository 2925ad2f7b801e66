#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "backend/backend.h"
#include "core/error.h"
#include "hub/hub.h"
#include "model/gpt_oss.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter_io.h"
#include "train/backward.h"
#include "train/dataset.h"
#include "train/optim.h"

namespace gptoss::train {
namespace {

namespace fs = std::filesystem;

// What gptoss trains; everything else is refused before any loading.
void check_supported(const TrainingConfig& cfg) {
  const TrainingParams& t = cfg.training;
  const std::string tt = t.trainer_type;
  if (tt != "TRL_SFT" && tt != "HF" && tt != "OUMI")
    fail_input("{}: training.trainer_type is '{}'; gptoss trains TRL_SFT (also accepted: HF, OUMI)", cfg.source, tt);
  if (!t.use_peft)
    fail_input("{}: training.use_peft is false; gptoss trains LoRA adapters only (set training.use_peft: true and "
               "a peft section)",
               cfg.source);
  const std::string& opt = t.optimizer;
  if (opt != "adamw_torch" && opt != "adamw_torch_fused" && opt != "adamw" && opt != "adamw_hf")
    fail_input("{}: training.optimizer is '{}'; gptoss has adamw_torch (also accepted: adamw_torch_fused, adamw, "
               "adamw_hf)",
               cfg.source, opt);
  if (cfg.peft.lora_dropout != 0.0)
    fail_input("{}: peft.lora_dropout is {}; gptoss trains without LoRA dropout (set 0.0)", cfg.source,
               cfg.peft.lora_dropout);
  if (t.per_device_train_batch_size <= 0)
    fail_input("{}: training.per_device_train_batch_size is {}; expected >= 1", cfg.source,
               t.per_device_train_batch_size);
  if (t.gradient_accumulation_steps <= 0)
    fail_input("{}: training.gradient_accumulation_steps is {}; expected >= 1", cfg.source,
               t.gradient_accumulation_steps);
  if (t.max_steps <= 0 && t.num_train_epochs <= 0)
    fail_input("{}: training.num_train_epochs is {} and max_steps {}; one must be positive", cfg.source,
               t.num_train_epochs, t.max_steps);
  if (t.output_dir.empty()) fail_input("{}: training.output_dir is empty; expected a directory", cfg.source);
  validate_lr_schedule(t);
  lora_target_modules(cfg.peft);  // throws on what it does not train
}

std::vector<LoraTensors> to_tensors(const LoraState& st, const GptOssConfig& cfg) {
  std::vector<LoraTensors> out;
  for (const LoraWeights& w : st.weights) {
    const auto [o, i] = lora_module_shape(cfg, w.module);
    out.push_back(LoraTensors{w.layer, w.module, st.rank, i, o, w.a, w.b});
  }
  return out;
}

}  // namespace

TrainSummary run_sft_lora(const TrainingConfig& cfg, const std::string& device, std::FILE* log) {
  check_supported(cfg);
  if (device != "cpu")
    fail_input("--device is '{}'; gptoss trains on the CPU for now (--device cpu)", device);
  const TrainingParams& tp = cfg.training;
  const std::string model_dir = resolve_model_dir(cfg.model.model_name);
  const Tokenizer tok = cfg.model.tokenizer_name.empty() ? Tokenizer::from_model_dir(model_dir)
                        : fs::is_regular_file(cfg.model.tokenizer_name)
                            ? Tokenizer::from_file(cfg.model.tokenizer_name)
                            : Tokenizer::from_model_dir(resolve_model_dir(cfg.model.tokenizer_name));
  auto backend = make_backend(device);
  auto model = GptOssModel::load(model_dir, *backend);
  const GptOssConfig& mc = model->config();
  const int64_t max_len = cfg.model.model_max_length.value_or(mc.max_position_embeddings);

  DatasetStats ds;
  const std::vector<TrainExample> examples = load_train_examples(cfg.data, tok, max_len, &ds);
  if (examples.empty())
    fail_input("{}: the training data has no example with a trained (assistant) token", cfg.source);
  fmt::print(log, "train: {} examples ({} conversations, {} truncated to {} tokens, {} without a trained token), "
             "{} trained tokens\n",
             examples.size(), ds.conversations, ds.truncated, max_len, ds.dropped_untrained, ds.trained_tokens);

  const int64_t per_step = tp.per_device_train_batch_size * tp.gradient_accumulation_steps;
  const int64_t steps_per_epoch = std::max<int64_t>(1, (int64_t(examples.size()) + per_step - 1) / per_step);
  const int64_t total_steps = tp.max_steps > 0 ? tp.max_steps : steps_per_epoch * tp.num_train_epochs;

  LoraState st;
  st.rank = int(cfg.peft.lora_r);
  st.alpha = double(cfg.peft.lora_alpha);
  st.rslora = cfg.peft.use_rslora;
  for (LoraTensors& t : init_lora(cfg.peft, mc, uint64_t(tp.seed))) {
    st.weights.push_back(LoraWeights{t.layer, t.module, std::move(t.a), std::move(t.b)});
    LoraWeights g = st.weights.back();
    std::fill(g.a.begin(), g.a.end(), 0.0f);
    std::fill(g.b.begin(), g.b.end(), 0.0f);
    st.grads.push_back(std::move(g));
  }
  std::vector<size_t> sizes;
  for (const LoraWeights& w : st.weights) sizes.push_back(w.a.size()), sizes.push_back(w.b.size());
  AdamW opt(tp, sizes);
  st.apply_to(*model);
  fmt::print(log, "train: {} on {} ({}), {} steps of {} examples, lr {} ({}), output {}\n",
             model->adapter()->describe(), model_dir, backend->device_name(), total_steps, per_step,
             tp.learning_rate, tp.lr_scheduler_type, tp.output_dir);

  auto save = [&](const std::string& dir) {
    fs::create_directories(fs::path(dir).parent_path().empty() ? fs::path(".") : fs::path(dir).parent_path());
    save_peft_adapter(dir, cfg.peft, mc, to_tensors(st, mc), cfg.model.model_name);
  };

  TrainSummary sum;
  const uint64_t data_seed = uint64_t(tp.data_seed.value_or(tp.seed));
  std::vector<size_t> order;
  int64_t epoch = -1;
  size_t cursor = 0;
  for (int64_t step = 0; step < total_steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    // This step's examples: the epoch's shuffled order, continued into the next epoch when it runs out.
    std::vector<size_t> batch;
    while (int64_t(batch.size()) < per_step) {
      if (cursor >= order.size()) {
        ++epoch;
        order.clear();
        for (const auto& b : epoch_batches(examples.size(), 1, data_seed, epoch)) order.insert(order.end(), b.begin(), b.end());
        cursor = 0;
        if (tp.max_steps <= 0 && !batch.empty()) break;  // epochs bound the run: the last step is short
      }
      batch.push_back(order[cursor++]);
    }
    int64_t labelled = 0, tokens = 0;
    for (size_t i : batch) {
      for (int32_t l : examples[i].labels) labelled += l >= 0;
      tokens += int64_t(examples[i].tokens.size());
    }
    st.zero_grads();
    double loss = 0;
    for (size_t i : batch) {
      const TrainExample& ex = examples[i];
      const int64_t n_lab = std::count_if(ex.labels.begin(), ex.labels.end(), [](int32_t l) { return l >= 0; });
      if (n_lab == 0) continue;
      const double share = double(n_lab) / double(labelled);
      loss += share * sequence_loss_and_grads(*model, ex.tokens, ex.labels, st, share).loss;
    }
    std::vector<std::span<float>> params, grads;
    std::vector<std::span<const float>> cgrads;
    for (size_t i = 0; i < st.weights.size(); ++i) {
      params.emplace_back(st.weights[i].a);
      params.emplace_back(st.weights[i].b);
      grads.emplace_back(st.grads[i].a);
      grads.emplace_back(st.grads[i].b);
    }
    const double norm = clip_grad_norm(grads, tp.max_grad_norm);
    const double lr = lr_at(tp, step, total_steps);
    if (std::isfinite(norm)) {
      for (const auto& g : grads) cgrads.emplace_back(g.data(), g.size());
      opt.step(params, cgrads, lr);
      st.apply_to(*model);
    } else {
      fmt::print(log, "train: step {}: gradient norm {}; update skipped\n", step + 1, norm);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (step == 0) sum.first_loss = loss;
    sum.last_loss = loss;
    sum.steps = step + 1;
    if (tp.logging_steps <= 1 || (step + 1) % tp.logging_steps == 0 || step == 0 || step + 1 == total_steps)
      fmt::print(log, "step {}/{}  loss {:.4f}  grad_norm {:.4f}  lr {:.3e}  {:.1f} s  {:.1f} tok/s\n", step + 1,
                 total_steps, loss, norm, lr, secs, double(tokens) / secs);
    if (tp.save_steps > 0 && (step + 1) % tp.save_steps == 0 && step + 1 < total_steps) {
      const std::string dir = (fs::path(tp.output_dir) / fmt::format("checkpoint-{}", step + 1)).string();
      save(dir);
      fmt::print(log, "train: saved {}\n", dir);
    }
  }
  if (tp.save_final_model) {
    save(tp.output_dir);
    sum.adapter_dir = tp.output_dir;
    fmt::print(log, "train: saved the adapter to {} (PEFT layout; gptoss infer/serve take it as "
               "model.adapter_model)\n",
               tp.output_dir);
  }
  return sum;
}

}  // namespace gptoss::train
