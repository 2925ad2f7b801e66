#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include "core/error.h"

namespace gptoss {

uint64_t RankTable::hash(const uint8_t* p, size_t len) {
  // Multiply-xorshift over 8-byte words; tokens are short, so the tail load dominates.
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t h = (uint64_t(len) + 1) * kMul;
  while (len >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    len -= 8;
  }
  if (len) {
    uint64_t w = 0;
    std::memcpy(&w, p, len);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return h;
}

void RankTable::build(const std::vector<std::string>& tokens) {
  size_t cap = 16;
  while (cap < tokens.size() * 2) cap <<= 1;
  slots_.assign(cap, Entry{0, kNone, 0, 0});
  mask_ = cap - 1;
  bytes_.clear();
  size_t total = 0;
  for (const auto& t : tokens) total += t.size();
  bytes_.reserve(total);
  std::fill(std::begin(byte_rank_), std::end(byte_rank_), kNone);
  for (uint32_t id = 0; id < tokens.size(); ++id) {
    const auto* p = reinterpret_cast<const uint8_t*>(tokens[id].data());
    const size_t len = tokens[id].size();
    if (len == 0 || find(p, len) != kNone) continue;
    const uint64_t h = hash(p, len);
    size_t slot = size_t(h) & mask_;
    while (slots_[slot].id != kNone) slot = (slot + 1) & mask_;
    slots_[slot] = Entry{uint32_t(h >> 32), id, uint32_t(bytes_.size()), uint32_t(len)};
    bytes_.append(tokens[id]);
    if (len == 1) byte_rank_[p[0]] = id;
  }
}

namespace {

// Pieces up to this many bytes use tiktoken's quadratic scan (fast for short pieces); longer ones
// (runs of spaces, long words without merges) use a heap so a 1 MB piece is not O(n^2).
constexpr size_t kLinearMax = 128;

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
void merge_heap(const RankTable& ranks, const uint8_t* piece, size_t len, std::vector<int>& out) {
  // Doubly linked list over byte positions; part k spans [k, next[k]).
  std::vector<uint32_t> next(len + 1), prev(len + 1), rank(len + 1, RankTable::kNone);
  for (size_t i = 0; i <= len; ++i) {
    next[i] = uint32_t(i + 1);
    prev[i] = uint32_t(i == 0 ? 0 : i - 1);
  }
  using Item = std::pair<uint64_t, uint32_t>;  // (rank << 32 | start, start) - min-heap
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
  auto pair_rank = [&](uint32_t k) -> uint32_t {  // rank of part k joined with its successor
    if (k >= len) return RankTable::kNone;
    uint32_t k2 = next[k];
    if (k2 >= len) return RankTable::kNone;
    uint32_t end = next[k2];
    return ranks.find(piece + k, end - k);
  };
  for (uint32_t k = 0; k + 1 < len; ++k) {
    rank[k] = pair_rank(k);
    if (rank[k] != RankTable::kNone) heap.push({(uint64_t(rank[k]) << 32) | k, k});
  }
  std::vector<bool> dead(len + 1, false);
  while (!heap.empty()) {
    auto [key, k] = heap.top();
    heap.pop();
    if (dead[k] || rank[k] != uint32_t(key >> 32)) continue;  // stale entry
    // Merge part k with its successor.
    const uint32_t k2 = next[k];
    dead[k2] = true;
    next[k] = next[k2];
    if (next[k] <= len) prev[next[k]] = k;
    rank[k] = pair_rank(k);
    if (rank[k] != RankTable::kNone) heap.push({(uint64_t(rank[k]) << 32) | k, k});
    if (k > 0) {
      const uint32_t p = prev[k];
      rank[p] = pair_rank(p);
      if (rank[p] != RankTable::kNone) heap.push({(uint64_t(rank[p]) << 32) | p, p});
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
