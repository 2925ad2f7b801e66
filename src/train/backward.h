// Loss and LoRA gradients of one training sequence: the model's own forward (with TrainCapture), the
// cross-entropy on the labelled positions, then the backward pass through the layers in reverse
// (the backend's TrainOps, backend/train_ops.h) down to the embeddings, adding the gradients of every
// adapted module's A and B. Activations and gradients stay in the backend's memory (CPU or GPU).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/gpt_oss.h"
#include "model/lora.h"

namespace gptoss::train {

// The trainer's f32 LoRA weights (as PEFT keeps them: y += scale * B (A x)) and their gradients.
struct LoraState {
  int rank = 0;
  double alpha = 0;
  bool rslora = false;
  std::vector<LoraWeights> weights;
  std::vector<LoraWeights> grads;  // same order and shapes as weights

  double scale() const;
  void zero_grads();
  // weights[i] of (layer, module), or -1.
  int find(int layer, LoraModule m) const;
  // Sets the model's default adapter to the current weights.
  void apply_to(GptOssModel& model) const;
};

// How a backward runs. grad_scale: every gradient is multiplied by it (the caller's mean over a batch).
// logit_chunk: the logits of the labelled positions are made that many rows at a time (memory: 2 x
// logit_chunk x vocab floats, not n x vocab); kLogitChunkAuto: 64 on the CPU (100 MB at the real
// vocabulary), 512 on a GPU (0.8 GB: the unembedding's products then fill the tensor cores).
// keep_gate_up_bytes: the forward's expert gate_up values are kept for the backward while they take at
// most that many bytes (else the backward recomputes them). checkpoint_layers: gradient checkpointing
// (Oumi/transformers' enable_gradient_checkpointing): the forward keeps only each layer's input, and the
// backward runs each layer's forward again before its backward (one more forward of time; activation
// memory of one layer plus 4 x hidden bytes a token a layer, instead of ~15 x hidden a token a layer).
inline constexpr double kKeepGateUpBytes = 4.0 * (1 << 30);
inline constexpr int64_t kLogitChunkAuto = 0;
struct BackwardOptions {
  double grad_scale = 1.0;
  int64_t logit_chunk = kLogitChunkAuto;
  double keep_gate_up_bytes = kKeepGateUpBytes;
  bool checkpoint_layers = false;
};

// tokens [n] and labels [n] (labels[i] = the token to predict after position i, or < 0 for none).
// The model must carry st's current adapter (LoraState::apply_to). Adds d(loss)/d(A, B) into st.grads
// (times opt.grad_scale) and returns the sequence's mean loss over its labelled positions and their count.
struct SequenceLoss {
  double loss = 0;
  int64_t labelled = 0;
};
SequenceLoss sequence_loss_and_grads(GptOssModel& model, const std::vector<int32_t>& tokens,
                                     const std::vector<int32_t>& labels, LoraState& st,
                                     const BackwardOptions& opt = {});

// Several sequences in one forward and one backward (each weight read once for all of them; attention
// stays within a sequence): the loss is the mean over all their labelled positions.
struct TrainSequence {
  std::span<const int32_t> tokens, labels;
};
SequenceLoss batch_loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState& st,
                                  const BackwardOptions& opt = {});
// The loss alone (the evaluation loss: no backward; the forward keeps only what the loss needs).
SequenceLoss batch_loss(GptOssModel& model, const std::vector<TrainSequence>& seqs,
                        int64_t logit_chunk = kLogitChunkAuto);

}  // namespace gptoss::train
