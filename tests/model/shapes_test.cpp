// The forward on a model with other shapes than the fixture (GQA ratio 3, head_dim 16, 5 experts top-3,
// a full layer first, window 5, tied embeddings, odd vocab), random weights in both expert formats.
// No reference exists, so the checks are self-consistency: incremental decode through the KV cache,
// ragged batches and sliding-window tables with unmapped (-1) blocks all reproduce one full forward.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <unistd.h>

#include "backend/backend.h"
#include "model/gpt_oss.h"
#include "model_test_util.h"
#include "random_model.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;
using testing::rel_err;
using testing::write_random_model;

GptOssConfig odd_config() {
  GptOssConfig c = GptOssConfig::preset("tiny");
  c.hidden_size = 64;
  c.intermediate_size = 64;
  c.num_hidden_layers = 3;
  c.layer_types = {"full_attention", "sliding_attention", "sliding_attention"};
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.num_local_experts = 5;
  c.num_experts_per_tok = 3;
  c.sliding_window = 5;
  c.vocab_size = 97;
  c.eos_token_id = 96;
  c.eos_token_ids = {96};
  c.pad_token_id = 95;
  c.tie_word_embeddings = true;
  c.validate("odd_config");
  return c;
}

class OddShapes : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("gptoss_shapes_" + std::to_string(::getpid()) + (GetParam() ? "_mx" : "_bf")))
               .string();
    write_random_model(dir_, odd_config(), GetParam());
    backend_ = make_cpu_backend();
    model_ = GptOssModel::load(dir_, *backend_);
    std::mt19937 rng(7);
    for (int i = 0; i < 17; ++i) tokens_.push_back(int32_t(rng() % 97));
  }
  void TearDown() override {
    model_.reset();
    fs::remove_all(dir_);
  }

  std::vector<float> full(const std::vector<int32_t>& t) {
    KvPool pool(model_->config(), *backend_, SequenceKv::blocks_needed(int64_t(t.size()), 4), 4);
    LinearBlockAllocator alloc(pool.num_blocks());
    SequenceKv seq(alloc, 4);
    ForwardBatch b;
    b.seqs.push_back(seq.chunk(t, 0, true));
    std::vector<float> out(t.size() * 97);
    model_->forward(b, pool, out.data());
    return out;
  }
  std::vector<float> row(const std::vector<float>& m, size_t r) {
    return std::vector<float>(m.begin() + long(r * 97), m.begin() + long((r + 1) * 97));
  }

  std::string dir_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<GptOssModel> model_;
  std::vector<int32_t> tokens_;
};

TEST_P(OddShapes, TiedEmbeddingsAndExpertFormat) {
  EXPECT_EQ(model_->weights().lm_head, model_->weights().embed);
  EXPECT_EQ(model_->weights().mxfp4_experts, GetParam());
  const auto logits = full(tokens_);
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST_P(OddShapes, IncrementalDecodeMatchesFullForward) {
  const auto want = full(tokens_);
  const int bs = 2;
  KvPool pool(model_->config(), *backend_, SequenceKv::blocks_needed(17, bs), bs);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, bs);
  seq.ensure(17);
  std::span<const int32_t> t(tokens_);
  std::vector<float> out(3 * 97);
  ForwardBatch b;
  b.seqs.push_back(seq.chunk(t.subspan(0, 3), 0, true));
  model_->forward(b, pool, out.data());
  for (size_t r = 0; r < 3; ++r) EXPECT_LE(rel_err(out.data() + r * 97, row(want, r)), 1e-5) << r;
  for (size_t p = 3; p < 17; ++p) {
    ForwardBatch d;
    d.seqs.push_back(seq.chunk(t.subspan(p, 1), int32_t(p), false));
    model_->forward(d, pool, out.data());
    EXPECT_LE(rel_err(out.data(), row(want, p)), 1e-5) << "position " << p;
  }
}

// Sliding-window tables may drop (-1) blocks wholly before the window; full tables may not.
TEST_P(OddShapes, SlidingTablesWithDroppedBlocks) {
  const auto want = full(tokens_);
  const int bs = 2, W = model_->config().sliding_window;
  KvPool pool(model_->config(), *backend_, 2 * 9, bs);
  std::vector<int32_t> full_table, swa_table;
  for (int b = 0; b < 9; ++b) {
    full_table.push_back(b);
    swa_table.push_back(9 + b);
  }
  std::vector<float> out(97);
  std::span<const int32_t> t(tokens_);
  for (size_t p = 0; p < 17; ++p) {
    // Drop the sliding blocks the engine would have freed: those wholly before p - W.
    for (int b = 0; b < 9; ++b)
      if ((b + 1) * bs <= int(p) - W) swa_table[size_t(b)] = -1;
    ForwardBatch d;
    d.seqs.push_back(SeqChunk{t.subspan(p, 1), int32_t(p), full_table, swa_table, false});
    model_->forward(d, pool, out.data());
    EXPECT_LE(rel_err(out.data(), row(want, p)), 1e-5) << "position " << p;
  }
  EXPECT_EQ(swa_table[0], -1);
}

TEST_P(OddShapes, RaggedBatchMatchesSingleSequences) {
  std::vector<int32_t> other(tokens_.rbegin(), tokens_.rbegin() + 9);
  const auto want_a = full(tokens_), want_b = full(other);
  KvPool pool(model_->config(), *backend_, SequenceKv::blocks_needed(17, 3, 2), 3);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv a(alloc, 3), b(alloc, 3);
  ForwardBatch batch;
  batch.seqs.push_back(b.chunk(other, 0, false));
  batch.seqs.push_back(a.chunk(tokens_, 0, true));
  std::vector<float> out(size_t(batch.logit_rows()) * 97);
  model_->forward(batch, pool, out.data());
  EXPECT_LE(rel_err(out.data(), row(want_b, 8)), 1e-5);
  EXPECT_LE(rel_err(out.data() + 97, want_a), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Experts, OddShapes, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "mxfp4" : "bf16"; });

}  // namespace
}  // namespace gptoss
