// Stop-string matching on streamed text.
//
// push() takes the next text delta and returns the part that can be shown now: text that might
// still be the beginning of a stop string is held back until it is clearly not one. When a stop
// string appears, everything before it is returned, matched() becomes true and the stop string and
// what follows are dropped. finish() returns the held-back text when generation ends otherwise.
#pragma once

#include <string>
#include <vector>

namespace gptoss {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  std::string push(const std::string& delta);
  std::string finish();
  bool matched() const { return matched_ >= 0; }
  const std::string& matched_string() const { return stops_.at(matched_); }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  int matched_ = -1;
};

}  // namespace gptoss
