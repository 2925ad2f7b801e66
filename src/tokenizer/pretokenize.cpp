#include "tokenizer/pretokenize.h"

#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace gptoss {

const std::string_view kO200kPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

using namespace unicode;

// An extra class bit for \r and \n, which the pattern treats apart from other white space.
constexpr uint8_t kNewline = 32;
constexpr uint8_t kA = kUpperSet, kB = kLowerSet;

struct AsciiClasses {
  uint8_t c[128];
  AsciiClasses() {
    for (uint32_t i = 0; i < 128; ++i) c[i] = char_class(i) | ((i == '\r' || i == '\n') ? kNewline : 0);
  }
};
const AsciiClasses kAscii;

struct Scanner {
  const uint8_t* s;
  size_t n;

  // Class of the character at i (< n) and its length.
  inline uint8_t cls(size_t i, int* len) const {
    const uint8_t b = s[i];
    if (b < 0x80) {
      *len = 1;
      return kAscii.c[b];
    }
    return char_class(utf8::decode_valid(s + i, len));
  }

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)? at i: returns the end of the optional match. Rust's regex folds case
  // with Unicode simple case folding, so 's also matches U+017F LATIN SMALL LETTER LONG S.
  size_t contraction(size_t i) const {
    if (i + 1 >= n || s[i] != '\'') return i;
    const uint8_t c = s[i + 1] | 0x20;  // ASCII lower case for letters
    auto is = [&](size_t k, char ch) { return k < n && (s[k] | 0x20) == ch; };
    switch (c) {
      case 's':
      case 't':
      case 'm':
      case 'd':  // only the ASCII letter's two cases map here
        return i + 2;
      case 'r':
        return (s[i + 1] == 'r' || s[i + 1] == 'R') && is(i + 2, 'e') ? i + 3 : i;
      case 'v':
        return (s[i + 1] == 'v' || s[i + 1] == 'V') && is(i + 2, 'e') ? i + 3 : i;
      case 'l':
        return (s[i + 1] == 'l' || s[i + 1] == 'L') && is(i + 2, 'l') ? i + 3 : i;
      default:
        if (s[i + 1] == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return i + 3;  // 'ſ
        return i;
    }
  }

  // Alternative 1 after the optional prefix, from s0: [A]*[B]+ contraction?  Returns 0 on failure.
  // Backtracking resolved: A* takes the whole run of A; if the next character is in B, B+ takes the
  // run of B from there; otherwise A* gives back characters until one in B is freed, so the match
  // ends after the last B character inside the A run (none: the alternative fails).
  size_t alt1(size_t s0) const {
    size_t e = s0, last_b_end = 0;
    int len;
    while (e < n) {
      uint8_t c = cls(e, &len);
      if (!(c & kA)) {
        if (c & kB) {  // B+ from e
          e += size_t(len);
          while (e < n && (cls(e, &len) & kB)) e += size_t(len);
          return contraction(e);
        }
        break;
      }
      e += size_t(len);
      if (c & kB) last_b_end = e;
    }
    return last_b_end ? contraction(last_b_end) : 0;
  }

  // Alternative 2 after the optional prefix: [A]+[B]* contraction?
  size_t alt2(size_t s0) const {
    size_t e = s0;
    int len;
    while (e < n && (cls(e, &len) & kA)) e += size_t(len);
    if (e == s0) return 0;
    while (e < n && (cls(e, &len) & kB)) e += size_t(len);
    return contraction(e);
  }

  // [^\s\p{L}\p{N}]+[\r\n/]* from i (the first character is known to qualify).
  size_t punct_run(size_t i) const {
    int len;
    while (i < n && !(cls(i, &len) & (kSpace | kLetter | kNumber))) i += size_t(len);
    while (i < n && (s[i] == '\r' || s[i] == '\n' || s[i] == '/')) ++i;
    return i;
  }

  size_t piece_end(size_t i) const {
    int l0;
    const uint8_t c0 = cls(i, &l0);
    const size_t after0 = i + size_t(l0);

    // Alternatives 1 and 2, each first with the optional prefix character, then without it.
    const bool can_prefix = !(c0 & (kLetter | kNumber | kNewline));
    if (can_prefix) {
      if (size_t r = alt1(after0)) return r;
    }
    if (c0 & (kA | kB)) {
      if (size_t r = alt1(i)) return r;
    }
    if (can_prefix) {
      if (size_t r = alt2(after0)) return r;
    }
    if (c0 & kA) {
      if (size_t r = alt2(i)) return r;
    }
    if (c0 & kNumber) {  // \p{N}{1,3}
      size_t e = after0;
      int len;
      for (int k = 1; k < 3 && e < n && (cls(e, &len) & kNumber); ++k) e += size_t(len);
      return e;
    }
    if (s[i] == ' ' && after0 < n) {  // " ?[^\s\p{L}\p{N}]+[\r\n/]*" with the space
      int l1;
      if (!(cls(after0, &l1) & (kSpace | kLetter | kNumber))) return punct_run(after0);
    }
    if (!(c0 & (kSpace | kLetter | kNumber))) return punct_run(i);
    // c0 is white space (letters were matched above: every letter is in A or B).
    size_t e = i, last_nl_end = 0, last_start = i;
    int len;
    while (e < n) {
      uint8_t c = cls(e, &len);
      if (!(c & kSpace)) break;
      if (c & kNewline) last_nl_end = e + size_t(len);
      last_start = e;
      e += size_t(len);
    }
    if (last_nl_end) return last_nl_end;     // \s*[\r\n]+ : up to the last newline of the run
    if (e == n) return e;                    // \s+(?!\S) at the end of the text
    if (last_start > i) return last_start;   // \s+(?!\S) : leave the last space for the next piece
    return e;                                // \s+
  }
};

}  // namespace

size_t o200k_piece_end(const uint8_t* text, size_t n, size_t i) { return Scanner{text, n}.piece_end(i); }

}  // namespace gptoss
