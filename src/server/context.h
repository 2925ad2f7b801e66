// What the route handlers share (internal to src/server).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "api/chat_service.h"
#include "server/admission.h"
#include "server/api_error.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/server.h"

namespace gptoss::server {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct ServerContext {
  ChatService& chat;
  ServerOptions opts;
  std::shared_ptr<Engine> engine;
  std::optional<Tokenizer> tokenizer;
  ServerMetrics metrics;
  Admission admission;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> stopping{false};

  ServerContext(ChatService& c, ServerOptions o, std::shared_ptr<Engine> e, std::optional<Tokenizer> t)
      : chat(c), opts(std::move(o)), engine(std::move(e)), tokenizer(std::move(t)),
        admission(opts.max_active, opts.max_queue) {}

  std::string new_id(const char* prefix);
  std::string model_name() const { return chat.model_name(); }
  // 404 unless `model` is absent or names this server's model (or an alias, or a LoRA adapter).
  void check_model(const OJson& body) const;
  Admission::Ticket admit();  // throws ApiError(queue_full_status) when the queue is full
};

// Parses a JSON body (ordered); 400 invalid_json otherwise.
OJson parse_body(const httplib::Request& req);
// Sends an ApiError / InputError / other exception as OpenAI error JSON.
void send_error(httplib::Response& res, const ApiError& e);
ApiError api_error_from_event(const ChatEvent& ev);
int64_t unix_time();

// The frame of every route handler: runs body(); an ApiError it throws becomes the error response and
// is counted in the metrics. A body that answers counts its own success (send_json), a streaming one
// when its stream ends.
template <class Body>
void run_route(ServerContext& ctx, httplib::Response& res, const std::string& route, Clock::time_point t0,
               Body&& body) {
  try {
    body();
  } catch (const ApiError& e) {
    send_error(res, e);
    ctx.metrics.request_done(route, e.status, seconds_since(t0));
  }
}
// Answers 200 with a JSON body and counts it.
void send_json(ServerContext& ctx, httplib::Response& res, const std::string& route, Clock::time_point t0,
               const nlohmann::json& out);
// Starts a chat request on the service; one the service rejects (InputError) is a 400.
std::unique_ptr<ChatStream> start_chat(ServerContext& ctx, const OJson& creq);

// Runs a ChatStream on its own thread so the HTTP thread can wait with a timeout (heartbeats,
// disconnect checks). The destructor cancels the stream and joins.
class StreamPump {
 public:
  explicit StreamPump(std::unique_ptr<ChatStream> s);
  ~StreamPump();
  std::optional<ChatEvent> next_for(std::chrono::milliseconds timeout);  // nullopt: timeout
  void cancel();

 private:
  std::unique_ptr<ChatStream> stream_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ChatEvent> events_;
  std::thread thread_;
};

void register_chat_routes(httplib::Server& http, ServerContext& ctx);
void register_responses_routes(httplib::Server& http, ServerContext& ctx);
void register_completions_routes(httplib::Server& http, ServerContext& ctx);

}  // namespace gptoss::server

namespace gptoss::server {

// Formats one streamed turn as SSE text (chat chunks or Responses events).
class SseFormatter {
 public:
  virtual ~SseFormatter() = default;
  virtual std::string begin() { return {}; }            // before the first event
  virtual std::string event(const ChatEvent& ev) = 0;   // a delta, or the final Done / Error
};

// Streams `pump` to the client as SSE: the first event was already taken (and was not an Error); the
// ticket is held until the stream ends. Metrics: TTFT at the first delta, ITL between deltas, tokens.
void serve_sse(ServerContext& ctx, httplib::Response& res, const std::string& route, Clock::time_point t0,
               std::shared_ptr<StreamPump> pump, Admission::Ticket ticket, std::optional<ChatEvent> first,
               std::shared_ptr<SseFormatter> fmt);

// Waits up to `wait` for the first event; an Error becomes an ApiError (thrown), so a stream that fails
// at once (prompt too long, ...) gets a proper HTTP status instead of a 200 SSE stream. After `wait` the
// caller starts the SSE response anyway (nullopt), so a long queue never trips a client's header timeout.
std::optional<ChatEvent> first_event(StreamPump& pump, std::chrono::milliseconds wait = std::chrono::milliseconds(5000));

// Runs a turn to its end without streaming; returns Done (with `deltas_seen` set) or throws ApiError.
ChatEvent run_to_done(ServerContext& ctx, ChatStream& stream, Clock::time_point t0);

bool is_delta(const ChatEvent& ev);

}  // namespace gptoss::server
