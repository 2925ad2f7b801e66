#include "remote/remote_chat_service.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "core/error.h"
#include "remote/http_client.h"
#include "remote/reply_decoder.h"
#include "remote/retry_policy.h"
#include "remote/sse.h"

namespace gptoss {

using nlohmann::json;

struct RemoteChatService::Job {
  nlohmann::ordered_json request;
  bool stream = false;
  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable cv;
  std::deque<ChatEvent> events;
  bool started = false, closed = false;

  void push(ChatEvent ev) {
    std::lock_guard lock(mu);
    if (closed) return;
    if (ev.kind == ChatEvent::Kind::Done || ev.kind == ChatEvent::Kind::Error) closed = true;
    events.push_back(std::move(ev));
    cv.notify_all();
  }
  static ChatEvent cancelled(json message = json()) {
    ChatEvent ev;
    ev.kind = ChatEvent::Kind::Done;
    ev.finish_reason = "cancelled";
    ev.message = message.is_object() ? std::move(message) : json{{"role", "assistant"}, {"content", ""}};
    ev.usage = {{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}};
    return ev;
  }
};

namespace {

ChatEvent error_event(std::string text, int status) {
  ChatEvent ev;
  ev.kind = ChatEvent::Kind::Error;
  ev.text = std::move(text);
  ev.http_status = status;
  return ev;
}

class RemoteStream : public ChatStream {
 public:
  explicit RemoteStream(std::shared_ptr<RemoteChatService::Job> job) : job_(std::move(job)) {}
  ~RemoteStream() override { cancel(); }

  bool next(ChatEvent& ev) override {
    if (finished_) return false;
    std::unique_lock lock(job_->mu);
    job_->cv.wait(lock, [&] { return !job_->events.empty(); });
    ev = std::move(job_->events.front());
    job_->events.pop_front();
    if (ev.kind == ChatEvent::Kind::Done || ev.kind == ChatEvent::Kind::Error) finished_ = true;
    return true;
  }

  void cancel() override {
    job_->cancel = true;
    bool queued;
    {
      std::lock_guard lock(job_->mu);
      queued = !job_->started;
    }
    // Not picked up by a worker yet: answer now rather than after the requests ahead of it.
    if (queued) job_->push(RemoteChatService::Job::cancelled());
  }

 private:
  std::shared_ptr<RemoteChatService::Job> job_;
  bool finished_ = false;
};

std::string resolve_key(const RemoteEngineOptions& o) {
  if (!o.params.api_key.empty()) return o.params.api_key;
  std::string env = o.params.api_key_env_varname.empty() ? std::string(default_api_key_env(o.kind))
                                                         : o.params.api_key_env_varname;
  if (env.empty()) return {};
  const char* v = std::getenv(env.c_str());
  if (!v || !*v)
    fail_input("engine {} needs an API key: environment variable {} is not set; export {}=<key> or set "
               "remote_params.api_key",
               remote_kind_name(o.kind), env, env);
  return v;
}

int client_status_for(long upstream) {
  switch (upstream) {
    case 400: case 404: case 413: case 422: return 400;
    case 429: return 429;
    default: return 502;
  }
}

}  // namespace

void validate_chat_request_shape(const nlohmann::ordered_json& request) {
  if (!request.is_object()) fail_input("request: the body is {}; expected a JSON object", request.type_name());
  auto it = request.find("messages");
  if (it == request.end()) fail_input("request: `messages` is missing; expected an array of messages");
  if (!it->is_array() || it->empty())
    fail_input("request: `messages` is {}; expected a non-empty array of messages",
               it->is_array() ? "an empty array" : it->type_name());
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    if (!m.is_object()) fail_input("request: messages[{}] is {}; expected an object", i, m.type_name());
    if (!m.contains("role") || !m["role"].is_string())
      fail_input("request: messages[{}].role is missing; expected one of system, developer, user, assistant, tool", i);
  }
  if (request.contains("tools") && !request["tools"].is_null() && !request["tools"].is_array())
    fail_input("request: `tools` is {}; expected an array of tool definitions", request["tools"].type_name());
}

RemoteChatService::RemoteChatService(RemoteEngineOptions opts) : opts_(std::move(opts)), limiter_(opts_.params) {
  const RemoteParams& p = opts_.params;
  const auto name = remote_kind_name(opts_.kind);
  url_ = p.api_url.empty() ? std::string(default_api_url(opts_.kind)) : p.api_url;
  if (url_.empty())
    fail_input("engine {}: remote_params.api_url is not set; expected the full chat-completions URL, e.g. "
               "http://localhost:8000/v1/chat/completions",
               name);
  if (url_.rfind("http://", 0) != 0 && url_.rfind("https://", 0) != 0)
    fail_input("engine {}: remote_params.api_url is '{}'; expected an http:// or https:// URL", name, url_);
  if (p.num_workers < 1)
    fail_input("engine {}: remote_params.num_workers is {}; expected 1 or more", name, p.num_workers);
  if (p.max_retries < 0)
    fail_input("engine {}: remote_params.max_retries is {}; expected 0 or more", name, p.max_retries);
  if (!(p.connection_timeout > 0))
    fail_input("engine {}: remote_params.connection_timeout is {}; expected seconds > 0", name, p.connection_timeout);
  if (p.politeness_policy < 0)
    fail_input("engine {}: remote_params.politeness_policy is {}; expected seconds >= 0", name, p.politeness_policy);
  if (opts_.model.empty())
    fail_input("engine {}: model.model_name is empty; expected the remote model id, e.g. openai/gpt-oss-120b", name);
  key_ = resolve_key(opts_);
  for (int i = 0; i < p.num_workers; ++i) workers_.emplace_back([this] { worker_main(); });
}

RemoteChatService::~RemoteChatService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& job : queue_) {
      job->cancel = true;
      job->push(Job::cancelled());
    }
    queue_.clear();
    for (auto& job : running_) job->cancel = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

std::unique_ptr<ChatStream> RemoteChatService::start(const json& request) {
  return start_ordered(nlohmann::ordered_json::parse(request.dump()));
}

std::unique_ptr<ChatStream> RemoteChatService::start_ordered(const nlohmann::ordered_json& request) {
  validate_chat_request_shape(request);
  auto job = std::make_shared<Job>();
  job->request = request;
  job->stream = request.contains("stream") && request["stream"].is_boolean() && request["stream"].get<bool>();
  {
    std::lock_guard lock(mu_);
    if (stopping_) fail("engine {}: the service is shutting down", remote_kind_name(opts_.kind));
    queue_.push_back(job);
  }
  cv_.notify_one();
  return std::make_unique<RemoteStream>(std::move(job));
}

nlohmann::ordered_json RemoteChatService::upstream_body(const nlohmann::ordered_json& request, bool stream) const {
  nlohmann::ordered_json body = request;
  body["model"] = opts_.model;
  // The Responses-style `reasoning: {effort}` is ours to accept; chat completions spell it this way.
  if (body.contains("reasoning") && body["reasoning"].is_object()) {
    if (!body.contains("reasoning_effort") && body["reasoning"].contains("effort"))
      body["reasoning_effort"] = body["reasoning"]["effort"];
    body.erase("reasoning");
  }
  body.erase("stream_options");
  if (stream) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
  } else {
    body.erase("stream");
  }
  // OpenAI rejects fields it does not know inside messages; the others accept (and vLLM uses) the
  // reasoning of earlier assistant turns.
  if (opts_.kind == RemoteKind::OpenAI)
    for (auto& m : body["messages"])
      if (m.is_object()) m.erase("reasoning_content"), m.erase("reasoning");
  return body;
}

bool RemoteChatService::sleep_unless_cancelled(double seconds, const std::atomic<bool>& cancel) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
  for (;;) {
    if (cancel.load()) return false;
    auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        until - now, std::chrono::milliseconds(20)));
  }
}

void RemoteChatService::worker_main() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
      running_.push_back(job);
    }
    bool run_it;
    {
      std::lock_guard lock(job->mu);
      run_it = !job->closed;
      job->started = true;
    }
    if (run_it) {
      try {
        run(*job);
      } catch (const std::exception& e) {
        job->push(error_event(e.what(), 500));
      }
    }
    {
      std::lock_guard lock(mu_);
      running_.erase(std::find(running_.begin(), running_.end(), job));
    }
    if (run_it && opts_.params.politeness_policy > 0) {
      auto until = std::chrono::steady_clock::now() +
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(opts_.params.politeness_policy * opts_.params.delay_scale));
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, until, [&] { return stopping_; });
    }
  }
}

void RemoteChatService::run(Job& job) {
  const RemoteParams& p = opts_.params;
  const auto name = remote_kind_name(opts_.kind);
  const std::string body = upstream_body(job.request, job.stream).dump();
  std::vector<std::string> headers = {"Content-Type: application/json",
                                      job.stream ? "Accept: text/event-stream" : "Accept: application/json"};
  if (!key_.empty()) headers.push_back("Authorization: Bearer " + key_);

  for (int attempt = 0;; ++attempt) {
    if (!limiter_.acquire(&job.cancel)) return job.push(Job::cancelled());
    ReplyDecoder dec;
    SseParser sse;
    bool saw_done = false;
    std::string malformed;
    SseParser::Handler on_event = [&](const std::string&, const std::string& data) {
      if (!malformed.empty() || saw_done) return;
      if (data == "[DONE]") {
        saw_done = true;
        return;
      }
      try {
        std::vector<ChatEvent> evs;
        dec.add_chunk(json::parse(data), evs);
        for (auto& ev : evs) job.push(std::move(ev));
      } catch (const std::exception& e) {
        malformed = e.what();
      }
    };
    HttpRequest req;
    req.url = url_;
    req.headers = headers;
    req.body = body;
    req.connect_timeout_s = p.connection_timeout;
    req.cancel = &job.cancel;
    if (job.stream) {
      req.idle_timeout_s = p.connection_timeout;
      req.on_body = [&](std::string_view bytes) {
        sse.feed(bytes, on_event);
        return malformed.empty();
      };
    } else {
      req.total_timeout_s = p.connection_timeout;
    }
    ++requests_sent_;
    HttpResponse r = http_post(req);
    if (job.cancel.load()) return job.push(Job::cancelled(dec.done().message));

    std::string what;
    bool retryable = true;
    int client_status = 502;
    std::optional<double> retry_after;
    if (!malformed.empty()) {
      what = "malformed reply: " + malformed;
    } else if (r.failure != HttpResponse::Failure::None) {
      what = std::string(failure_name(r.failure)) + " (" + r.error + ")";
      if (r.failure == HttpResponse::Failure::Timeout) client_status = 504;
    } else if (r.status < 200 || r.status >= 300) {
      what = "HTTP " + std::to_string(r.status) + ": " + upstream_error_message(r.body);
      retryable = is_retryable_status(r.status);
      client_status = client_status_for(r.status);
      auto it = r.headers.find("retry-after");
      if (it != r.headers.end()) retry_after = parse_retry_after(it->second, std::time(nullptr));
    } else if (job.stream) {
      sse.finish(on_event);
      if (!malformed.empty()) what = "malformed reply: " + malformed;
      else if (!saw_done && !dec.saw_finish()) what = "the stream ended before a finish_reason or [DONE]";
    } else {
      try {
        std::vector<ChatEvent> evs;
        dec.add_reply(json::parse(r.body), evs);
        for (auto& ev : evs) job.push(std::move(ev));
      } catch (const std::exception& e) {
        what = "malformed reply: " + std::string(e.what());
      }
    }
    if (what.empty()) {
      ChatEvent done = dec.done();
      long in = done.usage.value("prompt_tokens", 0L), out = done.usage.value("completion_tokens", 0L);
      limiter_.record_usage(in, out);
      return job.push(std::move(done));
    }
    if (dec.emitted_anything() && job.stream) {
      retryable = false;
      what += " after part of the reply was streamed";
    }
    if (!retryable || attempt >= p.max_retries) {
      std::string msg = fmt::format("engine {} ({}): {}; gave up after {} attempt{}", name, url_, what, attempt + 1,
                                    attempt == 0 ? "" : "s");
      return job.push(error_event(msg, client_status));
    }
    if (!sleep_unless_cancelled(retry_wait_seconds(p, attempt, retry_after), job.cancel))
      return job.push(Job::cancelled());
  }
}

}  // namespace gptoss
