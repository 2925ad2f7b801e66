// Unit tests of the engine's parts: KV block manager, sampler, stop strings.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "backend/kernel_tester.h"
#include "core/error.h"
#include "engine/kv_cache.h"
#include "engine/sampling.h"
#include "engine/stop_strings.h"

namespace gptoss {
namespace {

std::vector<int32_t> iota_tokens(int n, int32_t first = 0) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

TEST(KvCache, AllocateAndFreeReturnEveryBlock) {
  KvCacheManager kv(/*num_blocks=*/20, /*block_size=*/4, /*sliding_window=*/0, /*has_full=*/true, false);
  SeqBlocks a, b;
  ASSERT_TRUE(kv.allocate(a, 0, 9));  // positions 0..8 -> 3 blocks
  EXPECT_EQ(a.full.size(), 3u);
  EXPECT_EQ(kv.num_used(), 3);
  ASSERT_TRUE(kv.allocate(a, 9, 12));  // still block 2
  EXPECT_EQ(kv.num_used(), 3);
  ASSERT_TRUE(kv.allocate(a, 12, 13));
  EXPECT_EQ(kv.num_used(), 4);
  EXPECT_FALSE(kv.allocate(b, 0, 80));  // 20 blocks needed, 16 free: all or nothing
  EXPECT_TRUE(b.full.empty());
  EXPECT_EQ(kv.num_used(), 4);
  ASSERT_TRUE(kv.allocate(b, 0, 64));
  EXPECT_EQ(kv.num_free(), 0);
  kv.free(a);
  kv.free(b);
  EXPECT_EQ(kv.num_used(), 0);
  EXPECT_EQ(kv.num_free(), 20);
}

TEST(KvCache, SlidingGroupKeepsOnlyTheWindow) {
  // window 8, block 4: when the next position is c, blocks wholly before c - 8 are dropped.
  KvCacheManager kv(64, 4, /*sliding_window=*/8, true, false);
  SeqBlocks s;
  auto toks = iota_tokens(40);
  ASSERT_TRUE(kv.allocate(s, 0, 40));
  EXPECT_EQ(s.full.size(), 10u);
  EXPECT_EQ(s.swa.size(), 10u);
  EXPECT_EQ(kv.num_used(), 20);
  kv.on_computed(s, toks, 40);
  // next position 40 reads 33..40; keep positions >= 32 -> blocks 8, 9.
  int kept = 0;
  for (int j = 0; j < 10; ++j) kept += s.swa[j] >= 0;
  EXPECT_EQ(kept, 2);
  EXPECT_GE(s.swa[8], 0);
  EXPECT_GE(s.swa[9], 0);
  EXPECT_EQ(kv.num_used(), 12);
  // Decoding: at most ceil((8 + 1) / 4) + 1 sliding blocks are ever held.
  for (int c = 40; c < 100; ++c) {
    toks.push_back(c);
    ASSERT_TRUE(kv.allocate(s, c, c + 1));
    kv.on_computed(s, toks, c + 1);
    int held = 0;
    for (int32_t b : s.swa) held += b >= 0;
    EXPECT_LE(held, 4);
  }
  kv.free(s);
  EXPECT_EQ(kv.num_used(), 0);
  EXPECT_LE(kv.max_blocks_for(100, 1), 25 + 4);
}

TEST(KvCache, PrefixCacheSharesBlocksAndEvictsLru) {
  KvCacheManager kv(12, 4, /*sliding_window=*/0, true, /*prefix_caching=*/true);
  auto toks = iota_tokens(13);
  SeqBlocks a;
  EXPECT_EQ(kv.match_prefix(a, toks), 0);
  ASSERT_TRUE(kv.allocate(a, 0, 13));
  kv.on_computed(a, toks, 13);  // blocks 0..2 complete and registered
  SeqBlocks b;
  EXPECT_EQ(kv.match_prefix(b, toks), 12);  // all 3 full blocks (13th token recomputed)
  EXPECT_EQ(std::vector<int32_t>(b.full.begin(), b.full.begin() + 3), std::vector<int32_t>(a.full.begin(), a.full.begin() + 3));
  EXPECT_EQ(kv.num_used(), 4);
  // A prompt of exactly 12 tokens reuses only 2 blocks: its last token needs logits.
  SeqBlocks c;
  EXPECT_EQ(kv.match_prefix(c, std::span<const int32_t>(toks).first(12)), 8);
  kv.free(c);
  // A different second block: only the first block matches.
  auto other = toks;
  other[5] = 99;
  SeqBlocks d;
  EXPECT_EQ(kv.match_prefix(d, other), 4);
  kv.free(d);
  kv.free(a);
  kv.free(b);
  EXPECT_EQ(kv.num_used(), 0);
  EXPECT_EQ(kv.num_cached(), 3);
  EXPECT_EQ(kv.num_free(), 12);
  // Fill the pool: cached blocks are evicted (never-registered free blocks go first).
  SeqBlocks e;
  ASSERT_TRUE(kv.allocate(e, 0, 40));  // 10 blocks: 9 free + 1 evicted
  EXPECT_EQ(kv.num_cached(), 2);
  kv.free(e);
  SeqBlocks f;
  EXPECT_LT(kv.match_prefix(f, toks), 12);
  kv.free(f);
  EXPECT_EQ(kv.num_used(), 0);
}

// Blocks computed under one LoRA adapter (SeqBlocks::root) are not a prefix for another.
TEST(KvCache, PrefixCacheKeepsAdaptersApart) {
  KvCacheManager kv(16, 4, /*sliding_window=*/0, true, /*prefix_caching=*/true);
  auto toks = iota_tokens(13);
  SeqBlocks a;
  ASSERT_TRUE(kv.allocate(a, 0, 13));
  kv.on_computed(a, toks, 13);
  SeqBlocks b;
  b.root = 77;
  EXPECT_EQ(kv.match_prefix(b, toks), 0);
  ASSERT_TRUE(kv.allocate(b, 0, 13));
  kv.on_computed(b, toks, 13);
  SeqBlocks c, d;
  c.root = 77;
  EXPECT_EQ(kv.match_prefix(c, toks), 12);  // the same adapter hits its own blocks
  EXPECT_EQ(std::vector<int32_t>(c.full.begin(), c.full.begin() + 3), std::vector<int32_t>(b.full.begin(), b.full.begin() + 3));
  EXPECT_EQ(kv.match_prefix(d, toks), 12);  // and no adapter its own
  EXPECT_EQ(std::vector<int32_t>(d.full.begin(), d.full.begin() + 3), std::vector<int32_t>(a.full.begin(), a.full.begin() + 3));
  for (SeqBlocks* s : {&a, &b, &c, &d}) kv.free(*s);
  EXPECT_EQ(kv.num_used(), 0);
}

TEST(KvCache, PrefixHitMapsTheSlidingBlocksOfTheLastWindow) {
  KvCacheManager kv(64, 4, /*sliding_window=*/4, true, true);
  auto toks = iota_tokens(64);
  SeqBlocks a;
  ASSERT_TRUE(kv.allocate(a, 0, 24));
  kv.on_computed(a, std::span<const int32_t>(toks).first(24), 24);
  EXPECT_EQ(a.swa[0], -1);  // dropped (kept in the cache)
  SeqBlocks b;
  EXPECT_EQ(kv.match_prefix(b, std::span<const int32_t>(toks).first(24)), 20);
  // The next position, 20, reads 17..20; with the one-position margin blocks 4 (16..19) is needed.
  ASSERT_EQ(b.swa.size(), 5u);
  EXPECT_GE(b.swa[4], 0);
  for (int j = 0; j < 4; ++j) EXPECT_EQ(b.swa[j], -1) << j;
  for (int j = 0; j < 5; ++j) EXPECT_EQ(b.full[j], a.full[j]);
  kv.free(b);
  kv.free(a);
  EXPECT_EQ(kv.num_used(), 0);
}

TEST(KvCache, PrefixHitFallsBackWhenSlidingBlocksWereEvicted) {
  KvCacheManager kv(16, 4, /*sliding_window=*/4, true, true);
  auto toks = iota_tokens(25);
  SeqBlocks a;
  ASSERT_TRUE(kv.allocate(a, 0, 24));  // 6 full + 6 sliding blocks
  kv.on_computed(a, std::span<const int32_t>(toks).first(24), 24);  // sliding 0..4 dropped (LRU, in order)
  kv.free(a);
  EXPECT_EQ(kv.num_cached(), 12);
  SeqBlocks filler;
  ASSERT_TRUE(kv.allocate(filler, 0, 16));  // 8 blocks: 4 free + the 4 oldest cached (sliding 0..3)
  EXPECT_EQ(kv.num_cached(), 8);
  SeqBlocks b;
  // Prefix ending at 16: full blocks 0..3 are cached but sliding block 3 is gone, as are 0..2: miss.
  EXPECT_EQ(kv.match_prefix(b, std::span<const int32_t>(toks).first(17)), 0);
  kv.free(b);
  // Prefix ending at 20 needs sliding block 4 only; ending at 24 needs block 5.
  EXPECT_EQ(kv.match_prefix(b, std::span<const int32_t>(toks).first(21)), 20);
  kv.free(b);
  EXPECT_EQ(kv.match_prefix(b, toks), 24);
  kv.free(b);
  kv.free(filler);
  EXPECT_EQ(kv.num_used(), 0);
}

// ---- sampler --------------------------------------------------------------------------------------

std::vector<float> random_logits(int v, uint32_t seed, float scale = 2.0f) {
  return cpu::testing::Rng(seed).normal(v, scale);
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
  SamplingParams p;
  p.temperature = 0;
  PenaltyState st;
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 1);
  p.logit_bias[3] = 0.5f;
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 3);
}

TEST(Sampler, PenaltiesChangeTheArgmax) {
  std::vector<float> l = {2.0f, 1.9f, 1.0f, -1.0f};
  SamplingParams p;
  p.temperature = 0;
  PenaltyState st;
  std::vector<int32_t> prompt = {0};
  p.repetition_penalty = 1.2f;  // 2.0 / 1.2 = 1.67 < 1.9
  st.init(prompt, p);
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 1);
  p.repetition_penalty = 1.0f;
  st.init(prompt, p);
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 0);
  st.add_output(0);
  p.presence_penalty = 0.5f;
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 1);
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.05f;  // one occurrence: 1.95 > 1.9
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 0);
  st.add_output(0);  // two: 1.9 == 1.9 -> lowest id (0) still wins ties; three: below
  st.add_output(0);
  EXPECT_EQ(sample_token(l, p, st, 1, 0).token, 1);
}

TEST(Sampler, SeededDrawsAreReproducible) {
  auto l = random_logits(1000, 3);
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_p = 0.9f;
  PenaltyState st;
  std::vector<int> a, b, c;
  for (int i = 0; i < 50; ++i) {
    a.push_back(sample_token(l, p, st, 42, i).token);
    b.push_back(sample_token(l, p, st, 42, i).token);
    c.push_back(sample_token(l, p, st, 43, i).token);
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

// Chi-square goodness of fit of sampled frequencies against the sampler's own distribution, which
// for plain temperature sampling must be softmax(logits / T).
TEST(Sampler, FrequenciesMatchTheSoftmax) {
  const int v = 8;
  std::vector<float> l = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 0.25f, 1.5f};
  SamplingParams p;
  p.temperature = 0.7f;
  PenaltyState st;
  auto probs = sampling_distribution(l, p, st);
  double z = 0;
  for (float x : l) z += std::exp(x / 0.7);
  for (int i = 0; i < v; ++i) EXPECT_NEAR(probs[i], std::exp(l[i] / 0.7) / z, 1e-6);  // T is the float 0.7f
  const int n = 40000;
  std::vector<int> counts(v, 0);
  for (int i = 0; i < n; ++i) ++counts[sample_token(l, p, st, /*seed=*/7, i).token];
  double chi2 = 0;
  for (int i = 0; i < v; ++i) {
    double e = probs[i] * n;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  // 7 degrees of freedom: P(chi2 > 24.32) = 0.001.
  EXPECT_LT(chi2, 24.32) << "chi2 " << chi2;
}

TEST(Sampler, TopKTopPMinPFilter) {
  std::vector<float> l = {3.0f, 2.0f, 1.0f, 0.0f, -1.0f, -2.0f};
  PenaltyState st;
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  auto d = sampling_distribution(l, p, st);
  EXPECT_GT(d[0], 0);
  EXPECT_GT(d[1], 0);
  for (int i = 2; i < 6; ++i) EXPECT_EQ(d[i], 0.0);
  EXPECT_NEAR(d[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  p.top_k = 0;
  p.top_p = 0.7f;  // softmax: 0.6364, 0.2341, ... -> keeps two (0.636 < 0.7)
  d = sampling_distribution(l, p, st);
  EXPECT_GT(d[1], 0);
  EXPECT_EQ(d[2], 0.0);
  p.top_p = 1.0f;
  p.min_p = 0.3f;  // keeps p >= 0.3 * pmax: exp(-1) = 0.37 yes, exp(-2) = 0.135 no
  d = sampling_distribution(l, p, st);
  EXPECT_GT(d[1], 0);
  EXPECT_EQ(d[2], 0.0);
  // Every sample respects the filter.
  p.min_p = 0;
  p.top_k = 3;
  for (int i = 0; i < 200; ++i) EXPECT_LT(sample_token(l, p, st, 5, i).token, 3);
}

TEST(Sampler, TopPOnALargeVocabulary) {
  auto l = random_logits(50000, 9, 3.0f);
  SamplingParams p;
  p.top_p = 0.5f;
  PenaltyState st;
  auto d = sampling_distribution(l, p, st);
  // Kept tokens are exactly the most likely ones until their raw mass reaches 0.5.
  std::vector<int> idx(l.size());
  for (int i = 0; i < int(idx.size()); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
  double mx = l[idx[0]], z = 0;
  for (float x : l) z += std::exp(x - mx);
  double acc = 0;
  size_t k = 0;
  while (acc < 0.5) acc += std::exp(l[idx[k++]] - mx) / z;
  size_t kept = 0;
  for (double x : d) kept += x > 0;
  EXPECT_EQ(kept, k);
  for (size_t i = 0; i < k; ++i) EXPECT_GT(d[idx[i]], 0);
}

TEST(Sampler, LogprobsAreRawLogSoftmax) {
  std::vector<float> l = {1.0f, 2.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = true;
  p.top_logprobs = 2;
  p.logit_bias[2] = 10.0f;  // changes the choice, not the reported distribution
  PenaltyState st;
  auto r = sample_token(l, p, st, 1, 0);
  double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.0));
  EXPECT_EQ(r.token, 2);
  EXPECT_NEAR(r.logprob, 0.0 - lse, 1e-5);
  ASSERT_EQ(r.top_logprobs.size(), 2u);
  EXPECT_EQ(r.top_logprobs[0].token, 1);
  EXPECT_NEAR(r.top_logprobs[0].logprob, 2.0 - lse, 1e-5);
  EXPECT_EQ(r.top_logprobs[1].token, 0);
}

TEST(Sampler, ValidationNamesTheField) {
  SamplingParams p;
  p.top_p = 0;
  try {
    validate_sampling_params(p, 100);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos);
  }
  p = {};
  p.logit_bias[100] = 1;
  EXPECT_THROW(validate_sampling_params(p, 100), InputError);
  p = {};
  EXPECT_NO_THROW(validate_sampling_params(p, 100));
}

TEST(StopStrings, HoldsBackPossiblePrefixesAndCutsTheMatch) {
  StopStringMatcher m({"STOP", "xyz"});
  EXPECT_EQ(m.push("hello S"), "hello ");
  EXPECT_EQ(m.push("T"), "");
  EXPECT_EQ(m.push("a"), "STa");
  EXPECT_EQ(m.push(" wor"), " wor");
  EXPECT_EQ(m.push("ldST"), "ld");
  EXPECT_FALSE(m.matched());
  EXPECT_EQ(m.push("OP and more"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_string(), "STOP");
  EXPECT_EQ(m.push("anything"), "");
  StopStringMatcher m2({"end"});
  EXPECT_EQ(m2.push("the en"), "the ");
  EXPECT_EQ(m2.finish(), "en");
  StopStringMatcher m3({"b", "abc"});
  EXPECT_EQ(m3.push("xabc"), "x");  // "abc" starts earlier than "b"
  EXPECT_EQ(m3.matched_string(), "abc");
}

}  // namespace
}  // namespace gptoss
