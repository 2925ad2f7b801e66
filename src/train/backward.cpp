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

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/kv_pool.h"
#include "train/grad_ops.h"

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

// The LoRA term of module (layer, m) on input x [n, in] with output gradient dy [n, out]: adds into the
// module's gradients (times grad_scale) and dx [n, in] (the input's gradient, unscaled).
void lora_backward(LoraState& st, int layer, LoraModule m, const float* x, const float* dy, int64_t n, float* dx,
                   double grad_scale) {
  const int i = st.find(layer, m);
  if (i < 0) return;
  const LoraWeights& W = st.weights[size_t(i)];
  LoraWeights& G = st.grads[size_t(i)];
  const int64_t r = st.rank, in = int64_t(W.a.size()) / r, out = int64_t(W.b.size()) / r;
  const double s = st.scale();
  std::vector<double> u(size_t(n * r)), du(size_t(n * r));
  ThreadPool::global().parallel_for(n, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t k = 0; k < r; ++k) {
        double a = 0, b = 0;
        for (int64_t c = 0; c < in; ++c) a += double(W.a[size_t(k * in + c)]) * x[t * in + c];
        for (int64_t o = 0; o < out; ++o) b += double(dy[t * out + o]) * W.b[size_t(o * r + k)];
        u[size_t(t * r + k)] = a;
        du[size_t(t * r + k)] = s * b;
      }
  });
  ThreadPool::global().parallel_for(out, [&](int64_t o0, int64_t o1, int) {  // dB
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t k = 0; k < r; ++k) {
        double g = 0;
        for (int64_t t = 0; t < n; ++t) g += double(dy[t * out + o]) * u[size_t(t * r + k)];
        G.b[size_t(o * r + k)] += float(grad_scale * s * g);
      }
  });
  ThreadPool::global().parallel_for(in, [&](int64_t c0, int64_t c1, int) {  // dA and dx, by input column
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t k = 0; k < r; ++k) {
        double g = 0;
        for (int64_t t = 0; t < n; ++t) g += du[size_t(t * r + k)] * x[t * in + c];
        G.a[size_t(k * in + c)] += float(grad_scale * g);
      }
      for (int64_t t = 0; t < n; ++t) {
        double g = 0;
        for (int64_t k = 0; k < r; ++k) g += du[size_t(t * r + k)] * W.a[size_t(k * in + c)];
        dx[t * in + c] += float(g);
      }
    }
  });
}

SequenceLoss loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState* st,
                            double grad_scale, int64_t logit_chunk, double keep_gate_up_bytes);

}  // namespace

SequenceLoss sequence_loss_and_grads(GptOssModel& model, const std::vector<int32_t>& tokens,
                                     const std::vector<int32_t>& labels, LoraState& st, double grad_scale,
                                     int64_t logit_chunk, double keep_gate_up_bytes) {
  return batch_loss_and_grads(model, {TrainSequence{tokens, labels}}, st, grad_scale, logit_chunk,
                              keep_gate_up_bytes);
}

SequenceLoss batch_loss(GptOssModel& model, const std::vector<TrainSequence>& seqs, int64_t logit_chunk) {
  return loss_and_grads(model, seqs, nullptr, 1.0, logit_chunk, 0);
}

SequenceLoss batch_loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState& st,
                                  double grad_scale, int64_t logit_chunk, double keep_gate_up_bytes) {
  return loss_and_grads(model, seqs, &st, grad_scale, logit_chunk, keep_gate_up_bytes);
}

namespace {

// Both of the above: with st null, the loss alone (no gradient is formed).
SequenceLoss loss_and_grads(GptOssModel& model, const std::vector<TrainSequence>& seqs, LoraState* st,
                            double grad_scale, int64_t logit_chunk, double keep_gate_up_bytes) {
  const GptOssConfig& cfg = model.config();
  const Weights& w = model.weights();
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
  GPTOSS_CHECK(model.backend().name() == "cpu", "training runs on the CPU backend (got {})", model.backend().name());

  // Forward with the activations the backward needs (the logits of the last position only: those of the
  // labelled positions are made below, a chunk at a time, so [n, vocab] never exists at once).
  const int bs = 16;
  int blocks = 0;
  for (const TrainSequence& q : seqs) blocks += SequenceKv::blocks_needed(int64_t(q.tokens.size()), bs);
  KvPool pool(cfg, model.backend(), blocks, bs);
  LinearBlockAllocator alloc(pool.num_blocks());
  std::vector<SequenceKv> kv(seqs.size(), SequenceKv(alloc, bs));
  ForwardBatch batch;
  for (size_t s = 0; s < seqs.size(); ++s) batch.seqs.push_back(kv[s].chunk(seqs[s].tokens, 0, /*all_logits=*/false));
  std::vector<float> last(size_t(V) * seqs.size());
  TrainCapture cap;
  // The experts' gate_up values save their recompute in the backward; kept up to keep_gate_up_bytes (by
  // default 4 GiB, the 20b's ~1900 tokens a micro-batch), beyond that recomputed, so long sequences still
  // fit the 24 GB machine.
  cap.keep_gate_up =
      double(n) * k * double(2 * cfg.intermediate_size) * cfg.num_hidden_layers * 4 <= keep_gate_up_bytes;
  model.forward(batch, pool, last.data(), nullptr, &cap);

  SequenceLoss res;
  std::vector<int64_t> rows;  // the labelled positions
  for (int64_t i = 0; i < n; ++i)
    if (labels[size_t(i)] >= 0) rows.push_back(i);
  res.labelled = int64_t(rows.size());
  if (res.labelled == 0) return res;

  // Final norm and unembedding, per chunk of labelled rows: logits, the loss (the chunk's mean weighted by
  // its share of the rows) and the gradient back to the final norm's output.
  std::vector<float> dh(size_t(n * H), 0.0f), dx(size_t(n * H), 0.0f), h(size_t(n * H));
  model.backend().rms_norm(cap.x_final.data(), w.norm, h.data(), n, H, eps);
  const int64_t chunk = std::max<int64_t>(1, logit_chunk);
  std::vector<float> hc(size_t(chunk * H)), logits(size_t(chunk * V)), dlogits(size_t(chunk * V)),
      dhc(size_t(chunk * H));
  std::vector<int32_t> target(static_cast<size_t>(chunk));
  for (int64_t r0 = 0; r0 < res.labelled; r0 += chunk) {
    const int64_t m = std::min(chunk, res.labelled - r0);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t i = rows[size_t(r0 + j)];
      std::copy(h.begin() + i * H, h.begin() + (i + 1) * H, hc.begin() + j * H);
      target[size_t(j)] = labels[size_t(i)];
    }
    model.backend().matmul_bf16(hc.data(), m, H, w.lm_head, nullptr, logits.data(), V);
    const double share = double(m) / double(res.labelled);
    res.loss += share * cross_entropy(logits.data(), m, V, target.data(), dlogits.data());
    if (!st) continue;
    for (float& g : dlogits) g = float(g * share);
    std::fill(dhc.begin(), dhc.begin() + m * H, 0.0f);
    matmul_bf16_backward_x(dlogits.data(), m, V, w.lm_head, H, dhc.data());
    for (int64_t j = 0; j < m; ++j) {
      const int64_t i = rows[size_t(r0 + j)];
      std::copy(dhc.begin() + j * H, dhc.begin() + (j + 1) * H, dh.begin() + i * H);
    }
  }
  if (!st) return res;
  rms_norm_backward(cap.x_final.data(), w.norm, dh.data(), n, H, eps, dx.data());

  const RopeTable& rope = model.rope_table();
  std::vector<float> dlog(size_t(n * E)), dattn(size_t(n * Q));
  std::vector<float> dq(size_t(n * Q)), dk(size_t(n * KV)), dv(size_t(n * KV));
  for (int l = cfg.num_hidden_layers - 1; l >= 0; --l) {
    const LayerWeights& L = w.layers[size_t(l)];
    const TrainCapture::Layer& c = cap.layers[size_t(l)];

    // MoE block: dx is the gradient of its output (and of the residual it adds to).
    model.backend().rms_norm(c.x_moe.data(), L.mlp_norm, h.data(), n, H, eps);
    moe_backward(h.data(), n, H, c.expert_idx.data(), c.expert_w.data(), k, L.gate_up, L.down,
                 float(cfg.swiglu_limit), dx.data(), dh.data(), dlog.data(),
                 c.gate_up.empty() ? nullptr : c.gate_up.data());
    matmul_bf16_backward_x(dlog.data(), n, E, L.router_w, H, dh.data());
    lora_backward(*st, l, LoraModule::kRouter, h.data(), dlog.data(), n, dh.data(), grad_scale);
    rms_norm_backward(c.x_moe.data(), L.mlp_norm, dh.data(), n, H, eps, dx.data());

    // Attention block.
    std::fill(dattn.begin(), dattn.end(), 0.0f);
    matmul_bf16_backward_x(dx.data(), n, H, L.o_w, Q, dattn.data());
    lora_backward(*st, l, LoraModule::kO, c.attn.data(), dx.data(), n, dattn.data(), grad_scale);
    for (size_t s = 0; s < seqs.size(); ++s) {  // attention stays within its sequence
      const int64_t r = start[s], m = start[s + 1] - r;
      attention_backward(c.q.data() + r * Q, c.k.data() + r * KV, c.v.data() + r * KV, m, heads, kvh, hd, L.sinks,
                         cfg.is_sliding(l) ? cfg.sliding_window : 0, 1.0f / std::sqrt(float(hd)),
                         dattn.data() + r * Q, dq.data() + r * Q, dk.data() + r * KV, dv.data() + r * KV);
    }
    rope_backward(dq.data(), n, heads, hd, positions.data(), rope.inv_freq.data(), rope.attention_factor);
    rope_backward(dk.data(), n, kvh, hd, positions.data(), rope.inv_freq.data(), rope.attention_factor);
    model.backend().rms_norm(c.x_attn.data(), L.attn_norm, h.data(), n, H, eps);
    std::fill(dh.begin(), dh.end(), 0.0f);
    matmul_bf16_backward_x(dq.data(), n, Q, L.q_w, H, dh.data());
    matmul_bf16_backward_x(dk.data(), n, KV, L.k_w, H, dh.data());
    matmul_bf16_backward_x(dv.data(), n, KV, L.v_w, H, dh.data());
    lora_backward(*st, l, LoraModule::kQ, h.data(), dq.data(), n, dh.data(), grad_scale);
    lora_backward(*st, l, LoraModule::kK, h.data(), dk.data(), n, dh.data(), grad_scale);
    lora_backward(*st, l, LoraModule::kV, h.data(), dv.data(), n, dh.data(), grad_scale);
    rms_norm_backward(c.x_attn.data(), L.attn_norm, dh.data(), n, H, eps, dx.data());
  }
  return res;
}

}  // namespace

}  // namespace gptoss::train
