// Harmony parser: completion token ids -> messages (author, channel, recipient, content type, text).
//
// StreamParser is fed one token at a time (the engine's sampled ids) and reports events:
//   MessageStart  the header is complete (<|message|> seen): author/channel/recipient/content_type
//   ContentDelta  new complete UTF-8 text of the current message (never splits a character)
//   MessageEnd    the message is complete; `terminator` says what closed it (<|end|>, <|call|>,
//                 <|return|>, or end of input); `message` holds it whole
//   Error         malformed input; `error` says what (the parser stays usable, see below)
// It follows openai/harmony v0.0.8's StreamableParser:
//  - Options.role set (e.g. assistant, the usual case after a prompt ending in <|start|>assistant):
//    parsing starts inside a header whose role is known. Otherwise the input must start with <|start|>.
//  - Header text (decoded, special tokens as their text) is parsed as: <|channel|>NAME anywhere (the
//    name ends at whitespace or '<'), the role word (unless preset), "to=X" = recipient, and a last
//    word that is not "to=..." = content type ("json", "code", "<|constrain|>json"). An unknown role
//    word followed by more words is a tool author (author name = that word, role tool).
//  - Content: every token up to <|end|>, <|call|> or <|return|>, decoded as UTF-8 lossily (invalid or
//    incomplete sequences become U+FFFD exactly as String::from_utf8_lossy would on the whole byte
//    string; an id outside the vocabulary counts as one invalid byte). Other special tokens inside
//    content are kept as their text.
//  - strict (default): extra words in a header are an error ("unexpected tokens remaining in message
//    header"). Non-strict: a stop token before <|message|> turns the header into a best-effort message
//    (the <|channel|> name is taken, the rest becomes the content), and end of input inside a header
//    does the same.
//  - Errors never throw from push()/finish(): an Error event is returned, error() keeps the first
//    message, and the parser resynchronises by skipping tokens until the next <|start|>.
//    Recoverable by design: it never crashes, never loops, and uses memory linear in the input.
// parse_completion() runs the whole input plus end of input and throws ParseError on error.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "harmony/harmony.h"

namespace gptoss {
class Tokenizer;
}

namespace gptoss::harmony {

class ParseError : public Error {
 public:
  using Error::Error;
};

enum class Terminator { kNone, kEnd, kCall, kReturn, kEndOfInput };
std::string_view terminator_name(Terminator t);  // "<|end|>", "<|call|>", "<|return|>", "eos", ""

struct ParseEvent {
  enum class Kind { kMessageStart, kContentDelta, kMessageEnd, kError };
  Kind kind = Kind::kContentDelta;
  Message message;      // MessageStart: header fields (content empty); MessageEnd: the whole message
  std::string delta;    // ContentDelta
  Terminator terminator = Terminator::kNone;  // MessageEnd
  std::string error;    // Error
};

struct ParserOptions {
  std::optional<Role> role;  // role of the first message when the input starts inside its header
  bool strict = true;
};

// Incremental lossy UTF-8 decoder with from_utf8_lossy semantics (maximal-subpart replacement).
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);  // complete characters (and U+FFFD for invalid bytes)
  std::string push_invalid();                // a byte that can never be valid
  std::string flush();                       // pending incomplete sequence -> U+FFFD
  void reset() {
    pending_.clear();
    need_ = 0;
  }
  int replacements() const { return replacements_; }  // U+FFFD written for invalid input so far

 private:
  void feed(unsigned char c, std::string& out);
  std::string pending_;
  int need_ = 0;  // continuation bytes still expected for pending_
  int replacements_ = 0;
};

class StreamParser {
 public:
  // `tok` must outlive the parser. One parser per completion; not thread-safe.
  StreamParser(const Tokenizer& tok, ParserOptions opts = {});

  // Feed one token; returns the events it produced (often none).
  std::vector<ParseEvent> push(int token);
  void push(int token, std::vector<ParseEvent>& out);
  // End of input: closes the current message (or reports the truncated header).
  std::vector<ParseEvent> finish();
  void finish(std::vector<ParseEvent>& out);

  const std::vector<Message>& messages() const { return messages_; }
  const std::vector<int>& tokens() const { return tokens_; }
  // The message being received (after its header): header fields, content so far.
  bool in_content() const { return state_ == State::kContent; }
  const Message* current_message() const { return state_ == State::kContent ? &current_ : nullptr; }
  std::string current_content() const { return state_ == State::kContent ? current_.content : ""; }
  // The text the last push() added to the current message; nullopt when it added none (a partial
  // UTF-8 sequence, a header token, a finished message).
  const std::optional<std::string>& last_content_delta() const { return last_delta_; }
  const std::optional<std::string>& error() const { return error_; }

 private:
  enum class State { kExpectStart, kHeader, kContent, kSkipToStart };
  void on_header_complete(std::vector<ParseEvent>& out);
  void on_header_stopped(Terminator term, std::vector<ParseEvent>& out);
  void end_message(Terminator term, std::vector<ParseEvent>& out);
  void set_error(std::string msg, std::vector<ParseEvent>& out);

  const Tokenizer& tok_;
  ParserOptions opts_;
  State state_;
  std::optional<Role> next_role_;
  std::vector<int> header_tokens_;
  Message current_;
  Utf8Stream utf8_;
  std::vector<Message> messages_;
  std::vector<int> tokens_;
  std::optional<std::string> last_delta_;
  std::optional<std::string> error_;
};

// Whole-output parse: every token, then end of input. Throws ParseError with the parser's message.
std::vector<Message> parse_completion(const Tokenizer& tok, std::span<const int> tokens, ParserOptions opts = {});

}  // namespace gptoss::harmony
