#include "server/metrics.h"

#include <fmt/format.h>

#include "engine/engine.h"

namespace gptoss::server {

LatencyHistogram::LatencyHistogram()
    : bounds_{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0},
      counts_(bounds_.size() + 1, 0) {}

void LatencyHistogram::add(double s) {
  size_t i = 0;
  while (i < bounds_.size() && s > bounds_[i]) ++i;
  ++counts_[i];
  ++count_;
  sum_ += s;
}

double LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  int64_t need = int64_t(q * double(count_) + 0.999999), seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= need) return i < bounds_.size() ? bounds_[i] : bounds_.back();
  }
  return bounds_.back();
}

void LatencyHistogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  int64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

void ServerMetrics::request_done(const std::string& route, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
  duration_.add(seconds);
}
void ServerMetrics::tokens(int64_t prompt, int64_t completion) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += prompt;
  completion_tokens_ += completion;
}
void ServerMetrics::first_token(double s) {
  std::lock_guard lock(mu_);
  ttft_.add(s);
}
void ServerMetrics::inter_token(double s) {
  std::lock_guard lock(mu_);
  itl_.add(s);
}
void ServerMetrics::cancelled() {
  std::lock_guard lock(mu_);
  ++cancelled_;
}

std::string ServerMetrics::render(int active, int waiting, int64_t rejected, const Engine* engine) const {
  std::string out;
  EngineMetrics em;
  if (engine) em = engine->metrics();
  std::lock_guard lock(mu_);
  out += "# HELP gptoss_requests_total HTTP requests by route and status.\n# TYPE gptoss_requests_total counter\n";
  for (const auto& [k, n] : requests_)
    out += fmt::format("gptoss_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, n);
  auto counter = [&](const char* name, const char* help, int64_t v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  counter("gptoss_prompt_tokens_total", "Prompt tokens of finished requests.", prompt_tokens_);
  counter("gptoss_generation_tokens_total", "Generated tokens of finished requests.", completion_tokens_);
  counter("gptoss_requests_cancelled_total", "Requests cancelled because the client went away.", cancelled_);
  counter("gptoss_requests_rejected_total", "Requests refused because the wait queue was full.", rejected);
  ttft_.render(out, "gptoss_time_to_first_token_seconds", "Time from request to first streamed delta.");
  itl_.render(out, "gptoss_inter_token_latency_seconds", "Time between streamed deltas.");
  duration_.render(out, "gptoss_request_duration_seconds", "Time from request to response end.");
  gauge("gptoss_requests_active", "Requests being generated.", active);
  gauge("gptoss_queue_depth", "Requests waiting (server queue plus engine queue).", waiting + em.waiting);
  if (engine) {
    gauge("gptoss_engine_running", "Sequences running in the engine.", em.running);
    gauge("gptoss_engine_waiting", "Sequences waiting in the engine.", em.waiting);
    gauge("gptoss_kv_blocks_total", "KV cache blocks in the pool.", double(em.kv_blocks_total));
    gauge("gptoss_kv_blocks_used", "KV cache blocks held by live requests.", double(em.kv_blocks_used));
    gauge("gptoss_kv_blocks_cached", "Unreferenced KV blocks kept for the prefix cache.", double(em.kv_blocks_cached));
    gauge("gptoss_kv_cache_usage_ratio", "Fraction of KV blocks held by live requests.",
          em.kv_blocks_total ? double(em.kv_blocks_used) / double(em.kv_blocks_total) : 0.0);
    counter("gptoss_engine_preemptions_total", "Requests preempted for KV space.", em.preemptions);
    // The engine's own token-level latencies (first generated token, not first streamed delta: with a
    // model that writes no harmony channels the deltas only come at the end).
    auto engine_hist = [&](const char* name, const char* help, const Histogram& h) {
      out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
      int64_t cum = 0;
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cum += h.counts[i];
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, h.bounds[i], cum);
      }
      out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, h.count, name, h.sum, name, h.count);
    };
    engine_hist("gptoss_engine_time_to_first_token_seconds", "Engine: submit to first generated token.",
                em.time_to_first_token);
    engine_hist("gptoss_engine_inter_token_latency_seconds", "Engine: between generated tokens.", em.inter_token_latency);
    counter("gptoss_engine_generated_tokens_total", "Engine: generated tokens.", em.generated_tokens);
  }
  return out;
}

}  // namespace gptoss::server
