#include "server/server.h"

#include <sys/socket.h>

#include <algorithm>
#include <csignal>

#include <fmt/format.h>

#include "core/error.h"
#include "engine/engine.h"
#include "server/auth.h"
#include "server/context.h"

namespace gptoss::server {
namespace {

using nlohmann::json;

void handle_models(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  json model = {{"id", ctx.model_name()}, {"object", "model"}, {"created", 0}, {"owned_by", "gptoss"}};
  // LoRA adapters are models of their own, with the base as parent (as vLLM lists them).
  auto adapter = [&](const std::string& name) {
    json m = model;
    m["id"] = name;
    m["parent"] = ctx.model_name();
    return m;
  };
  const auto adapters = ctx.chat.adapter_names();
  if (req.matches.size() > 1) {
    std::string id = req.matches[1];
    if (std::find(adapters.begin(), adapters.end(), id) != adapters.end()) {
      res.set_content(adapter(id).dump(), "application/json");
      return;
    }
    bool ok = id == ctx.model_name();
    for (const auto& a : ctx.opts.model_aliases) ok = ok || id == a;
    if (!ok) {
      send_error(res, ApiError(404, fmt::format("The model `{}` does not exist", id), "invalid_request_error", "model",
                               "model_not_found"));
      return;
    }
    model["id"] = id;
    res.set_content(model.dump(), "application/json");
    return;
  }
  json data = json::array({model});
  for (const auto& a : ctx.opts.model_aliases) {
    json m = model;
    m["id"] = a;
    data.push_back(m);
  }
  for (const auto& a : adapters) data.push_back(adapter(a));
  res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
}

}  // namespace

Server::Server(ChatService& chat, ServerOptions opts, std::shared_ptr<Engine> engine, std::optional<Tokenizer> tokenizer)
    : ctx_(std::make_unique<ServerContext>(chat, std::move(opts), std::move(engine), std::move(tokenizer))),
      http_(std::make_unique<httplib::Server>()) {
  ServerContext& ctx = *ctx_;
  const ServerOptions& o = ctx.opts;
  if (o.queue_full_status != 429 && o.queue_full_status != 503)
    fail_input("serve: queue_full_status is {}; expected 429 or 503", o.queue_full_status);
  if (o.max_active < 1) fail_input("serve: max_active is {}; expected >= 1", o.max_active);
  if (o.max_queue < 0) fail_input("serve: max_queue is {}; expected >= 0", o.max_queue);
  // A client that goes away must not kill the process with SIGPIPE; the failed write reports it.
  std::signal(SIGPIPE, SIG_IGN);

  int threads = o.http_threads > 0 ? o.http_threads : o.max_active + o.max_queue + 16;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_->set_payload_max_length(o.max_body_bytes);
  http_->set_keep_alive_max_count(1000);
  http_->set_read_timeout(60, 0);
  http_->set_write_timeout(30, 0);

  http_->set_pre_routing_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health" || req.path == "/metrics" || ctx.opts.api_key.empty())
      return httplib::Server::HandlerResponse::Unhandled;
    AuthResult a = check_bearer(req.get_header_value("Authorization"), ctx.opts.api_key);
    if (a == AuthResult::kOk) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401,
                             a == AuthResult::kMissing
                                 ? "You didn't provide an API key; send it as 'Authorization: Bearer <key>'"
                                 : "Incorrect API key provided",
                             "invalid_request_error", "", "invalid_api_key"));
    ctx.metrics.request_done(req.path, 401, 0.0);
    return httplib::Server::HandlerResponse::Handled;
  });

  register_chat_routes(*http_, ctx);
  register_responses_routes(*http_, ctx);
  register_completions_routes(*http_, ctx);
  http_->Get("/v1/models", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_models(ctx, req, res); });
  http_->Get(R"(/v1/models/(.+))", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_models(ctx, req, res); });
  http_->Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http_->Get("/metrics", [&ctx](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx.metrics.render(ctx.admission.active(), ctx.admission.waiting(), ctx.admission.rejected(),
                                       ctx.engine.get()),
                    "text/plain; version=0.0.4");
  });

  // Statuses httplib produces itself (unknown route, body too large, bad request line) get OpenAI bodies.
  http_->set_error_handler([&ctx](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg;
    std::string code;
    switch (res.status) {
      case 404: msg = fmt::format("Unknown route: {} {}", req.method, req.path); code = "unknown_route"; break;
      case 413:
        msg = fmt::format("The request body is larger than the server's limit of {} bytes (serve --max-body-bytes)",
                          ctx.opts.max_body_bytes);
        code = "request_too_large";
        break;
      default: msg = fmt::format("HTTP {}", res.status); break;
    }
    res.set_content(error_json(msg, error_type_for_status(res.status), "", code).dump(), "application/json");
  });
  http_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    int status = 500;
    try {
      std::rethrow_exception(ep);
    } catch (const InputError& e) {
      msg = e.what();
      status = 400;
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    res.status = status;
    res.set_content(error_json(msg, error_type_for_status(status), "", "").dump(), "application/json");
  });
}

Server::~Server() { stop(); }

int Server::start() {
  const ServerOptions& o = ctx_->opts;
  int listen_fd = -1;
  http_->set_socket_options([&listen_fd](int fd) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    listen_fd = fd;
  });
  if (o.port == 0) {
    port_ = http_->bind_to_any_port(o.host);
    if (port_ < 0) fail_input("serve: cannot listen on {}: no free port", o.host);
  } else {
    if (!http_->bind_to_port(o.host, o.port))
      fail_input("serve: cannot listen on {}:{} (in use, or not a local address); pick another --port", o.host, o.port);
    port_ = o.port;
  }
  // The library listens with a backlog of 5; many clients connecting at once (the load test's 256) would
  // see dropped SYNs and 1 s retransmits. Listening again on the same socket raises the backlog.
  if (listen_fd >= 0) ::listen(listen_fd, 1024);
  running_ = true;
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  while (!http_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return port_;
}

void Server::wait() {
  if (thread_.joinable()) thread_.join();
}

void Server::stop() {
  if (!running_.exchange(false)) return;
  ctx_->stopping = true;
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace gptoss::server
