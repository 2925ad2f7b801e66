#include "harmony/case_json.h"

#include "core/error.h"

namespace gptoss::harmony {
namespace {

using Json = nlohmann::ordered_json;

std::optional<std::string> opt_string(const Json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string())
    fail_input("{}.{} is {}; expected a string or null", where, key, it->dump());
  return it->get<std::string>();
}

const Json* opt_field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

void require_object(const Json& v, const std::string& where) {
  if (!v.is_object()) fail_input("{} is {}; expected a JSON object", where, v.dump());
}

std::vector<ToolDescription> tools_from_json(const Json& arr, const std::string& where) {
  if (!arr.is_array()) fail_input("{} is {}; expected a list of tools", where, arr.dump());
  std::vector<ToolDescription> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    std::string w = fmt::format("{}[{}]", where, i);
    require_object(arr[i], w);
    ToolDescription t;
    auto name = opt_string(arr[i], "name", w);
    if (!name) fail_input("{}.name is missing; every tool needs a name", w);
    t.name = *name;
    t.description = opt_string(arr[i], "description", w).value_or("");
    if (const Json* p = opt_field(arr[i], "parameters")) t.parameters = *p;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

Message message_from_json(const Json& m, const std::string& where) {
  require_object(m, where);
  Message msg;
  auto role = opt_string(m, "role", where);
  if (!role) fail_input("{}.role is missing; expected user, assistant, tool, system or developer", where);
  auto r = role_from_name(*role);
  if (!r) fail_input("{}.role is '{}'; expected user, assistant, tool, system or developer", where, *role);
  msg.author.role = *r;
  msg.author.name = opt_string(m, "author_name", where);
  msg.channel = opt_string(m, "channel", where);
  msg.recipient = opt_string(m, "recipient", where);
  msg.content_type = opt_string(m, "content_type", where);
  msg.content = opt_string(m, "content", where).value_or("");
  return msg;
}

Conversation conversation_from_json(const Json& obj) {
  require_object(obj, "input");
  Conversation conv;
  if (const Json* s = opt_field(obj, "system")) {
    require_object(*s, "system");
    SystemContent sys;
    sys.model_identity = opt_string(*s, "model_identity", "system");
    sys.knowledge_cutoff = opt_string(*s, "knowledge_cutoff", "system");
    sys.current_date = opt_string(*s, "current_date", "system");
    if (auto e = opt_string(*s, "reasoning_effort", "system")) {
      sys.reasoning_effort = effort_from_name(*e);
      if (!sys.reasoning_effort)
        fail_input("system.reasoning_effort is '{}'; expected low, medium or high", *e);
    }
    if (const Json* ch = opt_field(*s, "required_channels")) {
      if (!ch->is_array()) fail_input("system.required_channels is {}; expected a list of names", ch->dump());
      for (const Json& c : *ch) {
        if (!c.is_string()) fail_input("system.required_channels has {}; expected strings", c.dump());
        sys.valid_channels.push_back(c.get<std::string>());
      }
      sys.channel_required = true;
    }
    if (const Json* tools = opt_field(*s, "tools")) {
      require_object(*tools, "system.tools");
      const Json* descs = opt_field(*s, "tool_namespace_descriptions");
      for (const auto& [ns_name, list] : tools->items()) {
        ToolNamespace ns;
        ns.name = ns_name;
        if (descs && descs->is_object()) ns.description = opt_string(*descs, ns_name.c_str(), "system.tool_namespace_descriptions");
        ns.tools = tools_from_json(list, "system.tools." + ns_name);
        sys.tools[ns_name] = std::move(ns);
      }
    }
    conv.messages.push_back(Message::system_message(std::move(sys)));
  }
  if (const Json* d = opt_field(obj, "developer")) {
    require_object(*d, "developer");
    DeveloperContent dev;
    dev.instructions = opt_string(*d, "instructions", "developer");
    if (const Json* fns = opt_field(*d, "function_tools"))
      dev.with_function_tools(tools_from_json(*fns, "developer.function_tools"));
    conv.messages.push_back(Message::developer_message(std::move(dev)));
  }
  if (const Json* ms = opt_field(obj, "messages")) {
    if (!ms->is_array()) fail_input("messages is {}; expected a list of messages", ms->dump());
    for (size_t i = 0; i < ms->size(); ++i)
      conv.messages.push_back(message_from_json((*ms)[i], fmt::format("messages[{}]", i)));
  }
  return conv;
}

Json message_to_json(const Message& m) {
  Json j = Json::object();
  j["role"] = std::string(role_name(m.author.role));
  if (m.author.name) j["author_name"] = *m.author.name;
  if (m.channel) j["channel"] = *m.channel;
  if (m.recipient) j["recipient"] = *m.recipient;
  if (m.content_type) j["content_type"] = *m.content_type;
  j["content"] = m.content;
  return j;
}

Json messages_to_json(const std::vector<Message>& ms) {
  Json arr = Json::array();
  for (const Message& m : ms) arr.push_back(message_to_json(m));
  return arr;
}

}  // namespace gptoss::harmony
