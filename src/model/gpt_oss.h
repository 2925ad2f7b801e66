// The gpt-oss model: config + weights + the forward pass, written once against the Backend ops.
//
//   x = embed(tokens)
//   for each layer:  x += attention(rms_norm(x))   (q/k/v with bias, YaRN RoPE, paged KV, sinks,
//                                                    sliding window on "sliding_attention" layers, o_proj)
//                    x += moe(rms_norm(x))         (router top-k + softmax, clamped-SwiGLU experts)
//   logits = lm_head(rms_norm(x))                  (only the rows the batch asks for)
//
// forward() runs one ragged batch (model/batch.h): prefill chunks and single decode tokens of many
// sequences together. It is not thread-safe (scratch buffers are reused between calls and grown on
// demand; nothing is allocated per token).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/train_ops.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/kv_pool.h"
#include "model/lora.h"
#include "model/rope.h"
#include "model/weights.h"

namespace gptoss {

// Hidden states of every token of a batch, in batch order (for golden tests and debugging).
struct HiddenCapture {
  // [num_hidden_layers + 1] arrays of [total_tokens, hidden]: after the embeddings (0) and after
  // each layer l (l + 1), i.e. the residual stream.
  std::vector<std::vector<float>> residual;
  std::vector<float> final_norm;  // [total_tokens, hidden]: the final RMSNorm of the last residual
};

// Per-layer activations of a forward, in the backend's memory, for the LoRA trainer's backward pass
// (train/backward.h); the rest it recomputes. n = the batch's tokens. A forward fills the buffers it is
// given, growing those too short for its batch.
struct TrainCapture {
  struct Layer {
    explicit Layer(Backend& b)
        : x_attn(b), q(b), k(b), v(b), attn(b), x_moe(b), expert_idx(b), expert_w(b), gate_up(b) {}
    BackendBuffer x_attn;           // [n, hidden] f32 residual entering the layer (attention norm input)
    BackendBuffer q, k, v;          // [n, q_dim], [n, kv_dim] x2: q and k after RoPE, v as projected
    BackendBuffer attn;             // [n, q_dim] attention output (o_proj input)
    BackendBuffer x_moe;            // [n, hidden] residual entering the MoE block (its norm input)
    BackendBuffer expert_idx;       // [n, k] int32 the router's choice
    BackendBuffer expert_w;         // [n, k] its softmax weights
    BackendBuffer gate_up;          // [n * k, 2 * intermediate] each token-slot's gate_up output (+ bias)
  };
  explicit TrainCapture(Backend& b) : x_final(b) {}
  std::vector<Layer> layers;
  BackendBuffer x_final;       // [n, hidden] the last residual (final norm input)
  bool keep_gate_up = true;    // false: Layer::gate_up is not filled (the backward recomputes it)
  // Gradient checkpointing: the forward keeps only each layer's x_attn (and x_final);
  // GptOssModel::recompute_layer fills the rest of one layer when the backward reaches it.
  bool checkpoint = false;
};

class GptOssModel {
 public:
  // Reads <model_dir>/config.json and the safetensors weights (mapped, not copied on CPU), and the PEFT
  // LoRA adapter in adapter_dir when it is not empty (model/lora.h).
  static std::unique_ptr<GptOssModel> load(const std::string& model_dir, Backend& backend,
                                           const std::string& adapter_dir = "");
  GptOssModel(GptOssConfig cfg, std::unique_ptr<Weights> weights, Backend& backend);

  const GptOssConfig& config() const { return cfg_; }
  Backend& backend() { return backend_; }
  const Weights& weights() const { return *w_; }
  const RopeTable& rope_table() const { return rope_; }
  const float* rope_inv_freq() const { return inv_freq_.f32(); }  // rope_table().inv_freq in backend memory
  // LoRA adapters applied on top of the weights: index 0 is the default one (null: none), used by every
  // sequence that names no other (SeqChunk::adapter); 1.. are the named ones added with add_adapter().
  const LoraAdapter* adapter(int index = 0) const { return lora_.at(size_t(index)).get(); }
  int num_adapters() const { return int(lora_.size()); }
  void set_adapter(std::unique_ptr<LoraAdapter> adapter);
  int add_adapter(std::unique_ptr<LoraAdapter> adapter);  // returns its index

  // One ragged batch; writes batch.logit_rows() x vocab f32 logits to host memory `logits`, rows in
  // batch order (all tokens of an all_logits sequence, else its last token). Checks token ids and
  // block tables and throws InputError naming the sequence on a bad batch.
  // With `train`, also keeps what the trainer's backward needs (TrainCapture).
  void forward(const ForwardBatch& batch, KvPool& kv, float* logits, HiddenCapture* capture = nullptr,
               TrainCapture* train = nullptr);
  // Runs layer `layer` of the last forward again from train.layers[layer].x_attn and fills the rest of
  // that layer's capture (train.checkpoint: the forward kept only x_attn). The same ops as the forward, on
  // the same batch and KV pool, so no other forward may run in between.
  void recompute_layer(int layer, KvPool& kv, TrainCapture& train);

 private:
  void prepare_batch(const ForwardBatch& batch, const KvPool& kv);
  ForwardMeta forward_meta(const KvPool& kv, bool replayable) const;
  // Runs ops with train_ (and train_ops_) set to train, cleared again after, even on an exception.
  void with_train(TrainCapture* train, bool recomputing, const std::function<void()>& ops);
  // Whether this forward keeps the layer activations beyond x_attn (train_ and not checkpointing, or a
  // recompute).
  bool keep_layer_activations() const { return train_ && (!train_->checkpoint || recomputing_); }
  void grow_scratch(int64_t n_tokens, int64_t n_rows);
  void attention_block(int layer, KvPool& kv);
  void moe_block(int layer);
  void unembed(HiddenCapture* capture);
  void linear(const float* x, int64_t in, const uint16_t* w, const uint16_t* bias, float* y, int64_t out,
              int64_t n);
  // y += the adapters' terms for module m of layer `layer` of input x (each sequence's own adapter).
  void lora(int layer, LoraModule m, const float* x, float* y);
  // Whether an adapter of this forward changes module m of the layer.
  bool adapted(int layer, LoraModule m) const;
  void capture_residual(HiddenCapture* capture);
  // A copy of `bytes` of backend memory at src into the training capture's buffer.
  void keep(BackendBuffer& buf, const void* src, size_t bytes);

  GptOssConfig cfg_;
  std::unique_ptr<Weights> w_;
  std::vector<std::unique_ptr<LoraAdapter>> lora_ = std::vector<std::unique_ptr<LoraAdapter>>(1);
  Backend& backend_;
  RopeTable rope_;
  BackendBuffer inv_freq_;

  // Host metadata of the current batch.
  std::vector<int32_t> tokens_, positions_, logit_rows_;
  std::vector<AttnSeqDesc> seqs_full_, seqs_swa_;
  // Runs of consecutive sequences with the same adapter: rows [begin, end) of the batch use adapter `index`.
  struct AdapterRun {
    int64_t begin, end;
    int index;
  };
  std::vector<AdapterRun> adapter_runs_;
  int64_t n_ = 0;
  TrainCapture* train_ = nullptr;  // the current forward's, or null
  TrainOps* train_ops_ = nullptr;  // the backend's, while train_ is set
  bool recomputing_ = false;       // inside recompute_layer

  // Backend scratch, grown on demand.
  struct Scratch {
    explicit Scratch(Backend& b)
        : x(b), h(b), q(b), k(b), v(b), attn(b), t(b), router_logits(b), expert_idx(b), expert_w(b), rows(b),
          logits(b), lora_t{BackendBuffer(b), BackendBuffer(b), BackendBuffer(b)}, lora_u(b) {}
    BackendBuffer x, h, q, k, v, attn, t, router_logits, expert_idx, expert_w, rows, logits;
    BackendBuffer lora_t[3], lora_u;  // the adapter's intermediates (model/lora.h), when there is one
  } s_;
  int64_t scratch_tokens_ = 0, scratch_rows_ = 0;
};

}  // namespace gptoss
