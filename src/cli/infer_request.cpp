// Request building for `gptoss infer`: config generation params -> an OpenAI chat request.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "cli/infer_common.h"
#include "core/error.h"

namespace gptoss::infer {

using Json = nlohmann::ordered_json;

Json normalise_message(const Json& m, const std::string& where) {
  if (!m.is_object()) fail_input("{} is {}; expected an object with role and content", where, m.dump());
  if (!m.contains("role") || !m["role"].is_string())
    fail_input("{}: role is missing; expected one of system, developer, user, assistant, tool", where);
  static const char* kRoles[] = {"system", "developer", "user", "assistant", "tool"};
  std::string role = m["role"].get<std::string>();
  if (std::none_of(std::begin(kRoles), std::end(kRoles), [&](const char* r) { return role == r; }))
    fail_input("{}: role is '{}'; expected one of system, developer, user, assistant, tool", where, role);
  Json out = m;
  if (m.contains("content") && m["content"].is_array()) {
    std::string text;
    for (size_t i = 0; i < m["content"].size(); ++i) {
      const Json& item = m["content"][i];
      std::string type = item.is_object() ? item.value("type", "text") : "";
      if (item.is_string()) {
        text += item.get<std::string>();
      } else if (type == "text") {
        // Oumi writes {"type": "text", "content": "..."}; OpenAI {"type": "text", "text": "..."}.
        const Json& t = item.contains("text") ? item["text"] : item.contains("content") ? item["content"] : Json();
        if (!t.is_string()) fail_input("{}: content[{}] has no text", where, i);
        text += t.get<std::string>();
      } else {
        fail_input("{}: content[{}] has type '{}'; gpt-oss reads text only", where, i, type);
      }
    }
    out["content"] = text;
  } else if (m.contains("content") && !m["content"].is_string() && !m["content"].is_null()) {
    fail_input("{}: content is {}; expected a string or a list of text items", where, m["content"].dump());
  }
  if (role != "assistant" && role != "tool" && (!out.contains("content") || !out["content"].is_string()))
    fail_input("{}: a {} message needs a string content", where, role);
  return out;
}

Json build_request(const InferenceConfig& cfg, const Json& messages, const Json* row_tools) {
  const auto& g = cfg.generation;
  Json req = {
      {"model", cfg.model.model_name},
      {"messages", messages},
      {"max_tokens", g.max_new_tokens},
      {"temperature", g.temperature},
      {"top_p", g.top_p},
      {"frequency_penalty", g.frequency_penalty},
      {"presence_penalty", g.presence_penalty},
      {"reasoning_effort", g.reasoning_effort},
  };
  // vLLM's extensions; remote engines that do not know them ignore them.
  if (g.min_p > 0) req["min_p"] = g.min_p;
  if (!g.skip_special_tokens) req["skip_special_tokens"] = false;
  if (g.seed) req["seed"] = *g.seed;
  if (!g.stop_strings.empty()) req["stop"] = g.stop_strings;
  if (!g.stop_token_ids.empty()) req["stop_token_ids"] = g.stop_token_ids;
  if (!g.logit_bias.empty()) {
    Json b = Json::object();
    for (const auto& [id, bias] : g.logit_bias) b[std::to_string(id)] = bias;
    req["logit_bias"] = b;
  }
  const Json* tools = row_tools ? row_tools : (cfg.tool_use.enabled ? &cfg.tool_use.tools : nullptr);
  if (tools && !tools->empty()) req["tools"] = *tools;
  return req;
}

std::string run_tool_executor(const std::string& command, const Json& call) {
  int in_pipe[2], out_pipe[2];
  if (::pipe(in_pipe) != 0 || ::pipe(out_pipe) != 0) fail("tool executor: pipe: {}", std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) fail("tool executor: fork: {}", std::strerror(errno));
  if (pid == 0) {
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::close(in_pipe[0]);
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    ::signal(SIGINT, SIG_DFL);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  std::string payload = call.dump() + "\n";
  // Small payloads: one write fits the pipe buffer, so reading after writing cannot deadlock for calls
  // under 64 KiB; larger ones are written in a loop while the child drains them.
  size_t off = 0;
  while (off < payload.size()) {
    ssize_t n = ::write(in_pipe[1], payload.data() + off, payload.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  ::close(in_pipe[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out_pipe[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) out.append(buf, size_t(n));
  ::close(out_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("tool executor `{}` failed (exit status {}) for call {}", command, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
         call.dump());
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace gptoss::infer
