#include "backend/cuda/graph_cache.h"

#include <algorithm>

namespace gptoss::cuda {

cudaGraphExec_t GraphCache::find(const GraphKey& key) {
  for (Entry& e : entries_)
    if (e.key == key) {
      e.last_use = ++clock_;
      return e.exec;
    }
  return nullptr;
}

bool GraphCache::first_sight(const GraphKey& key) {
  if (std::find(seen_.begin(), seen_.end(), key) != seen_.end()) return false;
  if (seen_.size() >= size_t(4 * kMaxGraphs)) seen_.erase(seen_.begin());
  seen_.push_back(key);
  return true;
}

void GraphCache::put(const GraphKey& key, cudaGraphExec_t exec) {
  if (entries_.size() >= size_t(kMaxGraphs)) {
    auto lru = std::min_element(entries_.begin(), entries_.end(),
                                [](const Entry& a, const Entry& b) { return a.last_use < b.last_use; });
    cudaGraphExecDestroy(lru->exec);
    entries_.erase(lru);
  }
  entries_.push_back({key, exec, ++clock_});
}

void GraphCache::clear() {
  for (Entry& e : entries_) cudaGraphExecDestroy(e.exec);
  entries_.clear();
  seen_.clear();
}

}  // namespace gptoss::cuda
