// OpenAI chat completions <-> harmony conversations (shared by the server, `gptoss infer` and tests).
//
// chat_to_harmony(request): the body of /v1/chat/completions ->
//   1. a system message: SystemContent::defaults() with the request's reasoning effort
//      (`reasoning_effort`: "low"|"medium"|"high", or `reasoning: {effort}`; default from options) and
//      the caller's current date (options.current_date; none = no "Current date" line);
//   2. a developer message when there are instructions or tools: every `system`/`developer` message's
//      text, in order, joined by a blank line, under "# Instructions"; `tools` (type "function") as the
//      `functions` namespace with their JSON Schemas;
//   3. the turns:
//      user      -> user message (text, or the concatenated text parts of a content array)
//      assistant -> reasoning text (`reasoning_content`, also accepted as `reasoning` / `thinking`) as
//                   an analysis message; `content` as a final message (as a commentary preamble when
//                   the message also has tool_calls); each tool_call as a commentary message to
//                   `functions.NAME` with content type "<|constrain|>json" and the arguments string
//                   (an arguments object is serialised)
//      tool      -> a message from author `functions.NAME` to=assistant on commentary, NAME found from
//                   `tool_call_id` among earlier assistant tool calls (else the message's `name`).
//   Render it with harmony::render_for_completion_tokens(conv, Role::kAssistant, tok) (auto-dropping the
//   analysis of finished turns, as upstream does).
//   JSON Schema key order matters for the rendering: pass the request as nlohmann::ordered_json (parse
//   the body with ordered_json::parse). The nlohmann::json overload works but properties then render in
//   sorted order.
//   Errors throw gptoss::InputError naming the field, e.g. "messages[2].role is 'robot'; expected ...".
//
// harmony_to_chat_message(parsed): the assistant's parsed messages -> OpenAI message JSON:
//   {role: "assistant", content: final and commentary-preamble text (null when none),
//    reasoning_content: analysis text (omitted when none), tool_calls: [{id: "call_...", type:
//    "function", function: {name, arguments}}] (omitted when none)}. A recipient "functions.NAME" gives
//   name NAME; other recipients (browser.search, python) are kept whole.
// chat_finish_reason: "tool_calls" when the output ended in <|call|>, else "length" when the token
//   limit was hit, else "stop".
// ChatEventMapper turns StreamParser events into ChatEvent deltas (reasoning / content / tool call)
//   for streaming responses, and gives the same final message as harmony_to_chat_message.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/chat_service.h"
#include "harmony/harmony.h"
#include "harmony/parser.h"

namespace gptoss {

struct ChatMappingOptions {
  std::optional<std::string> current_date;  // "YYYY-MM-DD" for the system message; none: no date line
  harmony::ReasoningEffort default_effort = harmony::ReasoningEffort::kMedium;
  std::optional<std::string> model_identity;  // overrides the default identity line
};

struct HarmonyRequest {
  harmony::Conversation conversation;
  harmony::ReasoningEffort effort = harmony::ReasoningEffort::kMedium;
  bool has_tools = false;  // the request declared function tools
};

HarmonyRequest chat_to_harmony(const nlohmann::ordered_json& request, const ChatMappingOptions& opts = {});
HarmonyRequest chat_to_harmony(const nlohmann::json& request, const ChatMappingOptions& opts = {});

// Tool-call ids: "call_" + 24 random alphanumerics (default), or the caller's generator (tests).
using ToolCallIdFn = std::function<std::string()>;
std::string random_tool_call_id();

nlohmann::json harmony_to_chat_message(const std::vector<harmony::Message>& parsed, const ToolCallIdFn& make_id = {});
std::string chat_finish_reason(harmony::Terminator last, bool hit_length);

class ChatEventMapper {
 public:
  explicit ChatEventMapper(ToolCallIdFn make_id = {});
  // Deltas for one parser event (none for message boundaries of plain text, errors are not mapped).
  std::vector<ChatEvent> map(const harmony::ParseEvent& ev);
  // The complete message so far, in harmony_to_chat_message's shape (same tool-call ids as streamed).
  nlohmann::json message() const;
  harmony::Terminator last_terminator() const { return last_terminator_; }

 private:
  enum class Sink { kReasoning, kContent, kToolCall, kNone };
  ToolCallIdFn make_id_;
  Sink sink_ = Sink::kNone;
  std::string reasoning_, content_;
  nlohmann::json tool_calls_ = nlohmann::json::array();
  harmony::Terminator last_terminator_ = harmony::Terminator::kNone;
};

}  // namespace gptoss
