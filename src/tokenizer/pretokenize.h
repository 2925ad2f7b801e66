// The o200k pre-tokenizer: splits text into the pieces that tiktoken's o200k pattern
//
//   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//   |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//   |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// finds with leftmost-first (backtracking) semantics, as Rust's fancy-regex does inside tiktoken.
// It is a hand-written scanner over generated Unicode 16 tables (unicode_tables.h), not a regex engine:
// each alternative's backtracking is resolved in closed form (see pretokenize.cpp). That pins the
// Unicode version to tiktoken's (the system PCRE2 has Unicode 14) and is as fast as PCRE2-JIT.
// docs/tokenizer.md explains the choice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gptoss {

// The pattern above, exactly as tokenizer.json / tiktoken spell it (used to check the file).
extern const std::string_view kO200kPattern;

// End (exclusive byte offset) of the piece that starts at byte i < n. text[0, n) must be valid UTF-8;
// the scanner never looks before i, and treats n as the end of the text (for \s+(?!\S)).
size_t o200k_piece_end(const uint8_t* text, size_t n, size_t i);

}  // namespace gptoss
