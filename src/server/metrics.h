// Server metrics in Prometheus text format (GET /metrics).
//
// Counters: gptoss_requests_total{route,status}, gptoss_prompt_tokens_total,
// gptoss_generation_tokens_total, gptoss_requests_cancelled_total, gptoss_requests_rejected_total.
// Histograms (seconds, measured at the HTTP layer so they cover local and remote engines alike):
// gptoss_time_to_first_token_seconds, gptoss_inter_token_latency_seconds (between streamed deltas),
// gptoss_request_duration_seconds. Gauges: gptoss_requests_active, gptoss_queue_depth (waiting in the
// server's queue plus the engine's), and, with a local engine, gptoss_kv_blocks_used / _total /
// _cached, gptoss_kv_cache_usage_ratio, gptoss_engine_running / _waiting.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace gptoss {
class Engine;
}

namespace gptoss::server {

class LatencyHistogram {
 public:
  LatencyHistogram();
  void add(double seconds);
  void render(std::string& out, const std::string& name, const std::string& help) const;
  int64_t count() const { return count_; }
  double quantile(double q) const;  // from the buckets (upper bound of the bucket holding q)

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;
  int64_t count_ = 0;
  double sum_ = 0;
};

class ServerMetrics {
 public:
  void request_done(const std::string& route, int status, double seconds);
  void tokens(int64_t prompt, int64_t completion);
  void first_token(double seconds);
  void inter_token(double seconds);
  void cancelled();
  // gauges and engine state are sampled when rendering
  std::string render(int active, int waiting, int64_t rejected, const Engine* engine) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0, cancelled_ = 0;
  LatencyHistogram ttft_, itl_, duration_;
};

}  // namespace gptoss::server
