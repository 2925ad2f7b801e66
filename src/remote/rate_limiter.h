// Client-side politeness for remote engines, shared by all workers of one service.
//
// Contract:
//  - acquire() blocks until a new request may start: request starts are spaced at least
//    60 s / requests_per_minute apart (spacing rather than a burst of a minute's worth at once, which
//    is what trips the server's own limiter), and the prompt / completion tokens reported in the last
//    60 s are under input_tokens_per_minute / output_tokens_per_minute. All waits scale with
//    delay_scale. Returns false (without starting) when *cancel turns true while waiting.
//  - record_usage() adds a finished request's token counts to the rolling minute.
//  - Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>

#include "remote/remote_params.h"

namespace gptoss {

class RateLimiter {
 public:
  explicit RateLimiter(const RemoteParams& p) : p_(p) {}
  bool acquire(const std::atomic<bool>* cancel);
  void record_usage(long prompt_tokens, long completion_tokens);

 private:
  using Clock = std::chrono::steady_clock;
  struct Usage {
    Clock::time_point at;
    long in, out;
  };
  RemoteParams p_;
  std::mutex mu_;
  Clock::time_point next_start_{};
  std::deque<Usage> usage_;
};

}  // namespace gptoss
