#include "engine/kv_cache.h"

#include <algorithm>

#include "core/error.h"
#include "core/hash.h"

namespace gptoss {
namespace {

// The two groups cache separately (a sliding block may be dropped while its full twin stays).
uint64_t full_key(uint64_t h) { return h; }
uint64_t swa_key(uint64_t h) {
  uint64_t k = splitmix64(h ^ 0x5157a5157a5157a5ull);
  return k ? k : 1;
}

}  // namespace

uint64_t block_hash(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = splitmix64(parent ^ 0x6a09e667f3bcc909ull);
  for (int32_t t : tokens) h = splitmix64(h ^ uint64_t(uint32_t(t)));
  return h ? h : 1;  // 0 means "not registered"
}

KvCacheManager::KvCacheManager(int num_blocks, int block_size, int sliding_window, bool has_full,
                               bool prefix_caching)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      window_(sliding_window),
      has_full_(has_full),
      has_swa_(sliding_window > 0),
      prefix_caching_(prefix_caching),
      refcount_(num_blocks, 0),
      block_key_(num_blocks, 0),
      lru_pos_(num_blocks),
      in_lru_(num_blocks, 0) {
  GPTOSS_CHECK(num_blocks >= 1 && block_size >= 1, "num_blocks {} block_size {}", num_blocks, block_size);
  GPTOSS_CHECK(has_full_ || has_swa_, "a model needs at least one attention group");
  free_.reserve(num_blocks);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);  // hand out low ids first
}

int64_t KvCacheManager::max_blocks_for(int64_t len, int64_t chunk) const {
  int64_t bs = block_size_;
  int64_t all = (len + bs - 1) / bs;
  int64_t n = has_full_ ? all : 0;
  if (has_swa_) n += std::min(all, (window_ + chunk + bs - 1) / bs + 1);
  return n;
}

int KvCacheManager::first_window_block(int next_pos) const {
  int lo = next_pos - window_;  // one position more than strictly needed: off-by-one safe
  return lo <= 0 ? 0 : lo / block_size_;
}

int KvCacheManager::take_block() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    GPTOSS_CHECK(!lru_.empty(), "no KV block to take");
    b = lru_.front();
    lru_.pop_front();
    in_lru_[b] = 0;
    auto it = cache_.find(block_key_[b]);
    if (it != cache_.end() && it->second.block == b) cache_.erase(it);
    block_key_[b] = 0;
  }
  GPTOSS_CHECK(refcount_[b] == 0, "block {} taken with refcount {}", b, refcount_[b]);
  refcount_[b] = 1;
  return b;
}

void KvCacheManager::retain(int32_t b) {
  if (refcount_[b] == 0 && in_lru_[b]) {
    lru_.erase(lru_pos_[b]);
    in_lru_[b] = 0;
  }
  ++refcount_[b];
}

void KvCacheManager::release(int32_t b) {
  GPTOSS_CHECK(refcount_[b] > 0, "block {} released with refcount 0", b);
  if (--refcount_[b] > 0) return;
  if (block_key_[b] != 0) {
    lru_pos_[b] = lru_.insert(lru_.end(), b);
    in_lru_[b] = 1;
  } else {
    free_.push_back(b);
  }
}

int32_t KvCacheManager::lookup(uint64_t key, uint64_t parent, std::span<const int32_t> toks) const {
  auto it = cache_.find(key);
  if (it == cache_.end()) return -1;
  const CacheEntry& e = it->second;
  if (e.parent != parent || !std::equal(e.tokens.begin(), e.tokens.end(), toks.begin(), toks.end())) return -1;
  return e.block;
}

void KvCacheManager::register_block(int32_t b, uint64_t key, uint64_t parent, std::span<const int32_t> toks) {
  if (block_key_[b] != 0 || cache_.count(key)) return;  // already cached (maybe another copy)
  cache_.emplace(key, CacheEntry{b, parent, std::vector<int32_t>(toks.begin(), toks.end())});
  block_key_[b] = key;
}

void KvCacheManager::compute_hashes(SeqBlocks& seq, std::span<const int32_t> tokens, int nb) const {
  for (int j = int(seq.hashes.size()); j < nb; ++j) {
    uint64_t parent = j ? seq.hashes[j - 1] : seq.root;
    seq.hashes.push_back(block_hash(parent, tokens.subspan(size_t(j) * block_size_, block_size_)));
  }
}

int KvCacheManager::match_prefix(SeqBlocks& seq, std::span<const int32_t> tokens) {
  GPTOSS_CHECK(seq.full.empty() && seq.swa.empty(), "match_prefix on a sequence that holds blocks");
  if (!prefix_caching_ || tokens.empty()) return 0;
  const int bs = block_size_;
  const int kmax = int((tokens.size() - 1) / bs);
  compute_hashes(seq, tokens, kmax);
  auto toks = [&](int j) { return tokens.subspan(size_t(j) * bs, bs); };
  auto parent = [&](int j) { return j ? seq.hashes[j - 1] : seq.root; };
  int kf = 0;
  if (has_full_) {
    while (kf < kmax && lookup(full_key(seq.hashes[kf]), parent(kf), toks(kf)) >= 0) ++kf;
  } else {
    kf = kmax;
  }
  int k = kf;
  if (has_swa_) {
    for (; k > 0; --k) {
      bool ok = true;
      for (int j = first_window_block(k * bs); j < k && ok; ++j)
        ok = lookup(swa_key(seq.hashes[j]), parent(j), toks(j)) >= 0;
      if (ok) break;
    }
  }
  if (k == 0) return 0;
  if (has_full_) {
    for (int j = 0; j < k; ++j) {
      int32_t b = lookup(full_key(seq.hashes[j]), parent(j), toks(j));
      retain(b);
      seq.full.push_back(b);
    }
  }
  if (has_swa_) {
    seq.swa.assign(k, -1);
    for (int j = first_window_block(k * bs); j < k; ++j) {
      int32_t b = lookup(swa_key(seq.hashes[j]), parent(j), toks(j));
      retain(b);
      seq.swa[j] = b;
    }
  }
  seq.num_registered = k;
  return k * bs;
}

int KvCacheManager::blocks_needed(const SeqBlocks& seq, int start, int end) const {
  if (end <= start) return 0;
  const int last = (end - 1) / block_size_;
  int need = 0;
  if (has_full_) need += std::max(0, last + 1 - int(seq.full.size()));
  if (has_swa_) {
    for (int j = std::max(first_window_block(start), int(seq.swa.size())); j <= last; ++j) ++need;
    for (int j = first_window_block(start); j < std::min(int(seq.swa.size()), last + 1); ++j)
      if (seq.swa[j] < 0) ++need;
  }
  return need;
}

bool KvCacheManager::allocate(SeqBlocks& seq, int start, int end) {
  if (end <= start) return true;
  if (blocks_needed(seq, start, end) > num_free()) return false;
  const int last = (end - 1) / block_size_;
  if (has_full_) {
    GPTOSS_CHECK(int64_t(seq.full.size()) * block_size_ >= start, "full table has a gap before {}", start);
    while (int(seq.full.size()) <= last) seq.full.push_back(take_block());
  }
  if (has_swa_) {
    if (int(seq.swa.size()) <= last) seq.swa.resize(last + 1, -1);
    for (int j = first_window_block(start); j <= last; ++j) {
      if (seq.swa[j] >= 0) continue;
      // A block holding already computed positions must still be there: its KV cannot be rebuilt.
      GPTOSS_CHECK(int64_t(j) * block_size_ >= start, "sliding block {} dropped but still read from {}", j, start);
      seq.swa[j] = take_block();
    }
  }
  return true;
}

void KvCacheManager::on_computed(SeqBlocks& seq, std::span<const int32_t> tokens, int num_computed) {
  const int bs = block_size_;
  if (prefix_caching_) {
    const int nb = num_computed / bs;
    compute_hashes(seq, tokens, nb);
    for (int j = seq.num_registered; j < nb; ++j) {
      uint64_t parent = j ? seq.hashes[j - 1] : seq.root;
      auto toks = tokens.subspan(size_t(j) * bs, bs);
      if (has_full_) register_block(seq.full[j], full_key(seq.hashes[j]), parent, toks);
      if (has_swa_ && j < int(seq.swa.size()) && seq.swa[j] >= 0)
        register_block(seq.swa[j], swa_key(seq.hashes[j]), parent, toks);
    }
    seq.num_registered = std::max(seq.num_registered, nb);
  }
  if (has_swa_) {
    const int first = std::min(first_window_block(num_computed), int(seq.swa.size()));
    for (int j = 0; j < first; ++j) {
      if (seq.swa[j] >= 0) {
        release(seq.swa[j]);
        seq.swa[j] = -1;
      }
    }
  }
}

void KvCacheManager::free(SeqBlocks& seq) {
  // Release the tail first so that, among equally old cached blocks, a prefix's head is evicted last.
  for (auto it = seq.full.rbegin(); it != seq.full.rend(); ++it) release(*it);
  for (auto it = seq.swa.rbegin(); it != seq.swa.rend(); ++it)
    if (*it >= 0) release(*it);
  seq.full.clear();
  seq.swa.clear();
  seq.hashes.clear();
  seq.num_registered = 0;
}

}  // namespace gptoss
