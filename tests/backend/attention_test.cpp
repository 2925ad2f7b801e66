#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "backend/cpu/kernels.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

TEST(AttentionSinks, HandComputedOneKeyAndSink) {
  // One token at position 0, one head, head_dim 2: the only key is itself.
  float pool[1 * 1 * 2 * 1 * 1 * 2];
  PagedKv kv{pool, 1, 1, 1, 2};
  const float k[2] = {1, 2}, v[2] = {3, -4}, q[2] = {0.5f, 0.25f};
  const int32_t pos[1] = {0}, table[1] = {0};
  kv_store_ref(kv, 0, k, v, 1, pos, table);
  const float sink[1] = {0.75f};
  AttnSeq seq{0, 1, 0, table};
  const float score = (0.5f * 1 + 0.25f * 2) * 2.0f;  // scale 2
  const double p = std::exp(double(score)) / (std::exp(double(score)) + std::exp(0.75));
  for (auto fn : {attention_sinks_paged_ref, attention_sinks_paged}) {
    Output out(2);
    fn(q, 1, 1, kv, 0, &seq, 1, sink, 0, 2.0f, out.data());
    out.expect_written_and_guarded("attention");
    EXPECT_NEAR(out[0], 3 * p, 1e-6);
    EXPECT_NEAR(out[1], -4 * p, 1e-6);
  }
}

TEST(AttentionSinks, HandComputedWindowExcludesOldKeys) {
  // Two positions, window 1: token at position 1 sees only itself.
  float pool[2 * 1 * 2 * 1 * 1 * 1];
  PagedKv kv{pool, 1, 1, 1, 1};
  const float k[2] = {5, 1}, v[2] = {100, 2}, q[2] = {1, 1};
  const int32_t pos[2] = {0, 1}, table[2] = {1, 0};
  kv_store(kv, 0, k, v, 2, pos, table);
  const float sink[1] = {0.0f};
  AttnSeq seq{0, 2, 0, table};
  for (auto fn : {attention_sinks_paged_ref, attention_sinks_paged}) {
    Output out(2);
    fn(q, 2, 1, kv, 0, &seq, 1, sink, 1, 1.0f, out.data());
    const double e = std::exp(1.0);
    EXPECT_NEAR(out[1], 2 * e / (e + 1), 1e-5);
    const double e5 = std::exp(5.0);
    EXPECT_NEAR(out[0], 100 * e5 / (e5 + 1), 1e-3);
  }
}

// Several sequences at different positions with scattered block tables; K/V stored with kv_store.
struct AttnCase {
  int heads = 64, kv_heads = 8, head_dim = 64, block_size = 16, layers = 3, group_layer = 1;
  int window = 0;
  std::vector<std::pair<int32_t, int64_t>> seqs;  // (start_pos, n_tokens)
};

// Optimized kv_store and attention against the references over a pool of `dtype`; returns the output.
std::vector<float> run_case_dtype(const AttnCase& c, uint32_t seed, KvDtype dtype) {
  SCOPED_TRACE("window=" + std::to_string(c.window) + " block=" + std::to_string(c.block_size) + " " +
               kv_dtype_name(dtype));
  Rng rng(seed);
  // Block tables: each sequence owns blocks for positions [0, end), physical ids shuffled over a pool.
  std::vector<std::vector<int32_t>> tables;
  int total_blocks = 0;
  for (auto [start, n] : c.seqs) total_blocks += int((start + n + c.block_size - 1) / c.block_size);
  std::vector<int32_t> phys(static_cast<size_t>(total_blocks));
  std::iota(phys.begin(), phys.end(), 0);
  std::shuffle(phys.begin(), phys.end(), rng.gen());
  const int64_t block_elems = int64_t(c.layers) * 2 * c.block_size * c.kv_heads * c.head_dim;
  // NaN-poisoned (0x7fc0 is a bf16 NaN, and 0x7fc07fc0 an f32 one), sized for f32.
  std::vector<uint16_t> pool_a(static_cast<size_t>(total_blocks * block_elems * 2), 0x7fc0), pool_b;
  const size_t pool_bytes = size_t(total_blocks * block_elems) * kv_dtype_bytes(dtype);
  PagedKv kv{pool_a.data(), c.block_size, c.layers, c.kv_heads, c.head_dim, dtype};
  int next = 0;
  int64_t n_tokens = 0;
  std::vector<AttnSeq> seqs;
  std::vector<float> new_k, new_v;
  for (auto [start, n] : c.seqs) {
    const int blocks = int((start + n + c.block_size - 1) / c.block_size);
    std::vector<int32_t> table(static_cast<size_t>(blocks));
    for (auto& b : table) b = phys[size_t(next++)];
    // Blocks wholly before every token's window are unmapped (-1), as the engine frees them.
    if (c.window > 0) {
      const int64_t first_needed = std::max<int64_t>(0, start - c.window + 1);
      for (int64_t b = 0; b < blocks; ++b)
        if ((b + 1) * c.block_size <= first_needed) table[size_t(b)] = -1;
    }
    tables.push_back(table);
    // History positions [first_needed, start) were written earlier; the chunk is written now.
    const int64_t lo = c.window > 0 ? std::max<int64_t>(0, start - c.window + 1) : 0;
    std::vector<int32_t> hist(static_cast<size_t>(start - lo));
    std::iota(hist.begin(), hist.end(), int32_t(lo));
    auto hk = rng.f32(int64_t(hist.size()) * c.kv_heads * c.head_dim);
    auto hv = rng.f32(int64_t(hist.size()) * c.kv_heads * c.head_dim);
    kv_store_ref(kv, c.group_layer, hk.data(), hv.data(), int64_t(hist.size()), hist.data(), tables.back().data());
    seqs.push_back(AttnSeq{n_tokens, n, start, nullptr});
    n_tokens += n;
  }
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].block_table = tables[i].data();
  // The chunk's own K/V: the optimized kv_store must write exactly what the reference writes.
  pool_b = pool_a;
  auto k = rng.f32(n_tokens * c.kv_heads * c.head_dim);
  auto v = rng.f32(n_tokens * c.kv_heads * c.head_dim);
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<int32_t> pos(static_cast<size_t>(seqs[i].n_tokens));
    std::iota(pos.begin(), pos.end(), seqs[i].start_pos);
    const int64_t off = seqs[i].token_offset * c.kv_heads * c.head_dim;
    PagedKv kvb = kv;
    kvb.pool = pool_b.data();
    kv_store_ref(kv, c.group_layer, k.data() + off, v.data() + off, seqs[i].n_tokens, pos.data(), tables[i].data());
    kv_store(kvb, c.group_layer, k.data() + off, v.data() + off, seqs[i].n_tokens, pos.data(), tables[i].data());
  }
  EXPECT_EQ(0, std::memcmp(pool_a.data(), pool_b.data(), pool_bytes)) << "kv_store";

  auto q = rng.f32(n_tokens * c.heads * c.head_dim, -2, 2);
  auto sinks = rng.f32(c.heads, -2, 4);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  Output ref(n_tokens * c.heads * c.head_dim), got(n_tokens * c.heads * c.head_dim);
  attention_sinks_paged_ref(q.data(), n_tokens, c.heads, kv, c.group_layer, seqs.data(), int(seqs.size()),
                            sinks.data(), c.window, scale, ref.data());
  attention_sinks_paged(q.data(), n_tokens, c.heads, kv, c.group_layer, seqs.data(), int(seqs.size()),
                        sinks.data(), c.window, scale, got.data());
  expect_close(got, ref, kTol, "attention_sinks_paged");
  return got.values();
}

// Both pool types; a bf16 pool (K and V rounded to 8 significant bits) stays close to the f32 one.
void run_case(const AttnCase& c, uint32_t seed) {
  const std::vector<float> f32 = run_case_dtype(c, seed, KvDtype::f32);
  const std::vector<float> bf16 = run_case_dtype(c, seed, KvDtype::bf16);
  const double err = rel_error(bf16.data(), f32.data(), int64_t(f32.size()));
  EXPECT_LT(err, 1e-2) << "bf16 KV against f32 KV";
  EXPECT_GT(err, 0.0) << "the bf16 pool rounds K and V";
}

TEST(AttentionSinks, FullAttentionSeveralSequences) {
  AttnCase c;
  c.seqs = {{0, 17}, {300, 1}, {130, 5}, {0, 1}, {47, 3}};
  run_case(c, 1);
}

TEST(AttentionSinks, SlidingWindow128) {
  AttnCase c;
  c.window = 128;
  c.seqs = {{0, 17}, {300, 1}, {130, 5}, {1000, 2}, {120, 20}};
  run_case(c, 2);
}

TEST(AttentionSinks, SlidingWindow8AndOddShapes) {
  AttnCase c;
  c.window = 8;
  c.block_size = 4;
  c.seqs = {{0, 17}, {300, 1}, {13, 5}, {7, 1}};
  run_case(c, 3);
  AttnCase d;  // tiny-fixture-like: 4 heads, 2 kv heads; block size 1
  d.heads = 4;
  d.kv_heads = 2;
  d.block_size = 1;
  d.window = 8;
  d.seqs = {{0, 33}, {5, 2}};
  run_case(d, 4);
}

TEST(AttentionSinks, PrefillChunk512) {
  AttnCase c;
  c.heads = 16;
  c.kv_heads = 2;
  c.window = 0;
  c.seqs = {{0, 512}};
  run_case(c, 5);
  c.window = 128;
  run_case(c, 6);
}

}  // namespace
}  // namespace gptoss::cpu
