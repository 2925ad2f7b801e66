#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace gptoss {

namespace {
int g_enabled = -1;  // -1: decide by isatty
bool enabled() {
  if (g_enabled < 0) g_enabled = ::isatty(2) ? 1 : 0;
  return g_enabled == 1;
}
std::string human(double v, const std::string& unit) {
  if (unit != "B") return fmt::format("{:.0f}", v);
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  return fmt::format("{:.0f} kB", v / 1e3);
}
}  // namespace

void ProgressBar::set_enabled(bool on) { g_enabled = on ? 1 : 0; }

ProgressBar::ProgressBar(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::add(uint64_t d) { set(done_ + d); }

void ProgressBar::set(uint64_t d) {
  done_ = d;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final) {
  if (!enabled()) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double frac = total_ ? double(done_) / double(total_) : 1.0;
  if (frac > 1) frac = 1;
  int width = 30, filled = int(frac * width);
  std::string bar(size_t(filled), '#');
  bar.resize(size_t(width), '.');
  double rate = secs > 0 ? double(done_) / secs : 0;
  std::fprintf(stderr, "\r%s [%s] %3.0f%% %s/%s %s/s %.1fs%s", label_.c_str(), bar.c_str(), frac * 100,
               human(double(done_), unit_).c_str(), human(double(total_), unit_).c_str(),
               human(rate, unit_).c_str(), secs, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace gptoss
