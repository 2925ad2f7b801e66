// A loopback OpenAI-compatible chat server for tests that misbehaves on cue.
//
// Each request takes the next Fault from the script (or Ok when the script is empty), optionally
// per prompt: a fault keyed by prompt text fires only for the request whose last user message is that
// text (first attempt only), so batch tests can fault some rows and not others.
// A good reply echoes the last user message: content "echo: <text>", reasoning "thinking about <text>",
// and, when the request has tools, one call of the first tool with {"text": <text>}.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace gptoss::testing {

struct Fault {
  enum class Kind { Ok, Status, Hang, Cut, Malformed } kind = Kind::Ok;
  int status = 200;
  std::string body;          // Status: the error body
  std::string retry_after;   // Status: Retry-After header when non-empty
  int hang_ms = 0;           // Hang: wait this long before an Ok reply
};

inline Fault fault(Fault::Kind kind) {
  Fault f;
  f.kind = kind;
  return f;
}
inline Fault ok() { return {}; }
inline Fault status(int code, std::string retry_after = "") {
  Fault f = fault(Fault::Kind::Status);
  f.status = code;
  f.body = "{\"error\":{\"message\":\"injected " + std::to_string(code) + "\"}}";
  f.retry_after = std::move(retry_after);
  return f;
}
inline Fault hang(int ms) {
  Fault f = fault(Fault::Kind::Hang);
  f.hang_ms = ms;
  return f;
}
inline Fault cut() { return fault(Fault::Kind::Cut); }
inline Fault malformed() { return fault(Fault::Kind::Malformed); }

class FaultServer {
 public:
  using Clock = std::chrono::steady_clock;
  struct Seen {
    nlohmann::json body;
    std::string authorization;
    Clock::time_point at;
  };

  FaultServer() {
    svr_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    // stop() before the accept loop runs would be lost and join() would hang.
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FaultServer() {
    stopping_ = true;
    svr_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/chat/completions"; }
  void script(std::vector<Fault> faults) {
    std::lock_guard lock(mu_);
    for (auto& f : faults) script_.push_back(std::move(f));
  }
  void fault_for_prompt(const std::string& prompt, Fault f) {
    std::lock_guard lock(mu_);
    per_prompt_[prompt] = std::move(f);
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  int max_concurrency() const { return max_active_; }
  int cut_streams_after = 2;  // Cut on a streaming request: chunks sent before the connection drops

 private:
  static std::string last_user_text(const nlohmann::json& body) {
    std::string text;
    for (const auto& m : body.value("messages", nlohmann::json::array()))
      if (m.value("role", "") == "user" && m.contains("content") && m["content"].is_string())
        text = m["content"].get<std::string>();
    return text;
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    int now_active = ++active_;
    for (int m = max_active_; now_active > m && !max_active_.compare_exchange_weak(m, now_active);) {
    }
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    std::string prompt = last_user_text(body);
    Fault f;
    {
      std::lock_guard lock(mu_);
      seen_.push_back({body, req.get_header_value("Authorization"), Clock::now()});
      auto it = per_prompt_.find(prompt);
      if (it != per_prompt_.end()) {
        f = it->second;
        per_prompt_.erase(it);
      } else if (!script_.empty()) {
        f = script_.front();
        script_.pop_front();
      }
    }
    respond(f, body, prompt, res);
    // Hold the slot a little so concurrency is observable.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    --active_;
  }

  void respond(const Fault& f, const nlohmann::json& body, const std::string& prompt, httplib::Response& res) {
    using nlohmann::json;
    bool stream = body.value("stream", false);
    bool tools = body.contains("tools") && body["tools"].is_array() && !body["tools"].empty();
    switch (f.kind) {
      case Fault::Kind::Status:
        res.status = f.status;
        if (!f.retry_after.empty()) res.set_header("Retry-After", f.retry_after);
        res.set_content(f.body, "application/json");
        return;
      case Fault::Kind::Malformed:
        res.set_content(stream ? "data: {not json\n\n" : "{\"choices\": [", stream ? "text/event-stream" : "application/json");
        return;
      case Fault::Kind::Hang:
        for (int waited = 0; waited < f.hang_ms && !stopping_; waited += 10)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        break;
      default: break;
    }
    std::string tool_name = tools ? body["tools"][0]["function"].value("name", "tool") : "";
    json args = {{"text", prompt}};
    json usage = {{"prompt_tokens", 10}, {"completion_tokens", 5}, {"total_tokens", 15}};
    if (!stream) {
      json msg = {{"role", "assistant"}, {"content", "echo: " + prompt}, {"reasoning_content", "thinking about " + prompt}};
      if (tools)
        msg["tool_calls"] = json::array({{{"id", "call_x1"}, {"type", "function"},
                                          {"function", {{"name", tool_name}, {"arguments", args.dump()}}}}});
      json reply = {{"id", "chatcmpl-1"}, {"object", "chat.completion"}, {"model", body.value("model", "")},
                    {"choices", json::array({{{"index", 0}, {"message", msg}, {"finish_reason", tools ? "tool_calls" : "stop"}}})},
                    {"usage", usage}};
      std::string text = reply.dump();
      if (f.kind == Fault::Kind::Cut) {
        // Promise the whole body, send half of it, drop the connection.
        auto half = std::make_shared<std::string>(text.substr(0, text.size() / 2));
        res.set_content_provider(text.size(), "application/json", [half](size_t offset, size_t, httplib::DataSink& sink) {
          if (offset == 0) sink.write(half->data(), half->size());
          return offset == 0;
        });
        return;
      }
      res.set_content(text, "application/json");
      return;
    }
    std::vector<json> chunks;
    auto chunk = [&](json delta, json finish = nullptr) {
      chunks.push_back({{"id", "chatcmpl-1"}, {"object", "chat.completion.chunk"},
                        {"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}});
    };
    chunk({{"role", "assistant"}, {"reasoning", "thinking "}});  // vLLM's spelling
    chunk({{"reasoning_content", "about " + prompt}});             // Together's spelling
    chunk({{"content", "echo: "}});
    chunk({{"content", prompt}});
    if (tools) {
      std::string a = args.dump();
      chunk({{"tool_calls", json::array({{{"index", 0}, {"id", "call_x1"}, {"type", "function"},
                                          {"function", {{"name", tool_name}, {"arguments", ""}}}}})}});
      chunk({{"tool_calls", json::array({{{"index", 0}, {"function", {{"arguments", a.substr(0, 5)}}}}})}});
      chunk({{"tool_calls", json::array({{{"index", 0}, {"function", {{"arguments", a.substr(5)}}}}})}});
    }
    chunk(json::object(), tools ? "tool_calls" : "stop");
    chunks.push_back({{"id", "chatcmpl-1"}, {"object", "chat.completion.chunk"}, {"choices", json::array()}, {"usage", usage}});
    auto events = std::make_shared<std::vector<std::string>>();
    for (auto& c : chunks) events->push_back("data: " + c.dump() + "\n\n");
    events->push_back("data: [DONE]\n\n");
    size_t limit = f.kind == Fault::Kind::Cut ? size_t(cut_streams_after) : events->size();
    res.set_chunked_content_provider("text/event-stream", [events, limit, i = size_t(0)](size_t, httplib::DataSink& sink) mutable {
      if (i >= limit) {
        if (limit < events->size()) return false;  // drop the connection mid-stream
        sink.done();
        return true;
      }
      sink.write((*events)[i].data(), (*events)[i].size());
      ++i;
      return true;
    });
  }

  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::deque<Fault> script_;
  std::map<std::string, Fault> per_prompt_;
  std::vector<Seen> seen_;
  std::atomic<int> active_{0}, max_active_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace gptoss::testing
