// `gptoss serve`: an OpenAI-compatible HTTP server (cpp-httplib) in front of a ChatService.
//
// Routes (docs/api.md has every field):
//   POST /v1/chat/completions   chat, streaming (SSE chat.completion.chunk ... data: [DONE]) or not
//   POST /v1/responses          the Responses API (text or message items, function tools, streaming events)
//   POST /v1/completions        raw prompt completion; needs a local engine (engine + tokenizer given)
//   GET  /v1/models, /v1/models/{id}, /health, /metrics (Prometheus text)
//
// Contract:
//  - HTTP threads never run the model: they validate, then hand the request to the ChatService (whose
//    engine thread batches everything) and relay its events. At most max_active requests generate at
//    once; max_queue more wait in FIFO order; beyond that the answer is `queue_full_status` (429 by
//    default, or 503) with Retry-After: 1.
//  - Every error body has OpenAI's shape {"error": {message, type, param, code}}: 400 malformed JSON or
//    a bad field (param names it), 400 code context_length_exceeded, 401 missing or wrong API key
//    (compared in constant time; /health and /metrics need no key), 404 unknown model or route, 413
//    body larger than max_body_bytes.
//  - A streaming client that disconnects is noticed within ~heartbeat_s (idle streams carry SSE
//    comment heartbeats, and a failed write is a disconnect): its stream is cancelled, which frees its
//    KV blocks in the engine.
//  - start() binds (port 0: any free port) and serves on a background thread; port() tells the port.
//    stop() closes the listener, cancels open streams and joins.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/chat_service.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace gptoss {
class Engine;
}

namespace gptoss::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                        // 0: any free port
  std::string api_key;                    // empty: no authentication
  size_t max_body_bytes = 8u << 20;       // larger bodies: 413
  int max_active = 256;                   // requests generating at once
  int max_queue = 256;                    // requests waiting for a slot; more: queue_full_status
  int queue_full_status = 429;            // 429 or 503
  int http_threads = 0;                   // 0: max_active + max_queue + 16
  bool emulate_constraints = true;        // local engines: tool_choice required/named and
                                          // response_format become developer instructions
  std::vector<std::string> model_aliases; // names accepted in `model` besides the service's
  double heartbeat_s = 0.25;              // idle streams get a ": ping" comment this often
};

struct ServerContext;

class Server {
 public:
  // `engine` and `tokenizer` (optional) enable /v1/completions and the KV metrics.
  Server(ChatService& chat, ServerOptions opts, std::shared_ptr<Engine> engine = nullptr,
         std::optional<Tokenizer> tokenizer = std::nullopt);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int start();  // binds and serves in the background; returns the port; throws Error when it cannot bind
  void wait();  // blocks until stop() (from another thread or a signal handler's thread)
  void stop();
  int port() const { return port_; }

 private:
  std::unique_ptr<ServerContext> ctx_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> running_{false};
};

}  // namespace gptoss::server
