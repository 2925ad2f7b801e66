#include "engine/fake_runners.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/hash.h"

namespace gptoss {
namespace {

void atomic_max(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load();
  while (v > cur && !a.compare_exchange_weak(cur, v)) {
  }
}

}  // namespace

void PagedFakeRunner::allocate_kv(int num_blocks, int block_size) {
  num_blocks_ = num_blocks;
  block_size_ = block_size;
  size_t n = size_t(num_blocks) * size_t(block_size);
  if (shape_.has_full) full_ = {std::vector<int32_t>(n, -1), std::vector<int32_t>(n, -1)};
  if (shape_.sliding_window > 0) swa_ = {std::vector<int32_t>(n, -1), std::vector<int32_t>(n, -1)};
}

void PagedFakeRunner::write(Group& g, std::span<const int32_t> table, int pos, int32_t token) {
  int lb = pos / block_size_;
  GPTOSS_CHECK(lb < int(table.size()) && table[lb] >= 0 && table[lb] < num_blocks_,
               "fake model: position {} has no block mapped (table size {})", pos, table.size());
  size_t slot = size_t(table[lb]) * block_size_ + pos % block_size_;
  g.token[slot] = token;
  g.pos[slot] = pos;
}

int32_t PagedFakeRunner::read(const Group& g, std::span<const int32_t> table, int pos) const {
  int lb = pos / block_size_;
  GPTOSS_CHECK(lb < int(table.size()) && table[lb] >= 0 && table[lb] < num_blocks_,
               "fake model: reads position {} but its block is not mapped", pos);
  size_t slot = size_t(table[lb]) * block_size_ + pos % block_size_;
  GPTOSS_CHECK(g.pos[slot] == pos, "fake model: block {} slot for position {} holds position {}", table[lb], pos,
               g.pos[slot]);
  return g.token[slot];
}

void PagedFakeRunner::forward(const ForwardBatch& batch, float* logits) {
  GPTOSS_CHECK(block_size_ > 0, "forward before allocate_kv");
  ++forward_calls_;
  tokens_computed_ += batch.total_tokens();
  atomic_max(max_batch_tokens_, batch.total_tokens());
  atomic_max(max_batch_seqs_, int64_t(batch.seqs.size()));
  const int v = shape_.vocab_size, w = shape_.sliding_window;
  // Write every chunk first: a token reads the KV of earlier tokens of its own chunk.
  for (const SeqChunk& s : batch.seqs) {
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      int pos = s.start_pos + int(i);
      if (shape_.has_full) write(full_, s.blocks_full, pos, s.tokens[i]);
      if (w > 0) write(swa_, s.blocks_swa, pos, s.tokens[i]);
    }
  }
  float* out = logits;
  std::vector<int32_t> history, window;
  for (const SeqChunk& s : batch.seqs) {
    GPTOSS_CHECK(!s.tokens.empty(), "fake model: empty chunk");
    size_t first = s.all_logits ? 0 : s.tokens.size() - 1;
    for (size_t i = first; i < s.tokens.size(); ++i) {
      int pos = s.start_pos + int(i);
      history.clear();
      window.clear();
      if (shape_.has_full)
        for (int p = 0; p <= pos; ++p) history.push_back(read(full_, s.blocks_full, p));
      if (w > 0)
        for (int p = std::max(0, pos - w + 1); p <= pos; ++p) window.push_back(read(swa_, s.blocks_swa, p));
      if (!shape_.has_full) history = window;
      logits_for(history, window, pos, out);
      out += v;
    }
  }
}

void PagedHashRunner::logits_for(std::span<const int32_t> history, std::span<const int32_t> window, int pos,
                                 float* out) {
  uint64_t h = splitmix64(seed_ ^ uint64_t(pos));
  for (int32_t t : history) h = splitmix64(h ^ uint64_t(uint32_t(t)));
  // The window is a copy of the history's tail read through the other block table: they must agree.
  if (!window.empty() && !history.empty())
    GPTOSS_CHECK(std::equal(window.rbegin(), window.rend(), history.rbegin()),
                 "fake model: sliding window disagrees with the history at position {}", pos);
  for (int i = 0; i < shape_.vocab_size; ++i) {
    uint64_t r = splitmix64(h + uint64_t(i) * 0x9e3779b97f4a7c15ull);
    out[i] = float(double(r >> 40) / double(1 << 24) * 8.0 - 4.0);  // [-4, 4)
  }
}

ScriptedRunner::ScriptedRunner(std::vector<int32_t> default_script, int end_token, FakeModelShape shape)
    : PagedFakeRunner(shape), default_script_(std::move(default_script)), end_token_(end_token) {}

void ScriptedRunner::add_script(std::vector<int32_t> prompt, std::vector<int32_t> script) {
  std::lock_guard<std::mutex> lock(mu_);
  scripts_.push_back({std::move(prompt), std::move(script)});
}

void ScriptedRunner::logits_for(std::span<const int32_t> history, std::span<const int32_t> window, int pos,
                                float* out) {
  int32_t next = end_token_;
  const Script* best = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Script& s : scripts_) {
      if (s.prompt.size() <= history.size() && std::equal(s.prompt.begin(), s.prompt.end(), history.begin()) &&
          (!best || s.prompt.size() > best->prompt.size()))
        best = &s;
    }
    if (best) {
      size_t idx = history.size() - best->prompt.size();
      if (idx < best->tokens.size()) {
        // Only follow the script while what was generated so far is the script's beginning.
        if (std::equal(best->tokens.begin(), best->tokens.begin() + idx, history.begin() + best->prompt.size()))
          next = best->tokens[idx];
      }
    } else {
      // Continue the default script after the longest tail of the history that is its beginning.
      const auto& sc = default_script_;
      size_t m = std::min(sc.size(), history.size());
      for (; m > 0; --m)
        if (std::equal(sc.begin(), sc.begin() + m, history.end() - m)) break;
      if (m < sc.size()) next = sc[m];
    }
  }
  std::fill(out, out + shape_.vocab_size, 0.0f);
  GPTOSS_CHECK(next >= 0 && next < shape_.vocab_size, "scripted token {} outside vocab {}", next, shape_.vocab_size);
  out[next] = 100.0f;
}

}  // namespace gptoss
