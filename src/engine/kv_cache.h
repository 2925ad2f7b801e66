// Paged KV block bookkeeping: which physical block holds which positions of which sequence.
//
// The model's KvPool has `num_blocks` physical blocks shared by both layer groups (full-attention
// and sliding-window, see model/batch.h). A sequence owns two block tables, one per group. Blocks
// are reference counted: a block shared through the prefix cache has one reference per sequence.
//
// Prefix caching: when a block of a sequence is completely computed, it is registered under
// key = hash(parent key, its block_size tokens) (and the group). A later sequence whose prompt
// starts with the same tokens maps those blocks instead of recomputing them. Unreferenced
// registered blocks are not freed but kept in an LRU list; allocation takes never-registered free
// blocks first and then evicts the least recently released cached block.
//
// Sliding-window group: a token at position p reads positions [p - W + 1, p]. Once the next position
// to compute is c, blocks lying wholly before c - W are dropped from the table (set to -1). A cached
// prefix of k blocks is only usable when the full group has blocks 0..k-1 AND the sliding group still
// has every block that intersects [k*bs - W, k*bs); otherwise the lookup tries a shorter prefix.
// At least one prompt token is always recomputed (the sampler needs its logits).
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace gptoss {

struct SeqBlocks {
  std::vector<int32_t> full;     // logical block -> physical block (full-attention group)
  std::vector<int32_t> swa;      // logical block -> physical block or -1 (sliding group)
  std::vector<uint64_t> hashes;  // prefix hash of each complete logical block
  uint64_t root = 0;             // parent of the first block: 0, or a LoRA adapter's (its KV differs)
  int num_registered = 0;        // logical blocks already registered in (or taken from) the cache
};

class KvCacheManager {
 public:
  // sliding_window 0: no sliding group; has_full false: no full group.
  KvCacheManager(int num_blocks, int block_size, int sliding_window, bool has_full, bool prefix_caching);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int num_used() const { return num_blocks_ - int(free_.size()) - int(lru_.size()); }
  int num_free() const { return int(free_.size()) + int(lru_.size()); }  // includes cached
  int num_cached() const { return int(lru_.size()); }                    // evictable cached blocks

  // Most blocks a sequence of `len` tokens ever holds at once when prefilled in chunks of at most
  // `chunk` tokens (the admission check against the whole pool).
  int64_t max_blocks_for(int64_t len, int64_t chunk) const;

  // Maps the longest usable cached prefix of `tokens` into `seq` (which must hold no blocks) and
  // returns the number of tokens it covers (a multiple of block_size, < tokens.size()).
  int match_prefix(SeqBlocks& seq, std::span<const int32_t> tokens);

  // Blocks allocate() would take for positions [start, end).
  int blocks_needed(const SeqBlocks& seq, int start, int end) const;
  // Maps every block that positions [start, end) fall in (both groups). All or nothing: returns
  // false and changes nothing when not enough blocks are free.
  bool allocate(SeqBlocks& seq, int start, int end);

  // After positions [0, num_computed) of `tokens` are computed: registers newly completed blocks in
  // the prefix cache, then drops sliding blocks the next position no longer reads.
  void on_computed(SeqBlocks& seq, std::span<const int32_t> tokens, int num_computed);

  // Returns every block of the sequence (cached ones stay in the cache as evictable).
  void free(SeqBlocks& seq);

 private:
  struct CacheEntry {
    int32_t block = -1;
    uint64_t parent = 0;
    std::vector<int32_t> tokens;  // guards against hash collisions
  };
  int take_block();              // a free block (evicting the LRU cached one if needed); refcount 1
  void release(int32_t block);
  void retain(int32_t block);    // +1 reference (revives an evictable cached block)
  int32_t lookup(uint64_t key, uint64_t parent, std::span<const int32_t> toks) const;
  void register_block(int32_t block, uint64_t key, uint64_t parent, std::span<const int32_t> toks);
  void compute_hashes(SeqBlocks& seq, std::span<const int32_t> tokens, int num_blocks) const;
  int first_window_block(int next_pos) const;  // first sliding logical block position next_pos reads

  int num_blocks_, block_size_, window_;
  bool has_full_, has_swa_, prefix_caching_;
  std::vector<int32_t> refcount_;
  std::vector<uint64_t> block_key_;  // 0: not registered
  std::vector<int32_t> free_;        // never-registered free blocks (stack)
  std::list<int32_t> lru_;           // registered, unreferenced; front = least recently released
  std::vector<std::list<int32_t>::iterator> lru_pos_;
  std::vector<char> in_lru_;
  std::unordered_map<uint64_t, CacheEntry> cache_;
};

// Key of the first block has parent SeqBlocks::root (0 without an adapter). Group keys are derived from this (full: key, sliding: mixed).
uint64_t block_hash(uint64_t parent, std::span<const int32_t> tokens);

}  // namespace gptoss
