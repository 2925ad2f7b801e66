// Small non-cryptographic hashing shared by the engine (prefix-cache keys, counter-based sampling RNG,
// fake models): splitmix64 mixes a 64-bit value into a well-distributed one.
#pragma once

#include <cstdint>

namespace gptoss {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace gptoss
