#include "remote/rate_limiter.h"

#include <algorithm>
#include <thread>

namespace gptoss {

bool RateLimiter::acquire(const std::atomic<bool>* cancel) {
  const auto minute = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(60.0 * p_.delay_scale));
  for (;;) {
    if (cancel && cancel->load()) return false;
    Clock::time_point wake;
    {
      std::lock_guard lock(mu_);
      auto now = Clock::now();
      while (!usage_.empty() && usage_.front().at + minute <= now) usage_.pop_front();
      long in = 0, out = 0;
      for (const auto& u : usage_) in += u.in, out += u.out;
      bool tokens_ok = (!p_.input_tokens_per_minute || *p_.input_tokens_per_minute <= 0 || in < *p_.input_tokens_per_minute) &&
                       (!p_.output_tokens_per_minute || *p_.output_tokens_per_minute <= 0 ||
                        out < *p_.output_tokens_per_minute);
      if (tokens_ok && now >= next_start_) {
        if (p_.requests_per_minute && *p_.requests_per_minute > 0)
          next_start_ = now + minute / *p_.requests_per_minute;
        return true;
      }
      wake = tokens_ok || usage_.empty() ? next_start_ : usage_.front().at + minute;
    }
    auto nap = std::min<Clock::duration>(wake - Clock::now(), std::chrono::milliseconds(50));
    if (nap > Clock::duration::zero()) std::this_thread::sleep_for(nap);
  }
}

void RateLimiter::record_usage(long prompt_tokens, long completion_tokens) {
  if (!p_.input_tokens_per_minute && !p_.output_tokens_per_minute) return;
  std::lock_guard lock(mu_);
  usage_.push_back({Clock::now(), std::max(0L, prompt_tokens), std::max(0L, completion_tokens)});
}

}  // namespace gptoss
