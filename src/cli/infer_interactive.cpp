// `gptoss infer -i`: multi-turn chat in the terminal.
//
// Tokens are printed as they arrive; the analysis channel is dimmed and printed before the answer
// (--hide-reasoning drops it). Ctrl-C stops the current generation (a watcher thread cancels the stream;
// the program keeps running); Ctrl-D or /exit quits. Commands: /reset, /effort low|medium|high,
// /system TEXT, /exit, /help. Tool calls are printed with their arguments; the result is typed by the
// user or produced by tool_use.executor, and generation continues with it.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <iostream>
#include <optional>
#include <thread>

#include <editline/readline.h>

#include "cli/infer_common.h"
#include "core/error.h"

namespace gptoss::infer {

namespace {

using Json = nlohmann::ordered_json;

std::atomic<bool> g_interrupt{false};
void on_sigint(int) { g_interrupt = true; }

struct Term {
  bool tty_in = false, tty_out = false;
  const char* dim() const { return tty_out ? "\033[2m" : ""; }
  const char* bold() const { return tty_out ? "\033[1m" : ""; }
  const char* reset() const { return tty_out ? "\033[0m" : ""; }
};

std::optional<std::string> read_line(const Term& t, const std::string& prompt) {
  if (t.tty_in) {
    char* l = ::readline(prompt.c_str());
    if (!l) return std::nullopt;
    std::string s(l);
    std::free(l);
    if (!s.empty()) ::add_history(s.c_str());
    return s;
  }
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  std::string s;
  if (!std::getline(std::cin, s)) return std::nullopt;
  return s;
}

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t\r\n"));
  s.erase(s.find_last_not_of(" \t\r\n") + 1);
  return s;
}

void print(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// One assistant turn: streams it to the terminal and returns the Done event (kind Error on failure).
ChatEvent stream_turn(ChatService& svc, const Json& request, const Term& t, bool hide_reasoning) {
  auto stream = svc.start_ordered(request);
  std::atomic<bool> running{true};
  g_interrupt = false;
  std::thread watcher([&] {
    while (running) {
      if (g_interrupt.exchange(false)) stream->cancel();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  enum { kNothing, kReasoning, kContent } shown = kNothing;
  ChatEvent ev, last;
  while (stream->next(ev)) {
    switch (ev.kind) {
      case ChatEvent::Kind::ReasoningDelta:
        if (hide_reasoning) break;
        if (shown != kReasoning) print(std::string(t.dim()) + (shown == kNothing ? "" : "\n") + "[reasoning] ");
        shown = kReasoning;
        print(ev.text);
        break;
      case ChatEvent::Kind::ContentDelta:
        if (shown == kReasoning) print(std::string(t.reset()) + "\n\n");
        shown = kContent;
        print(ev.text);
        break;
      case ChatEvent::Kind::ToolCallDelta:
        break;  // printed whole below, with the parsed arguments
      case ChatEvent::Kind::Done:
      case ChatEvent::Kind::Error:
        last = ev;
        break;
    }
  }
  running = false;
  watcher.join();
  print(std::string(t.reset()) + (shown == kNothing ? "" : "\n"));
  return last;
}

}  // namespace

int run_interactive(ChatService& svc, const InferenceConfig& config, const InteractiveOptions& opt) {
  InferenceConfig cfg = config;
  Term t;
  // libedit needs a known terminal to edit lines; without one (TERM unset or dumb) it falls back to a
  // cooked-mode read that double-echoes and mishandles Ctrl-D, so read plain lines instead.
  const char* term = std::getenv("TERM");
  t.tty_in = ::isatty(0) && term && *term && std::string(term) != "dumb";
  t.tty_out = ::isatty(1);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns, so Ctrl-C at a prompt is seen
  struct sigaction old {};
  ::sigaction(SIGINT, &sa, &old);
  if (t.tty_in) {
    ::rl_readline_name = const_cast<char*>("gptoss");
    ::using_history();
  }

  std::string system = opt.system_prompt;
  Json history = Json::array();
  std::fprintf(stderr,
               "gptoss: chatting with %s (engine %s, reasoning effort %s). /help lists commands; Ctrl-C stops a "
               "reply, Ctrl-D or /exit quits.\n",
               svc.model_name().c_str(), cfg.engine.c_str(), cfg.generation.reasoning_effort.c_str());

  auto messages = [&] {
    Json m = Json::array();
    if (!system.empty()) m.push_back({{"role", "system"}, {"content", system}});
    for (const auto& h : history) m.push_back(h);
    return m;
  };

  while (true) {
    g_interrupt = false;
    // No escape codes in the prompt: libedit would count them as visible columns.
    auto line = read_line(t, ">>> ");
    if (!line) {
      if (g_interrupt) {
        print("\n");
        continue;
      }
      print("\n");
      break;
    }
    std::string in = trim(*line);
    if (in.empty()) continue;
    if (in[0] == '/') {
      std::string cmd = in.substr(0, in.find(' ')), arg = in.find(' ') == std::string::npos ? "" : trim(in.substr(in.find(' ')));
      if (cmd == "/exit" || cmd == "/quit") break;
      if (cmd == "/reset") {
        history = Json::array();
        print("[conversation cleared]\n");
      } else if (cmd == "/effort") {
        if (arg != "low" && arg != "medium" && arg != "high") {
          print("usage: /effort low|medium|high (now " + cfg.generation.reasoning_effort + ")\n");
        } else {
          cfg.generation.reasoning_effort = arg;
          print("[reasoning effort: " + arg + "]\n");
        }
      } else if (cmd == "/system") {
        system = arg;
        print(arg.empty() ? "[system prompt cleared]\n" : "[system prompt set]\n");
      } else if (cmd == "/help") {
        print("/reset               forget the conversation\n"
              "/effort low|medium|high  reasoning effort\n"
              "/system TEXT         set the system prompt (empty: none)\n"
              "/exit                quit (also Ctrl-D)\n"
              "Ctrl-C stops the current reply.\n");
      } else {
        print("unknown command " + cmd + "; /help lists them\n");
      }
      continue;
    }
    size_t turn_start = history.size();
    history.push_back({{"role", "user"}, {"content", in}});
    // Generate until the model answers without calling a tool.
    while (true) {
      Json request = build_request(cfg, messages());
      request["stream"] = true;  // remote engines then stream deltas (SSE); the local engine always does
      ChatEvent done;
      try {
        done = stream_turn(svc, request, t, opt.hide_reasoning);
      } catch (const InputError& e) {
        done.kind = ChatEvent::Kind::Error;
        done.text = e.what();
      }
      if (done.kind == ChatEvent::Kind::Error) {
        std::fprintf(stderr, "gptoss: error: %s\n", done.text.c_str());
        history.erase(history.begin() + long(turn_start), history.end());
        break;
      }
      Json msg = done.message.is_object() ? Json::parse(done.message.dump()) : Json{{"role", "assistant"}, {"content", ""}};
      msg["role"] = "assistant";
      if (done.finish_reason == "cancelled") {
        print("[stopped]\n");
        if (msg.value("content", Json("")).is_string() && !msg.value("content", std::string()).empty()) {
          msg.erase("tool_calls");
          history.push_back(msg);
        }
        break;
      }
      if (done.finish_reason == "length") print("[max_new_tokens reached]\n");
      history.push_back(msg);
      if (!msg.contains("tool_calls") || !msg["tool_calls"].is_array() || msg["tool_calls"].empty()) break;
      bool aborted = false;
      for (const auto& tc : msg["tool_calls"]) {
        std::string name = tc["function"].value("name", ""), args = tc["function"].value("arguments", "");
        print(std::string(t.bold()) + "[tool call] " + name + "(" + args + ")" + t.reset() + "\n");
        std::string result;
        if (!cfg.tool_use.executor.empty()) {
          Json parsed_args;
          try {
            parsed_args = Json::parse(args);
          } catch (...) {
            parsed_args = args;
          }
          try {
            result = run_tool_executor(cfg.tool_use.executor, {{"name", name}, {"arguments", parsed_args}});
          } catch (const std::exception& e) {
            result = std::string("error: ") + e.what();
          }
          print("[tool result] " + result + "\n");
        } else {
          auto r = read_line(t, "tool result (" + name + ")> ");
          if (!r) {
            aborted = true;
            break;
          }
          result = *r;
        }
        history.push_back({{"role", "tool"}, {"tool_call_id", tc.value("id", "")}, {"name", name}, {"content", result}});
      }
      if (aborted) {
        print("\n[tool call abandoned]\n");
        history.erase(history.begin() + long(turn_start), history.end());
        break;
      }
    }
  }
  ::sigaction(SIGINT, &old, nullptr);
  return 0;
}

}  // namespace gptoss::infer
