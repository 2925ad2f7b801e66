// The engine on the real model: the tiny gpt-oss fixture (vocab 1024, sliding window 8, 4 layers).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <cstdlib>
#include <random>

#include <unistd.h>

#include "engine/engine.h"
#include "engine/gpt_oss_runner.h"
#include "engine/kv_cache.h"
#include "engine_test_util.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/random_model.h"

namespace gptoss {
namespace {

// The tiny model gains nothing from worker threads, and on a loaded 2-core machine spinning workers
// cost seconds; the engine's behaviour does not depend on the thread count.
const bool kOneThread = [] { return setenv("GPTOSS_THREADS", "1", /*overwrite=*/0) == 0; }();

std::string tiny_dir() {
  const char* env = std::getenv("GPTOSS_SHARED_DIR");
  return std::string(env ? env : GPTOSS_SHARED_DIR) + "/fixtures/gpt-oss-tiny/mxfp4";
}

std::unique_ptr<GptOssRunner> tiny() { return GptOssRunner::load(tiny_dir(), "cpu"); }

// Ids below the fixture's vocab (1024) and its special tokens; no request stops early at the end token.
std::vector<int32_t> random_prompt(int n, uint32_t seed) { return testing::random_prompt(n, seed, 1000); }
Request greedy(std::vector<int32_t> prompt, int max_new) { return testing::greedy(std::move(prompt), max_new, true); }

EngineConfig tiny_config(int64_t num_blocks = 512) {
  EngineConfig c;
  c.max_model_len = 256;
  c.block_size = 4;
  c.num_blocks = num_blocks;
  c.max_num_batched_tokens = 48;
  return c;
}

double rel_err(const float* a, const float* b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// Logits of every sequence of a ragged mixed batch (prefill chunks next to decodes, paged tables
// from the engine's KvCacheManager with sliding blocks dropped) equal the single-sequence logits.
TEST(TinyModel, MixedBatchLogitsEqualSingleSequenceLogits) {
  auto runner = tiny();
  const int vocab = runner->vocab_size();
  const int bs = 4;
  runner->allocate_kv(256, bs);
  std::vector<std::vector<int32_t>> seqs = {random_prompt(7, 1), random_prompt(19, 2), random_prompt(33, 3),
                                            random_prompt(12, 4)};
  // Reference: each sequence alone, one prefill over all its tokens, logits for every position.
  std::vector<std::vector<float>> ref;
  {
    KvCacheManager kv(256, bs, runner->sliding_window(), true, false);
    for (auto& s : seqs) {
      SeqBlocks b;
      ASSERT_TRUE(kv.allocate(b, 0, int(s.size())));
      ForwardBatch fb;
      fb.seqs.push_back({s, 0, b.full, b.swa, true});
      ref.emplace_back(s.size() * size_t(vocab));
      runner->forward(fb, ref.back().data());
      kv.free(b);
    }
  }
  // Mixed: chunk schedules per step (tokens per sequence; 0 = idle this step).
  std::vector<std::vector<int>> plan = {{7, 5, 3, 1}, {0, 14, 17, 1}, {0, 0, 13, 1}, {0, 0, 0, 9}};
  KvCacheManager kv(256, bs, runner->sliding_window(), true, false);
  std::vector<SeqBlocks> blocks(seqs.size());
  std::vector<int> done(seqs.size(), 0);
  for (size_t step = 0; step < plan.size(); ++step) {
    ForwardBatch fb;
    std::vector<size_t> who;
    for (size_t i = 0; i < seqs.size(); ++i) {
      int n = plan[step][i];
      if (n == 0) continue;
      ASSERT_TRUE(kv.allocate(blocks[i], done[i], done[i] + n));
      fb.seqs.push_back({std::span<const int32_t>(seqs[i]).subspan(done[i], n), done[i], blocks[i].full,
                         blocks[i].swa, /*all_logits=*/(i % 2) == 0});
      who.push_back(i);
    }
    std::vector<float> logits(size_t(fb.logit_rows()) * vocab);
    runner->forward(fb, logits.data());
    const float* row = logits.data();
    for (size_t k = 0; k < who.size(); ++k) {
      size_t i = who[k];
      int n = plan[step][i];
      int first = fb.seqs[k].all_logits ? 0 : n - 1;
      for (int j = first; j < n; ++j, row += vocab) {
        int pos = done[i] + j;
        double e = rel_err(row, ref[i].data() + size_t(pos) * vocab, vocab);
        EXPECT_LE(e, 1e-5) << "sequence " << i << " position " << pos << " step " << step;
      }
    }
    for (size_t k = 0; k < who.size(); ++k) {
      size_t i = who[k];
      done[i] += plan[step][i];
      kv.on_computed(blocks[i], seqs[i], done[i]);  // drops sliding blocks behind the window
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(done[i], int(seqs[i].size()));
}

// The fixture's transformers greedy continuation (24 tokens after seq0), reproduced through the engine
// while 5 other requests share the batch, in small prefill chunks.
TEST(TinyModel, GreedyMatchesTheTransformersReferenceInABusyBatch) {
  const char* env = std::getenv("GPTOSS_SHARED_DIR");
  auto ref = Checkpoint::open(std::string(env ? env : GPTOSS_SHARED_DIR) + "/fixtures/gpt-oss-tiny/reference.safetensors");
  const TensorView& t = ref.get("mxfp4.greedy.tokens");
  const TensorView& p = ref.get("mxfp4.seq0.input_ids");
  std::vector<int32_t> all(t.as<int32_t>(), t.as<int32_t>() + t.numel());
  std::vector<int32_t> prompt(p.as<int32_t>(), p.as<int32_t>() + p.numel());
  ASSERT_TRUE(std::equal(prompt.begin(), prompt.end(), all.begin()));
  std::vector<int> expected(all.begin() + prompt.size(), all.end());
  std::vector<Request> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back(greedy(random_prompt(5 + 9 * i, 60 + i), 20));
  reqs.insert(reqs.begin() + 2, greedy(prompt, int(expected.size())));
  EngineConfig c = tiny_config();
  c.max_num_batched_tokens = 6;
  Engine e(tiny(), c);
  auto outs = e.generate_all(reqs);
  EXPECT_EQ(outs[2].tokens, expected);
}

std::vector<Request> requests16() {
  std::vector<Request> reqs;
  std::mt19937 rng(11);
  for (int i = 0; i < 16; ++i) reqs.push_back(greedy(random_prompt(2 + int(rng() % 30), 100 + i), 6 + int(rng() % 12)));
  return reqs;
}

std::vector<std::vector<int>> one_at_a_time(const std::vector<Request>& reqs) {
  EngineConfig c = tiny_config();
  c.enable_prefix_caching = false;
  Engine e(tiny(), c);
  std::vector<std::vector<int>> out;
  for (const auto& r : reqs) out.push_back(e.generate_all({r})[0].tokens);
  return out;
}

TEST(TinyModel, SixteenConcurrentGreedyRequestsEqualOneAtATime) {
  auto reqs = requests16();
  auto ref = one_at_a_time(reqs);
  Engine e(tiny(), tiny_config());
  auto outs = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(outs[i].tokens, ref[i]) << i;
  EXPECT_EQ(e.metrics().kv_blocks_used, 0);
}

TEST(TinyModel, PrefixCacheHitGivesTheSameTokensAsAMiss) {
  auto base = random_prompt(29, 21);
  std::vector<Request> reqs;
  for (int i = 0; i < 3; ++i) {
    auto p = base;
    for (int j = 0; j <= i; ++j) p.push_back(int32_t(500 + 7 * i + j));
    reqs.push_back(greedy(p, 10));
  }
  auto ref = one_at_a_time(reqs);
  Engine e(tiny(), tiny_config());
  auto first = e.generate_all({reqs[0]})[0];
  EXPECT_EQ(first.tokens, ref[0]);
  auto rest = e.generate_all({reqs[1], reqs[2]});
  EXPECT_EQ(rest[0].cached_prompt_tokens, 28);
  EXPECT_EQ(rest[1].cached_prompt_tokens, 28);
  EXPECT_EQ(rest[0].tokens, ref[1]);
  EXPECT_EQ(rest[1].tokens, ref[2]);
  // The same prompt again: hit on everything but the last block.
  auto again = e.generate_all({reqs[0]})[0];
  EXPECT_EQ(again.tokens, ref[0]);
  EXPECT_EQ(again.cached_prompt_tokens, 28);
}

// A named LoRA adapter selected per request: its greedy tokens equal those of a runner with that adapter as
// the default, requests without it keep the base tokens in the same batch, the prefix cache does not
// hand one adapter's blocks to the other, and an unknown adapter index is a request error.
TEST(TinyModel, RequestsChooseTheirLoraAdapter) {
  const std::string adapter = (std::filesystem::temp_directory_path() /
                               ("gptoss_engine_lora_" + std::to_string(::getpid()))).string();
  testing::write_random_adapter(adapter, GptOssConfig::load(tiny_dir()), 8, 4);
  auto prompt = random_prompt(29, 5);
  Request base = greedy(prompt, 10), lora = greedy(prompt, 10);
  lora.adapter = 1;
  const auto base_ref = one_at_a_time({base})[0];
  std::vector<int32_t> lora_ref;
  {
    Engine ref(GptOssRunner::load(tiny_dir(), "cpu", adapter), tiny_config());
    lora_ref = ref.generate_all({base})[0].tokens;  // adapter as the default
  }
  EXPECT_NE(lora_ref, base_ref);
  Engine e(GptOssRunner::load(tiny_dir(), "cpu", "", {adapter}), tiny_config());
  auto outs = e.generate_all({base, lora});
  EXPECT_EQ(outs[0].tokens, base_ref);
  EXPECT_EQ(outs[1].tokens, lora_ref);
  auto again = e.generate_all({lora, base});  // the cache holds both prompts now, each under its adapter
  EXPECT_EQ(again[0].tokens, lora_ref);
  EXPECT_EQ(again[1].tokens, base_ref);
  EXPECT_EQ(again[0].cached_prompt_tokens, 28);
  EXPECT_EQ(again[1].cached_prompt_tokens, 28);
  Request bad = lora;
  bad.adapter = 2;
  auto err = e.generate_all({bad})[0];
  EXPECT_EQ(err.reason, FinishReason::kError);
  EXPECT_NE(err.message.find("LoRA adapter 2 does not exist; the model has 2"), std::string::npos) << err.message;
  std::filesystem::remove_all(adapter);
}

TEST(TinyModel, PreemptionUnderATinyKvBudgetKeepsGreedyTokens) {
  auto reqs = requests16();
  auto ref = one_at_a_time(reqs);
  EngineConfig c = tiny_config(/*num_blocks=*/40);
  c.max_model_len = 64;
  c.max_num_batched_tokens = 16;
  Engine e(tiny(), c);
  auto outs = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(outs[i].tokens, ref[i]) << i;
  auto m = e.metrics();
  EXPECT_GT(m.preemptions, 0);
  EXPECT_EQ(m.kv_blocks_used, 0);
}

TEST(TinyModel, SeededSamplingIsBatchIndependent) {
  auto sampled = [](uint64_t seed) {
    Request r;
    r.prompt = random_prompt(10, 31);
    r.params.temperature = 1.0f;
    r.params.top_p = 0.9f;
    r.params.seed = seed;
    r.params.max_new_tokens = 12;
    r.params.ignore_eos = true;
    return r;
  };
  Engine alone(tiny(), tiny_config());
  auto a = alone.generate_all({sampled(5)})[0].tokens;
  auto b = alone.generate_all({sampled(5)})[0].tokens;
  EXPECT_EQ(a, b);
  auto crowd = requests16();
  crowd.insert(crowd.begin() + 7, sampled(5));
  Engine busy(tiny(), tiny_config());
  auto outs = busy.generate_all(crowd);
  EXPECT_EQ(outs[7].tokens, a);
}

TEST(TinyModel, CancelAndFinishReturnEveryBlock) {
  Engine e(tiny(), tiny_config());
  e.start();
  auto keep = e.submit(greedy(random_prompt(20, 41), 8));
  auto cancel = e.submit(greedy(random_prompt(20, 42), 200));
  ASSERT_EQ(cancel.next().type, Event::Type::kToken);
  cancel.cancel();
  EXPECT_EQ(cancel.wait().reason, FinishReason::kAbort);
  EXPECT_EQ(keep.wait().tokens.size(), 8u);
  auto m = e.metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.kv_blocks_free, m.kv_blocks_total);
  e.stop();
}

}  // namespace
}  // namespace gptoss
