// A one-line progress bar on stderr (only when stderr is a terminal, or when forced).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace gptoss {

class ProgressBar {
 public:
  // total: units of work (bytes, tensors); unit: "B" formats as MB/GB.
  ProgressBar(std::string label, uint64_t total, std::string unit = "B");
  ~ProgressBar();
  void add(uint64_t done);
  void set(uint64_t done);
  void finish();
  static void set_enabled(bool on);  // default: isatty(stderr)

 private:
  void draw(bool final);
  std::string label_, unit_;
  uint64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool finished_ = false;
};

}  // namespace gptoss
