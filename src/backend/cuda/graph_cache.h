// CUDA graphs of decode forwards, by shape. A decode step launches ~11 kernels a layer (~270 for the
// 20b); replaying them as one graph removes the launch work and the gaps between kernels. A shape is
// recorded the second time it is seen (the first run, eager, grows the lazily sized buffers), then
// replayed. Any free or reallocation of backend memory may leave a recording pointing at freed memory,
// so the backend clears the cache whenever that happens.
#pragma once

#include <cstdint>
#include <vector>

#include <cuda_runtime.h>

namespace gptoss::cuda {

// What a recorded forward depends on besides the contents of its metadata.
struct GraphKey {
  const void* owner = nullptr;
  const void* kv_pool = nullptr;
  uint64_t variant = 0;
  int64_t n_tokens = 0, n_rows = 0;
  int n_seqs[2] = {0, 0};
  int table_cap[2] = {0, 0};
  bool operator==(const GraphKey&) const = default;
};

class GraphCache {
 public:
  static constexpr int kMaxGraphs = 32;

  GraphCache() = default;
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  ~GraphCache() { clear(); }

  // The recording of key, or null.
  cudaGraphExec_t find(const GraphKey& key);
  // True once per key: whether this is its first sight (then run eagerly, record the next time).
  bool first_sight(const GraphKey& key);
  // Keeps a recording (the least recently used one is destroyed when the cache is full: the caller
  // makes sure it is not running).
  void put(const GraphKey& key, cudaGraphExec_t exec);
  void clear();
  int size() const { return int(entries_.size()); }

 private:
  struct Entry {
    GraphKey key;
    cudaGraphExec_t exec = nullptr;
    uint64_t last_use = 0;
  };
  std::vector<Entry> entries_;
  std::vector<GraphKey> seen_;
  uint64_t clock_ = 0;
};

}  // namespace gptoss::cuda
