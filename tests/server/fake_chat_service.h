// A ChatService whose replies are chosen by the last user message, for server tests:
//   "tool ..."  reasoning, then a get_weather call with arguments streamed in pieces (finish tool_calls)
//   "slow"      a content delta every 20 ms until cancelled
//   "hold"      nothing until release() (queue tests), then a normal reply
//   "toolong"   an Error: prompt longer than max_model_len (400)
//   anything    reasoning "thinking", content "Hello" + " world", finish stop, usage 5 + 2
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "api/chat_service.h"

namespace gptoss::testing {

class FakeChatService : public ChatService {
 public:
  std::string model_name() const override { return "fake-model"; }

  std::unique_ptr<ChatStream> start(const nlohmann::json& request) override {
    {
      std::lock_guard lock(mu_);
      requests_.push_back(request);
    }
    std::string last;
    for (const auto& m : request["messages"])
      if (m.value("role", "") == "user" && m["content"].is_string()) last = m["content"];
    return std::make_unique<Stream>(this, last);
  }

  std::vector<nlohmann::json> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  std::atomic<int> cancels{0}, live{0};

 private:
  static ChatEvent ev(ChatEvent::Kind k, std::string text = {}) {
    ChatEvent e;
    e.kind = k;
    e.text = std::move(text);
    return e;
  }

  class Stream : public ChatStream {
   public:
    Stream(FakeChatService* svc, std::string prompt) : svc_(svc) {
      ++svc_->live;
      using K = ChatEvent::Kind;
      nlohmann::json usage = {{"prompt_tokens", 5}, {"completion_tokens", 2}, {"total_tokens", 7}};
      if (prompt == "slow") {
        slow_ = true;
      } else if (prompt == "hold") {
        hold_ = true;
      }
      if (prompt == "toolong") {
        ChatEvent e = ev(K::Error, "request: the prompt has 9000 tokens but max_model_len is 4096");
        e.http_status = 400;
        script_.push_back(e);
      } else if (prompt.rfind("tool", 0) == 0) {
        script_.push_back(ev(K::ReasoningDelta, "need weather"));
        ChatEvent a = ev(K::ToolCallDelta, "{\"city\":");
        a.tool_index = 0;
        a.tool_id = "call_abc";
        a.tool_name = "get_weather";
        script_.push_back(a);
        ChatEvent b = ev(K::ToolCallDelta, "\"Paris\"}");
        b.tool_index = 0;
        script_.push_back(b);
        ChatEvent d = ev(K::Done);
        d.message = {{"role", "assistant"}, {"content", nullptr}, {"reasoning_content", "need weather"},
                     {"tool_calls", nlohmann::json::array({{{"id", "call_abc"}, {"type", "function"},
                                                           {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\"}"}}}}})}};
        d.finish_reason = "tool_calls";
        d.usage = usage;
        script_.push_back(d);
      } else {
        script_.push_back(ev(K::ReasoningDelta, "thinking"));
        script_.push_back(ev(K::ContentDelta, "Hello"));
        script_.push_back(ev(K::ContentDelta, " world"));
        ChatEvent d = ev(K::Done);
        d.message = {{"role", "assistant"}, {"content", "Hello world"}, {"reasoning_content", "thinking"}};
        d.finish_reason = "stop";
        d.usage = usage;
        script_.push_back(d);
      }
    }
    ~Stream() override { --svc_->live; }

    bool next(ChatEvent& out) override {
      if (done_) return false;
      if (hold_) {
        std::unique_lock lock(svc_->mu_);
        svc_->cv_.wait(lock, [&] { return svc_->released_ || cancelled_; });
      }
      if (slow_) {
        while (!cancelled_) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          if (cancelled_) break;
          out = ev(ChatEvent::Kind::ContentDelta, "x");
          return true;
        }
      }
      if (cancelled_) {
        out = ev(ChatEvent::Kind::Done);
        out.finish_reason = "cancelled";
        out.message = {{"role", "assistant"}, {"content", ""}};
        done_ = true;
        return true;
      }
      out = script_[i_++];
      if (out.kind == ChatEvent::Kind::Done || out.kind == ChatEvent::Kind::Error) done_ = true;
      return true;
    }
    void cancel() override {
      if (!cancelled_.exchange(true) && !done_) ++svc_->cancels;
      std::lock_guard lock(svc_->mu_);
      svc_->cv_.notify_all();
    }

   private:
    FakeChatService* svc_;
    std::vector<ChatEvent> script_;
    size_t i_ = 0;
    bool slow_ = false, hold_ = false;
    std::atomic<bool> done_{false};
    std::atomic<bool> cancelled_{false};
  };

  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<nlohmann::json> requests_;
};

}  // namespace gptoss::testing
