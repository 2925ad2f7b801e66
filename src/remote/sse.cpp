#include "remote/sse.h"

namespace gptoss {

void SseParser::feed(std::string_view bytes, const Handler& on_event) {
  buf_.append(bytes);
  size_t start = 0;
  for (;;) {
    size_t nl = buf_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view l(buf_.data() + start, nl - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    line(l, on_event);
    start = nl + 1;
  }
  buf_.erase(0, start);
}

void SseParser::finish(const Handler& on_event) {
  if (!buf_.empty()) {
    std::string rest = std::move(buf_);
    buf_.clear();
    if (!rest.empty() && rest.back() == '\r') rest.pop_back();
    line(rest, on_event);
  }
  dispatch(on_event);
}

void SseParser::line(std::string_view l, const Handler& on_event) {
  if (l.empty()) {
    dispatch(on_event);
    return;
  }
  if (l.front() == ':') return;
  size_t colon = l.find(':');
  std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
}

void SseParser::dispatch(const Handler& on_event) {
  if (has_data_) on_event(event_, data_);
  event_.clear();
  data_.clear();
  has_data_ = false;
}

}  // namespace gptoss
