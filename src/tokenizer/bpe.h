// Byte-pair encoding by rank, as tiktoken does it: a piece's bytes start as single bytes; the adjacent
// pair whose concatenation has the lowest rank (= token id) is merged, leftmost first on ties, until no
// adjacent concatenation is a token. The merges list of tokenizer.json is not used: in o200k the rank of
// a merge is the id of its result.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

// Immutable map from token bytes to id: open addressing over one contiguous byte buffer, looked up
// with (pointer, length) so the merge loop never builds a string.
class RankTable {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;

  // tokens[id] = bytes of token id; every id < tokens.size() is inserted (duplicates: lowest id wins).
  void build(const std::vector<std::string>& tokens);

  uint32_t find(const uint8_t* p, size_t len) const {
    const uint64_t h = hash(p, len);
    size_t slot = size_t(h) & mask_;
    const uint32_t tag = uint32_t(h >> 32);
    for (;;) {
      const Entry& e = slots_[slot];
      if (e.id == kNone) return kNone;
      if (e.tag == tag && e.len == len && std::memcmp(bytes_.data() + e.offset, p, len) == 0) return e.id;
      slot = (slot + 1) & mask_;
    }
  }
  uint32_t byte_rank(uint8_t b) const { return byte_rank_[b]; }

  static uint64_t hash(const uint8_t* p, size_t len);

 private:
  struct Entry {
    uint32_t tag;
    uint32_t id;
    uint32_t offset;
    uint32_t len;
  };
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  std::string bytes_;
  uint32_t byte_rank_[256] = {};
};

// Appends the ids of one piece (non-empty) to out. Throws if a single byte has no token (the table
// must contain all 256 bytes, as byte-level vocabularies do).
void bpe_encode_piece(const RankTable& ranks, const uint8_t* piece, size_t len, std::vector<int>& out);

}  // namespace gptoss
