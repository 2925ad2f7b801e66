#include "model/gpt_oss.h"

#include <cmath>

#include "core/error.h"

namespace gptoss {

std::unique_ptr<GptOssModel> GptOssModel::load(const std::string& model_dir, Backend& backend,
                                               const std::string& adapter_dir) {
  GptOssConfig cfg = GptOssConfig::load(model_dir);
  auto weights = Weights::load(model_dir, cfg, backend);
  auto adapter = adapter_dir.empty() ? nullptr : LoraAdapter::load(adapter_dir, cfg, backend);
  auto model = std::make_unique<GptOssModel>(std::move(cfg), std::move(weights), backend);
  model->set_adapter(std::move(adapter));
  return model;
}

void GptOssModel::set_adapter(std::unique_ptr<LoraAdapter> adapter) {
  lora_[0] = std::move(adapter);
  scratch_tokens_ = 0;  // the adapters' intermediates are sized at the next forward
}

int GptOssModel::add_adapter(std::unique_ptr<LoraAdapter> adapter) {
  GPTOSS_CHECK(adapter != nullptr, "add_adapter: no adapter");
  lora_.push_back(std::move(adapter));
  scratch_tokens_ = 0;
  return int(lora_.size()) - 1;
}

GptOssModel::GptOssModel(GptOssConfig cfg, std::unique_ptr<Weights> weights, Backend& backend)
    : cfg_(std::move(cfg)), w_(std::move(weights)), backend_(backend), rope_(compute_yarn(yarn_params(cfg_))),
      inv_freq_(backend), s_(backend) {
  inv_freq_.reserve(rope_.inv_freq.size() * sizeof(float));
  backend_.to_device(inv_freq_.get(), rope_.inv_freq.data(), rope_.inv_freq.size() * sizeof(float));
}

void GptOssModel::forward(const ForwardBatch& batch, KvPool& kv, float* logits, HiddenCapture* capture,
                          TrainCapture* train) {
  prepare_batch(batch, kv);
  if (n_ == 0) return;
  grow_scratch(n_, int64_t(logit_rows_.size()));
  if (capture) *capture = HiddenCapture{};
  if (train)
    while (train->layers.size() < size_t(cfg_.num_hidden_layers)) train->layers.emplace_back(backend_);
  with_train(train, /*recomputing=*/false, [&] {
    backend_.run_forward(forward_meta(kv, capture == nullptr && train == nullptr), [&] {
      backend_.embed(tokens_.data(), n_, w_->embed, cfg_.hidden_size, s_.x.f32());
      capture_residual(capture);
      for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
        attention_block(l, kv);
        moe_block(l);
        capture_residual(capture);
      }
      if (train_) keep(train_->x_final, s_.x.f32(), size_t(n_ * cfg_.hidden_size) * 4);
      unembed(capture);
    });
  });
  const int64_t r = int64_t(logit_rows_.size());
  backend_.to_host(logits, s_.logits.f32(), size_t(r * cfg_.vocab_size) * sizeof(float));
}

void GptOssModel::recompute_layer(int layer, KvPool& kv, TrainCapture& train) {
  GPTOSS_CHECK(n_ > 0 && train.checkpoint && layer >= 0 && layer < cfg_.num_hidden_layers &&
                   train.layers.size() == size_t(cfg_.num_hidden_layers) &&
                   train.layers[size_t(layer)].x_attn.bytes() >= size_t(n_ * cfg_.hidden_size) * 4,
               "recompute_layer({}): no checkpointed forward of {} tokens to recompute", layer, n_);
  with_train(&train, /*recomputing=*/true, [&] {
    backend_.run_forward(forward_meta(kv, false), [&] {
      train_ops_->copy(s_.x.f32(), train.layers[size_t(layer)].x_attn.f32(), size_t(n_ * cfg_.hidden_size) * 4);
      attention_block(layer, kv);
      moe_block(layer);
    });
  });
}

void GptOssModel::with_train(TrainCapture* train, bool recomputing, const std::function<void()>& ops) {
  train_ops_ = train ? &backend_.require_train_ops() : nullptr;
  train_ = train;
  recomputing_ = recomputing;
  struct End {
    GptOssModel& m;
    ~End() {
      m.train_ = nullptr;
      m.train_ops_ = nullptr;
      m.recomputing_ = false;
    }
  } end{*this};
  ops();
}

ForwardMeta GptOssModel::forward_meta(const KvPool& kv, bool replayable) const {
  ForwardMeta meta;
  meta.owner = this;
  meta.kv_pool = kv.view().pool;
  meta.tokens = tokens_.data();
  meta.positions = positions_.data();
  meta.n_tokens = n_;
  meta.seqs[0] = seqs_full_.data();
  meta.n_seqs[0] = int(seqs_full_.size());
  meta.seqs[1] = seqs_swa_.data();
  meta.n_seqs[1] = int(seqs_swa_.size());
  meta.logit_rows = logit_rows_.data();
  meta.n_logit_rows = int64_t(logit_rows_.size());
  meta.block_size = kv.block_size();
  meta.variant = uint64_t(kv.dtype());  // a pool reallocated at the same address may hold another type
  for (const AdapterRun& r : adapter_runs_)  // the adapters' row ranges shape the op sequence
    meta.variant = (meta.variant ^ uint64_t(r.begin) * 0x9e3779b97f4a7c15ull ^ uint64_t(r.end) << 20 ^
                    uint64_t(r.index) << 48) * 0xff51afd7ed558ccdull;
  meta.replayable = replayable;
  return meta;
}

// x += o_proj(attention(rope(q), rope(k), v)) of h = rms_norm(x); K and V go to the paged cache first.
void GptOssModel::attention_block(int layer, KvPool& kv) {
  const LayerWeights& L = w_->layers[size_t(layer)];
  const int64_t H = cfg_.hidden_size, Q = cfg_.q_dim(), KV = cfg_.kv_dim();
  const bool sliding = cfg_.is_sliding(layer);
  const int g = kv.group_layer(layer);
  auto& seqs = sliding ? seqs_swa_ : seqs_full_;

  if (train_ && !recomputing_) keep(train_->layers[size_t(layer)].x_attn, s_.x.f32(), size_t(n_ * H) * 4);
  // h = rms_norm(x) of this layer's attention comes from the previous layer's last op (fused with its add),
  // except in the first layer and in a recompute.
  if (layer == 0 || recomputing_) backend_.rms_norm(s_.x.f32(), L.attn_norm, s_.h.f32(), n_, H, float(cfg_.rms_norm_eps));
  const Backend::Linear qkv[3] = {{L.q_w, L.q_b, s_.q.f32(), Q}, {L.k_w, L.k_b, s_.k.f32(), KV},
                                  {L.v_w, L.v_b, s_.v.f32(), KV}};
  backend_.matmul_bf16_multi(s_.h.f32(), n_, H, qkv, 3);
  lora(layer, LoraModule::kQ, s_.h.f32(), s_.q.f32());
  lora(layer, LoraModule::kK, s_.h.f32(), s_.k.f32());
  lora(layer, LoraModule::kV, s_.h.f32(), s_.v.f32());
  const float* inv_freq = inv_freq_.f32();
  backend_.rope_qk_kv_store(s_.q.f32(), cfg_.num_attention_heads, s_.k.f32(), s_.v.f32(), cfg_.num_key_value_heads,
                            n_, cfg_.head_dim, positions_.data(), inv_freq, rope_.attention_factor, kv.view(), g,
                            seqs.data(), int(seqs.size()));
  if (keep_layer_activations()) {
    TrainCapture::Layer& c = train_->layers[size_t(layer)];
    keep(c.q, s_.q.f32(), size_t(n_ * Q) * 4);
    keep(c.k, s_.k.f32(), size_t(n_ * KV) * 4);
    keep(c.v, s_.v.f32(), size_t(n_ * KV) * 4);
  }
  backend_.attention(s_.q.f32(), n_, cfg_.num_attention_heads, kv.view(), g, seqs.data(), int(seqs.size()),
                     L.sinks, sliding ? cfg_.sliding_window : 0, 1.0f / std::sqrt(float(cfg_.head_dim)),
                     s_.attn.f32());
  if (keep_layer_activations()) keep(train_->layers[size_t(layer)].attn, s_.attn.f32(), size_t(n_ * Q) * 4);
  linear(s_.attn.f32(), Q, L.o_w, L.o_b, s_.t.f32(), H, n_);
  lora(layer, LoraModule::kO, s_.attn.f32(), s_.t.f32());
  // x += attention, and h = the MoE block's rms_norm(x), in one op; with the router too when no adapter
  // changes it (else moe_block routes, after the router's LoRA).
  if (adapted(layer, LoraModule::kRouter))
    backend_.add_rms_norm(s_.x.f32(), s_.t.f32(), L.mlp_norm, s_.h.f32(), n_, H, float(cfg_.rms_norm_eps));
  else
    backend_.add_rms_norm_router(s_.x.f32(), s_.t.f32(), L.mlp_norm, s_.h.f32(), n_, H, float(cfg_.rms_norm_eps),
                                 L.router_w, L.router_b, s_.router_logits.f32(), cfg_.num_local_experts,
                                 cfg_.num_experts_per_tok, s_.expert_idx.get<int32_t>(), s_.expert_w.f32());
  if (keep_layer_activations()) keep(train_->layers[size_t(layer)].x_moe, s_.x.f32(), size_t(n_ * H) * 4);
}

// x += sum over the top-k experts of rms_norm(x) (h, from attention_block), weighted by the router's
// softmax (the routing also comes from attention_block unless an adapter changes the router); then h =
// the next layer's attention rms_norm(x), fused with the experts' sum.
void GptOssModel::moe_block(int layer) {
  const LayerWeights& L = w_->layers[size_t(layer)];
  const int64_t H = cfg_.hidden_size;
  const int E = cfg_.num_local_experts, k = cfg_.num_experts_per_tok;
  const uint16_t* next_norm = layer + 1 < cfg_.num_hidden_layers ? w_->layers[size_t(layer) + 1].attn_norm : nullptr;

  if (adapted(layer, LoraModule::kRouter)) {
    linear(s_.h.f32(), H, L.router_w, L.router_b, s_.router_logits.f32(), E, n_);
    lora(layer, LoraModule::kRouter, s_.h.f32(), s_.router_logits.f32());
    backend_.router_topk(s_.router_logits.f32(), n_, E, k, s_.expert_idx.get<int32_t>(), s_.expert_w.f32());
  }
  if (keep_layer_activations()) {
    keep(train_->layers[size_t(layer)].expert_idx, s_.expert_idx.get(), size_t(n_ * k) * 4);
    keep(train_->layers[size_t(layer)].expert_w, s_.expert_w.f32(), size_t(n_ * k) * 4);
  }
  if (keep_layer_activations() && train_->keep_gate_up) {  // the trainer's backward reuses the experts' gate_up outputs
    BackendBuffer& gate_up = train_->layers[size_t(layer)].gate_up;
    gate_up.reserve(size_t(n_ * k * L.gate_up.rows) * sizeof(float));
    backend_.moe_keep_gate_up(s_.h.f32(), n_, H, s_.expert_idx.get<int32_t>(), s_.expert_w.f32(), k, L.gate_up,
                              L.down, float(cfg_.swiglu_limit), s_.t.f32(), gate_up.f32());
    backend_.add_then_rms_norm(s_.x.f32(), s_.t.f32(), next_norm, s_.h.f32(), n_, H, float(cfg_.rms_norm_eps));
  } else {
    backend_.moe_add_rms_norm(s_.h.f32(), n_, H, s_.expert_idx.get<int32_t>(), s_.expert_w.f32(), k, L.gate_up,
                              L.down, float(cfg_.swiglu_limit), s_.t.f32(), s_.x.f32(), next_norm, s_.h.f32(),
                              float(cfg_.rms_norm_eps));
  }
}

// logits (s_.logits) = lm_head(rms_norm(x)) for the requested rows only (decode needs one row per sequence).
void GptOssModel::unembed(HiddenCapture* capture) {
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size, r = int64_t(logit_rows_.size());
  const float eps = float(cfg_.rms_norm_eps);
  if (capture) {
    backend_.rms_norm(s_.x.f32(), w_->norm, s_.h.f32(), n_, H, eps);
    capture->final_norm.resize(size_t(n_ * H));
    backend_.to_host(capture->final_norm.data(), s_.h.f32(), size_t(n_ * H) * sizeof(float));
  }
  backend_.gather_rows(s_.x.f32(), logit_rows_.data(), r, H, s_.rows.f32());
  backend_.rms_norm(s_.rows.f32(), w_->norm, s_.rows.f32(), r, H, eps);
  linear(s_.rows.f32(), H, w_->lm_head, nullptr, s_.logits.f32(), V, r);
}

void GptOssModel::linear(const float* x, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                         int64_t out, int64_t n) {
  backend_.matmul_bf16(x, n, in, w, bias, y, out);
}

bool GptOssModel::adapted(int layer, LoraModule m) const {
  for (const AdapterRun& run : adapter_runs_) {
    const LoraAdapter* a = lora_[size_t(run.index)].get();
    if (a && a->get(layer, m).rank > 0) return true;
  }
  return false;
}

void GptOssModel::lora(int layer, LoraModule m, const float* x, float* y) {
  float* const t[3] = {s_.lora_t[0].f32(), s_.lora_t[1].f32(), s_.lora_t[2].f32()};
  for (const AdapterRun& run : adapter_runs_) {
    const LoraAdapter* a = lora_[size_t(run.index)].get();
    if (!a) continue;
    const LoraLinear& L = a->get(layer, m);
    if (L.rank == 0) continue;
    apply_lora(backend_, L, x + run.begin * L.in, run.end - run.begin, y + run.begin * L.out, t, s_.lora_u.f32());
  }
}

void GptOssModel::keep(BackendBuffer& buf, const void* src, size_t bytes) {
  buf.reserve(bytes);
  train_ops_->copy(buf.get(), src, bytes);
}

void GptOssModel::capture_residual(HiddenCapture* capture) {
  if (!capture) return;
  auto& r = capture->residual.emplace_back(size_t(n_ * cfg_.hidden_size));
  backend_.to_host(r.data(), s_.x.f32(), r.size() * sizeof(float));
}

// Flattens the batch into host arrays (tokens, positions, per-group sequence descriptors, logit rows)
// and checks what the kernels cannot: token ids and block-table coverage.
void GptOssModel::prepare_batch(const ForwardBatch& batch, const KvPool& kv) {
  tokens_.clear();
  positions_.clear();
  logit_rows_.clear();
  seqs_full_.clear();
  seqs_swa_.clear();
  adapter_runs_.clear();
  const int bs = kv.block_size();
  const bool has_full = cfg_.num_full_layers() > 0, has_swa = cfg_.num_sliding_layers() > 0;
  // Every block holding a position in [first, end) must be mapped (sliding tables may hold -1 before).
  auto check_table = [&](std::span<const int32_t> table, int64_t first, int64_t end, size_t seq,
                         const char* group) {
    for (int64_t b = first / bs; b <= (end - 1) / bs; ++b) {
      int32_t id = b < int64_t(table.size()) ? table[size_t(b)] : -1;
      if (id < 0 || id >= kv.num_blocks())
        fail_input("forward: sequence {}: {} block table maps logical block {} to {}; expected a block id in "
                   "[0, {}) for positions [{}, {})",
                   seq, group, b, b < int64_t(table.size()) ? std::to_string(id) : "nothing", kv.num_blocks(),
                   first, end);
    }
  };
  for (size_t i = 0; i < batch.seqs.size(); ++i) {
    const SeqChunk& c = batch.seqs[i];
    const int64_t m = int64_t(c.tokens.size());
    if (m == 0) fail_input("forward: sequence {} has no tokens", i);
    if (c.adapter < 0 || c.adapter >= num_adapters())
      fail_input("forward: sequence {} asks for LoRA adapter {}; the model has {} (0 = the default)", i, c.adapter,
                 num_adapters());
    if (c.start_pos < 0) fail_input("forward: sequence {} starts at position {}; expected >= 0", i, c.start_pos);
    const int64_t off = int64_t(tokens_.size()), end = int64_t(c.start_pos) + m;
    for (int64_t j = 0; j < m; ++j) {
      int32_t t = c.tokens[size_t(j)];
      if (t < 0 || t >= cfg_.vocab_size)
        fail_input("forward: sequence {} token {} is {}; expected an id in [0, {})", i, j, t, cfg_.vocab_size);
      tokens_.push_back(t);
      positions_.push_back(int32_t(c.start_pos + j));
      if (c.all_logits) logit_rows_.push_back(int32_t(off + j));
    }
    if (!c.all_logits) logit_rows_.push_back(int32_t(off + m - 1));
    if (!adapter_runs_.empty() && adapter_runs_.back().index == c.adapter)
      adapter_runs_.back().end = off + m;
    else
      adapter_runs_.push_back({off, off + m, c.adapter});
    if (has_full) {
      check_table(c.blocks_full, 0, end, i, "full-attention");
      seqs_full_.push_back({off, m, c.start_pos, c.blocks_full.data()});
    }
    if (has_swa) {
      // Sliding layers read positions > p - window for the chunk's first token p = start_pos.
      int64_t first = std::max<int64_t>(0, int64_t(c.start_pos) - cfg_.sliding_window + 1);
      check_table(c.blocks_swa, first, end, i, "sliding-window");
      seqs_swa_.push_back({off, m, c.start_pos, c.blocks_swa.data()});
    }
  }
  n_ = int64_t(tokens_.size());
}

void GptOssModel::grow_scratch(int64_t n, int64_t rows) {
  const int64_t H = cfg_.hidden_size, Q = cfg_.q_dim(), KV = cfg_.kv_dim();
  const int64_t E = cfg_.num_local_experts, k = cfg_.num_experts_per_tok;
  if (n > scratch_tokens_) {
    const size_t f = sizeof(float);
    s_.x.reserve(size_t(n * H) * f);
    s_.h.reserve(size_t(n * H) * f);
    s_.t.reserve(size_t(n * H) * f);
    s_.q.reserve(size_t(n * Q) * f);
    s_.attn.reserve(size_t(n * Q) * f);
    s_.k.reserve(size_t(n * KV) * f);
    s_.v.reserve(size_t(n * KV) * f);
    s_.router_logits.reserve(size_t(n * E) * f);
    s_.expert_idx.reserve(size_t(n * k) * sizeof(int32_t));
    s_.expert_w.reserve(size_t(n * k) * f);
    int64_t rank = 0, out = 0;
    for (const auto& a : lora_)
      if (a) rank = std::max<int64_t>(rank, a->max_rank()), out = std::max(out, a->max_out());
    if (rank > 0) {
      for (auto& b : s_.lora_t) b.reserve(size_t(n * rank) * f);
      s_.lora_u.reserve(size_t(n * out) * f);
    }
    scratch_tokens_ = n;
  }
  if (rows > scratch_rows_) {
    s_.rows.reserve(size_t(rows * H) * sizeof(float));
    s_.logits.reserve(size_t(rows * cfg_.vocab_size) * sizeof(float));
    scratch_rows_ = rows;
  }
}

}  // namespace gptoss
