#include "server/context.h"

#include <random>

#include <fmt/format.h>

#include "core/error.h"

namespace gptoss::server {

std::string ServerContext::new_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:08x}{:016x}", prefix, next_id++, rng());
}

void ServerContext::check_model(const OJson& body) const {
  if (!body.is_object() || !body.contains("model") || body["model"].is_null()) return;
  if (!body["model"].is_string()) bad_field("model", "`model` must be a string");
  std::string m = body["model"];
  if (m == model_name()) return;
  for (const auto& a : opts.model_aliases)
    if (m == a) return;
  if (chat.adapter_for(body) > 0) return;  // a LoRA adapter's name
  throw ApiError(404, fmt::format("The model `{}` does not exist; this server serves `{}` (GET /v1/models)", m, model_name()),
                 "invalid_request_error", "model", "model_not_found");
}

Admission::Ticket ServerContext::admit() {
  auto t = admission.enter();
  if (!t)
    throw ApiError(opts.queue_full_status,
                   fmt::format("the server is busy: {} requests are running and {} waiting (the wait queue is full); "
                               "retry shortly",
                               admission.active(), admission.waiting()),
                   opts.queue_full_status == 429 ? "rate_limit_error" : "server_error", "", "queue_full");
  return t;
}

OJson parse_body(const httplib::Request& req) {
  try {
    return OJson::parse(req.body);
  } catch (const nlohmann::json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()), "invalid_request_error", "",
                   "invalid_json");
  }
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(error_json(e).dump(), "application/json");
}

ApiError api_error_from_event(const ChatEvent& ev) {
  int status = ev.http_status ? ev.http_status : 500;
  std::string code;
  if (status == 400 && (ev.text.find("max_model_len") != std::string::npos ||
                        ev.text.find("context length") != std::string::npos))
    code = "context_length_exceeded";
  return ApiError(status, ev.text.empty() ? "generation failed" : ev.text, error_type_for_status(status),
                  code.empty() ? "" : "messages", code);
}

int64_t unix_time() { return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count(); }

bool is_delta(const ChatEvent& ev) {
  return ev.kind == ChatEvent::Kind::ReasoningDelta || ev.kind == ChatEvent::Kind::ContentDelta ||
         ev.kind == ChatEvent::Kind::ToolCallDelta;
}

StreamPump::StreamPump(std::unique_ptr<ChatStream> s) : stream_(std::move(s)) {
  thread_ = std::thread([this] {
    ChatEvent ev;
    while (stream_->next(ev)) {
      std::lock_guard lock(mu_);
      events_.push_back(std::move(ev));
      cv_.notify_all();
    }
  });
}

StreamPump::~StreamPump() {
  stream_->cancel();
  thread_.join();
}

void StreamPump::cancel() { stream_->cancel(); }

std::optional<ChatEvent> StreamPump::next_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  ChatEvent ev = std::move(events_.front());
  events_.pop_front();
  return ev;
}

std::optional<ChatEvent> first_event(StreamPump& pump, std::chrono::milliseconds wait) {
  auto ev = pump.next_for(wait);
  if (ev && ev->kind == ChatEvent::Kind::Error) throw api_error_from_event(*ev);
  return ev;
}

ChatEvent run_to_done(ServerContext& ctx, ChatStream& stream, Clock::time_point t0) {
  ChatEvent ev;
  bool first = true;
  while (stream.next(ev)) {
    if (is_delta(ev) && first) {
      ctx.metrics.first_token(seconds_since(t0));
      first = false;
    }
    if (ev.kind == ChatEvent::Kind::Error) throw api_error_from_event(ev);
    if (ev.kind == ChatEvent::Kind::Done) {
      if (ev.usage.is_object())
        ctx.metrics.tokens(ev.usage.value("prompt_tokens", 0L), ev.usage.value("completion_tokens", 0L));
      return ev;
    }
  }
  throw ApiError(500, "the generation ended without a result", "server_error");
}

namespace {

struct SseState {
  ServerContext* ctx;
  std::string route;
  Clock::time_point t0, last_delta;
  std::shared_ptr<StreamPump> pump;
  Admission::Ticket ticket;
  std::optional<ChatEvent> pending;
  std::shared_ptr<SseFormatter> fmt;
  bool began = false, saw_delta = false, ended = false;
};

bool write_all(httplib::DataSink& sink, const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); }

}  // namespace

void serve_sse(ServerContext& ctx, httplib::Response& res, const std::string& route, Clock::time_point t0,
               std::shared_ptr<StreamPump> pump, Admission::Ticket ticket, std::optional<ChatEvent> first,
               std::shared_ptr<SseFormatter> fmt) {
  auto st = std::make_shared<SseState>();
  st->ctx = &ctx;
  st->route = route;
  st->t0 = t0;
  st->pump = std::move(pump);
  st->ticket = std::move(ticket);
  st->pending = std::move(first);
  st->fmt = std::move(fmt);
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  const auto heartbeat = std::chrono::milliseconds(std::max(10, int(ctx.opts.heartbeat_s * 1000)));
  res.set_chunked_content_provider(
      "text/event-stream",
      [st, heartbeat](size_t, httplib::DataSink& sink) {
        if (st->ctx->stopping) return false;  // server shutting down: end the stream, cancel the request
        if (!st->began) {
          st->began = true;
          if (!write_all(sink, st->fmt->begin())) return false;
        }
        std::optional<ChatEvent> ev = std::move(st->pending);
        st->pending.reset();
        if (!ev) ev = st->pump->next_for(heartbeat);
        if (!ev) {
          if (st->ctx->stopping) return false;
          return write_all(sink, ": ping\n\n");  // a failed write means the client is gone
        }
        if (is_delta(*ev)) {
          double now = seconds_since(st->t0);
          if (!st->saw_delta) st->ctx->metrics.first_token(now);
          else st->ctx->metrics.inter_token(std::chrono::duration<double>(Clock::now() - st->last_delta).count());
          st->saw_delta = true;
          st->last_delta = Clock::now();
        }
        if (ev->kind == ChatEvent::Kind::Done && ev->usage.is_object())
          st->ctx->metrics.tokens(ev->usage.value("prompt_tokens", 0L), ev->usage.value("completion_tokens", 0L));
        if (!write_all(sink, st->fmt->event(*ev))) return false;
        if (ev->kind == ChatEvent::Kind::Done || ev->kind == ChatEvent::Kind::Error) {
          st->ended = true;
          sink.done();
        }
        return true;
      },
      [st](bool success) {
        if (!success || !st->ended) {
          st->pump->cancel();
          st->ctx->metrics.cancelled();
        }
        st->ctx->metrics.request_done(st->route, success && st->ended ? 200 : 499, seconds_since(st->t0));
        st->pump.reset();  // cancels (no-op when finished) and joins, freeing the request's KV blocks
        st->ticket.release();
      });
}

void send_json(ServerContext& ctx, httplib::Response& res, const std::string& route, Clock::time_point t0,
               const nlohmann::json& out) {
  res.set_content(out.dump(), "application/json");
  ctx.metrics.request_done(route, 200, seconds_since(t0));
}

std::unique_ptr<ChatStream> start_chat(ServerContext& ctx, const OJson& creq) {
  try {
    return ctx.chat.start_ordered(creq);
  } catch (const InputError& e) {
    throw ApiError(400, e.what(), "invalid_request_error");
  }
}

}  // namespace gptoss::server
