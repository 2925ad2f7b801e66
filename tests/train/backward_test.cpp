// The LoRA gradients of a whole training sequence (train/backward.h) against central finite differences
// of the model's own forward loss, on both tiny fixtures (MXFP4 and bf16 experts; 4 layers, sliding
// window 8 < the 33 tokens, so both attention kinds and the window's edge are in the path).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/backend.h"
#include "model/gpt_oss.h"
#include "model/kv_pool.h"
#include "model/model_test_util.h"
#include "train/adapter_io.h"
#include "train/backward.h"
#include "train/lora_state_util.h"

namespace gptoss::train {
namespace {

std::vector<int32_t> fixture_ids(const std::string& name) {
  Checkpoint ref = Checkpoint::open(testing::tiny_dir() + "/reference.safetensors");
  const TensorView& t = ref.get(name);
  std::vector<int32_t> ids(size_t(t.numel()));
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = t.dtype == DType::I64 ? int32_t(t.as<int64_t>()[i]) : t.as<int32_t>()[i];
  return ids;
}

// The experts every layer's router picks for every token (the selection is piecewise constant in the
// router's weights: a finite difference across a change of it measures nothing).
std::vector<int32_t> selection(GptOssModel& model, const std::vector<int32_t>& tokens) {
  const int bs = 16;
  KvPool pool(model.config(), model.backend(), SequenceKv::blocks_needed(int64_t(tokens.size()), bs), bs);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, bs);
  ForwardBatch batch;
  batch.seqs.push_back(seq.chunk(tokens, 0, /*all_logits=*/false));
  std::vector<float> logits(size_t(model.config().vocab_size));
  TrainCapture cap(model.backend());
  model.forward(batch, pool, logits.data(), nullptr, &cap);
  const size_t per_layer = tokens.size() * size_t(model.config().num_experts_per_tok);
  std::vector<int32_t> all(per_layer * cap.layers.size());
  for (size_t l = 0; l < cap.layers.size(); ++l)
    model.backend().to_host(all.data() + l * per_layer, cap.layers[l].expert_idx.get(), per_layer * sizeof(int32_t));
  return all;
}

class Backward : public ::testing::TestWithParam<std::string> {};

TEST_P(Backward, LoraGradientsMatchFiniteDifferences) {
  auto backend = make_backend("cpu");
  auto model = GptOssModel::load(testing::tiny_dir() + "/" + GetParam(), *backend);
  const GptOssConfig& cfg = model->config();
  const std::vector<int32_t> tokens = fixture_ids(GetParam() + ".seq2.input_ids");
  std::vector<int32_t> labels(tokens.size(), -100);
  for (size_t i = 4; i + 1 < tokens.size(); ++i) labels[i] = tokens[i + 1];

  LoraState st = testing::random_lora_state(cfg, 2, 7);
  st.apply_to(*model);
  const SequenceLoss res = sequence_loss_and_grads(*model, tokens, labels, st);
  EXPECT_EQ(res.labelled, int64_t(tokens.size()) - 5);
  EXPECT_GT(res.loss, 1.0);

  auto loss_at = [&](LoraState& s) {
    s.apply_to(*model);
    LoraState scratch = s;
    return sequence_loss_and_grads(*model, tokens, labels, scratch).loss;
  };
  // For every module kind and both matrices: the 2 largest gradients of layer 0 and of layer 3. A step
  // that changes any expert choice of any layer (any weight before a router can) is not counted.
  const std::vector<int32_t> chosen = selection(*model, tokens);
  int checked = 0, skipped = 0;
  double worst = 0;
  for (size_t i = 0; i < st.weights.size(); ++i) {
    if (st.weights[i].layer != 0 && st.weights[i].layer != cfg.num_hidden_layers - 1) continue;
    for (bool is_a : {true, false}) {
      const std::vector<float>& g = is_a ? st.grads[i].a : st.grads[i].b;
      std::vector<size_t> order(g.size());
      for (size_t j = 0; j < order.size(); ++j) order[j] = j;
      std::partial_sort(order.begin(), order.begin() + 2, order.end(),
                        [&](size_t x, size_t y) { return std::fabs(g[x]) > std::fabs(g[y]); });
      for (int q = 0; q < 2; ++q) {
        const size_t j = order[size_t(q)];
        const double eps = 1e-3;
        LoraState s = st;
        float& p = is_a ? s.weights[i].a[j] : s.weights[i].b[j];
        const float p0 = p;
        p = p0 + float(eps);
        const double lp = loss_at(s);
        const bool flip_p = selection(*model, tokens) != chosen;
        p = p0 - float(eps);
        const double lm = loss_at(s);
        if (flip_p || selection(*model, tokens) != chosen) {
          ++skipped;
          continue;
        }
        const double fd = (lp - lm) / (2 * eps);
        const double err = std::fabs(fd - g[j]) / std::max(std::fabs(fd), 1e-3);
        worst = std::max(worst, err);
        EXPECT_LT(err, 3e-2) << "layer " << st.weights[i].layer << " module " << int(st.weights[i].module)
                             << (is_a ? " A[" : " B[") << j << "]: analytic " << g[j] << ", finite difference " << fd;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked + skipped, 2 * 5 * 2 * 2);
  EXPECT_LE(skipped, 4);
  std::printf("%s: loss %.4f over %lld positions; worst relative gap to finite differences %.2e (%d of %d "
              "steps changed an expert choice: not counted)\n",
              GetParam().c_str(), res.loss, (long long)res.labelled, worst, skipped, checked + skipped);
}

// Gradient checkpointing: the forward keeps each layer's input only, recompute_layer fills the rest of a
// layer as the full capture had it, and the backward over recomputed layers gives the same loss and
// gradients (two sequences; a LoRA on all five modules, the router's too, which routes outside the fused
// norm; gate_up kept and recomputed).
TEST_P(Backward, CheckpointedLayersGiveTheSameActivationsAndGradients) {
  auto backend = make_backend("cpu");
  auto model = GptOssModel::load(testing::tiny_dir() + "/" + GetParam(), *backend);
  const GptOssConfig& cfg = model->config();
  const std::vector<int32_t> a = fixture_ids(GetParam() + ".seq2.input_ids"),
                             b = fixture_ids(GetParam() + ".seq1.input_ids");
  std::vector<int32_t> la(a.size(), -100), lb(b.size(), -100);
  for (size_t i = 3; i + 1 < a.size(); ++i) la[i] = a[i + 1];
  for (size_t i = 0; i + 1 < b.size(); ++i) lb[i] = b[i + 1];
  LoraState st = testing::random_lora_state(cfg, 2, 5);
  st.apply_to(*model);

  // The activations: one forward with the full capture, one checkpointed, then each layer recomputed.
  const int bs = 16;
  KvPool pool(cfg, *backend, SequenceKv::blocks_needed(int64_t(a.size()), bs), bs);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, bs);
  ForwardBatch batch;
  batch.seqs.push_back(seq.chunk(a, 0, /*all_logits=*/false));
  std::vector<float> logits(size_t(cfg.vocab_size)), logits_ckpt(logits.size());
  TrainCapture full(*backend), ckpt(*backend);
  ckpt.checkpoint = true;
  model->forward(batch, pool, logits.data(), nullptr, &full);
  model->forward(batch, pool, logits_ckpt.data(), nullptr, &ckpt);
  EXPECT_EQ(logits_ckpt, logits);
  auto host = [&](const BackendBuffer& buf, size_t floats) {
    std::vector<float> v(floats);
    backend->to_host(v.data(), buf.get(), floats * 4);
    return v;
  };
  const size_t n = a.size();
  for (int l = cfg.num_hidden_layers - 1; l >= 0; --l) {
    TrainCapture::Layer& c = ckpt.layers[size_t(l)];
    const TrainCapture::Layer& f = full.layers[size_t(l)];
    EXPECT_EQ(c.q.bytes() + c.attn.bytes() + c.x_moe.bytes() + c.gate_up.bytes(), 0u) << "layer " << l;
    EXPECT_EQ(host(c.x_attn, n * cfg.hidden_size), host(f.x_attn, n * cfg.hidden_size)) << "layer " << l;
    model->recompute_layer(l, pool, ckpt);
    const size_t q = n * size_t(cfg.q_dim()), kv = n * size_t(cfg.kv_dim()), h = n * size_t(cfg.hidden_size);
    EXPECT_LT(testing::rel_err(host(c.q, q), host(f.q, q)), 1e-6) << "layer " << l;
    EXPECT_LT(testing::rel_err(host(c.k, kv), host(f.k, kv)), 1e-6) << "layer " << l;
    EXPECT_LT(testing::rel_err(host(c.v, kv), host(f.v, kv)), 1e-6) << "layer " << l;
    EXPECT_LT(testing::rel_err(host(c.attn, q), host(f.attn, q)), 1e-6) << "layer " << l;
    EXPECT_LT(testing::rel_err(host(c.x_moe, h), host(f.x_moe, h)), 1e-6) << "layer " << l;
    EXPECT_LT(testing::rel_err(host(c.gate_up, n * cfg.num_experts_per_tok * 2 * cfg.intermediate_size),
                               host(f.gate_up, n * cfg.num_experts_per_tok * 2 * cfg.intermediate_size)),
              1e-6)
        << "layer " << l;
    std::vector<int32_t> ic(n * cfg.num_experts_per_tok), iff(ic.size());
    backend->to_host(ic.data(), c.expert_idx.get(), ic.size() * 4);
    backend->to_host(iff.data(), f.expert_idx.get(), iff.size() * 4);
    EXPECT_EQ(ic, iff) << "layer " << l;
  }
  TrainCapture not_ckpt(*backend);
  EXPECT_THROW(model->recompute_layer(0, pool, not_ckpt), Error);

  // The gradients.
  const std::vector<TrainSequence> seqs = {{a, la}, {b, lb}};
  auto flat = [](const LoraState& s) {
    std::vector<float> g;
    for (const LoraWeights& w : s.grads) {
      g.insert(g.end(), w.a.begin(), w.a.end());
      g.insert(g.end(), w.b.begin(), w.b.end());
    }
    return g;
  };
  const SequenceLoss want = batch_loss_and_grads(*model, seqs, st);
  const std::vector<float> want_grads = flat(st);
  for (double keep : {kKeepGateUpBytes, 0.0}) {
    BackwardOptions opt;
    opt.checkpoint_layers = true;
    opt.keep_gate_up_bytes = keep;
    st.zero_grads();
    const SequenceLoss got = batch_loss_and_grads(*model, seqs, st, opt);
    EXPECT_EQ(got.labelled, want.labelled);
    EXPECT_NEAR(got.loss, want.loss, 1e-6 * want.loss) << "keep " << keep;
    EXPECT_LT(testing::rel_err(flat(st), want_grads), 1e-6) << "keep " << keep;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Backward, ::testing::Values("mxfp4", "bf16"));

// Two sequences in one forward and backward give the token-weighted mean of their separate losses and
// gradients (rows of the other sequence must not leak into attention, positions restart at 0).
TEST(BackwardBatch, TwoSequencesEqualTheirTokenWeightedSeparateRuns) {
  auto backend = make_backend("cpu");
  auto model = GptOssModel::load(testing::tiny_dir() + "/mxfp4", *backend);
  const std::vector<int32_t> a = fixture_ids("mxfp4.seq2.input_ids"), b = fixture_ids("mxfp4.seq1.input_ids");
  auto next_tokens = [](const std::vector<int32_t>& t, size_t from) {
    std::vector<int32_t> l(t.size(), -100);
    for (size_t i = from; i + 1 < t.size(); ++i) l[i] = t[i + 1];
    return l;
  };
  const std::vector<int32_t> la = next_tokens(a, 4), lb = next_tokens(b, 9);
  LoraState st = testing::random_lora_state(model->config(), 2, 11);
  st.apply_to(*model);
  const SequenceLoss ra = sequence_loss_and_grads(*model, a, la, st);
  LoraState sep = st;
  st.zero_grads();
  const SequenceLoss rb = sequence_loss_and_grads(*model, b, lb, st);
  const double wa = double(ra.labelled) / double(ra.labelled + rb.labelled), wb = 1.0 - wa;
  st.zero_grads();
  const SequenceLoss both = batch_loss_and_grads(*model, {TrainSequence{a, la}, TrainSequence{b, lb}}, st);
  EXPECT_EQ(both.labelled, ra.labelled + rb.labelled);
  EXPECT_NEAR(both.loss, wa * ra.loss + wb * rb.loss, 1e-5 * both.loss);
  // sep.grads holds a's gradients; recompute b's into a fresh state for the weighted sum.
  LoraState only_b = sep;
  only_b.zero_grads();
  sequence_loss_and_grads(*model, b, lb, only_b);
  std::vector<float> want, got;
  for (size_t i = 0; i < st.grads.size(); ++i)
    for (bool is_a : {true, false}) {
      const auto& ga = is_a ? sep.grads[i].a : sep.grads[i].b;
      const auto& gb = is_a ? only_b.grads[i].a : only_b.grads[i].b;
      const auto& g = is_a ? st.grads[i].a : st.grads[i].b;
      for (size_t j = 0; j < g.size(); ++j) {
        want.push_back(float(wa * ga[j] + wb * gb[j]));
        got.push_back(g[j]);
      }
    }
  EXPECT_LT(testing::rel_err(got, want), 1e-5);
  // The evaluation loss is the same number without the backward.
  EXPECT_EQ(batch_loss(*model, {TrainSequence{a, la}, TrainSequence{b, lb}}).loss, both.loss);
}

// Loss and every LoRA gradient against transformers + peft (scripts/device/lora_grad_oracle.py wrote
// tests/train/data/peft_grads on an H200 machine: the bf16 fixture in float32, eager attention, a random
// rank-2 LoRA on q/k/v/o, the fixture's 33-token sequence trained from position 5).
TEST(BackwardOracle, LossAndGradientsMatchTransformersPeft) {
  const std::string dir = std::string(GPTOSS_SOURCE_DIR) + "/tests/train/data/peft_grads";
  auto backend = make_backend("cpu");
  auto model = GptOssModel::load(testing::tiny_dir() + "/bf16", *backend);
  const GptOssConfig& cfg = model->config();
  Checkpoint adapter = Checkpoint::open(dir + "/adapter_model.safetensors");
  Checkpoint oracle = Checkpoint::open(dir + "/oracle.safetensors");
  auto f32 = [](const Checkpoint& c, const std::string& name) { return testing::tensor_values<float>(c, name); };
  LoraState st;
  st.rank = 2;
  st.alpha = 4;
  for (int l = 0; l < cfg.num_hidden_layers; ++l)
    for (LoraModule m : {LoraModule::kQ, LoraModule::kK, LoraModule::kV, LoraModule::kO}) {
      LoraWeights w{l, m, f32(adapter, lora_tensor_name(l, m, 'A')), f32(adapter, lora_tensor_name(l, m, 'B'))};
      st.weights.push_back(w);
      std::fill(w.a.begin(), w.a.end(), 0.0f);
      std::fill(w.b.begin(), w.b.end(), 0.0f);
      st.grads.push_back(std::move(w));
    }
  const std::vector<int32_t> tokens = testing::tensor_values<int32_t>(oracle, "input_ids");
  const std::vector<int32_t> labels = testing::tensor_values<int32_t>(oracle, "labels");
  st.apply_to(*model);
  const double want = f32(oracle, "loss")[0];
  double worst = 0;
  SequenceLoss res;
  // The logits of all 28 labelled rows at once with the forward's expert gate_up values kept, in chunks
  // of 5 with them recomputed, and in chunks of 5 with gradient checkpointing (each layer run again).
  for (int variant = 0; variant < 3; ++variant) {
    const int64_t chunk = variant == 0 ? 64 : 5;
    BackwardOptions opt;
    opt.logit_chunk = chunk;
    opt.keep_gate_up_bytes = variant == 1 ? 0.0 : kKeepGateUpBytes;
    opt.checkpoint_layers = variant == 2;
    st.zero_grads();
    res = sequence_loss_and_grads(*model, tokens, labels, st, opt);
    EXPECT_NEAR(res.loss, want, 1e-5 * want) << "variant " << variant;
    for (size_t i = 0; i < st.grads.size(); ++i) {
      const LoraWeights& g = st.grads[i];
      for (char which : {'A', 'B'}) {
        const std::vector<float> ref = f32(oracle, "grad." + lora_tensor_name(g.layer, g.module, which));
        const double err = testing::rel_err(which == 'A' ? g.a : g.b, ref);
        worst = std::max(worst, err);
        EXPECT_LT(err, 1e-4) << lora_tensor_name(g.layer, g.module, which) << ", variant " << variant;
      }
    }
  }
  std::printf("loss %.6f (transformers + peft %.6f); worst relative gradient error %.2e\n", res.loss, want, worst);
}

}  // namespace
}  // namespace gptoss::train
