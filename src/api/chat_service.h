// The conversation-level interface shared by `gptoss infer`, `gptoss serve` and the remote engines.
//
// A ChatService turns one OpenAI-style chat request (the JSON body of /v1/chat/completions: messages,
// tools, tool_choice, reasoning_effort, sampling fields, max_tokens, stop, seed, logprobs, ...) into a
// stream of events for ONE assistant turn. Implementations:
//  - LocalChatService (api/local_chat_service.h): harmony render -> tokenizer -> Engine -> StreamParser.
//  - remote engines (src/remote/): TOGETHER, OPENAI, REMOTE, REMOTE_VLLM over HTTP.
// `gptoss infer` and `gptoss serve` pick one from the config's `engine:`.
//
// Contract:
//  - start() validates the request and throws gptoss::InputError naming the bad field; it does not
//    block on generation (work begins in the background or on the first next()).
//  - ChatStream::next() blocks until the next event; it returns true with exactly one Done or Error event
//    last, then false forever after.
//  - cancel() is thread-safe, may be called from any thread (a signal-watching thread, an HTTP
//    disconnect) at any time, and releases engine resources promptly; after it next() finishes with Done
//    (finish_reason "cancelled") or Error, then false.
//  - Streams are independent: many may be open at once (the engine batches them).
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gptoss {

// One assistant turn event.
struct ChatEvent {
  enum class Kind { ReasoningDelta, ContentDelta, ToolCallDelta, Done, Error } kind = Kind::Done;
  std::string text;             // reasoning/content delta, or tool-call arguments delta, or error message;
                                // Done: a warning when the model's output was not well-formed (else empty)
  int tool_index = -1;          // ToolCallDelta: which call; first delta of a call carries id + name
  std::string tool_id, tool_name;
  // Done: the complete assistant message in OpenAI shape ({role, content, reasoning_content, tool_calls}),
  // finish_reason ("stop"|"length"|"tool_calls"|"cancelled"), usage {prompt_tokens, completion_tokens,
  // total_tokens}, and optional logprobs (OpenAI shape).
  nlohmann::json message, usage, logprobs;
  std::string finish_reason;
  int http_status = 0;          // Error: suggested HTTP status (400 bad request, 429/503 overloaded, 502 upstream)
};

class ChatStream {
 public:
  virtual ~ChatStream() = default;
  virtual bool next(ChatEvent& ev) = 0;  // blocks; false after Done/Error was returned
  virtual void cancel() = 0;             // thread-safe; frees engine resources promptly
};

class ChatService {
 public:
  virtual ~ChatService() = default;
  virtual std::unique_ptr<ChatStream> start(const nlohmann::json& request) = 0;  // throws InputError on bad fields
  // The same for callers that kept the body's key order (parsed with ordered_json): the JSON-Schema
  // properties of tools then render in the order given, as OpenAI's renderer does. Default: start().
  virtual std::unique_ptr<ChatStream> start_ordered(const nlohmann::ordered_json& request) {
    return start(nlohmann::json::parse(request.dump()));
  }
  virtual std::string model_name() const = 0;
  // Names a request may give as its model to select one of the local engine's LoRA adapters (in their
  // index order, adapter i + 1); none for other services.
  virtual std::vector<std::string> adapter_names() const { return {}; }
  // The engine adapter a request's "model" selects: i + 1 when it is adapter_names()[i], else 0 (the default).
  int adapter_for(const nlohmann::ordered_json& request) const {
    if (!request.is_object() || !request.contains("model") || !request["model"].is_string()) return 0;
    const auto names = adapter_names();
    const auto it = std::find(names.begin(), names.end(), request["model"].get<std::string>());
    return it == names.end() ? 0 : int(it - names.begin()) + 1;
  }
};

}  // namespace gptoss
