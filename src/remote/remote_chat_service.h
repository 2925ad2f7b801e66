// Remote engines (TOGETHER, OPENAI, REMOTE, REMOTE_VLLM): a ChatService that sends each chat request
// to an OpenAI-compatible /v1/chat/completions endpoint over libcurl.
//
// Contract:
//  - The constructor resolves the URL and the API key and throws gptoss::InputError, before any
//    request is made, when the key is missing (TOGETHER needs $TOGETHER_API_KEY, OPENAI needs
//    $OPENAI_API_KEY, unless remote_params.api_key is set; REMOTE/REMOTE_VLLM need a key only when
//    remote_params.api_key_env_varname names one) or when REMOTE/REMOTE_VLLM lack api_url.
//  - start() validates the request shape (InputError naming the field) and queues it; `num_workers`
//    threads send queued requests, so many streams may be started at once (batch inference) and at
//    most num_workers requests are in flight. Requests start no faster than the RateLimiter allows;
//    each worker sleeps `politeness_policy` seconds after each request.
//  - `"stream": true` requests are streamed from the server (SSE) and their deltas reach next() as
//    they arrive; other requests are sent whole and their events arrive together. Either way the
//    events are the same: ReasoningDelta (from `reasoning_content` or `reasoning`), ContentDelta,
//    ToolCallDelta, then Done (message, finish_reason, usage, logprobs) or Error.
//  - Failures are retried up to max_retries times, waiting Retry-After when the server sent one and
//    otherwise 1 s, 10 s, 30 s (see retry_policy.h): statuses other than 400/401/403/404/413/422,
//    connection failures, timeouts, cut connections and malformed bodies. A streamed reply that was
//    cut after deltas were already delivered is not retried (the consumer has seen part of it): it ends
//    in Error. The final Error names the engine, URL, status and the server's message; its
//    http_status is 400 for the request's own faults (400/404/413/422), 429 when still rate-limited,
//    504 for timeouts and 502 otherwise.
//  - cancel() aborts a queued or running request within ~50 ms; next() then yields Done with
//    finish_reason "cancelled". Destroying the service cancels everything still running.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/chat_service.h"
#include "remote/rate_limiter.h"
#include "remote/remote_params.h"

namespace gptoss {

struct RemoteEngineOptions {
  RemoteKind kind = RemoteKind::Remote;
  std::string model;  // sent as the request's "model"
  RemoteParams params;
};

class RemoteChatService : public ChatService {
 public:
  explicit RemoteChatService(RemoteEngineOptions opts);
  ~RemoteChatService() override;

  std::unique_ptr<ChatStream> start(const nlohmann::json& request) override;
  // Keeps the body's key order on the wire (tool schemas then render upstream in the order given).
  std::unique_ptr<ChatStream> start_ordered(const nlohmann::ordered_json& request) override;
  std::string model_name() const override { return opts_.model; }

  const std::string& api_url() const { return url_; }
  long requests_sent() const { return requests_sent_.load(); }  // HTTP attempts, retries included

  struct Job;

 private:
  void worker_main();
  void run(Job& job);
  bool sleep_unless_cancelled(double seconds, const std::atomic<bool>& cancel);
  nlohmann::ordered_json upstream_body(const nlohmann::ordered_json& request, bool stream) const;

  RemoteEngineOptions opts_;
  std::string url_, key_;
  RateLimiter limiter_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::atomic<long> requests_sent_{0};
};

// Validates the parts of an OpenAI chat request every engine relies on (an object with a non-empty
// `messages` array of objects with a string `role`; `tools` an array when present); throws
// InputError naming the field.
void validate_chat_request_shape(const nlohmann::ordered_json& request);

}  // namespace gptoss
