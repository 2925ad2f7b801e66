// Server-sent events (text/event-stream) decoding, incremental.
//
// Contract: feed() takes bytes as they arrive (any split, "\n" or "\r\n" line ends) and calls on_event
// once per complete event (terminated by a blank line) with the event name ("" when none was given)
// and the data lines joined by "\n". Comment lines (":...") and unknown fields are ignored; an event
// without data lines is not reported. finish() reports a final event that lacked its blank line.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace gptoss {

class SseParser {
 public:
  using Handler = std::function<void(const std::string& event, const std::string& data)>;
  void feed(std::string_view bytes, const Handler& on_event);
  void finish(const Handler& on_event);

 private:
  void line(std::string_view l, const Handler& on_event);
  void dispatch(const Handler& on_event);
  std::string buf_, event_, data_;
  bool has_data_ = false;
};

}  // namespace gptoss
