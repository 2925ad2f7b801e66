// Harmony streaming parser (see parser.h for the contract).
#include "harmony/parser.h"

#include <algorithm>

#include "tokenizer/tokenizer.h"

namespace gptoss::harmony {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kChannelText = "<|channel|>";
constexpr std::string_view kConstrainText = "<|constrain|>";

bool is_stop(int t) { return t == tok::kEnd || t == tok::kCall || t == tok::kReturn; }

Terminator terminator_of(int t) {
  switch (t) {
    case tok::kEnd: return Terminator::kEnd;
    case tok::kCall: return Terminator::kCall;
    case tok::kReturn: return Terminator::kReturn;
  }
  return Terminator::kNone;
}

// Decodes one UTF-8 code point at s[i] (s is valid UTF-8 here); returns it and advances i.
char32_t next_cp(std::string_view s, size_t& i) {
  unsigned char c = s[i];
  int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (i + n > s.size()) n = 1;
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

// Unicode White_Space, as Rust's char::is_whitespace / str::trim use.
bool is_unicode_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

std::string trim(std::string_view s) {
  size_t i = 0, begin = s.size(), end = 0;
  while (i < s.size()) {
    size_t at = i;
    char32_t cp = next_cp(s, i);
    if (!is_unicode_space(cp)) {
      begin = std::min(begin, at);
      end = i;
    }
  }
  return begin >= end ? std::string() : std::string(s.substr(begin, end - begin));
}

std::string trim_start(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t at = i;
    if (!is_unicode_space(next_cp(s, i))) return std::string(s.substr(at));
  }
  return "";
}

// Rust's split_ascii_whitespace: space, \t, \n, \x0C, \r.
std::vector<std::string> split_ascii_ws(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\x0C' || c == '\r') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// Removes "<|channel|>NAME" from the header text; NAME ends at whitespace or '<'. Returns false when
// the marker has no name after it.
bool extract_channel(std::string& header, std::optional<std::string>& channel) {
  size_t idx = header.find(kChannelText);
  if (idx == std::string::npos) return true;
  std::string_view after = std::string_view(header).substr(idx + kChannelText.size());
  size_t end = 0;
  while (end < after.size()) {
    size_t at = end;
    char32_t cp = next_cp(after, end);
    if (is_unicode_space(cp) || cp == '<') {
      end = at;
      break;
    }
  }
  if (end == 0) return false;
  channel = std::string(after.substr(0, end));
  header = header.substr(0, idx) + std::string(after.substr(end));
  return true;
}

std::string quote_list(const std::vector<std::string>& parts) {
  std::string out = "[";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", \"" : "\"") + parts[i] + "\"";
  return out + "]";
}

}  // namespace

std::string_view terminator_name(Terminator t) {
  switch (t) {
    case Terminator::kEnd: return "<|end|>";
    case Terminator::kCall: return "<|call|>";
    case Terminator::kReturn: return "<|return|>";
    case Terminator::kEndOfInput: return "eos";
    case Terminator::kNone: return "";
  }
  return "";
}

// ---- Utf8Stream ---------------------------------------------------------------------------------

void Utf8Stream::feed(unsigned char c, std::string& out) {
  if (need_ > 0) {
    unsigned char lo = 0x80, hi = 0xBF;
    if (pending_.size() == 1) {
      unsigned char first = pending_[0];
      if (first == 0xE0) lo = 0xA0;
      if (first == 0xED) hi = 0x9F;
      if (first == 0xF0) lo = 0x90;
      if (first == 0xF4) hi = 0x8F;
    }
    if (c >= lo && c <= hi) {
      pending_ += static_cast<char>(c);
      if (--need_ == 0) {
        out += pending_;
        pending_.clear();
      }
      return;
    }
    // The pending prefix can never complete: one U+FFFD for it, then c starts afresh.
    out += kReplacement;
    ++replacements_;
    pending_.clear();
    need_ = 0;
  }
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c >= 0xC2 && c <= 0xDF) {
    pending_ = static_cast<char>(c);
    need_ = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    pending_ = static_cast<char>(c);
    need_ = 2;
  } else if (c >= 0xF0 && c <= 0xF4) {
    pending_ = static_cast<char>(c);
    need_ = 3;
  } else {
    out += kReplacement;
    ++replacements_;
  }
}

std::string Utf8Stream::push(std::string_view bytes) {
  std::string out;
  for (char c : bytes) feed(static_cast<unsigned char>(c), out);
  return out;
}

std::string Utf8Stream::push_invalid() {
  std::string out;
  feed(0xFF, out);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  if (!pending_.empty()) {
    out += kReplacement;
    ++replacements_;
  }
  pending_.clear();
  need_ = 0;
  return out;
}

// ---- StreamParser -------------------------------------------------------------------------------

StreamParser::StreamParser(const Tokenizer& tok, ParserOptions opts)
    : tok_(tok), opts_(opts), state_(opts.role ? State::kHeader : State::kExpectStart), next_role_(opts.role) {}

std::vector<ParseEvent> StreamParser::push(int token) {
  std::vector<ParseEvent> out;
  push(token, out);
  return out;
}

std::vector<ParseEvent> StreamParser::finish() {
  std::vector<ParseEvent> out;
  finish(out);
  return out;
}

void StreamParser::set_error(std::string msg, std::vector<ParseEvent>& out) {
  if (!error_) error_ = msg;
  ParseEvent ev;
  ev.kind = ParseEvent::Kind::kError;
  ev.error = std::move(msg);
  out.push_back(std::move(ev));
  header_tokens_.clear();
  next_role_.reset();
  utf8_.reset();
  state_ = State::kSkipToStart;
}

void StreamParser::push(int token, std::vector<ParseEvent>& out) {
  tokens_.push_back(token);
  last_delta_.reset();
  switch (state_) {
    case State::kSkipToStart:
      if (token == tok::kStart) state_ = State::kHeader;
      return;
    case State::kExpectStart:
      if (token == tok::kStart) {
        state_ = State::kHeader;
        header_tokens_.clear();
      } else {
        set_error(fmt::format("Unexpected token {} while expecting start token {}", token, tok::kStart), out);
      }
      return;
    case State::kHeader:
      if (token == tok::kMessage) {
        on_header_complete(out);
      } else if (!opts_.strict && is_stop(token)) {
        on_header_stopped(terminator_of(token), out);
      } else if (token == tok::kStart && header_tokens_.empty()) {
        // A preset role but the output restates the header: take the role from the text instead.
        next_role_.reset();
      } else {
        header_tokens_.push_back(token);
      }
      return;
    case State::kContent: {
      if (is_stop(token)) {
        end_message(terminator_of(token), out);
        return;
      }
      std::string delta = token >= 0 && token < tok_.vocab_size() ? utf8_.push(tok_.token_bytes(token))
                                                                 : utf8_.push_invalid();
      if (!delta.empty()) {
        current_.content += delta;
        last_delta_ = delta;
        ParseEvent ev;
        ev.kind = ParseEvent::Kind::kContentDelta;
        ev.delta = std::move(delta);
        out.push_back(std::move(ev));
      }
      return;
    }
  }
}

void StreamParser::finish(std::vector<ParseEvent>& out) {
  last_delta_.reset();
  switch (state_) {
    case State::kExpectStart:
    case State::kSkipToStart:
      return;
    case State::kHeader:
      if (!opts_.strict && !header_tokens_.empty()) {
        on_header_stopped(Terminator::kEndOfInput, out);
      } else {
        set_error("Unexpected EOS while waiting for message header to complete", out);
      }
      return;
    case State::kContent:
      end_message(Terminator::kEndOfInput, out);
      return;
  }
}

namespace {

// Decodes header tokens (special tokens as their text). Sets `valid` false when bytes were not UTF-8.
std::string decode_header(const Tokenizer& tok, const std::vector<int>& ids, bool& valid) {
  Utf8Stream u;
  std::string text;
  for (int id : ids) text += id >= 0 && id < tok.vocab_size() ? u.push(tok.token_bytes(id)) : u.push_invalid();
  text += u.flush();
  valid = u.replacements() == 0;
  return text;
}

}  // namespace

void StreamParser::on_header_complete(std::vector<ParseEvent>& out) {
  bool valid = true;
  std::string header = decode_header(tok_, header_tokens_, valid);
  if (!valid && opts_.strict) return set_error("could not decode header: invalid UTF-8", out);

  Message msg;
  if (!extract_channel(header, msg.channel))
    return set_error("channel marker present but no channel value found in header", out);
  header = trim(header);
  // "to=foo<|constrain|>json": the marker starts a new word.
  if (header.find(kConstrainText) != std::string::npos)
    header = trim(replace_all(header, kConstrainText, " <|constrain|>"));
  std::vector<std::string> parts = split_ascii_ws(header);

  std::optional<std::string> role_word;
  Role role;
  if (next_role_) {
    role = *next_role_;
  } else {
    if (parts.empty()) return set_error("missing role in header", out);
    role_word = parts.front();
    if (auto r = role_from_name(*role_word)) {
      role = *r;
    } else if (parts.size() > 1 || parts.front().starts_with("to=")) {
      // An unknown author followed by more header words is a tool speaking (e.g. browser.search).
      parts.erase(parts.begin());
      role = Role::kTool;
    } else {
      return set_error(fmt::format("Unknown role: {}", *role_word), out);
    }
  }
  if (!parts.empty() && parts.front() == role_name(role)) parts.erase(parts.begin());

  if (!parts.empty()) {
    size_t n = parts.size();
    std::string last = parts.back();
    parts.pop_back();
    if (last.starts_with("to=")) {
      msg.recipient = last.substr(3);
    } else {
      msg.content_type = last;
      if (n > 1) {
        auto it = std::find_if(parts.begin(), parts.end(), [](const std::string& p) { return p.starts_with("to="); });
        if (it != parts.end()) {
          msg.recipient = it->substr(3);
          parts.erase(it);
        }
      }
    }
  }
  if (!parts.empty() && opts_.strict)
    return set_error("unexpected tokens remaining in message header: " + quote_list(parts), out);

  msg.author.role = role;
  if (role == Role::kTool && role_word && !role_from_name(*role_word)) msg.author.name = role_word;
  current_ = std::move(msg);
  header_tokens_.clear();
  next_role_.reset();
  utf8_.reset();
  state_ = State::kContent;
  ParseEvent ev;
  ev.kind = ParseEvent::Kind::kMessageStart;
  ev.message = current_;
  out.push_back(std::move(ev));
}

void StreamParser::on_header_stopped(Terminator term, std::vector<ParseEvent>& out) {
  // Non-strict recovery for a missing <|message|>: channel from the marker, role from the preset or
  // the first word, everything else is content.
  bool valid = true;
  std::string text = decode_header(tok_, header_tokens_, valid);
  Message msg;
  extract_channel(text, msg.channel);
  if (next_role_) {
    msg.author.role = *next_role_;
  } else {
    std::string rest = trim_start(text);
    size_t sp = rest.find_first_of(" \t\n\r\x0C");
    std::string word = rest.substr(0, sp);
    if (auto r = role_from_name(word)) {
      msg.author.role = *r;
    } else {
      msg.author.role = Role::kTool;
      if (!word.empty()) msg.author.name = word;
    }
    text = sp == std::string::npos ? "" : rest.substr(sp);
  }
  msg.content = trim_start(text);
  header_tokens_.clear();
  next_role_.reset();
  utf8_.reset();

  ParseEvent start;
  start.kind = ParseEvent::Kind::kMessageStart;
  start.message = msg;
  start.message.content.clear();
  out.push_back(std::move(start));
  if (!msg.content.empty()) {
    ParseEvent d;
    d.kind = ParseEvent::Kind::kContentDelta;
    d.delta = msg.content;
    out.push_back(std::move(d));
  }
  current_ = std::move(msg);
  state_ = State::kContent;
  end_message(term, out);
}

void StreamParser::end_message(Terminator term, std::vector<ParseEvent>& out) {
  std::string tail = utf8_.flush();
  if (!tail.empty()) {
    current_.content += tail;
    ParseEvent d;
    d.kind = ParseEvent::Kind::kContentDelta;
    d.delta = tail;
    out.push_back(std::move(d));
  }
  messages_.push_back(current_);
  ParseEvent ev;
  ev.kind = ParseEvent::Kind::kMessageEnd;
  ev.message = std::move(current_);
  ev.terminator = term;
  out.push_back(std::move(ev));
  current_ = Message();
  last_delta_.reset();
  state_ = State::kExpectStart;
}

std::vector<Message> parse_completion(const Tokenizer& tok, std::span<const int> tokens, ParserOptions opts) {
  StreamParser p(tok, opts);
  std::vector<ParseEvent> events;
  for (int t : tokens) {
    events.clear();
    p.push(t, events);
  }
  events.clear();
  p.finish(events);
  if (p.error()) throw ParseError(*p.error());
  return p.messages();
}

}  // namespace gptoss::harmony
