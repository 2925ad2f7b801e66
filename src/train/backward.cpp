// sequence_loss_and_grads: see backward.h. The reverse pass mirrors GptOssModel's forward
// (model/gpt_oss.cpp), layer by layer from the top:
//   x_moe + moe(h),  h = rms_norm(x_moe)       dh from the experts and, through the routing weights, the
//                                               router logits = h W_r^T + b (+ LoRA)
//   x_attn + o(attention(rope(q), rope(k), v))  q, k, v = h W^T + b (+ LoRA), h = rms_norm(x_attn)
// The residual stream's gradient dx collects the norm paths. A LoRA term y += s B (A x) gives
// dB += s dy^T u, du = s dy B, dA += du^T x, dx += du A with u = A x (r values a token).
#include "train/backward.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "backend/train_ops.h"
#include "core/error.h"
#include "model/kv_pool.h"

namespace gptoss::train {

double LoraState::scale() const { return lora_scale(alpha, rank, rslora); }

void LoraState::zero_grads() {
  for (LoraWeights& g : grads) {
    std::fill(g.a.begin(), g.a.end(), 0.0f);
    std::fill(g.b.begin(), g.b.end(), 0.0f);
  }
}

int LoraState::find(int layer, LoraModule m) const {
  for (size_t i = 0; i < weights.size(); ++i)
    if (weights[i].layer == layer && weights[i].module == m) return int(i);
  return -1;
}

void LoraState::apply_to(GptOssModel& model) const {
  model.set_adapter(LoraAdapter::create(model.config(), model.backend(), rank, alpha, rslora, weights));
}

namespace {

// The adapter's f32 weights in the backend's memory and their gradients for one call, which end up added
// to the LoraState's host gradients (the optimizer and the checkpoints stay on the host: a few MB).
class BackendLora {
 public:
  BackendLora(Backend& b, const LoraState& st) : backend_(b), st_(st) {
    for (const LoraWeights& w : st.weights) {
      a_.push_back(upload(w.a));
      b_.push_back(upload(w.b));
      ga_.push_back(zeros(w.a.size()));
      gb_.push_back(zeros(w.b.size()));
    }
  }

  // The LoRA term of module (layer, m) on input x [n, in] with output gradient dy [n, out]: adds into the
  // module's gradients (times grad_scale) and dx [n, in] (the input's gradient, unscaled).
  void backward(TrainOps& ops, int layer, LoraModule m, const float* x, const float* dy, int64_t n, float* dx,
                double grad_scale) {
    const int i = st_.find(layer, m);
    if (i < 0) return;
    const LoraWeights& W = st_.weights[size_t(i)];
    const int64_t r = st_.rank, in = int64_t(W.a.size()) / r, out = int64_t(W.b.size()) / r;
    ops.lora_backward(x, dy, n, in, out, a_[size_t(i)].f32(), b_[size_t(i)].f32(), st_.rank, st_.scale(), grad_scale,
                      ga_[size_t(i)].f32(), gb_[size_t(i)].f32(), dx);
  }

  void add_grads_to(LoraState& st) {
    std::vector<float> h;
    auto add = [&](const BackendBuffer& g, std::vector<float>& into) {
      h.resize(into.size());
      backend_.to_host(h.data(), g.get(), h.size() * sizeof(float));
      for (size_t j = 0; j < h.size(); ++j) into[j] += h[j];
    };
    for (size_t i = 0; i < st.grads.size(); ++i) {
      add(ga_[i], st.grads[i].a);
      add(gb_[i], st.grads[i].b);
    }
  }

 private:
  BackendBuffer zeros(size_t count) {  // Backend::alloc zero-fills
    BackendBuffer buf(backend_);
    buf.reserve(count * sizeof(float));
    return buf;
  }
  BackendBuffer upload(const std::vector<float>& v) {
    BackendBuffer buf = zeros(v.size());
    backend_.to_device(buf.get(), v.data(), v.size() * sizeof(float));
    return buf;
  }

  Backend& backend_;
  const LoraState& st_;
  std::vector<BackendBuffer> a_, b_, ga_, gb_;
};

SequenceLoss loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState* st,
                            const BackwardOptions& opt);

}  // namespace

SequenceLoss sequence_loss_and_grads(GptOssModel& model, const std::vector<int32_t>& tokens,
                                     const std::vector<int32_t>& labels, LoraState& st, const BackwardOptions& opt) {
  return batch_loss_and_grads(model, {TrainSequence{tokens, labels}}, st, opt);
}

SequenceLoss batch_loss(GptOssModel& model, const std::vector<TrainSequence>& seqs, int64_t logit_chunk) {
  BackwardOptions opt;
  opt.logit_chunk = logit_chunk;
  opt.keep_gate_up_bytes = 0;
  opt.checkpoint_layers = true;  // no backward: the layers' activations are never needed
  return loss_and_grads(model, seqs, nullptr, opt);
}

SequenceLoss batch_loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState& st,
                                  const BackwardOptions& opt) {
  return loss_and_grads(model, seqs, &st, opt);
}

namespace {

// Both of the above: with st null, the loss alone (no gradient is formed).
SequenceLoss loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState* st,
                            const BackwardOptions& opt) {
  const GptOssConfig& cfg = model.config();
  const Weights& w = model.weights();
  Backend& be = model.backend();
  TrainOps& ops = be.require_train_ops();
  // The batch's tokens in sequence order: sequence s takes rows [start[s], start[s + 1]).
  std::vector<int64_t> start{0};
  std::vector<int32_t> labels, positions;
  for (const TrainSequence& q : seqs) {
    GPTOSS_CHECK(q.labels.size() == q.tokens.size() && !q.tokens.empty(), "training sequence: {} tokens and {} labels",
                 q.tokens.size(), q.labels.size());
    start.push_back(start.back() + int64_t(q.tokens.size()));
    labels.insert(labels.end(), q.labels.begin(), q.labels.end());
    for (size_t i = 0; i < q.tokens.size(); ++i) positions.push_back(int32_t(i));
  }
  const int64_t n = start.back(), H = cfg.hidden_size, V = cfg.vocab_size;
  const int64_t Q = cfg.q_dim(), KV = cfg.kv_dim(), E = cfg.num_local_experts;
  const int heads = cfg.num_attention_heads, kvh = cfg.num_key_value_heads, hd = cfg.head_dim;
  const int k = cfg.num_experts_per_tok;
  const float eps = float(cfg.rms_norm_eps);
  GPTOSS_CHECK(n > 0, "training batch without sequences");

  // Forward with the activations the backward needs (the logits of the last position only: those of the
  // labelled positions are made below, a chunk at a time, so [n, vocab] never exists at once).
  const int bs = 16;
  int blocks = 0;
  for (const TrainSequence& q : seqs) blocks += SequenceKv::blocks_needed(int64_t(q.tokens.size()), bs);
  KvPool pool(cfg, be, blocks, bs);
  LinearBlockAllocator alloc(pool.num_blocks());
  std::vector<SequenceKv> kv(seqs.size(), SequenceKv(alloc, bs));
  ForwardBatch batch;
  for (size_t s = 0; s < seqs.size(); ++s) batch.seqs.push_back(kv[s].chunk(seqs[s].tokens, 0, /*all_logits=*/false));
  std::vector<float> last(size_t(V) * seqs.size());
  TrainCapture cap(be);
  cap.checkpoint = opt.checkpoint_layers;
  // The experts' gate_up values save their recompute in the backward; kept up to keep_gate_up_bytes (by
  // default 4 GiB, the 20b's ~1900 tokens a micro-batch; with checkpointing one layer's at a time), beyond
  // that recomputed, so long sequences still fit the 24 GB machine.
  const int layers_kept = cap.checkpoint ? 1 : cfg.num_hidden_layers;
  cap.keep_gate_up = double(n) * k * double(2 * cfg.intermediate_size) * layers_kept * 4 <= opt.keep_gate_up_bytes;
  model.forward(batch, pool, last.data(), nullptr, &cap);

  SequenceLoss res;
  std::vector<int32_t> rows;  // the labelled positions
  for (int64_t i = 0; i < n; ++i)
    if (labels[size_t(i)] >= 0) rows.push_back(int32_t(i));
  res.labelled = int64_t(rows.size());
  if (res.labelled == 0) return res;

  // Backend buffers of f32 [count].
  auto buffer = [&](int64_t count) {
    BackendBuffer b(be);
    b.reserve(size_t(count) * sizeof(float));
    return b;
  };
  std::optional<BackendLora> lora;
  if (st) lora.emplace(be, *st);

  // Final norm and unembedding, per chunk of labelled rows: logits, the loss (the chunk's mean weighted by
  // its share of the rows) and the gradient back to the final norm's output.
  BackendBuffer h = buffer(n * H), dh = buffer(n * H), dx = buffer(n * H);
  be.rms_norm(cap.x_final.f32(), w.norm, h.f32(), n, H, eps);
  const int64_t chunk = opt.logit_chunk > 0 ? opt.logit_chunk : be.memory_info().total > 0 ? 512 : 64;
  BackendBuffer hc = buffer(chunk * H), logits = buffer(chunk * V), dlogits = buffer(st ? chunk * V : 1),
                dhc = buffer(chunk * H);
  std::vector<int32_t> target(static_cast<size_t>(chunk));
  if (st) ops.zero(dh.f32(), n * H);
  for (int64_t r0 = 0; r0 < res.labelled; r0 += chunk) {
    const int64_t m = std::min(chunk, res.labelled - r0);
    const int32_t* chunk_rows = rows.data() + r0;
    for (int64_t j = 0; j < m; ++j) target[size_t(j)] = labels[size_t(chunk_rows[j])];
    be.gather_rows(h.f32(), chunk_rows, m, H, hc.f32());
    be.matmul_bf16(hc.f32(), m, H, w.lm_head, nullptr, logits.f32(), V);
    const double share = double(m) / double(res.labelled);
    res.loss += share * ops.cross_entropy(logits.f32(), m, V, target.data(), share, st ? dlogits.f32() : nullptr);
    if (!st) continue;
    ops.zero(dhc.f32(), m * H);
    ops.matmul_bf16_backward_x(dlogits.f32(), m, V, w.lm_head, H, dhc.f32());
    ops.scatter_rows(dhc.f32(), chunk_rows, m, H, dh.f32());
  }
  if (!st) return res;
  ops.zero(dx.f32(), n * H);
  ops.rms_norm_backward(cap.x_final.f32(), w.norm, dh.f32(), n, H, eps, dx.f32());

  const RopeTable& rope = model.rope_table();
  BackendBuffer dlog = buffer(n * E), dattn = buffer(n * Q), dq = buffer(n * Q), dk = buffer(n * KV),
                dv = buffer(n * KV);
  for (int l = cfg.num_hidden_layers - 1; l >= 0; --l) {
    const LayerWeights& L = w.layers[size_t(l)];
    if (cap.checkpoint) model.recompute_layer(l, pool, cap);
    const TrainCapture::Layer& c = cap.layers[size_t(l)];

    // MoE block: dx is the gradient of its output (and of the residual it adds to).
    be.rms_norm(c.x_moe.f32(), L.mlp_norm, h.f32(), n, H, eps);
    ops.moe_backward(h.f32(), n, H, c.expert_idx.get<int32_t>(), c.expert_w.f32(), k, L.gate_up, L.down,
                     float(cfg.swiglu_limit), dx.f32(), dh.f32(), dlog.f32(),
                     cap.keep_gate_up ? c.gate_up.f32() : nullptr);
    ops.matmul_bf16_backward_x(dlog.f32(), n, E, L.router_w, H, dh.f32());
    lora->backward(ops, l, LoraModule::kRouter, h.f32(), dlog.f32(), n, dh.f32(), opt.grad_scale);
    ops.rms_norm_backward(c.x_moe.f32(), L.mlp_norm, dh.f32(), n, H, eps, dx.f32());

    // Attention block.
    ops.zero(dattn.f32(), n * Q);
    ops.matmul_bf16_backward_x(dx.f32(), n, H, L.o_w, Q, dattn.f32());
    lora->backward(ops, l, LoraModule::kO, c.attn.f32(), dx.f32(), n, dattn.f32(), opt.grad_scale);
    for (size_t s = 0; s < seqs.size(); ++s) {  // attention stays within its sequence
      const int64_t r = start[s], m = start[s + 1] - r;
      ops.attention_backward(c.q.f32() + r * Q, c.k.f32() + r * KV, c.v.f32() + r * KV, m, heads, kvh, hd, L.sinks,
                             cfg.is_sliding(l) ? cfg.sliding_window : 0, 1.0f / std::sqrt(float(hd)),
                             dattn.f32() + r * Q, dq.f32() + r * Q, dk.f32() + r * KV, dv.f32() + r * KV);
    }
    ops.rope_backward(dq.f32(), n, heads, hd, positions.data(), model.rope_inv_freq(), rope.attention_factor);
    ops.rope_backward(dk.f32(), n, kvh, hd, positions.data(), model.rope_inv_freq(), rope.attention_factor);
    be.rms_norm(c.x_attn.f32(), L.attn_norm, h.f32(), n, H, eps);
    ops.zero(dh.f32(), n * H);
    ops.matmul_bf16_backward_x(dq.f32(), n, Q, L.q_w, H, dh.f32());
    ops.matmul_bf16_backward_x(dk.f32(), n, KV, L.k_w, H, dh.f32());
    ops.matmul_bf16_backward_x(dv.f32(), n, KV, L.v_w, H, dh.f32());
    lora->backward(ops, l, LoraModule::kQ, h.f32(), dq.f32(), n, dh.f32(), opt.grad_scale);
    lora->backward(ops, l, LoraModule::kK, h.f32(), dk.f32(), n, dh.f32(), opt.grad_scale);
    lora->backward(ops, l, LoraModule::kV, h.f32(), dv.f32(), n, dh.f32(), opt.grad_scale);
    ops.rms_norm_backward(c.x_attn.f32(), L.attn_norm, dh.f32(), n, H, eps, dx.f32());
    cap.layers[size_t(l)] = TrainCapture::Layer(be);  // this layer's activations are done with
  }
  lora->add_grads_to(*st);
  return res;
}

}  // namespace

}  // namespace gptoss::train
