// Shared pieces of `gptoss infer` (infer.cpp, infer_batch.cpp, infer_interactive.cpp, infer_service.cpp).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "api/chat_service.h"
#include "config/config.h"

namespace gptoss::infer {

// The ChatService for the config's engine: NATIVE/VLLM -> LocalChatService (resolves/downloads the
// model, loads it with a progress bar, starts the engine); TOGETHER/OPENAI/REMOTE/REMOTE_VLLM ->
// RemoteChatService. Other Oumi engines: InputError naming the supported ones.
std::unique_ptr<ChatService> make_chat_service(const InferenceConfig& cfg, bool quiet);

// An OpenAI chat request for `messages` with the config's generation parameters, reasoning effort and
// tools (`row_tools`, when non-null, replace the config's tools for this conversation).
nlohmann::ordered_json build_request(const InferenceConfig& cfg, const nlohmann::ordered_json& messages,
                             const nlohmann::ordered_json* row_tools = nullptr);

// Oumi/OpenAI message -> the OpenAI chat shape the services take: content item lists
// ([{type: text, content|text: ...}]) become one string; images are rejected (gpt-oss reads text only).
// Throws InputError naming `where` (e.g. "in.jsonl:3: messages[1]").
nlohmann::ordered_json normalise_message(const nlohmann::ordered_json& m, const std::string& where);

struct BatchOptions {
  std::string input_path, output_path;
  bool fail_on_error = true;  // --on-error fail|skip
  bool quiet = false;
  int concurrency = 0;        // 0: engine_params.max_num_seqs (local) or remote_params.num_workers
};
// Returns the exit code.
int run_batch(ChatService& svc, const InferenceConfig& cfg, const BatchOptions& opt);

struct InteractiveOptions {
  std::string system_prompt;
  bool hide_reasoning = false;
};
int run_interactive(ChatService& svc, const InferenceConfig& cfg, const InteractiveOptions& opt);

// Runs the tool executor command with `call` ({"name", "arguments"}) as JSON on stdin; returns its
// stdout (trailing newline trimmed). Throws Error when it cannot run or exits non-zero.
std::string run_tool_executor(const std::string& command, const nlohmann::ordered_json& call);

}  // namespace gptoss::infer
