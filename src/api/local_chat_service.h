// LocalChatService: the ChatService over our own engine (engines NATIVE and VLLM).
//
//   request (OpenAI chat JSON) -> harmony conversation -> prompt tokens -> Engine -> StreamParser -> events
//
// Request fields read: messages, tools, tool_choice ("none" hides the tools), reasoning_effort
// (low|medium|high, default medium), temperature (default 1.0, OpenAI's), top_p, min_p, top_k,
// frequency_penalty, presence_penalty, repetition_penalty, logit_bias ({"id": bias}), seed,
// max_tokens / max_completion_tokens, stop (string or list), stop_token_ids, logprobs, top_logprobs,
// skip_special_tokens (false: raw harmony text as content, no channel split), n (must be 1). Other
// fields ("model", "stream", "user", ...) are ignored. Wrong types/ranges: InputError naming the field.
//
// Rendering and event mapping are api/chat_mapping.h's (chat_to_harmony, ChatEventMapper): analysis text
// -> ReasoningDelta; final (and commentary preambles) -> ContentDelta; tool calls ("to=functions.NAME")
// -> ToolCallDelta (the first delta of each call carries id "call_<request>_<n>" and name). Done carries
// {role, content, reasoning_content, tool_calls}, finish_reason ("tool_calls", "length", "cancelled" after
// cancel(), else "stop"), usage, logprobs when asked, and in `text` the parser's warning when the output
// was not well-formed harmony (the message then holds the best-effort parse; the parser is non-strict).
// With skip_special_tokens false the content is the raw completion text, special tokens included.
// Engine errors (prompt too long, ...) -> Error with http_status 400.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "api/chat_service.h"
#include "engine/engine.h"
#include "engine/sampling.h"
#include "harmony/harmony.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {

class LocalChatService : public ChatService {
 public:
  // `engine` must be started (or be driven elsewhere); it may be shared by several services.
  // adapter_names: the engine's named LoRA adapters (1, 2, ...), which a request selects with its "model".
  LocalChatService(std::shared_ptr<Engine> engine, Tokenizer tok, std::string model_name,
                   std::vector<std::string> adapter_names = {});

  std::unique_ptr<ChatStream> start(const nlohmann::json& request) override;
  std::unique_ptr<ChatStream> start_ordered(const nlohmann::ordered_json& request) override;
  std::string model_name() const override { return model_name_; }
  std::vector<std::string> adapter_names() const override { return adapter_names_; }

  // What start() submits, for tests and diagnostics.
  struct Prepared {
    std::vector<int32_t> prompt;
    SamplingParams params;
    bool raw = false;  // skip_special_tokens: false
  };
  Prepared prepare(const nlohmann::ordered_json& request) const;
  // The harmony conversation for a request (api/chat_mapping.h, with today's date in the system message).
  harmony::Conversation conversation(const nlohmann::ordered_json& request) const;

  Engine& engine() { return *engine_; }
  const Tokenizer& tokenizer() const { return tok_; }

 private:
  std::shared_ptr<Engine> engine_;
  Tokenizer tok_;
  std::string model_name_;
  std::vector<std::string> adapter_names_;
};

}  // namespace gptoss
