// o200k_harmony byte-level BPE tokenizer (tiktoken-compatible), loaded from a hub tokenizer.json.
//
// Contract:
//  - encode(): ordinary text; text that looks like a special token ("<|start|>") is encoded as
//    plain bytes, as tiktoken's encode_ordinary does.
//  - encode_with_special(): every special token (ids 199998..201087) is recognised in the text.
//  - decode(): concatenated token bytes; may end in an incomplete UTF-8 sequence.
//  - Ids outside [0, vocab_size()) throw InputError naming the id.
//  - The object is cheap to copy (shared immutable tables) and safe to use from many threads.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

// Harmony special token ids of o200k_harmony.
namespace tok {
inline constexpr int kStartOfText = 199998;
inline constexpr int kEndOfText = 199999;
inline constexpr int kReturn = 200002;
inline constexpr int kConstrain = 200003;
inline constexpr int kChannel = 200005;
inline constexpr int kStart = 200006;
inline constexpr int kEnd = 200007;
inline constexpr int kMessage = 200008;
inline constexpr int kCall = 200012;
inline constexpr int kEndOfPrompt = 200018;
inline constexpr int kFirstSpecial = 199998;
inline constexpr int kVocabSize = 201088;
}  // namespace tok

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.json. Throws InputError naming the file and the problem.
  static Tokenizer from_model_dir(const std::string& dir);
  static Tokenizer from_file(const std::string& tokenizer_json_path);

  std::vector<int> encode(std::string_view text) const;
  std::vector<int> encode_with_special(std::string_view text) const;
  std::string decode(std::span<const int> ids) const;
  std::string_view token_bytes(int id) const;  // raw bytes of one token (special: its text)

  bool is_special(int id) const;
  std::optional<int> special_id(std::string_view text) const;  // "<|start|>" -> 200006
  int vocab_size() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Streaming detokenizer: push ids one at a time, get back only complete UTF-8 characters.
// Bytes that can never become valid UTF-8 are emitted as U+FFFD once they are known to be invalid.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int id);
  std::string flush();  // whatever is pending (incomplete tail as U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace gptoss
