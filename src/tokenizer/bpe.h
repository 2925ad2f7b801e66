// Byte-pair encoding by rank, as tiktoken does it: a piece's bytes start as single bytes; the adjacent
// pair whose concatenation has the lowest rank (= token id) is merged, leftmost first on ties, until no
// adjacent concatenation is a token. The merges list of tokenizer.json is not used: in o200k the rank of
// a merge is the id of its result.
#pragma once

#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap_file.h"

namespace gptoss {

// Immutable map from token bytes to id: open addressing over one contiguous byte buffer, looked up
// with (pointer, length) so the merge loop never builds a string.
class RankTable {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFFu;

  // tokens[id] = bytes of token id; every id < tokens.size() is inserted (duplicates: lowest id wins).
  void build(const std::vector<std::string>& tokens);

  uint32_t find(const uint8_t* p, size_t len) const {
    if (len == 2) return pair_[(size_t(p[0]) << 8) | p[1]];  // the merge loop's most common question
    const uint64_t head = load_head(p, len);
    const uint64_t h = hash(head, p, len);
    const uint16_t tag = tag_of(h);
    size_t slot = size_t(h) & mask_;
    // Most lookups in the merge loop miss; the 1 MB tag array answers those without touching the
    // 8 MB entry array.
    for (;;) {
      const uint16_t t = tags_[slot];
      if (t == 0) return kNone;
      if (t == tag) {
        const Entry& e = slots_[slot];
        if (e.head == head && e.len == len &&
            (len <= 8 || std::memcmp(bytes_.data() + e.offset + 8, p + 8, len - 8) == 0))
          return e.id;
      }
      slot = (slot + 1) & mask_;
    }
  }
  uint32_t byte_rank(uint8_t b) const { return byte_rank_[b]; }

 private:
  // The first min(len, 8) bytes, zero-padded: keys up to 8 bytes (most tokens) compare in one step
  // without touching the byte buffer.
  static uint64_t load_head(const uint8_t* p, size_t len) {
    uint64_t w = 0;
    if (len >= 8) {
      std::memcpy(&w, p, 8);
    } else {
      if (len & 4) {
        uint32_t v;
        std::memcpy(&v, p, 4);
        w = v;
      }
      size_t k = len & 4;
      if (len & 2) {
        uint16_t v;
        std::memcpy(&v, p + k, 2);
        w |= uint64_t(v) << (8 * k);
        k += 2;
      }
      if (len & 1) w |= uint64_t(p[k]) << (8 * k);
    }
    return w;
  }
  static uint64_t hash(uint64_t head, const uint8_t* p, size_t len) {
    constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
    uint64_t h = (head ^ (uint64_t(len) << 56)) * kMul;
    for (size_t i = 8; i < len; i += 8) {
      uint64_t w = 0;
      std::memcpy(&w, p + i, std::min<size_t>(8, len - i));
      h = ((h ^ (h >> 29)) ^ w) * kMul;
    }
    return h ^ (h >> 32);
  }

  static uint16_t tag_of(uint64_t h) { return uint16_t(h >> 48) | 1; }  // never 0 (= empty)

  struct Entry {
    uint64_t head;    // first min(len, 8) bytes, zero-padded
    uint32_t id;      // kNone: empty slot (head 0, len 0 never matches a real key)
    uint32_t offset;  // of the token's bytes in bytes_
    uint32_t len;
    uint32_t pad;
  };
  // Backed by transparent huge pages where the kernel allows it: the merge loop's lookups are random
  // accesses into ~9 MB, and with 4 KB pages most of them would also miss the TLB.
  template <typename T>
  struct HugeArray {
    HugeBuffer buf;
    void assign(size_t n, const T& value);  // n copies of value
    T& operator[](size_t i) { return static_cast<T*>(buf.data())[i]; }
    const T& operator[](size_t i) const { return static_cast<const T*>(buf.data())[i]; }
  };
  HugeArray<Entry> slots_;
  HugeArray<uint16_t> tags_;
  size_t mask_ = 0;
  std::string bytes_;
  uint32_t byte_rank_[256] = {};
  std::vector<uint32_t> pair_ = std::vector<uint32_t>(65536, kNone);  // 2-byte tokens by (b0 << 8 | b1)
};

// Appends the ids of one piece (non-empty) to out. Throws if a single byte has no token (the table
// must contain all 256 bytes, as byte-level vocabularies do).
void bpe_encode_piece(const RankTable& ranks, const uint8_t* piece, size_t len, std::vector<int>& out);

}  // namespace gptoss
