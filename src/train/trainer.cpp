#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "api/model_tokenizer.h"
#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "hub/hub.h"
#include "io/safetensors.h"
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
  if (t.eval_strategy != "no" && cfg.data.validation.datasets.empty())
    fail_input("{}: training.eval_strategy is '{}' but data.validation.datasets is empty; list a validation "
               "dataset (dataset_path: a local JSONL) or set eval_strategy: no",
               cfg.source, t.eval_strategy);
  if (t.eval_strategy == "steps" && t.eval_steps <= 0)
    fail_input("{}: training.eval_steps is {}; expected >= 1", cfg.source, t.eval_steps);
  if (t.per_device_eval_batch_size <= 0)
    fail_input("{}: training.per_device_eval_batch_size is {}; expected >= 1", cfg.source,
               t.per_device_eval_batch_size);
  validate_lr_schedule(t);
  lora_target_modules(cfg.peft);  // throws on what it does not train
}

// Where a run stands: enough to continue it exactly (with the adapter and the optimizer's moments).
struct Progress {
  int64_t step = 0;    // optimizer updates taken
  int64_t epoch = -1;  // the epoch whose order is being read (-1: none yet)
  size_t cursor = 0;   // examples of that order already taken
};

// A checkpoint's trainer state, next to its adapter: trainer_state.json (transformers' file name; our
// keys) and optimizer.safetensors (AdamW's moments, f32, in the order of the adapter's modules).
void save_state(const std::string& dir, const Progress& pr, int64_t total_steps, uint64_t data_seed,
                const AdamW& opt) {
  nlohmann::ordered_json j = {{"global_step", pr.step},    {"max_steps", total_steps}, {"epoch", pr.epoch},
                              {"examples_in_epoch", pr.cursor}, {"data_seed", data_seed}, {"adam_step", opt.t}};
  std::vector<TensorData> t;
  for (size_t i = 0; i < opt.exp_avg.size(); ++i) {
    t.push_back(TensorData{fmt::format("exp_avg.{}", i), DType::F32, {int64_t(opt.exp_avg[i].size())},
                           opt.exp_avg[i].data()});
    t.push_back(TensorData{fmt::format("exp_avg_sq.{}", i), DType::F32, {int64_t(opt.exp_avg_sq[i].size())},
                           opt.exp_avg_sq[i].data()});
  }
  write_safetensors((fs::path(dir) / "optimizer.safetensors").string(), t);
  write_file_atomic((fs::path(dir) / "trainer_state.json").string(), j.dump(2) + "\n");
}

// The newest output_dir/checkpoint-<n>, or "".
std::string last_checkpoint(const std::string& output_dir) {
  std::string best;
  int64_t best_n = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("checkpoint-", 0) != 0) continue;
    const std::string num = name.substr(11);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
    if (const int64_t n = std::stoll(num); n > best_n) best_n = n, best = e.path().string();
  }
  return best;
}

// Continues from checkpoint `dir`: its adapter's weights into st, the moments into opt, the progress.
Progress resume(const std::string& dir, LoraState& st, AdamW& opt, uint64_t data_seed) {
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  if (!fs::exists(state_path))
    fail_input("{}: no trainer_state.json; training.resume_from_checkpoint must name a checkpoint gptoss train "
               "saved (output_dir/checkpoint-<step>)",
               dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(state_path));
  } catch (const nlohmann::json::exception& e) {
    fail_input("{}: not valid JSON ({})", state_path, e.what());
  }
  Progress pr;
  try {
    pr.step = j.at("global_step").get<int64_t>();
    pr.epoch = j.at("epoch").get<int64_t>();
    pr.cursor = j.at("examples_in_epoch").get<size_t>();
    opt.t = j.at("adam_step").get<int64_t>();
    if (j.at("data_seed").get<uint64_t>() != data_seed)
      fail_input("{}: the run used data seed {}, this config {}; resume with the same training.seed / data_seed",
                 state_path, j.at("data_seed").get<uint64_t>(), data_seed);
  } catch (const nlohmann::json::exception& e) {
    fail_input("{}: {}", state_path, e.what());
  }
  Checkpoint adapter = Checkpoint::open((fs::path(dir) / "adapter_model.safetensors").string());
  Checkpoint moments = Checkpoint::open((fs::path(dir) / "optimizer.safetensors").string());
  auto fill = [&](const Checkpoint& c, const std::string& name, std::vector<float>& dst) {
    const TensorView& t = c.get(name);
    if (t.dtype != DType::F32 || size_t(t.numel()) != dst.size())
      fail_input("{}: '{}' is {} {}; this run's adapter needs F32 [{}] (same peft settings as the checkpoint)",
                 t.file, name, dtype_name(t.dtype), t.shape_str(), dst.size());
    std::copy(t.as<float>(), t.as<float>() + dst.size(), dst.begin());
  };
  for (size_t i = 0; i < st.weights.size(); ++i) {
    LoraWeights& w = st.weights[i];
    fill(adapter, lora_tensor_name(w.layer, w.module, 'A'), w.a);
    fill(adapter, lora_tensor_name(w.layer, w.module, 'B'), w.b);
  }
  for (size_t i = 0; i < opt.exp_avg.size(); ++i) {
    fill(moments, fmt::format("exp_avg.{}", i), opt.exp_avg[i]);
    fill(moments, fmt::format("exp_avg_sq.{}", i), opt.exp_avg_sq[i]);
  }
  return pr;
}

// PEFT's initial adapter for the config's targets, and zero gradients of the same shapes.
LoraState initial_state(const TrainingConfig& cfg, const GptOssConfig& mc) {
  LoraState st;
  st.rank = int(cfg.peft.lora_r);
  st.alpha = double(cfg.peft.lora_alpha);
  st.rslora = cfg.peft.use_rslora;
  st.weights = init_lora(cfg.peft, mc, uint64_t(cfg.training.seed));
  for (const LoraWeights& w : st.weights) {
    LoraWeights g = w;
    std::fill(g.a.begin(), g.a.end(), 0.0f);
    std::fill(g.b.begin(), g.b.end(), 0.0f);
    st.grads.push_back(std::move(g));
  }
  return st;
}

// Hands out each step's examples: every epoch's shuffled order (seeded by data seed and epoch), continued
// into the next epoch when it runs out, or (epochs_bound) ending a step short at the epoch's end.
class ExampleOrder {
 public:
  ExampleOrder(size_t examples, uint64_t seed, Progress& pr) : examples_(examples), seed_(seed), pr_(pr) {
    if (pr_.epoch >= 0) order_ = epoch_order(examples_, seed_, pr_.epoch);
  }
  std::vector<size_t> next(int64_t count, bool epochs_bound) {
    std::vector<size_t> batch;
    while (int64_t(batch.size()) < count) {
      if (pr_.cursor >= order_.size()) {
        order_ = epoch_order(examples_, seed_, ++pr_.epoch);
        pr_.cursor = 0;
        if (epochs_bound && !batch.empty()) break;
      }
      batch.push_back(order_[pr_.cursor++]);
    }
    return batch;
  }

 private:
  size_t examples_;
  uint64_t seed_;
  Progress& pr_;
  std::vector<size_t> order_;
};

int64_t labelled_tokens(const TrainExample& ex) {
  return std::count_if(ex.labels.begin(), ex.labels.end(), [](int32_t l) { return l >= 0; });
}

// Calls fn(sequences, their share of all labelled tokens) for micro-batches of `micro` of the examples
// picked by `batch` (those with no labelled token are skipped).
template <typename Fn>
void for_each_micro_batch(const std::vector<TrainExample>& examples, const std::vector<size_t>& batch, size_t micro,
                          Fn&& fn) {
  int64_t labelled = 0;
  for (size_t i : batch) labelled += labelled_tokens(examples[i]);
  for (size_t b0 = 0; b0 < batch.size(); b0 += micro) {
    std::vector<TrainSequence> seqs;
    int64_t n_lab = 0;
    for (size_t j = b0; j < std::min(batch.size(), b0 + micro); ++j) {
      const TrainExample& ex = examples[batch[j]];
      seqs.push_back(TrainSequence{ex.tokens, ex.labels});
      n_lab += labelled_tokens(ex);
    }
    if (n_lab > 0) fn(seqs, double(n_lab) / double(labelled));
  }
}

// The step's gradients into st.grads (zeroed first), each micro-batch weighted by its share of the step's
// labelled tokens; returns the step's loss.
double accumulate_gradients(GptOssModel& model, const std::vector<TrainExample>& examples,
                            const std::vector<size_t>& batch, size_t micro, bool checkpoint_layers, LoraState& st) {
  st.zero_grads();
  double loss = 0;
  for_each_micro_batch(examples, batch, micro, [&](const std::vector<TrainSequence>& seqs, double share) {
    BackwardOptions opt;
    opt.grad_scale = share;
    opt.checkpoint_layers = checkpoint_layers;
    loss += share * batch_loss_and_grads(model, seqs, st, opt).loss;
  });
  return loss;
}

// Clips st's gradients, takes the AdamW step at lr and puts the new adapter into the model; returns the
// gradient norm before clipping (not finite: no update).
double update(GptOssModel& model, LoraState& st, AdamW& opt, double max_grad_norm, double lr) {
  std::vector<std::span<float>> params, grads;
  for (size_t i = 0; i < st.weights.size(); ++i) {
    params.emplace_back(st.weights[i].a);
    params.emplace_back(st.weights[i].b);
    grads.emplace_back(st.grads[i].a);
    grads.emplace_back(st.grads[i].b);
  }
  const double norm = clip_grad_norm(grads, max_grad_norm);
  if (!std::isfinite(norm)) return norm;
  const std::vector<std::span<const float>> cgrads(grads.begin(), grads.end());
  opt.step(params, cgrads, lr);
  st.apply_to(model);
  return norm;
}

// Model FLOPs of one training step over `batch` (an estimate, for the log's GFLOP/s, as llm.c reports
// it): the forward's and the input gradients' matmuls (2 FLOPs a multiply-add each, 2 passes),
// attention's scores and values (3 passes), and the unembedding of the labelled positions (2 passes).
double step_flops(const GptOssConfig& c, const std::vector<TrainExample>& examples, const std::vector<size_t>& batch) {
  const double H = double(c.hidden_size), Q = double(c.q_dim()), KV = double(c.kv_dim());
  const double I = double(c.intermediate_size), k = double(c.num_experts_per_tok);
  const double dense = H * (2 * Q + 2 * KV) + H * double(c.num_local_experts);
  const double experts = k * 3 * H * I;
  double flops = 0;
  for (size_t i : batch) {
    const TrainExample& ex = examples[i];
    const double n = double(ex.tokens.size());
    flops += n * c.num_hidden_layers * 2 * 2 * (dense + experts);
    for (int l = 0; l < c.num_hidden_layers; ++l)
      for (double p = 0; p < n; ++p) {
        const double keys = c.is_sliding(l) ? std::min(p + 1, double(c.sliding_window)) : p + 1;
        flops += 3 * 2 * 2 * keys * Q;
      }
    flops += double(labelled_tokens(ex)) * 2 * 2 * H * double(c.vocab_size);
  }
  return flops;
}

// The mean loss over every labelled token of the validation examples, in micro-batches of `micro`.
double evaluate(GptOssModel& model, const std::vector<TrainExample>& examples, size_t micro) {
  std::vector<size_t> all(examples.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  double loss = 0;
  for_each_micro_batch(examples, all, micro, [&](const std::vector<TrainSequence>& seqs, double share) {
    loss += share * batch_loss(model, seqs).loss;
  });
  return loss;
}

}  // namespace

TrainSummary run_sft_lora(const TrainingConfig& cfg, const std::string& device, std::FILE* log, bool profile) {
  check_supported(cfg);
  const TrainingParams& tp = cfg.training;
  const std::string model_dir = resolve_model_dir(cfg.model.model_name);
  const Tokenizer tok = load_model_tokenizer(cfg.model.tokenizer_name, model_dir);
  auto backend = make_backend(device);
  auto model = GptOssModel::load(model_dir, *backend);
  if (profile) backend->set_profiling(true);
  const GptOssConfig& mc = model->config();
  const int64_t max_len = cfg.model.model_max_length.value_or(mc.max_position_embeddings);

  DatasetStats ds;
  const std::vector<TrainExample> examples = load_train_examples(cfg.data, tok, max_len, &ds);
  if (examples.empty())
    fail_input("{}: the training data has no example with a trained (assistant) token", cfg.source);
  fmt::print(log, "train: {} examples ({} conversations, {} truncated to {} tokens, {} without a trained token), "
             "{} trained tokens\n",
             examples.size(), ds.conversations, ds.truncated, max_len, ds.dropped_untrained, ds.trained_tokens);

  std::vector<TrainExample> eval_examples;
  if (tp.eval_strategy != "no") {
    eval_examples = load_examples(cfg.data.validation, "data.validation", tok, max_len);
    if (eval_examples.empty())
      fail_input("{}: the validation data has no example with a trained token", cfg.source);
  }

  const int64_t per_step = tp.per_device_train_batch_size * tp.gradient_accumulation_steps;
  const int64_t steps_per_epoch = std::max<int64_t>(1, (int64_t(examples.size()) + per_step - 1) / per_step);
  const int64_t total_steps = tp.max_steps > 0 ? tp.max_steps : steps_per_epoch * tp.num_train_epochs;

  LoraState st = initial_state(cfg, mc);
  std::vector<size_t> sizes;
  for (const LoraWeights& w : st.weights) sizes.push_back(w.a.size()), sizes.push_back(w.b.size());
  AdamW opt(tp, sizes);
  st.apply_to(*model);
  fmt::print(log, "train: {} on {} ({}), {} steps of {} examples, lr {} ({}){}, output {}\n",
             model->adapter()->describe(), model_dir, backend->device_name(), total_steps, per_step,
             tp.learning_rate, tp.lr_scheduler_type,
             tp.enable_gradient_checkpointing ? ", gradient checkpointing" : "", tp.output_dir);

  const uint64_t data_seed = uint64_t(tp.data_seed.value_or(tp.seed));
  Progress pr;
  std::string from = tp.resume_from_checkpoint;
  if (from.empty() && tp.try_resume_from_last_checkpoint) from = last_checkpoint(tp.output_dir);
  if (!from.empty()) {
    pr = resume(from, st, opt, data_seed);
    st.apply_to(*model);
    fmt::print(log, "train: resumed from {} at step {}\n", from, pr.step);
  }
  auto save = [&](const std::string& dir, bool with_state) {
    fs::create_directories(fs::path(dir).parent_path().empty() ? fs::path(".") : fs::path(dir).parent_path());
    save_peft_adapter(dir, cfg.peft, mc, st.weights, cfg.model.model_name);
    if (with_state) save_state(dir, pr, total_steps, data_seed, opt);
  };

  TrainSummary sum;
  ExampleOrder order(examples.size(), data_seed, pr);
  for (int64_t step = pr.step; step < total_steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<size_t> batch = order.next(per_step, tp.max_steps <= 0);
    int64_t tokens = 0;
    for (size_t i : batch) tokens += int64_t(examples[i].tokens.size());
    const double loss =
        accumulate_gradients(*model, examples, batch, size_t(tp.per_device_train_batch_size),
                             tp.enable_gradient_checkpointing, st);
    const double lr = lr_at(tp, step, total_steps);
    const double norm = update(*model, st, opt, tp.max_grad_norm, lr);
    if (!std::isfinite(norm)) fmt::print(log, "train: step {}: gradient norm {}; update skipped\n", step + 1, norm);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pr.step = step + 1;
    if (sum.steps == 0) sum.first_loss = loss;
    sum.last_loss = loss;
    sum.steps = step + 1;
    if (tp.logging_steps <= 1 || (step + 1) % tp.logging_steps == 0 || step == 0 || step + 1 == total_steps)
      fmt::print(log, "step {}/{}  loss {:.4f}  grad_norm {:.4f}  lr {:.3e}  {:.1f} s  {:.1f} tok/s  {:.1f} GFLOP/s\n",
                 step + 1, total_steps, loss, norm, lr, secs, double(tokens) / secs,
                 step_flops(mc, examples, batch) / secs / 1e9);
    if ((tp.eval_strategy == "steps" && (step + 1) % tp.eval_steps == 0) ||
        (tp.eval_strategy == "epoch" && (step + 1) % steps_per_epoch == 0)) {
      const auto e0 = std::chrono::steady_clock::now();
      const double eval_loss = evaluate(*model, eval_examples, size_t(tp.per_device_eval_batch_size));
      sum.last_eval_loss = eval_loss;
      fmt::print(log, "step {}/{}  eval_loss {:.4f}  ({} examples, {:.1f} s)\n", step + 1, total_steps, eval_loss,
                 eval_examples.size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count());
    }
    if (tp.save_steps > 0 && (step + 1) % tp.save_steps == 0) {  // the last step too, as transformers does
      const std::string dir = (fs::path(tp.output_dir) / fmt::format("checkpoint-{}", step + 1)).string();
      save(dir, true);
      fmt::print(log, "train: saved {}\n", dir);
    }
  }
  if (tp.save_final_model) {
    save(tp.output_dir, false);
    sum.adapter_dir = tp.output_dir;
    fmt::print(log, "train: saved the adapter to {} (PEFT layout; gptoss infer/serve take it as "
               "model.adapter_model)\n",
               tp.output_dir);
  }
  if (profile)
    fmt::print(log, "train: time by backend op ({}):\n{}", backend->device_name(), backend->profile_report());
  return sum;
}

}  // namespace gptoss::train
