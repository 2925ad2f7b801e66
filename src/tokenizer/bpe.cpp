#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <queue>

#include "core/error.h"

namespace gptoss {

template <typename T>
void RankTable::HugeArray<T>::assign(size_t n, const T& value) {
  buf = HugeBuffer(n * sizeof(T), "the token table");
  std::fill_n(static_cast<T*>(buf.data()), n, value);
}

void RankTable::build(const std::vector<std::string>& tokens) {
  size_t cap = 16;
  while (cap < tokens.size() * 2) cap <<= 1;
  slots_.assign(cap, Entry{0, kNone, 0, 0, 0});
  tags_.assign(cap, 0);
  mask_ = cap - 1;
  bytes_.clear();
  size_t total = 0;
  for (const auto& t : tokens) total += t.size();
  bytes_.reserve(total);
  std::fill(std::begin(byte_rank_), std::end(byte_rank_), kNone);
  std::fill(pair_.begin(), pair_.end(), kNone);
  for (uint32_t id = 0; id < tokens.size(); ++id) {
    const auto* p = reinterpret_cast<const uint8_t*>(tokens[id].data());
    const size_t len = tokens[id].size();
    if (len == 0 || find(p, len) != kNone) continue;  // duplicates: the lowest id wins
    if (len == 1) byte_rank_[p[0]] = id;
    if (len == 2) pair_[(size_t(p[0]) << 8) | p[1]] = id;
    const uint64_t head = load_head(p, len);
    const uint64_t h = hash(head, p, len);
    size_t slot = size_t(h) & mask_;
    while (tags_[slot] != 0) slot = (slot + 1) & mask_;
    slots_[slot] = Entry{head, id, uint32_t(bytes_.size()), uint32_t(len), 0};
    tags_[slot] = tag_of(h);
    bytes_.append(tokens[id]);
  }
}

namespace {

// Pieces up to this many bytes use tiktoken's quadratic scan (fast for short pieces); longer ones
// (runs of spaces, long words without merges) use a heap so a 1 MB piece is not O(n^2).
#ifndef GPTOSS_BPE_LINEAR_MAX
#define GPTOSS_BPE_LINEAR_MAX 48
#endif
constexpr size_t kLinearMax = GPTOSS_BPE_LINEAR_MAX;

struct Part {
  uint32_t start;
  uint32_t rank;  // rank of parts[i].start .. parts[i+2].start, kNone if not a token
};

void merge_linear(const RankTable& ranks, const uint8_t* piece, size_t len, std::vector<int>& out) {
  Part parts[kLinearMax + 1];
  size_t np = 0;
  uint32_t min_rank = RankTable::kNone;
  size_t min_i = 0;
  for (size_t i = 0; i + 1 < len; ++i) {
    uint32_t r = ranks.find(piece + i, 2);
    if (r < min_rank) {
      min_rank = r;
      min_i = i;
    }
    parts[np++] = Part{uint32_t(i), r};
  }
  parts[np++] = Part{uint32_t(len - 1), RankTable::kNone};
  parts[np++] = Part{uint32_t(len), RankTable::kNone};
  auto rank_at = [&](size_t i) -> uint32_t {
    if (i + 3 < np) return ranks.find(piece + parts[i].start, parts[i + 3].start - parts[i].start);
    return RankTable::kNone;
  };
  while (min_rank != RankTable::kNone) {
    const size_t i = min_i;
    if (i > 0) parts[i - 1].rank = rank_at(i - 1);
    parts[i].rank = rank_at(i);
    std::memmove(parts + i + 1, parts + i + 2, (np - i - 2) * sizeof(Part));
    --np;
    min_rank = RankTable::kNone;
    for (size_t k = 0; k + 1 < np; ++k) {
      if (parts[k].rank < min_rank) {
        min_rank = parts[k].rank;
        min_i = k;
      }
    }
  }
  for (size_t k = 0; k + 1 < np; ++k) {
    uint32_t id = ranks.find(piece + parts[k].start, parts[k + 1].start - parts[k].start);
    GPTOSS_CHECK(id != RankTable::kNone, "BPE produced a part that is not a token");
    out.push_back(int(id));
  }
}

// Same result as merge_linear: the heap pops the lowest (rank, start), i.e. the leftmost lowest rank.
// Scratch space is per thread, so steady-state encoding allocates nothing.
void merge_heap(const RankTable& ranks, const uint8_t* piece, size_t len, std::vector<int>& out) {
  struct Scratch {
    std::vector<uint32_t> next, prev, rank;
    std::vector<uint64_t> heap;  // rank << 32 | start, min-heap
  };
  thread_local Scratch sc;
  auto& next = sc.next;
  auto& prev = sc.prev;
  auto& rank = sc.rank;
  auto& heap = sc.heap;
  next.resize(len + 1);
  prev.resize(len + 1);
  rank.assign(len + 1, RankTable::kNone);
  heap.clear();
  // Doubly linked list over byte positions; part k spans [k, next[k]); a merged-away part has
  // rank kDead so its heap entries are recognised as stale.
  constexpr uint32_t kDead = RankTable::kNone - 1;
  for (size_t i = 0; i <= len; ++i) {
    next[i] = uint32_t(i + 1);
    prev[i] = uint32_t(i == 0 ? 0 : i - 1);
  }
  auto pair_rank = [&](uint32_t k) -> uint32_t {  // rank of part k joined with its successor
    const uint32_t k2 = next[k];
    if (k2 >= len) return RankTable::kNone;
    return ranks.find(piece + k, next[k2] - k);
  };
  auto push = [&](uint32_t k) {
    if (rank[k] < kDead) {
      heap.push_back((uint64_t(rank[k]) << 32) | k);
      std::push_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    }
  };
  for (uint32_t k = 0; k + 1 < len; ++k) {
    rank[k] = ranks.find(piece + k, 2);
    if (rank[k] != RankTable::kNone) heap.push_back((uint64_t(rank[k]) << 32) | k);
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
  while (!heap.empty()) {
    const uint64_t top = heap.front();
    std::pop_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    heap.pop_back();
    const uint32_t k = uint32_t(top);
    if (rank[k] != uint32_t(top >> 32)) continue;  // stale: the pair changed or k was merged away
    const uint32_t k2 = next[k];
    rank[k2] = kDead;
    next[k] = next[k2];
    if (next[k] <= len) prev[next[k]] = k;
    rank[k] = pair_rank(k);
    push(k);
    if (k > 0) {
      const uint32_t p = prev[k];
      rank[p] = pair_rank(p);
      push(p);
    }
  }
  for (uint32_t k = 0; k < len; k = next[k]) {
    uint32_t id = ranks.find(piece + k, next[k] - k);
    GPTOSS_CHECK(id != RankTable::kNone, "BPE produced a part that is not a token");
    out.push_back(int(id));
  }
}

}  // namespace

void bpe_encode_piece(const RankTable& ranks, const uint8_t* piece, size_t len, std::vector<int>& out) {
  if (len == 1) {
    uint32_t id = ranks.byte_rank(piece[0]);
    GPTOSS_CHECK(id != RankTable::kNone, "byte 0x{:02x} has no token", piece[0]);
    out.push_back(int(id));
    return;
  }
  if (uint32_t id = ranks.find(piece, len); id != RankTable::kNone) {
    out.push_back(int(id));
    return;
  }
  if (len <= kLinearMax)
    merge_linear(ranks, piece, len, out);
  else
    merge_heap(ranks, piece, len, out);
}

}  // namespace gptoss
