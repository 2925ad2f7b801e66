// OpenAI chat <-> harmony mapping (see chat_mapping.h for the contract).
#include "api/chat_mapping.h"

#include <map>
#include <random>

#include "core/error.h"

namespace gptoss {
namespace {

using OJson = nlohmann::ordered_json;
using harmony::Message;
using harmony::Role;

const OJson* field(const OJson& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::string type_name(const OJson& v) {
  std::string d = v.dump();
  if (d.size() > 60) d = d.substr(0, 57) + "...";
  return d;
}

// A message's text: a string, or an array of text parts ({type: "text", text}) concatenated.
std::string content_text(const OJson& msg, const std::string& where) {
  const OJson* c = field(msg, "content");
  if (!c) return "";
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array())
    fail_input("{}.content is {}; expected a string, an array of text parts, or null", where, type_name(*c));
  std::string out;
  for (size_t j = 0; j < c->size(); ++j) {
    const OJson& part = (*c)[j];
    std::string pw = fmt::format("{}.content[{}]", where, j);
    if (part.is_string()) {
      out += part.get<std::string>();
      continue;
    }
    if (!part.is_object()) fail_input("{} is {}; expected {{\"type\": \"text\", \"text\": ...}}", pw, type_name(part));
    std::string type = part.value("type", "text");
    if (type != "text" && type != "input_text" && type != "output_text")
      fail_input("{}.type is '{}'; only text parts are supported by gpt-oss", pw, type);
    const OJson* t = field(part, "text");
    if (!t || !t->is_string()) fail_input("{}.text is missing; a text part needs a string `text`", pw);
    out += t->get<std::string>();
  }
  return out;
}

harmony::ReasoningEffort parse_effort(const OJson& req, const ChatMappingOptions& opts) {
  const OJson* e = field(req, "reasoning_effort");
  std::string where = "reasoning_effort";
  if (!e) {
    if (const OJson* r = field(req, "reasoning"); r && r->is_object()) {
      e = field(*r, "effort");
      where = "reasoning.effort";
    }
  }
  if (!e) return opts.default_effort;
  if (!e->is_string()) fail_input("{} is {}; expected \"low\", \"medium\" or \"high\"", where, type_name(*e));
  auto eff = harmony::effort_from_name(e->get<std::string>());
  if (!eff) fail_input("{} is '{}'; expected low, medium or high", where, e->get<std::string>());
  return *eff;
}

void check_function_name(const std::string& name, const std::string& where) {
  if (name.empty()) fail_input("{} is empty; a function needs a name", where);
  for (char c : name)
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '<' || c == '>')
      fail_input("{} is '{}'; function names may not contain whitespace or '<'/'>'", where, name);
}

std::vector<harmony::ToolDescription> parse_tools(const OJson& req) {
  std::vector<harmony::ToolDescription> out;
  const OJson* tools = field(req, "tools");
  if (!tools) return out;
  if (!tools->is_array()) fail_input("tools is {}; expected an array of {{\"type\": \"function\", ...}}", type_name(*tools));
  for (size_t i = 0; i < tools->size(); ++i) {
    const OJson& t = (*tools)[i];
    std::string w = fmt::format("tools[{}]", i);
    if (!t.is_object()) fail_input("{} is {}; expected an object", w, type_name(t));
    std::string type = t.value("type", "function");
    if (type != "function") fail_input("{}.type is '{}'; only \"function\" tools are supported", w, type);
    const OJson* fn = field(t, "function");
    if (!fn || !fn->is_object()) fail_input("{}.function is missing; expected {{name, description, parameters}}", w);
    harmony::ToolDescription d;
    const OJson* name = field(*fn, "name");
    if (!name || !name->is_string()) fail_input("{}.function.name is missing; every function needs a name", w);
    d.name = name->get<std::string>();
    check_function_name(d.name, w + ".function.name");
    if (const OJson* desc = field(*fn, "description")) {
      if (!desc->is_string()) fail_input("{}.function.description is {}; expected a string", w, type_name(*desc));
      d.description = desc->get<std::string>();
    }
    if (const OJson* p = field(*fn, "parameters")) {
      if (!p->is_object()) fail_input("{}.function.parameters is {}; expected a JSON Schema object", w, type_name(*p));
      d.parameters = *p;
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::optional<std::string> reasoning_text(const OJson& msg, const std::string& where) {
  for (const char* key : {"reasoning_content", "reasoning", "thinking"}) {
    const OJson* r = field(msg, key);
    if (!r) continue;
    if (!r->is_string()) fail_input("{}.{} is {}; expected a string", where, key, type_name(*r));
    if (!r->get_ref<const std::string&>().empty()) return r->get<std::string>();
  }
  return std::nullopt;
}

Message assistant(std::string channel, std::string text) {
  Message m = Message::text(Role::kAssistant, std::move(text));
  m.channel = std::move(channel);
  return m;
}

}  // namespace

HarmonyRequest chat_to_harmony(const OJson& req, const ChatMappingOptions& opts) {
  if (!req.is_object()) fail_input("request body is {}; expected a JSON object", type_name(req));
  HarmonyRequest out;
  out.effort = parse_effort(req, opts);

  harmony::SystemContent sys = harmony::SystemContent::defaults();
  sys.reasoning_effort = out.effort;
  sys.current_date = opts.current_date;
  if (opts.model_identity) sys.model_identity = opts.model_identity;
  out.conversation.messages.push_back(Message::system_message(std::move(sys)));

  const OJson* msgs = field(req, "messages");
  if (!msgs || !msgs->is_array()) fail_input("messages is missing; expected an array of chat messages");
  if (msgs->empty()) fail_input("messages is empty; expected at least one message");

  std::vector<std::string> instructions;
  std::vector<Message> turns;
  std::map<std::string, std::string> call_names;  // tool_call_id -> function name
  for (size_t i = 0; i < msgs->size(); ++i) {
    const OJson& m = (*msgs)[i];
    std::string w = fmt::format("messages[{}]", i);
    if (!m.is_object()) fail_input("{} is {}; expected an object with role and content", w, type_name(m));
    const OJson* role_v = field(m, "role");
    if (!role_v || !role_v->is_string())
      fail_input("{}.role is missing; expected system, developer, user, assistant or tool", w);
    std::string role = role_v->get<std::string>();
    if (role == "system" || role == "developer") {
      std::string text = content_text(m, w);
      if (!text.empty()) instructions.push_back(std::move(text));
    } else if (role == "user") {
      turns.push_back(Message::text(Role::kUser, content_text(m, w)));
    } else if (role == "assistant") {
      if (auto r = reasoning_text(m, w)) turns.push_back(assistant("analysis", *r));
      const OJson* calls = field(m, "tool_calls");
      if (calls && !calls->is_array()) fail_input("{}.tool_calls is {}; expected an array", w, type_name(*calls));
      bool has_calls = calls && !calls->empty();
      std::string text = content_text(m, w);
      if (!text.empty()) turns.push_back(assistant(has_calls ? "commentary" : "final", std::move(text)));
      if (!calls) continue;
      for (size_t k = 0; k < calls->size(); ++k) {
        const OJson& c = (*calls)[k];
        std::string cw = fmt::format("{}.tool_calls[{}]", w, k);
        if (!c.is_object()) fail_input("{} is {}; expected {{id, type, function: {{name, arguments}}}}", cw, type_name(c));
        const OJson* fn = field(c, "function");
        if (!fn || !fn->is_object()) fail_input("{}.function is missing; expected {{name, arguments}}", cw);
        const OJson* name = field(*fn, "name");
        if (!name || !name->is_string()) fail_input("{}.function.name is missing", cw);
        check_function_name(name->get<std::string>(), cw + ".function.name");
        std::string args = "{}";
        if (const OJson* a = field(*fn, "arguments")) args = a->is_string() ? a->get<std::string>() : a->dump();
        Message call = assistant("commentary", std::move(args));
        call.recipient = "functions." + name->get<std::string>();
        call.content_type = "<|constrain|>json";
        turns.push_back(std::move(call));
        if (const OJson* id = field(c, "id"); id && id->is_string()) call_names[id->get<std::string>()] = name->get<std::string>();
      }
    } else if (role == "tool") {
      std::string name;
      const OJson* id = field(m, "tool_call_id");
      if (id && id->is_string()) {
        auto it = call_names.find(id->get<std::string>());
        if (it != call_names.end()) name = it->second;
      }
      if (name.empty())
        if (const OJson* n = field(m, "name"); n && n->is_string()) name = n->get<std::string>();
      if (name.empty()) {
        if (id && id->is_string())
          fail_input("{}.tool_call_id is '{}'; expected the id of a tool call in an earlier assistant message "
                     "(or give the function's `name`)", w, id->get<std::string>());
        fail_input("{}.tool_call_id is missing; a tool result needs the id of the assistant's tool call", w);
      }
      Message r = Message::text(Role::kTool, content_text(m, w));
      r.author.name = "functions." + name;
      r.recipient = "assistant";
      r.channel = "commentary";
      turns.push_back(std::move(r));
    } else {
      fail_input("{}.role is '{}'; expected system, developer, user, assistant or tool", w, role);
    }
  }

  std::vector<harmony::ToolDescription> tools = parse_tools(req);
  out.has_tools = !tools.empty();
  if (!instructions.empty() || !tools.empty()) {
    harmony::DeveloperContent dev;
    if (!instructions.empty()) {
      std::string joined;
      for (size_t i = 0; i < instructions.size(); ++i) joined += (i ? "\n\n" : "") + instructions[i];
      dev.instructions = std::move(joined);
    }
    if (!tools.empty()) dev.with_function_tools(std::move(tools));
    out.conversation.messages.push_back(Message::developer_message(std::move(dev)));
  }
  for (Message& t : turns) out.conversation.messages.push_back(std::move(t));
  return out;
}

HarmonyRequest chat_to_harmony(const nlohmann::json& request, const ChatMappingOptions& opts) {
  return chat_to_harmony(OJson::parse(request.dump()), opts);
}

std::string random_tool_call_id() {
  static constexpr char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[rng() % (sizeof(kAlnum) - 1)];
  return id;
}

std::string chat_finish_reason(harmony::Terminator last, bool hit_length) {
  if (last == harmony::Terminator::kCall) return "tool_calls";
  return hit_length ? "length" : "stop";
}

// ---- ChatEventMapper ----------------------------------------------------------------------------

namespace {

std::string tool_name_of(const std::string& recipient) {
  constexpr std::string_view kPrefix = "functions.";
  return recipient.starts_with(kPrefix) ? recipient.substr(kPrefix.size()) : recipient;
}

}  // namespace

ChatEventMapper::ChatEventMapper(ToolCallIdFn make_id) : make_id_(std::move(make_id)) {
  if (!make_id_) make_id_ = random_tool_call_id;
}

std::vector<ChatEvent> ChatEventMapper::map(const harmony::ParseEvent& ev) {
  using K = harmony::ParseEvent::Kind;
  std::vector<ChatEvent> out;
  switch (ev.kind) {
    case K::kMessageStart: {
      const Message& m = ev.message;
      if (m.recipient && m.author.role == Role::kAssistant) {
        sink_ = Sink::kToolCall;
        std::string id = make_id_();
        std::string name = tool_name_of(*m.recipient);
        tool_calls_.push_back({{"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", ""}}}});
        ChatEvent ce;
        ce.kind = ChatEvent::Kind::ToolCallDelta;
        ce.tool_index = static_cast<int>(tool_calls_.size()) - 1;
        ce.tool_id = id;
        ce.tool_name = name;
        out.push_back(std::move(ce));
      } else if (m.channel == "analysis") {
        sink_ = Sink::kReasoning;
        if (!reasoning_.empty()) {
          reasoning_ += "\n";
          ChatEvent ce;
          ce.kind = ChatEvent::Kind::ReasoningDelta;
          ce.text = "\n";
          out.push_back(std::move(ce));
        }
      } else if (m.author.role == Role::kAssistant &&
                 (!m.channel || *m.channel == "final" || *m.channel == "commentary")) {
        // The final answer, and commentary preambles that accompany tool calls, are user-visible text.
        sink_ = Sink::kContent;
      } else {
        sink_ = Sink::kNone;
      }
      break;
    }
    case K::kContentDelta: {
      ChatEvent ce;
      ce.text = ev.delta;
      if (sink_ == Sink::kReasoning) {
        reasoning_ += ev.delta;
        ce.kind = ChatEvent::Kind::ReasoningDelta;
      } else if (sink_ == Sink::kContent) {
        content_ += ev.delta;
        ce.kind = ChatEvent::Kind::ContentDelta;
      } else if (sink_ == Sink::kToolCall) {
        auto& args = tool_calls_.back()["function"]["arguments"];
        args = args.get<std::string>() + ev.delta;
        ce.kind = ChatEvent::Kind::ToolCallDelta;
        ce.tool_index = static_cast<int>(tool_calls_.size()) - 1;
      } else {
        break;
      }
      out.push_back(std::move(ce));
      break;
    }
    case K::kMessageEnd:
      last_terminator_ = ev.terminator;
      sink_ = Sink::kNone;
      break;
    case K::kError:
      break;
  }
  return out;
}

nlohmann::json ChatEventMapper::message() const {
  nlohmann::json m = {{"role", "assistant"}};
  if (!content_.empty())
    m["content"] = content_;
  else
    m["content"] = nullptr;
  if (!reasoning_.empty()) m["reasoning_content"] = reasoning_;
  if (!tool_calls_.empty()) m["tool_calls"] = tool_calls_;
  return m;
}

nlohmann::json harmony_to_chat_message(const std::vector<harmony::Message>& parsed, const ToolCallIdFn& make_id) {
  ChatEventMapper mapper(make_id);
  for (const Message& m : parsed) {
    harmony::ParseEvent start;
    start.kind = harmony::ParseEvent::Kind::kMessageStart;
    start.message = m;
    start.message.content.clear();
    mapper.map(start);
    harmony::ParseEvent delta;
    delta.kind = harmony::ParseEvent::Kind::kContentDelta;
    delta.delta = m.content;
    if (!m.content.empty()) mapper.map(delta);
    harmony::ParseEvent end;
    end.kind = harmony::ParseEvent::Kind::kMessageEnd;
    mapper.map(end);
  }
  return mapper.message();
}

}  // namespace gptoss
