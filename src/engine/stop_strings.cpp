#include "engine/stop_strings.h"

#include <algorithm>

namespace gptoss {

std::string StopStringMatcher::push(const std::string& delta) {
  if (matched()) return {};
  pending_ += delta;
  // The earliest stop string wins; among those starting at the same place, the longest.
  size_t best = std::string::npos;
  for (int i = 0; i < int(stops_.size()); ++i) {
    size_t at = pending_.find(stops_[i]);
    if (at == std::string::npos) continue;
    if (at < best || (at == best && stops_[i].size() > stops_[matched_].size())) {
      best = at;
      matched_ = i;
    }
  }
  if (matched()) {
    std::string out = pending_.substr(0, best);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStringMatcher::finish() {
  if (matched()) return {};
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace gptoss
