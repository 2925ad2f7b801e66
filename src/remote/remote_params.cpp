#include "remote/remote_params.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace gptoss {

std::optional<RemoteKind> parse_remote_kind(std::string_view engine) {
  std::string e(engine);
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::toupper(c); });
  if (e == "TOGETHER") return RemoteKind::Together;
  if (e == "OPENAI") return RemoteKind::OpenAI;
  if (e == "REMOTE") return RemoteKind::Remote;
  if (e == "REMOTE_VLLM") return RemoteKind::RemoteVllm;
  return std::nullopt;
}

std::string_view remote_kind_name(RemoteKind kind) {
  switch (kind) {
    case RemoteKind::Together: return "TOGETHER";
    case RemoteKind::OpenAI: return "OPENAI";
    case RemoteKind::Remote: return "REMOTE";
    case RemoteKind::RemoteVllm: return "REMOTE_VLLM";
  }
  return "?";
}

std::string_view default_api_url(RemoteKind kind) {
  switch (kind) {
    case RemoteKind::Together: return "https://api.together.xyz/v1/chat/completions";
    case RemoteKind::OpenAI: return "https://api.openai.com/v1/chat/completions";
    default: return "";
  }
}

std::string_view default_api_key_env(RemoteKind kind) {
  switch (kind) {
    case RemoteKind::Together: return "TOGETHER_API_KEY";
    case RemoteKind::OpenAI: return "OPENAI_API_KEY";
    default: return "";
  }
}

}  // namespace gptoss
