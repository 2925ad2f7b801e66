// UTF-8 helpers for the tokenizer: strict validation (Unicode Table 3-7: no overlongs, no surrogates,
// nothing past U+10FFFF) and decoding with U+FFFD for ill-formed input, one replacement character per
// "maximal subpart" (the Unicode / WHATWG recommendation, also what Python's errors="replace" does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gptoss::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
inline constexpr size_t kValid = static_cast<size_t>(-1);

// Looks at the sequence that starts at p[0] (avail >= 1 bytes available):
//   > 0: a complete, well-formed sequence of that many bytes; *cp holds the code point.
//   = 0: a well-formed but incomplete prefix that runs to the end of the input (more bytes may come).
//   < 0: ill-formed; -result bytes (the maximal subpart, >= 1) should become one U+FFFD.
int sequence(const uint8_t* p, size_t avail, uint32_t* cp);

// Byte offset of the first byte that is not part of well-formed UTF-8 (a truncated sequence at the
// end counts), or kValid.
size_t first_invalid(std::string_view text);

// Decodes one code point of text already known to be valid; *len receives its length in bytes.
inline uint32_t decode_valid(const uint8_t* p, int* len) {
  uint8_t b = p[0];
  if (b < 0x80) {
    *len = 1;
    return b;
  }
  if (b < 0xE0) {
    *len = 2;
    return (uint32_t(b & 0x1F) << 6) | (p[1] & 0x3F);
  }
  if (b < 0xF0) {
    *len = 3;
    return (uint32_t(b & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  }
  *len = 4;
  return (uint32_t(b & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) | (uint32_t(p[2] & 0x3F) << 6) |
         (p[3] & 0x3F);
}

// Appends the code point as UTF-8.
void append(std::string& out, uint32_t cp);

// text with every ill-formed part replaced by U+FFFD (a truncated tail becomes one U+FFFD).
std::string replace_invalid(std::string_view text);

}  // namespace gptoss::utf8
