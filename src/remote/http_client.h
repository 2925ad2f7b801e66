// A small blocking HTTP POST on libcurl, for the remote engines.
//
// Contract:
//  - http_post() never throws for network trouble: the outcome is in HttpResponse::failure (connect
//    refused, timeout, connection cut mid-reply, cancelled) with curl's message in `error`; `status` is
//    the HTTP status when one arrived (0 otherwise).
//  - With `on_body` set, the body of a 2xx reply is handed over chunk by chunk as it arrives (SSE) and
//    not kept in `body`; returning false from on_body aborts the transfer (failure Cancelled). Non-2xx
//    bodies are always collected in `body` (they are error JSON, read after the call).
//  - `cancel` (optional) is polled while the transfer runs; when it turns true the transfer stops
//    within about 100 ms with failure Cancelled.
//  - Header names in `headers` are lower-cased; the last occurrence wins.
//  - Thread-safe: one curl handle per call; curl_global_init runs once.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

struct HttpRequest {
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent as the POST body
  double connect_timeout_s = 30.0;
  double total_timeout_s = 0.0;      // whole transfer; 0: none
  double idle_timeout_s = 0.0;       // abort when no byte arrives for this long; 0: none
  const std::atomic<bool>* cancel = nullptr;
  std::function<bool(std::string_view)> on_body;
};

struct HttpResponse {
  enum class Failure { None, Connect, Timeout, Cut, Cancelled, Other };
  Failure failure = Failure::None;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  std::string error;
  bool ok() const { return failure == Failure::None && status >= 200 && status < 300; }
};

HttpResponse http_post(const HttpRequest& req);
std::string_view failure_name(HttpResponse::Failure f);

}  // namespace gptoss
