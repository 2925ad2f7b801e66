// POST /v1/responses: the Responses API mapped onto one chat turn.
#include <fmt/format.h>

#include "core/error.h"
#include "server/context.h"

namespace gptoss::server {
namespace {

using nlohmann::json;

struct ResponseShell {
  std::string id, model;
  int64_t created = unix_time();
  json request;  // echoed fields
};

json response_object(const ResponseShell& s, const std::string& status, json output, json usage,
                     json incomplete = nullptr, json error = nullptr) {
  json r = {{"id", s.id}, {"object", "response"}, {"created_at", s.created}, {"status", status},
            {"model", s.model}, {"output", std::move(output)}, {"error", std::move(error)},
            {"incomplete_details", std::move(incomplete)}, {"parallel_tool_calls", true},
            {"instructions", s.request.value("instructions", json(nullptr))},
            {"max_output_tokens", s.request.value("max_output_tokens", json(nullptr))},
            {"reasoning", s.request.value("reasoning", json::object())},
            {"temperature", s.request.value("temperature", json(1.0))},
            {"top_p", s.request.value("top_p", json(1.0))},
            {"tools", s.request.value("tools", json::array())},
            {"tool_choice", s.request.value("tool_choice", json("auto"))},
            {"usage", std::move(usage)}, {"metadata", json::object()}};
  return r;
}

json responses_usage(const ChatEvent& done) {
  json u = done.usage.is_object() ? done.usage : json::object();
  long p = u.value("prompt_tokens", 0L), c = u.value("completion_tokens", 0L);
  return {{"input_tokens", p}, {"input_tokens_details", {{"cached_tokens", 0}}}, {"output_tokens", c},
          {"output_tokens_details", {{"reasoning_tokens", 0}}}, {"total_tokens", p + c}};
}

json incomplete_of(const ChatEvent& done) {
  return done.finish_reason == "length" ? json{{"reason", "max_output_tokens"}} : json(nullptr);
}

// Output items of a finished turn: reasoning, message, function calls.
json output_items(ServerContext& ctx, const ChatEvent& done) {
  json out = json::array();
  const json& m = done.message;
  std::string reasoning = m.value("reasoning_content", m.value("reasoning", std::string()));
  if (!reasoning.empty())
    out.push_back({{"type", "reasoning"}, {"id", ctx.new_id("rs_")}, {"summary", json::array()},
                   {"content", json::array({{{"type", "reasoning_text"}, {"text", reasoning}}})}});
  if (m.contains("content") && m["content"].is_string() && !m["content"].get<std::string>().empty())
    out.push_back({{"type", "message"}, {"id", ctx.new_id("msg_")}, {"status", "completed"}, {"role", "assistant"},
                   {"content", json::array({{{"type", "output_text"}, {"text", m["content"]}, {"annotations", json::array()}}})}});
  if (m.contains("tool_calls") && m["tool_calls"].is_array())
    for (const auto& tc : m["tool_calls"])
      out.push_back({{"type", "function_call"}, {"id", ctx.new_id("fc_")}, {"call_id", tc.value("id", std::string())},
                     {"name", tc["function"].value("name", std::string())},
                     {"arguments", tc["function"].value("arguments", std::string())}, {"status", "completed"}});
  return out;
}

// Streaming: one output item open at a time; a delta of another kind (or another tool call) closes it.
class ResponseEvents : public SseFormatter {
 public:
  ResponseEvents(ServerContext& ctx, ResponseShell shell) : ctx_(ctx), s_(std::move(shell)) {}

  std::string begin() override {
    json r = response_object(s_, "in_progress", json::array(), nullptr);
    return send("response.created", {{"response", r}}) + send("response.in_progress", {{"response", r}});
  }

  std::string event(const ChatEvent& ev) override {
    std::string out;
    switch (ev.kind) {
      case ChatEvent::Kind::ReasoningDelta:
      case ChatEvent::Kind::ContentDelta: {
        Open kind = ev.kind == ChatEvent::Kind::ReasoningDelta ? Open::kReasoning : Open::kMessage;
        if (open_ != kind) out += close() + open(kind, ev);
        text_ += ev.text;
        out += send(kind == Open::kReasoning ? "response.reasoning_text.delta" : "response.output_text.delta",
                    {{"item_id", item_["id"]}, {"output_index", index_}, {"content_index", 0}, {"delta", ev.text}});
        return out;
      }
      case ChatEvent::Kind::ToolCallDelta: {
        if (open_ != Open::kCall || call_index_ != ev.tool_index) out += close() + open(Open::kCall, ev);
        text_ += ev.text;
        if (!ev.text.empty())
          out += send("response.function_call_arguments.delta",
                      {{"item_id", item_["id"]}, {"output_index", index_}, {"delta", ev.text}});
        return out;
      }
      case ChatEvent::Kind::Done: {
        out += close();
        std::string status = ev.finish_reason == "length" ? "incomplete" : "completed";
        json r = response_object(s_, status, items_, responses_usage(ev), incomplete_of(ev));
        return out + send(status == "completed" ? "response.completed" : "response.incomplete", {{"response", r}});
      }
      case ChatEvent::Kind::Error: {
        ApiError e = api_error_from_event(ev);
        json r = response_object(s_, "failed", items_, nullptr, nullptr,
                                 {{"code", e.code.empty() ? "server_error" : e.code}, {"message", e.what()}});
        return out + send("response.failed", {{"response", r}});
      }
    }
    return out;
  }

 private:
  enum class Open { kNone, kReasoning, kMessage, kCall };

  std::string send(const std::string& type, json data) {
    data["type"] = type;
    data["sequence_number"] = seq_++;
    return "event: " + type + "\ndata: " + data.dump() + "\n\n";
  }

  std::string open(Open kind, const ChatEvent& ev) {
    open_ = kind;
    text_.clear();
    index_ = int(items_.size());
    std::string out;
    if (kind == Open::kReasoning) {
      item_ = {{"type", "reasoning"}, {"id", ctx_.new_id("rs_")}, {"summary", json::array()}, {"content", json::array()}};
      out = send("response.output_item.added", {{"output_index", index_}, {"item", item_}});
    } else if (kind == Open::kMessage) {
      item_ = {{"type", "message"}, {"id", ctx_.new_id("msg_")}, {"status", "in_progress"}, {"role", "assistant"},
               {"content", json::array()}};
      out = send("response.output_item.added", {{"output_index", index_}, {"item", item_}});
      out += send("response.content_part.added",
                  {{"item_id", item_["id"]}, {"output_index", index_}, {"content_index", 0},
                   {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
    } else {
      call_index_ = ev.tool_index;
      item_ = {{"type", "function_call"}, {"id", ctx_.new_id("fc_")}, {"call_id", ev.tool_id}, {"name", ev.tool_name},
               {"arguments", ""}, {"status", "in_progress"}};
      out = send("response.output_item.added", {{"output_index", index_}, {"item", item_}});
    }
    return out;
  }

  std::string close() {
    std::string out;
    if (open_ == Open::kNone) return out;
    if (open_ == Open::kReasoning) {
      out += send("response.reasoning_text.done", {{"item_id", item_["id"]}, {"output_index", index_}, {"content_index", 0}, {"text", text_}});
      item_["content"] = json::array({{{"type", "reasoning_text"}, {"text", text_}}});
    } else if (open_ == Open::kMessage) {
      json part = {{"type", "output_text"}, {"text", text_}, {"annotations", json::array()}};
      out += send("response.output_text.done", {{"item_id", item_["id"]}, {"output_index", index_}, {"content_index", 0}, {"text", text_}});
      out += send("response.content_part.done", {{"item_id", item_["id"]}, {"output_index", index_}, {"content_index", 0}, {"part", part}});
      item_["status"] = "completed";
      item_["content"] = json::array({part});
    } else {
      out += send("response.function_call_arguments.done", {{"item_id", item_["id"]}, {"output_index", index_}, {"arguments", text_}});
      item_["arguments"] = text_;
      item_["status"] = "completed";
    }
    out += send("response.output_item.done", {{"output_index", index_}, {"item", item_}});
    items_.push_back(item_);
    open_ = Open::kNone;
    return out;
  }

  ServerContext& ctx_;
  ResponseShell s_;
  int64_t seq_ = 0;
  Open open_ = Open::kNone;
  json item_, items_ = json::array();
  std::string text_;
  int index_ = 0, call_index_ = -1;
};

void handle_responses(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto t0 = Clock::now();
  const std::string route = "/v1/responses";
  run_route(ctx, res, route, t0, [&] {
    OJson body = parse_body(req);
    ctx.check_model(body);
    StreamOptions so;
    OJson chat = responses_to_chat(body, so);
    OJson creq = normalise_chat_request(chat, ctx.opts.emulate_constraints, so);
    Admission::Ticket ticket = ctx.admit();
    std::unique_ptr<ChatStream> stream = start_chat(ctx, creq);
    ResponseShell shell;
    shell.id = ctx.new_id("resp_");
    shell.model = body.contains("model") && body["model"].is_string() ? body["model"].get<std::string>() : ctx.model_name();
    shell.request = json::parse(body.dump());
    if (so.stream) {
      auto pump = std::make_shared<StreamPump>(std::move(stream));
      std::optional<ChatEvent> first = first_event(*pump);
      serve_sse(ctx, res, route, t0, std::move(pump), std::move(ticket), std::move(first),
                std::make_shared<ResponseEvents>(ctx, std::move(shell)));
      return;
    }
    ChatEvent done = run_to_done(ctx, *stream, t0);
    std::string status = done.finish_reason == "length" ? "incomplete" : "completed";
    json out = response_object(shell, status, output_items(ctx, done), responses_usage(done), incomplete_of(done));
    send_json(ctx, res, route, t0, out);
  });
}

}  // namespace

void register_responses_routes(httplib::Server& http, ServerContext& ctx) {
  http.Post("/v1/responses", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_responses(ctx, req, res); });
}

}  // namespace gptoss::server
