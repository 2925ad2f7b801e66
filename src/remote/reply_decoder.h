// Turns an OpenAI-compatible chat-completions reply (one JSON object, or a stream of
// chat.completion.chunk objects) into ChatEvents.
//
// Contract:
//  - The reasoning text is read from `reasoning_content` or `reasoning` (vLLM, Together and OpenRouter
//    use one or the other) and reported as ReasoningDelta; the Done message carries it as
//    `reasoning_content` (and `reasoning`).
//  - Tool calls are numbered 0, 1, ... in order of first appearance whatever `index` the server used;
//    the first ToolCallDelta of a call carries its id and name, later ones only argument text.
//  - add_chunk()/add_reply() throw gptoss::Error when the JSON does not have the chat-completions
//    shape (no `choices` array, an `error` object in a stream), so the caller can retry or report it.
//  - done() builds the final Done event (message, finish_reason, usage, logprobs); finish_reason
//    "tool_calls" when calls were made and the server said nothing else.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/chat_service.h"

namespace gptoss {

class ReplyDecoder {
 public:
  void add_chunk(const nlohmann::json& chunk, std::vector<ChatEvent>& out);  // one streamed chunk
  void add_reply(const nlohmann::json& reply, std::vector<ChatEvent>& out);  // a whole reply
  ChatEvent done() const;
  bool saw_finish() const { return !finish_reason_.empty(); }
  bool emitted_anything() const { return emitted_; }
  const nlohmann::json& usage() const { return usage_; }

 private:
  struct Call {
    std::string upstream_key, id, name, arguments;
  };
  int call_slot(const nlohmann::json& tc);
  std::string content_, reasoning_, finish_reason_;
  std::vector<Call> calls_;
  nlohmann::json usage_, logprobs_content_ = nlohmann::json::array();
  bool has_logprobs_ = false, emitted_ = false;
};

// The `message` of an error reply ({"error": {"message": ...}} or {"message": ...} or plain text),
// trimmed to 300 characters.
std::string upstream_error_message(const std::string& body);

}  // namespace gptoss
