// Remote inference engines: which hosted API to call and how politely.
//
// RemoteParams mirrors Oumi's `remote_params` (same keys, same defaults) plus the rate limits of the
// issue. `delay_scale` is ours and not a config key: tests set it to e.g. 0.01 so that the 1 s / 10 s /
// 30 s backoff schedule, Retry-After waits and politeness sleeps run a hundred times faster while
// keeping their ratios.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gptoss {

enum class RemoteKind {
  Together,    // default URL https://api.together.xyz/v1/chat/completions, key $TOGETHER_API_KEY
  OpenAI,      // default URL https://api.openai.com/v1/chat/completions, key $OPENAI_API_KEY
  Remote,      // any OpenAI-compatible server; api_url required, key optional
  RemoteVllm,  // a vLLM server; api_url required, key optional
};

struct RemoteParams {
  std::string api_url;              // full chat-completions URL; empty: the kind's default
  std::string api_key;              // literal key; wins over api_key_env_varname
  std::string api_key_env_varname;  // environment variable holding the key; empty: the kind's default
  int max_retries = 3;              // retries after the first attempt (0: one attempt only)
  double retry_backoff_base = 1.0;  // seconds before the first retry; each next one waits 10x longer...
  double retry_backoff_max = 30.0;  // ...capped here: the default schedule is 1 s, 10 s, 30 s, 30 s...
  double connection_timeout = 300.0;  // seconds: connect + whole reply (streaming: longest silence)
  int num_workers = 1;              // requests in flight at once
  double politeness_policy = 0.0;   // seconds a worker sleeps after each request before the next
  std::optional<int> requests_per_minute;       // request starts per rolling minute, all workers
  std::optional<int> input_tokens_per_minute;   // prompt tokens (from `usage`) per rolling minute
  std::optional<int> output_tokens_per_minute;  // completion tokens per rolling minute
  double delay_scale = 1.0;         // multiplies every wait above (tests only)
};

// "TOGETHER", "OPENAI", "REMOTE", "REMOTE_VLLM" (case-insensitive); nullopt for anything else
// (e.g. "NATIVE", which is the local engine).
std::optional<RemoteKind> parse_remote_kind(std::string_view engine);
std::string_view remote_kind_name(RemoteKind kind);
std::string_view default_api_url(RemoteKind kind);       // "" for Remote / RemoteVllm
std::string_view default_api_key_env(RemoteKind kind);   // "" for Remote / RemoteVllm

}  // namespace gptoss
