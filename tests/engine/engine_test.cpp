// Engine tests on the deterministic paged fake model (engine/fake_runners.h): continuous batching,
// prefix caching, preemption, cancellation, limits, stops, streaming.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/fake_runners.h"
#include "engine/kv_cache.h"
#include "engine_test_util.h"
#include "test_util.h"

namespace gptoss {
namespace {

using testing::greedy;

std::vector<int32_t> random_prompt(int n, uint32_t seed) { return testing::random_prompt(n, seed, 1024); }

EngineConfig small_config(int64_t num_blocks = 256) {
  EngineConfig c;
  c.max_model_len = 512;
  c.block_size = 4;
  c.num_blocks = num_blocks;
  c.max_num_batched_tokens = 64;
  c.max_num_seqs = 32;
  return c;
}

std::unique_ptr<PagedHashRunner> fake(int window = 8) {
  FakeModelShape s;
  s.sliding_window = window;
  return std::make_unique<PagedHashRunner>(s);
}

// Each request alone in a fresh engine, no prefix cache: the reference outputs.
std::vector<std::vector<int>> one_at_a_time(const std::vector<Request>& reqs, int window = 8) {
  std::vector<std::vector<int>> out;
  for (const auto& r : reqs) {
    EngineConfig c = small_config();
    c.enable_prefix_caching = false;
    Engine e(fake(window), c);
    out.push_back(e.generate_all({r})[0].tokens);
  }
  return out;
}

std::vector<Request> mixed_requests(int n, uint32_t seed) {
  std::vector<Request> reqs;
  std::mt19937 rng(seed);
  for (int i = 0; i < n; ++i) reqs.push_back(greedy(random_prompt(1 + int(rng() % 40), seed * 100 + i), 4 + int(rng() % 20)));
  return reqs;
}

TEST(Engine, ConcurrentGreedyEqualsOneAtATime) {
  auto reqs = mixed_requests(16, 1);
  auto ref = one_at_a_time(reqs);
  auto* runner = new PagedHashRunner(FakeModelShape{});
  Engine e(std::unique_ptr<ModelRunner>(runner), small_config());
  auto outs = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(outs[i].tokens, ref[i]) << "request " << i;
    EXPECT_EQ(outs[i].reason, FinishReason::kLength);
    EXPECT_EQ(int(outs[i].tokens.size()), reqs[i].params.max_new_tokens);
  }
  EXPECT_GT(runner->max_batch_seqs(), 8);  // they really ran together
  EXPECT_LE(runner->max_batch_tokens(), 64);
  auto m = e.metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.kv_blocks_free, m.kv_blocks_total);
  EXPECT_EQ(m.requests_finished, 16);
  EXPECT_EQ(m.running, 0);
  EXPECT_EQ(m.waiting, 0);
  EXPECT_EQ(m.time_to_first_token.count, 16);
  int64_t total = 0;
  for (auto& r : reqs) total += r.params.max_new_tokens;
  EXPECT_EQ(m.generated_tokens, total);
  EXPECT_EQ(m.inter_token_latency.count, total - 16);
}

TEST(Engine, SmallTokenBudgetChunksPrefills) {
  auto reqs = mixed_requests(6, 2);
  reqs.push_back(greedy(random_prompt(150, 99), 5));  // 150-token prompt in chunks of <= 7
  auto ref = one_at_a_time(reqs);
  EngineConfig c = small_config();
  c.max_num_batched_tokens = 7;
  c.max_num_seqs = 3;
  auto* runner = new PagedHashRunner(FakeModelShape{});
  Engine e(std::unique_ptr<ModelRunner>(runner), c);
  auto outs = e.generate_all(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(outs[i].tokens, ref[i]) << i;
  EXPECT_LE(runner->max_batch_tokens(), 7);
  EXPECT_LE(runner->max_batch_seqs(), 3);
}

TEST(Engine, PrefixCacheHitGivesTheSameTokens) {
  auto shared = random_prompt(37, 5);
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) {
    auto p = shared;
    auto tail = random_prompt(3 + i, 50 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    reqs.push_back(greedy(p, 10));
  }
  reqs.push_back(greedy(shared, 10));  // exactly the shared prefix
  auto ref = one_at_a_time(reqs);
  auto* runner = new PagedHashRunner(FakeModelShape{});
  Engine e(std::unique_ptr<ModelRunner>(runner), small_config());
  // First request alone warms the cache; the rest hit it.
  auto first = e.generate_all({reqs[0]});
  EXPECT_EQ(first[0].tokens, ref[0]);
  EXPECT_EQ(first[0].cached_prompt_tokens, 0);
  const int64_t before = runner->tokens_computed();
  auto rest = e.generate_all(std::vector<Request>(reqs.begin() + 1, reqs.end()));
  for (size_t i = 0; i < rest.size(); ++i) {
    EXPECT_EQ(rest[i].tokens, ref[i + 1]) << i;
    EXPECT_EQ(rest[i].cached_prompt_tokens, 36) << i;  // 9 full blocks of 4
  }
  const int64_t computed = runner->tokens_computed() - before;
  EXPECT_LT(computed, 4 * 10 + 4 * 20);  // without the cache: >= 4 * 37 prompt tokens
  auto m = e.metrics();
  EXPECT_EQ(m.prefix_cache_hits, 4 * 36);
  EXPECT_GT(m.prefix_cache_hit_rate(), 0.5);
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_GT(m.kv_blocks_cached, 0);
}

TEST(Engine, PrefixCacheWithGeneratedBlocksAndLongSequences) {
  // Request B's prompt = A's prompt + A's output: the cache covers blocks A generated too.
  Engine e(fake(), small_config());
  auto a = e.generate_all({greedy(random_prompt(30, 7), 20)})[0];
  auto pb = random_prompt(30, 7);
  pb.insert(pb.end(), a.tokens.begin(), a.tokens.end());
  auto b = e.generate_all({greedy(pb, 8)})[0];
  EXPECT_EQ(b.cached_prompt_tokens, 48);
  EXPECT_EQ(b.tokens, one_at_a_time({greedy(pb, 8)})[0]);
}

TEST(Engine, PreemptionUnderATinyKvBudgetKeepsGreedyTokens) {
  auto reqs = mixed_requests(12, 3);
  for (auto& r : reqs) r.params.max_new_tokens = 30;
  auto ref = one_at_a_time(reqs);
  for (bool prefix : {false, true}) {
    EngineConfig c = small_config(/*num_blocks=*/40);  // 12 sequences of up to ~70 tokens do not fit
    c.max_model_len = 80;
    c.max_num_batched_tokens = 16;
    c.enable_prefix_caching = prefix;
    Engine e(fake(), c);
    auto outs = e.generate_all(reqs);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(outs[i].tokens, ref[i]) << i << " prefix " << prefix;
    auto m = e.metrics();
    EXPECT_GT(m.preemptions, 0);
    EXPECT_EQ(m.kv_blocks_used, 0);
    int pre = 0;
    for (auto& o : outs) pre += o.preemptions;
    EXPECT_EQ(pre, m.preemptions);
  }
}

TEST(Engine, FullAttentionOnlyAndSlidingOnlyModels) {
  auto reqs = mixed_requests(8, 4);
  for (int window : {0, 5}) {
    FakeModelShape s;
    s.sliding_window = window;
    s.has_full = window == 0;
    auto ref = std::vector<std::vector<int>>();
    for (auto& r : reqs) {
      EngineConfig c = small_config();
      c.enable_prefix_caching = false;
      Engine e1(std::make_unique<PagedHashRunner>(s), c);
      ref.push_back(e1.generate_all({r})[0].tokens);
    }
    EngineConfig c = small_config(30);
    c.max_model_len = 64;
    Engine e(std::make_unique<PagedHashRunner>(s), c);
    auto outs = e.generate_all(reqs);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(outs[i].tokens, ref[i]) << i << " window " << window;
    EXPECT_EQ(e.metrics().kv_blocks_used, 0);
  }
}

TEST(Engine, SeededSamplingIsReproducibleAndBatchIndependent) {
  auto make = [](uint64_t seed) {
    Request r;
    r.prompt = random_prompt(12, 77);
    r.params.temperature = 0.9f;
    r.params.top_k = 50;
    r.params.top_p = 0.95f;
    r.params.seed = seed;
    r.params.max_new_tokens = 25;
    return r;
  };
  Engine alone(fake(), small_config());
  auto a = alone.generate_all({make(11)})[0].tokens;
  // Same request in a crowd of other sampled requests, with preemption pressure.
  std::vector<Request> crowd = {make(12)};
  for (auto& r : mixed_requests(10, 8)) {
    r.params.temperature = 1.0f;
    crowd.push_back(r);
  }
  crowd.insert(crowd.begin() + 5, make(11));
  EngineConfig c = small_config(30);
  c.max_model_len = 80;
  c.max_num_batched_tokens = 16;
  Engine busy(fake(), c);
  auto outs = busy.generate_all(crowd);
  EXPECT_EQ(outs[5].tokens, a);
  EXPECT_NE(outs[0].tokens, a);  // another seed
  EXPECT_GT(busy.metrics().preemptions, 0);
  // Unseeded requests differ from each other (random seeds).
  Request u = make(0);
  u.params.seed.reset();
  auto two = alone.generate_all({u, u});
  EXPECT_NE(two[0].tokens, two[1].tokens);
}

// The hash model at 200 us a position: requests cannot run to their length limit (~0.1-0.5 s) in the
// moment between a test seeing them run and cancelling them (or stopping the engine), however loaded the
// machine is.
class SlowHashRunner : public PagedHashRunner {
 public:
  using PagedHashRunner::PagedHashRunner;

 protected:
  void logits_for(std::span<const int32_t> history, std::span<const int32_t> window, int pos, float* out) override {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    PagedHashRunner::logits_for(history, window, pos, out);
  }
};

std::unique_ptr<SlowHashRunner> slow_fake() {
  FakeModelShape s;
  s.sliding_window = 8;
  return std::make_unique<SlowHashRunner>(s);
}

TEST(Engine, CancelFreesBlocksAtOnce) {
  EngineConfig c = small_config();
  Engine e(slow_fake(), c);
  e.start();
  std::vector<RequestHandle> hs;
  for (int i = 0; i < 6; ++i) {
    Request r = greedy(random_prompt(20, 200 + i), -1);  // until max_model_len (512)
    hs.push_back(e.submit(r));
  }
  for (auto& h : hs) ASSERT_EQ(h.next().type, Event::Type::kToken);  // all running
  EXPECT_GT(e.metrics().kv_blocks_used, 0);
  for (auto& h : hs) h.cancel();
  for (auto& h : hs) {
    auto o = h.wait();
    EXPECT_EQ(o.reason, FinishReason::kAbort);
    EXPECT_LT(o.tokens.size(), 400u);
  }
  // The step that finished them also returned their blocks.
  auto m = e.metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.running, 0);
  e.stop();
}

TEST(Engine, StreamsFromManyThreads) {
  Engine e(fake(), small_config());
  e.start();
  auto reqs = mixed_requests(8, 9);
  auto ref = one_at_a_time(reqs);
  std::vector<std::vector<int>> got(reqs.size());
  std::vector<std::thread> ts;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ts.emplace_back([&, i] {
      RequestHandle h = e.submit(reqs[i]);
      for (;;) {
        Event ev = h.next();
        if (ev.type == Event::Type::kFinished) break;
        got[i].push_back(ev.token);
      }
      EXPECT_EQ(h.next().type, Event::Type::kFinished);  // repeated after the end
    });
  }
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(got[i], ref[i]) << i;
  e.stop();
  EXPECT_EQ(e.metrics().kv_blocks_used, 0);
}

TEST(Engine, StopAbortsUnfinishedRequests) {
  Engine e(slow_fake(), small_config());
  e.start();
  auto h = e.submit(greedy(random_prompt(10, 1), -1));
  ASSERT_EQ(h.next().type, Event::Type::kToken);
  e.stop();
  auto o = h.wait();
  EXPECT_EQ(o.reason, FinishReason::kAbort);
  EXPECT_EQ(e.metrics().kv_blocks_used, 0);
}

TEST(Engine, HandlesOutliveTheEngineAndSubmitAfterStopAborts) {
  RequestHandle h;
  {
    Engine e(slow_fake(), small_config());
    e.start();
    h = e.submit(greedy(random_prompt(10, 2), -1));
    ASSERT_EQ(h.next().type, Event::Type::kToken);
    e.stop();
    auto late = e.submit(greedy(random_prompt(10, 3), 5));
    EXPECT_EQ(late.wait().reason, FinishReason::kAbort);
  }
  h.cancel();  // the engine is gone: nothing happens
  EXPECT_TRUE(h.finished());
  EXPECT_EQ(h.wait().reason, FinishReason::kAbort);
}

TEST(Engine, LimitsAreReportedAtOnce) {
  EngineConfig c = small_config(/*num_blocks=*/64);
  c.max_model_len = 100;
  Engine e(fake(), c);  // not started: errors need no engine thread
  auto err = [&](Request r) {
    auto h = e.submit(std::move(r));
    EXPECT_TRUE(h.finished());
    auto o = h.wait();
    EXPECT_EQ(o.reason, FinishReason::kError);
    return o.message;
  };
  EXPECT_NE(err(greedy({}, 5)).find("empty"), std::string::npos);
  EXPECT_NE(err(greedy(random_prompt(100, 1), 5)).find("max_model_len"), std::string::npos);
  EXPECT_NE(err(greedy(random_prompt(90, 1), 20)).find("max_new_tokens"), std::string::npos);
  EXPECT_NE(err(greedy({5, 2000}, 5)).find("2000"), std::string::npos);
  Request bad = greedy({1, 2}, 5);
  bad.params.top_p = 2;
  EXPECT_NE(err(bad).find("top_p"), std::string::npos);
  Request stops = greedy({1, 2}, 5);
  stops.params.stop = {"x"};
  EXPECT_NE(err(stops).find("tokenizer"), std::string::npos);
  // More blocks than the whole pool: a tiny pool with a long max_model_len.
  EngineConfig c2 = small_config(/*num_blocks=*/20);
  c2.max_model_len = 0;  // auto: the longest that fits
  Engine e2(fake(), c2);
  EXPECT_GT(e2.config().max_model_len, 8);
  EXPECT_LE(KvCacheManager(20, 4, 8, true, false).max_blocks_for(e2.config().max_model_len, 64), 20);
  EngineConfig c3 = small_config(/*num_blocks=*/20);
  c3.max_model_len = 400;
  const std::string e3 = input_error_of([&] { Engine(fake(), c3); });
  EXPECT_NE(e3.find(fmt::format("which hold {} tokens a sequence; lower engine_params.max_model_len or raise "
                                "num_blocks", e2.config().max_model_len)),
            std::string::npos)
      << e3;
  // The same length as a bound only (model.model_max_length): shortened to the longest that fits; a bound
  // that fits stays.
  c3.max_model_len_is_bound = true;
  EXPECT_EQ(Engine(fake(), c3).config().max_model_len, e2.config().max_model_len);
  c3.max_model_len = 9;
  EXPECT_EQ(Engine(fake(), c3).config().max_model_len, 9);
  // Explicit budgets in bytes.
  EngineConfig c4 = small_config(0);
  c4.max_model_len = 0;
  c4.kv_cache_bytes = 100;
  EXPECT_THROW(Engine(fake(), c4), InputError);
  c4.kv_cache_bytes = int64_t(64) << 16 << 2;  // 64 blocks of 4 positions
  Engine e4(fake(), c4);
  EXPECT_EQ(e4.num_blocks(), 64);
}

TEST(Engine, StopTokensEosAndHarmonyStops) {
  FakeModelShape s;
  Engine probe(std::make_unique<PagedHashRunner>(s), small_config());
  auto out = probe.generate_all({greedy(random_prompt(9, 3), 12)})[0].tokens;
  ASSERT_EQ(out.size(), 12u);
  // Stop at the 5th token's id (first occurrence).
  int target = out[4];
  size_t first = std::find(out.begin(), out.end(), target) - out.begin();
  Request r = greedy(random_prompt(9, 3), 12);
  r.params.stop_token_ids = {target};
  auto o = probe.generate_all({r})[0];
  EXPECT_EQ(o.reason, FinishReason::kStop);
  EXPECT_EQ(o.stop_token, target);
  EXPECT_EQ(o.tokens, std::vector<int>(out.begin(), out.begin() + first + 1));
  // The model's eos stops too, unless ignore_eos.
  s.eos_token_id = target;
  Engine eos(std::make_unique<PagedHashRunner>(s), small_config());
  EXPECT_EQ(eos.generate_all({greedy(random_prompt(9, 3), 12)})[0].tokens.size(), first + 1);
  Request ig = greedy(random_prompt(9, 3), 12);
  ig.params.ignore_eos = true;
  EXPECT_EQ(eos.generate_all({ig})[0].tokens, out);
}

class CharDecoder : public TokenDecoder {  // token t -> one letter
 public:
  std::string push(int t) override { return std::string(1, char('a' + t % 26)); }
  std::string flush() override { return {}; }
};

TEST(Engine, StopStringsOnDecodedText) {
  Engine e(fake(), small_config());
  e.set_decoder_factory([] { return std::make_unique<CharDecoder>(); });
  auto full = e.generate_all({greedy(random_prompt(9, 4), 30)})[0];
  ASSERT_EQ(full.text.size(), 30u);
  std::string stop = full.text.substr(10, 3);
  size_t at = full.text.find(stop);
  Request r = greedy(random_prompt(9, 4), 30);
  r.params.stop = {stop, "zzzzzzzzzz"};
  auto o = e.generate_all({r})[0];
  EXPECT_EQ(o.reason, FinishReason::kStop);
  EXPECT_EQ(o.stop_string, stop);
  EXPECT_EQ(o.text, full.text.substr(0, at));  // not leaked
  EXPECT_EQ(o.tokens.size(), at + 3);
  // Held-back text that never became a stop string is delivered at the end.
  Request r2 = greedy(random_prompt(9, 4), 30);
  r2.params.stop = {full.text.substr(28, 2) + "!"};
  auto o2 = e.generate_all({r2})[0];
  EXPECT_EQ(o2.reason, FinishReason::kLength);
  EXPECT_EQ(o2.text, full.text);
}

TEST(Engine, LogprobsAreStreamed) {
  Engine e(fake(), small_config());
  Request r = greedy(random_prompt(5, 5), 6);
  r.params.logprobs = true;
  r.params.top_logprobs = 3;
  auto o = e.generate_all({r})[0];
  ASSERT_EQ(o.logprobs.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    ASSERT_EQ(o.top_logprobs[i].size(), 3u);
    EXPECT_EQ(o.top_logprobs[i][0].token, o.tokens[i]);  // greedy = most likely
    EXPECT_FLOAT_EQ(o.top_logprobs[i][0].logprob, o.logprobs[i]);
    EXPECT_LT(o.logprobs[i], 0.0f);
    EXPECT_GE(o.top_logprobs[i][0].logprob, o.top_logprobs[i][1].logprob);
  }
}

// Randomised: shared prefixes, a pool small enough to preempt, a tiny token budget, requests
// submitted from several threads while others are cancelled mid-stream. Every request that was not
// cancelled gives its one-at-a-time tokens; every block comes back.
TEST(Engine, RandomisedStressKeepsOutputsAndBlocks) {
  std::mt19937 rng(2024);
  std::vector<Request> reqs;
  std::vector<bool> cancel;
  auto stem = random_prompt(24, 1);
  for (int i = 0; i < 40; ++i) {
    std::vector<int32_t> p;
    if (rng() % 2) p.assign(stem.begin(), stem.begin() + int(rng() % 24));
    auto tail = random_prompt(1 + int(rng() % 12), 1000 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    Request r = greedy(p, 1 + int(rng() % 24));
    if (rng() % 3 == 0) {  // some sampled, seeded
      r.params.temperature = 0.8f;
      r.params.seed = 7 + i;
    }
    reqs.push_back(r);
    cancel.push_back(rng() % 5 == 0);
  }
  auto ref = one_at_a_time(reqs);
  EngineConfig c = small_config(/*num_blocks=*/36);
  c.max_model_len = 64;
  c.max_num_batched_tokens = 9;
  c.max_num_seqs = 12;
  Engine e(fake(), c);
  e.start();
  std::vector<RequestOutput> outs(reqs.size());
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (size_t i = size_t(t); i < reqs.size(); i += 4) {
        RequestHandle h = e.submit(reqs[i]);
        if (cancel[i]) {
          h.next();
          h.cancel();
        }
        outs[i] = h.wait();
      }
    });
  }
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (cancel[i]) {
      EXPECT_TRUE(outs[i].reason == FinishReason::kAbort || outs[i].reason == FinishReason::kLength) << i;
      continue;
    }
    EXPECT_EQ(outs[i].reason, FinishReason::kLength) << i << " " << outs[i].message;
    EXPECT_EQ(outs[i].tokens, ref[i]) << i;
  }
  auto m = e.metrics();
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(m.running + m.waiting, 0);
  EXPECT_EQ(m.requests_finished, 40);
  EXPECT_GT(m.prefix_cache_hits, 0);
  e.stop();
}

TEST(ScriptedRunner, EmitsItsScriptThenTheEndToken) {
  auto runner = std::make_unique<ScriptedRunner>(std::vector<int32_t>{7, 8, 9});
  runner->add_script({1, 2, 3}, {200005, 42, 200012});  // ends with <|call|>
  EngineConfig c;
  c.num_blocks = 64;
  c.max_model_len = 256;
  Engine e(std::move(runner), c);
  Request a;
  a.prompt = {1, 2, 3};
  a.params.temperature = 0;
  Request b;
  b.prompt = {5, 5};
  b.params.temperature = 0;
  auto outs = e.generate_all({a, b});
  EXPECT_EQ(outs[0].tokens, (std::vector<int>{200005, 42, 200012}));
  EXPECT_EQ(outs[0].stop_token, 200012);
  EXPECT_EQ(outs[1].tokens, (std::vector<int>{7, 8, 9, 200002}));
  EXPECT_EQ(outs[1].reason, FinishReason::kStop);
}

}  // namespace
}  // namespace gptoss
