#include "api/local_chat_service.h"

#include <chrono>
#include <ctime>
#include <deque>

#include <fmt/format.h>

#include "core/error.h"
#include "harmony/parser.h"

namespace gptoss {

namespace {

using Json = nlohmann::json;
using harmony::Message;
using harmony::Role;

[[noreturn]] void bad_field(const std::string& key, const Json& v, const std::string& expected) {
  fail_input("request: {} is {}; expected {}", key, v.dump(), expected);
}

double get_number(const Json& r, const char* key, double dflt, double lo, double hi) {
  auto it = r.find(key);
  if (it == r.end() || it->is_null()) return dflt;
  if (!it->is_number()) bad_field(key, *it, "a number");
  double v = it->get<double>();
  if (v < lo || v > hi) bad_field(key, *it, fmt::format("a number in [{}, {}]", lo, hi));
  return v;
}

int64_t get_int(const Json& r, const char* key, int64_t dflt, int64_t lo, int64_t hi) {
  auto it = r.find(key);
  if (it == r.end() || it->is_null()) return dflt;
  if (!it->is_number_integer()) bad_field(key, *it, "an integer");
  int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) bad_field(key, *it, fmt::format("an integer in [{}, {}]", lo, hi));
  return v;
}

std::string today_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string text_of(const Json& content, const std::string& where) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string s;
    for (const auto& item : content) {
      if (item.is_string()) s += item.get<std::string>();
      else if (item.is_object() && item.value("type", "text") == "text" && item.contains("text") && item["text"].is_string())
        s += item["text"].get<std::string>();
      else if (item.is_object() && item.value("type", "") == "text" && item.contains("content") && item["content"].is_string())
        s += item["content"].get<std::string>();
      else fail_input("request: {}.content has a non-text item {}; gpt-oss reads text only", where, item.dump());
    }
    return s;
  }
  fail_input("request: {}.content is {}; expected a string or a list of text parts", where, content.dump());
}

harmony::ToolDescription tool_description(const Json& t, size_t i) {
  const Json& f = t.contains("function") ? t["function"] : t;
  if (!f.is_object() || !f.contains("name") || !f["name"].is_string())
    fail_input("request: tools[{}] is {}; expected {{type: function, function: {{name, description, parameters}}}}", i,
               t.dump());
  harmony::ToolDescription d;
  d.name = f["name"].get<std::string>();
  d.description = f.value("description", "");
  if (f.contains("parameters") && f["parameters"].is_object())
    d.parameters = nlohmann::ordered_json::parse(f["parameters"].dump());
  return d;
}

// One assistant turn as it streams out of the engine.
class LocalStream : public ChatStream {
 public:
  LocalStream(RequestHandle h, const Tokenizer& tok, bool raw, bool logprobs, int prompt_tokens)
      : h_(std::move(h)), tok_(tok), raw_(raw), want_logprobs_(logprobs), prompt_tokens_(prompt_tokens),
        parser_(tok_, harmony::ParserOptions{Role::kAssistant, /*strict=*/false}), raw_decoder_(tok_) {}

  bool next(ChatEvent& ev) override {
    while (pending_.empty() && !finished_) pull();
    if (pending_.empty()) return false;
    ev = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }

  void cancel() override { h_.cancel(); }

 private:
  void pull() {
    Event e = h_.next();
    if (e.type == Event::Type::kToken) {
      on_token(e);
    } else {
      on_finish(e);
      finished_ = true;
    }
  }

  void on_token(const Event& e) {
    ++completion_tokens_;
    if (want_logprobs_) {
      Json top = Json::array();
      for (const auto& t : e.top_logprobs)
        top.push_back({{"token", std::string(tok_.token_bytes(t.token))}, {"logprob", t.logprob}});
      logprobs_.push_back({{"token", std::string(tok_.token_bytes(e.token))}, {"logprob", e.logprob}, {"top_logprobs", top}});
    }
    if (raw_) {
      std::string s = raw_decoder_.push(e.token);
      raw_text_ += s;
      if (!s.empty()) push_text(ChatEvent::Kind::ContentDelta, s);
      return;
    }
    for (auto& pe : parser_.push(e.token)) on_parse_event(pe);
  }

  void on_parse_event(const harmony::ParseEvent& pe) {
    using K = harmony::ParseEvent::Kind;
    if (pe.kind == K::kMessageStart) {
      const Message& m = pe.message;
      channel_ = m.channel.value_or("");
      tool_ = m.recipient && *m.recipient != "assistant" && *m.recipient != "user" && *m.recipient != "all";
      if (tool_) {
        ChatEvent ev;
        ev.kind = ChatEvent::Kind::ToolCallDelta;
        ev.tool_index = ++tool_index_;
        ev.tool_id = call_id(tool_index_);
        ev.tool_name = tool_name(*m.recipient);
        pending_.push_back(std::move(ev));
      }
    } else if (pe.kind == K::kContentDelta) {
      if (pe.delta.empty()) return;
      if (tool_) {
        ChatEvent ev;
        ev.kind = ChatEvent::Kind::ToolCallDelta;
        ev.tool_index = tool_index_;
        ev.text = pe.delta;
        pending_.push_back(std::move(ev));
      } else {
        push_text(channel_ == "analysis" ? ChatEvent::Kind::ReasoningDelta : ChatEvent::Kind::ContentDelta, pe.delta);
      }
    } else if (pe.kind == K::kError) {
      if (warning_.empty()) warning_ = pe.error;
    }
  }

  void push_text(ChatEvent::Kind kind, const std::string& s) {
    if (!pending_.empty() && pending_.back().kind == kind && kind != ChatEvent::Kind::ToolCallDelta) {
      pending_.back().text += s;  // coalesce what one pull produced
      return;
    }
    ChatEvent ev;
    ev.kind = kind;
    ev.text = s;
    pending_.push_back(std::move(ev));
  }

  std::string call_id(int index) const { return fmt::format("call_{}_{}", h_.id(), index); }
  static std::string tool_name(const std::string& recipient) {
    return recipient.rfind("functions.", 0) == 0 ? recipient.substr(10) : recipient;
  }

  void on_finish(const Event& e) {
    if (e.reason == FinishReason::kError) {
      ChatEvent ev;
      ev.kind = ChatEvent::Kind::Error;
      ev.text = e.message;
      ev.http_status = 400;
      pending_.push_back(std::move(ev));
      return;
    }
    Json msg = {{"role", "assistant"}};
    std::string content, reasoning;
    Json calls = Json::array();
    if (raw_) {
      raw_text_ += raw_decoder_.flush();
      content = raw_text_;
    } else {
      for (auto& pe : parser_.finish()) on_parse_event(pe);
      int index = 0;
      for (const Message& m : parser_.messages()) {
        bool to_tool = m.recipient && *m.recipient != "assistant" && *m.recipient != "user" && *m.recipient != "all";
        if (to_tool) {
          calls.push_back({{"id", call_id(++index)},
                           {"type", "function"},
                           {"function", {{"name", tool_name(*m.recipient)}, {"arguments", m.content}}}});
        } else if (m.channel && *m.channel == "analysis") {
          reasoning += (reasoning.empty() ? "" : "\n") + m.content;
        } else {
          content += m.content;
        }
      }
    }
    msg["content"] = content;
    if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
    if (!calls.empty()) msg["tool_calls"] = calls;
    ChatEvent ev;
    ev.kind = ChatEvent::Kind::Done;
    ev.message = msg;
    ev.finish_reason = e.reason == FinishReason::kAbort    ? "cancelled"
                       : !calls.empty()                    ? "tool_calls"
                       : e.reason == FinishReason::kLength ? "length"
                                                           : "stop";
    ev.usage = {{"prompt_tokens", prompt_tokens_},
                {"completion_tokens", completion_tokens_},
                {"total_tokens", prompt_tokens_ + completion_tokens_}};
    if (want_logprobs_) ev.logprobs = {{"content", logprobs_}};
    ev.text = warning_;
    pending_.push_back(std::move(ev));
  }

  RequestHandle h_;
  Tokenizer tok_;
  bool raw_, want_logprobs_;
  int prompt_tokens_, completion_tokens_ = 0;
  harmony::StreamParser parser_;
  IncrementalDecoder raw_decoder_;
  std::string raw_text_, channel_, warning_;
  bool tool_ = false;
  int tool_index_ = -1;
  bool finished_ = false;
  std::deque<ChatEvent> pending_;
  Json logprobs_ = Json::array();
};

}  // namespace

LocalChatService::LocalChatService(std::shared_ptr<Engine> engine, Tokenizer tok, std::string model_name)
    : engine_(std::move(engine)), tok_(std::move(tok)), model_name_(std::move(model_name)) {}

// OpenAI messages -> harmony, as OpenAI's chat template for gpt-oss does: a system message (identity,
// knowledge cutoff, date, reasoning effort, channels), a developer message with the instructions (the
// request's system/developer messages) and the function tools, then the turns. Assistant reasoning
// becomes an analysis message, tool calls commentary messages to functions.NAME, tool results messages
// from functions.NAME.
harmony::Conversation LocalChatService::conversation(const Json& request) const {
  if (!request.is_object()) fail_input("request: expected a JSON object with \"messages\"");
  auto mit = request.find("messages");
  if (mit == request.end() || !mit->is_array() || mit->empty())
    fail_input("request: messages is missing or empty; expected a list of {{role, content}} messages");
  harmony::SystemContent sys = harmony::SystemContent::defaults();
  std::string effort = "medium";
  if (auto it = request.find("reasoning_effort"); it != request.end() && !it->is_null()) {
    if (!it->is_string() || !harmony::effort_from_name(it->get<std::string>()))
      bad_field("reasoning_effort", *it, "\"low\", \"medium\" or \"high\"");
    effort = it->get<std::string>();
  }
  sys.reasoning_effort = harmony::effort_from_name(effort);
  sys.current_date = today_utc();

  std::vector<harmony::ToolDescription> tools;
  bool tools_on = true;
  if (auto it = request.find("tool_choice"); it != request.end() && it->is_string() && it->get<std::string>() == "none")
    tools_on = false;
  if (auto it = request.find("tools"); it != request.end() && !it->is_null() && tools_on) {
    if (!it->is_array()) bad_field("tools", *it, "a list of OpenAI function definitions");
    for (size_t i = 0; i < it->size(); ++i) tools.push_back(tool_description((*it)[i], i));
  }

  harmony::Conversation conv;
  conv.messages.push_back(Message::system_message(sys));
  std::string instructions;
  std::vector<Message> turns;
  std::map<std::string, std::string> call_names;  // tool_call_id -> function name
  for (size_t i = 0; i < mit->size(); ++i) {
    const Json& m = (*mit)[i];
    std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      fail_input("request: {} has no role; expected {{role, content}}", where);
    std::string role = m["role"].get<std::string>();
    std::string text = text_of(m.value("content", Json()), where);
    if (role == "system" || role == "developer") {
      instructions += (instructions.empty() ? "" : "\n\n") + text;
    } else if (role == "user") {
      turns.push_back(Message::text(Role::kUser, text));
    } else if (role == "assistant") {
      std::string reasoning;
      for (const char* k : {"reasoning_content", "reasoning", "thinking"})
        if (m.contains(k) && m[k].is_string()) reasoning = m[k].get<std::string>();
      if (!reasoning.empty()) {
        Message a = Message::text(Role::kAssistant, reasoning);
        a.channel = "analysis";
        turns.push_back(a);
      }
      if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
        for (const auto& tc : m["tool_calls"]) {
          const Json& f = tc.contains("function") ? tc["function"] : tc;
          std::string name = f.value("name", "");
          if (name.empty()) fail_input("request: {}.tool_calls has a call without a function name", where);
          Json args = f.value("arguments", Json("{}"));
          Message c = Message::text(Role::kAssistant, args.is_string() ? args.get<std::string>() : args.dump());
          c.channel = "commentary";
          c.recipient = "functions." + name;
          c.content_type = "<|constrain|>json";
          turns.push_back(c);
          if (tc.contains("id") && tc["id"].is_string()) call_names[tc["id"].get<std::string>()] = name;
        }
      }
      if (!text.empty()) {
        Message a = Message::text(Role::kAssistant, text);
        a.channel = "final";
        turns.push_back(a);
      }
    } else if (role == "tool") {
      std::string name = m.value("name", "");
      if (name.empty() && m.contains("tool_call_id") && m["tool_call_id"].is_string())
        name = call_names[m["tool_call_id"].get<std::string>()];
      if (name.empty()) fail_input("request: {} is a tool result without name or a known tool_call_id", where);
      Message t = Message::text(Role::kTool, text);
      t.author.name = "functions." + name;
      t.recipient = "assistant";
      t.channel = "commentary";
      turns.push_back(t);
    } else {
      fail_input("request: {}.role is '{}'; expected system, developer, user, assistant or tool", where, role);
    }
  }
  if (!instructions.empty() || !tools.empty()) {
    harmony::DeveloperContent dev;
    if (!instructions.empty()) dev.instructions = instructions;
    if (!tools.empty()) dev.with_function_tools(tools);
    conv.messages.push_back(Message::developer_message(dev));
  }
  for (auto& t : turns) conv.messages.push_back(std::move(t));
  return conv;
}

LocalChatService::Prepared LocalChatService::prepare(const Json& request) const {
  Prepared p;
  harmony::Conversation conv = conversation(request);
  std::vector<int> toks = harmony::render_for_completion_tokens(conv, Role::kAssistant, tok_);
  p.prompt.assign(toks.begin(), toks.end());

  SamplingParams& s = p.params;
  s.temperature = float(get_number(request, "temperature", 1.0, 0.0, 100.0));
  s.top_p = float(get_number(request, "top_p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0.0f) bad_field("top_p", request["top_p"], "a number in (0, 1]");
  s.min_p = float(get_number(request, "min_p", 0.0, 0.0, 1.0));
  s.top_k = int(get_int(request, "top_k", 0, -1, 1 << 30));
  s.frequency_penalty = float(get_number(request, "frequency_penalty", 0.0, -2.0, 2.0));
  s.presence_penalty = float(get_number(request, "presence_penalty", 0.0, -2.0, 2.0));
  s.repetition_penalty = float(get_number(request, "repetition_penalty", 1.0, 1e-6, 100.0));
  if (auto it = request.find("seed"); it != request.end() && !it->is_null()) {
    if (!it->is_number_integer()) bad_field("seed", *it, "an integer");
    s.seed = uint64_t(it->get<int64_t>());
  }
  int64_t max_tokens = get_int(request, "max_tokens", -1, 1, INT32_MAX);
  max_tokens = get_int(request, "max_completion_tokens", max_tokens, 1, INT32_MAX);
  s.max_new_tokens = int(max_tokens);
  if (int64_t n = get_int(request, "n", 1, 1, 1); n != 1) bad_field("n", request["n"], "1");
  if (auto it = request.find("logit_bias"); it != request.end() && !it->is_null()) {
    if (!it->is_object()) bad_field("logit_bias", *it, "an object {\"token id\": bias}");
    for (auto b = it->begin(); b != it->end(); ++b) {
      size_t used = 0;
      long id = -1;
      try {
        id = std::stol(b.key(), &used);
      } catch (...) {
        used = 0;
      }
      if (used != b.key().size() || id < 0 || !b->is_number())
        bad_field("logit_bias", *it, "an object {\"token id\": number}");
      s.logit_bias[int(id)] = b->get<float>();
    }
  }
  if (auto it = request.find("stop"); it != request.end() && !it->is_null()) {
    if (it->is_string()) s.stop.push_back(it->get<std::string>());
    else if (it->is_array()) {
      for (const auto& x : *it) {
        if (!x.is_string()) bad_field("stop", *it, "a string or a list of strings");
        s.stop.push_back(x.get<std::string>());
      }
    } else bad_field("stop", *it, "a string or a list of strings");
  }
  if (auto it = request.find("stop_token_ids"); it != request.end() && !it->is_null()) {
    if (!it->is_array()) bad_field("stop_token_ids", *it, "a list of token ids");
    for (const auto& x : *it) {
      if (!x.is_number_integer()) bad_field("stop_token_ids", *it, "a list of token ids");
      s.stop_token_ids.push_back(x.get<int>());
    }
  }
  if (auto it = request.find("logprobs"); it != request.end() && !it->is_null()) {
    if (!it->is_boolean()) bad_field("logprobs", *it, "true or false");
    s.logprobs = it->get<bool>();
  }
  s.top_logprobs = int(get_int(request, "top_logprobs", 0, 0, 20));
  if (s.top_logprobs > 0) s.logprobs = true;
  if (auto it = request.find("skip_special_tokens"); it != request.end() && !it->is_null()) {
    if (!it->is_boolean()) bad_field("skip_special_tokens", *it, "true or false");
    p.raw = !it->get<bool>();
  }
  validate_sampling_params(s, tok_.vocab_size());
  return p;
}

std::unique_ptr<ChatStream> LocalChatService::start(const Json& request) {
  Prepared p = prepare(request);
  int prompt_tokens = int(p.prompt.size());
  bool logprobs = p.params.logprobs;
  bool raw = p.raw;
  RequestHandle h = engine_->submit(Request{std::move(p.prompt), std::move(p.params)});
  return std::make_unique<LocalStream>(std::move(h), tok_, raw, logprobs, prompt_tokens);
}

}  // namespace gptoss
