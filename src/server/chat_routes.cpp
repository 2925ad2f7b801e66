// POST /v1/chat/completions: OpenAI chat completions over the ChatService, streaming or not.
#include <fmt/format.h>

#include "core/error.h"
#include "server/context.h"

namespace gptoss::server {
namespace {

using nlohmann::json;

// The response message: OpenAI's fields plus the analysis text as `reasoning_content` and `reasoning`
// (vLLM and OpenRouter clients read one or the other).
json response_message(const ChatEvent& done) {
  json m = done.message.is_object() ? done.message : json::object();
  json out = {{"role", "assistant"}, {"content", m.contains("content") ? m["content"] : json(nullptr)}};
  std::string reasoning;
  if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) reasoning = m["reasoning_content"];
  else if (m.contains("reasoning") && m["reasoning"].is_string()) reasoning = m["reasoning"];
  out["reasoning_content"] = reasoning.empty() ? json(nullptr) : json(reasoning);
  out["reasoning"] = out["reasoning_content"];
  if (m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty()) out["tool_calls"] = m["tool_calls"];
  return out;
}

json usage_of(const ChatEvent& done) {
  json u = done.usage.is_object() ? done.usage : json::object();
  long p = u.value("prompt_tokens", 0L), c = u.value("completion_tokens", 0L);
  return {{"prompt_tokens", p}, {"completion_tokens", c}, {"total_tokens", p + c}};
}

std::string finish_reason_of(const ChatEvent& done) {
  return done.finish_reason.empty() || done.finish_reason == "cancelled" ? "stop" : done.finish_reason;
}

class ChatChunks : public SseFormatter {
 public:
  ChatChunks(std::string id, std::string model, bool include_usage)
      : id_(std::move(id)), model_(std::move(model)), include_usage_(include_usage), created_(unix_time()) {}

  std::string begin() override {
    return data(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  }

  std::string event(const ChatEvent& ev) override {
    switch (ev.kind) {
      case ChatEvent::Kind::ReasoningDelta:
        return data(chunk({{"reasoning_content", ev.text}, {"reasoning", ev.text}}, nullptr));
      case ChatEvent::Kind::ContentDelta:
        return data(chunk({{"content", ev.text}}, nullptr));
      case ChatEvent::Kind::ToolCallDelta: {
        json tc = {{"index", ev.tool_index}};
        if (!ev.tool_name.empty() || !ev.tool_id.empty()) {
          tc["id"] = ev.tool_id;
          tc["type"] = "function";
          tc["function"] = {{"name", ev.tool_name}, {"arguments", ev.text}};
        } else {
          tc["function"] = {{"arguments", ev.text}};
        }
        return data(chunk({{"tool_calls", json::array({tc})}}, nullptr));
      }
      case ChatEvent::Kind::Done: {
        json c = chunk(json::object(), finish_reason_of(ev));
        if (!ev.logprobs.is_null()) c["choices"][0]["logprobs"] = ev.logprobs;
        std::string out = data(c);
        if (include_usage_) {
          json u = base();
          u["choices"] = json::array();
          u["usage"] = usage_of(ev);
          out += data(u);
        }
        return out + "data: [DONE]\n\n";
      }
      case ChatEvent::Kind::Error: {
        ApiError e = api_error_from_event(ev);
        return data(error_json(e)) + "data: [DONE]\n\n";
      }
    }
    return {};
  }

 private:
  json base() const {
    return {{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_}, {"model", model_},
            {"system_fingerprint", "gptoss"}};
  }
  json chunk(json delta, json finish) const {
    json c = base();
    c["choices"] = json::array({{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", finish}}});
    c["usage"] = nullptr;
    return c;
  }
  static std::string data(const json& j) { return "data: " + j.dump() + "\n\n"; }

  std::string id_, model_;
  bool include_usage_;
  int64_t created_;
};

void handle_chat(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto t0 = Clock::now();
  const std::string route = "/v1/chat/completions";
  run_route(ctx, res, route, t0, [&] {
    OJson body = parse_body(req);
    ctx.check_model(body);
    StreamOptions so;
    OJson creq = normalise_chat_request(body, ctx.opts.emulate_constraints, so);
    Admission::Ticket ticket = ctx.admit();
    std::unique_ptr<ChatStream> stream = start_chat(ctx, creq);
    std::string id = ctx.new_id("chatcmpl-");
    std::string model = body.contains("model") && body["model"].is_string() ? body["model"].get<std::string>() : ctx.model_name();
    if (so.stream) {
      auto pump = std::make_shared<StreamPump>(std::move(stream));
      std::optional<ChatEvent> first = first_event(*pump);
      serve_sse(ctx, res, route, t0, std::move(pump), std::move(ticket), std::move(first),
                std::make_shared<ChatChunks>(id, model, so.include_usage));
      return;
    }
    ChatEvent done = run_to_done(ctx, *stream, t0);
    json choice = {{"index", 0}, {"message", response_message(done)}, {"logprobs", done.logprobs.is_null() ? json(nullptr) : done.logprobs},
                   {"finish_reason", finish_reason_of(done)}};
    json out = {{"id", id}, {"object", "chat.completion"}, {"created", unix_time()}, {"model", model},
                {"system_fingerprint", "gptoss"}, {"choices", json::array({choice})}, {"usage", usage_of(done)}};
    send_json(ctx, res, route, t0, out);
  });
}

}  // namespace

void register_chat_routes(httplib::Server& http, ServerContext& ctx) {
  http.Post("/v1/chat/completions", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_chat(ctx, req, res); });
}

}  // namespace gptoss::server
