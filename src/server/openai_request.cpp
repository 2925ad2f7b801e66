#include "server/openai_request.h"

#include <fmt/format.h>

#include "server/api_error.h"

namespace gptoss::server {
namespace {

const char* type_name(const OJson& v) { return v.type_name(); }

void check_bool(const OJson& body, const char* key) {
  if (body.contains(key) && !body[key].is_null() && !body[key].is_boolean())
    bad_field(key, fmt::format("`{}` is {}; expected true or false", key, type_name(body[key])));
}

void check_effort(const OJson& v, const std::string& param) {
  if (!v.is_string() || (v != "low" && v != "medium" && v != "high"))
    bad_field(param, fmt::format("`{}` is {}; expected \"low\", \"medium\" or \"high\"", param, v.dump()));
}

void check_content(const OJson& c, const std::string& where, bool allow_null) {
  if (c.is_string() || (allow_null && c.is_null())) return;
  if (c.is_array()) {
    for (size_t i = 0; i < c.size(); ++i) {
      const OJson& part = c[i];
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
        bad_field(where, fmt::format("`{}[{}]` is not a content part; expected {{\"type\": \"text\", \"text\": ...}}", where, i));
      std::string t = part["type"];
      if (t == "image_url" || t == "input_image" || t == "input_audio")
        bad_field(where, fmt::format("`{}[{}]` has type \"{}\"; gpt-oss reads text only", where, i, t));
      if (!part.contains("text") || !part["text"].is_string())
        bad_field(where, fmt::format("`{}[{}].text` is missing; expected a string", where, i));
    }
    return;
  }
  bad_field(where, fmt::format("`{}` is {}; expected a string or an array of text parts", where, type_name(c)));
}

void check_messages(const OJson& body) {
  if (!body.contains("messages")) bad_field("messages", "`messages` is missing; expected a non-empty array of messages");
  const OJson& ms = body["messages"];
  if (!ms.is_array() || ms.empty())
    bad_field("messages", fmt::format("`messages` is {}; expected a non-empty array of messages",
                                      ms.is_array() ? "an empty array" : type_name(ms)));
  for (size_t i = 0; i < ms.size(); ++i) {
    const OJson& m = ms[i];
    std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad_field(where, fmt::format("`{}` is {}; expected an object", where, type_name(m)));
    if (!m.contains("role") || !m["role"].is_string())
      bad_field(where + ".role", fmt::format("`{}.role` is missing; expected one of system, developer, user, assistant, tool", where));
    std::string role = m["role"];
    if (role != "system" && role != "developer" && role != "user" && role != "assistant" && role != "tool")
      bad_field(where + ".role", fmt::format("`{}.role` is '{}'; expected one of system, developer, user, assistant, tool", where, role));
    bool is_assistant = role == "assistant";
    if (!m.contains("content")) {
      if (!is_assistant) bad_field(where + ".content", fmt::format("`{}.content` is missing", where));
    } else {
      check_content(m["content"], where + ".content", is_assistant);
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      if (!is_assistant || !m["tool_calls"].is_array())
        bad_field(where + ".tool_calls", fmt::format("`{}.tool_calls` must be an array on an assistant message", where));
      for (size_t j = 0; j < m["tool_calls"].size(); ++j) {
        const OJson& tc = m["tool_calls"][j];
        if (!tc.is_object() || !tc.contains("function") || !tc["function"].is_object() ||
            !tc["function"].contains("name") || !tc["function"]["name"].is_string())
          bad_field(fmt::format("{}.tool_calls[{}]", where, j),
                    fmt::format("`{}.tool_calls[{}]` needs function.name (and function.arguments)", where, j));
      }
    }
    if (role == "tool" && m.contains("tool_call_id") && !m["tool_call_id"].is_string())
      bad_field(where + ".tool_call_id", fmt::format("`{}.tool_call_id` is {}; expected a string", where, type_name(m["tool_call_id"])));
  }
}

std::vector<std::string> check_tools(const OJson& body) {
  std::vector<std::string> names;
  if (!body.contains("tools") || body["tools"].is_null()) return names;
  const OJson& tools = body["tools"];
  if (!tools.is_array()) bad_field("tools", fmt::format("`tools` is {}; expected an array of function tools", type_name(tools)));
  for (size_t i = 0; i < tools.size(); ++i) {
    const OJson& t = tools[i];
    std::string where = fmt::format("tools[{}]", i);
    if (!t.is_object() || t.value("type", "") != "function")
      bad_field(where + ".type", fmt::format("`{}.type` must be \"function\"", where));
    if (!t.contains("function") || !t["function"].is_object())
      bad_field(where + ".function", fmt::format("`{}.function` is missing; expected {{name, description, parameters}}", where));
    const OJson& f = t["function"];
    if (!f.contains("name") || !f["name"].is_string() || f["name"].get<std::string>().empty())
      bad_field(where + ".function.name", fmt::format("`{}.function.name` is missing; expected a non-empty string", where));
    if (f.contains("parameters") && !f["parameters"].is_null() && !f["parameters"].is_object())
      bad_field(where + ".function.parameters", fmt::format("`{}.function.parameters` must be a JSON Schema object", where));
    names.push_back(f["name"]);
  }
  return names;
}

void prepend_developer(OJson& req, const std::string& text) {
  OJson msgs = OJson::array();
  msgs.push_back({{"role", "developer"}, {"content", text}});
  for (auto& m : req["messages"]) msgs.push_back(m);
  req["messages"] = std::move(msgs);
}

}  // namespace

void check_number(const OJson& body, const char* key, double lo, double hi, bool lo_open) {
  if (!body.contains(key) || body[key].is_null()) return;
  const OJson& v = body[key];
  if (!v.is_number())
    bad_field(key, fmt::format("`{}` is {}; expected a number in {}{}, {}]", key, type_name(v), lo_open ? "(" : "[", lo, hi));
  double d = v.get<double>();
  if (d < lo || d > hi || (lo_open && d == lo))
    bad_field(key, fmt::format("`{}` is {}; expected a number in {}{}, {}]", key, d, lo_open ? "(" : "[", lo, hi));
}

void check_positive_int(const OJson& body, const char* key) {
  if (!body.contains(key) || body[key].is_null()) return;
  const OJson& v = body[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 1)
    bad_field(key, fmt::format("`{}` is {}; expected an integer >= 1", key, v.dump()));
}

OJson normalise_chat_request(const OJson& body, bool emulate, StreamOptions& so) {
  if (!body.is_object()) throw ApiError(400, fmt::format("the request body is {}; expected a JSON object", type_name(body)));
  check_messages(body);
  std::vector<std::string> tool_names = check_tools(body);
  OJson req = body;

  if (body.contains("model") && !body["model"].is_string())
    bad_field("model", fmt::format("`model` is {}; expected a string", type_name(body["model"])));
  check_bool(body, "stream");
  so.stream = body.value("stream", false) == true;
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const OJson& o = body["stream_options"];
    if (!o.is_object()) bad_field("stream_options", "`stream_options` must be an object");
    if (!so.stream) bad_field("stream_options", "`stream_options` is only allowed when `stream` is true");
    check_bool(o, "include_usage");
    so.include_usage = o.value("include_usage", false) == true;
  }

  // Reasoning effort: chat spelling, or the Responses-style object.
  if (body.contains("reasoning_effort") && !body["reasoning_effort"].is_null())
    check_effort(body["reasoning_effort"], "reasoning_effort");
  if (body.contains("reasoning") && !body["reasoning"].is_null()) {
    const OJson& r = body["reasoning"];
    if (!r.is_object()) bad_field("reasoning", "`reasoning` must be an object like {\"effort\": \"low\"}");
    if (r.contains("effort") && !r["effort"].is_null()) {
      check_effort(r["effort"], "reasoning.effort");
      if (!req.contains("reasoning_effort") || req["reasoning_effort"].is_null()) req["reasoning_effort"] = r["effort"];
    }
    req.erase("reasoning");
  }

  check_number(body, "temperature", 0, 2);
  check_number(body, "top_p", 0, 1, true);
  check_number(body, "frequency_penalty", -2, 2);
  check_number(body, "presence_penalty", -2, 2);
  check_positive_int(body, "max_tokens");
  check_positive_int(body, "max_completion_tokens");
  if (body.contains("seed") && !body["seed"].is_null() && !body["seed"].is_number_integer())
    bad_field("seed", fmt::format("`seed` is {}; expected an integer", body["seed"].dump()));
  if (body.contains("n") && !body["n"].is_null() && body["n"] != 1)
    bad_field("n", fmt::format("`n` is {}; only n = 1 is supported", body["n"].dump()));
  if (body.contains("stop") && !body["stop"].is_null()) {
    const OJson& s = body["stop"];
    bool ok = s.is_string() || (s.is_array() && s.size() <= 4);
    if (s.is_array())
      for (const auto& x : s) ok = ok && x.is_string();
    if (!ok) bad_field("stop", "`stop` must be a string or an array of up to 4 strings");
  }
  check_bool(body, "logprobs");
  if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    const OJson& t = body["top_logprobs"];
    if (!t.is_number_integer() || t.get<int>() < 0 || t.get<int>() > 20)
      bad_field("top_logprobs", fmt::format("`top_logprobs` is {}; expected an integer in [0, 20]", t.dump()));
    if (t.get<int>() > 0 && body.value("logprobs", false) != true)
      bad_field("top_logprobs", "`top_logprobs` needs `logprobs: true`");
  }

  // tool_choice
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    const OJson& tc = body["tool_choice"];
    std::string named;
    if (tc.is_string()) {
      if (tc != "auto" && tc != "none" && tc != "required")
        bad_field("tool_choice", fmt::format("`tool_choice` is {}; expected \"auto\", \"none\", \"required\" or "
                                             "{{\"type\": \"function\", \"function\": {{\"name\": ...}}}}", tc.dump()));
      if (tc == "required" && tool_names.empty()) bad_field("tool_choice", "`tool_choice` is \"required\" but no `tools` were given");
    } else if (tc.is_object() && tc.value("type", "") == "function" && tc.contains("function") &&
               tc["function"].is_object() && tc["function"].contains("name") && tc["function"]["name"].is_string()) {
      named = tc["function"]["name"];
      if (std::find(tool_names.begin(), tool_names.end(), named) == tool_names.end())
        bad_field("tool_choice", fmt::format("`tool_choice` names function '{}', which is not among `tools`", named));
    } else {
      bad_field("tool_choice", "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (emulate) {
      if (!named.empty()) {
        OJson kept = OJson::array();
        for (const auto& t : body["tools"])
          if (t["function"]["name"] == named) kept.push_back(t);
        req["tools"] = kept;
        req["tool_choice"] = "auto";
        prepend_developer(req, fmt::format("In this reply you must call the function `{}`.", named));
      } else if (tc == "required") {
        req["tool_choice"] = "auto";
        prepend_developer(req, "In this reply you must call one of the available functions.");
      }
    }
  }

  // response_format
  if (body.contains("response_format") && !body["response_format"].is_null()) {
    const OJson& rf = body["response_format"];
    if (!rf.is_object() || !rf.contains("type") || !rf["type"].is_string())
      bad_field("response_format", "`response_format` must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}");
    std::string t = rf["type"];
    std::string instruction;
    if (t == "json_object") {
      instruction = "Respond with a single valid JSON object and nothing else (no prose, no code fences).";
    } else if (t == "json_schema") {
      if (!rf.contains("json_schema") || !rf["json_schema"].is_object())
        bad_field("response_format.json_schema", "`response_format.json_schema` is missing; expected {name, schema, strict}");
      const OJson& js = rf["json_schema"];
      if (!js.contains("name") || !js["name"].is_string())
        bad_field("response_format.json_schema.name", "`response_format.json_schema.name` is missing; expected a string");
      if (js.contains("schema") && !js["schema"].is_object())
        bad_field("response_format.json_schema.schema", "`response_format.json_schema.schema` must be a JSON Schema object");
      instruction = fmt::format(
          "Respond with a single valid JSON object and nothing else (no prose, no code fences). It must conform to "
          "the JSON Schema named \"{}\":\n{}",
          js["name"].get<std::string>(), js.value("schema", OJson::object()).dump());
    } else if (t != "text") {
      bad_field("response_format.type", fmt::format("`response_format.type` is '{}'; expected text, json_object or json_schema", t));
    }
    if (emulate) {
      req.erase("response_format");
      if (!instruction.empty()) prepend_developer(req, instruction);
    }
  }
  return req;
}

OJson responses_to_chat(const OJson& body, StreamOptions& so) {
  if (!body.is_object()) throw ApiError(400, fmt::format("the request body is {}; expected a JSON object", type_name(body)));
  if (body.contains("previous_response_id") && !body["previous_response_id"].is_null())
    bad_field("previous_response_id", "`previous_response_id` is not supported (the server keeps no state); send the "
                                      "whole conversation in `input`");
  OJson chat = OJson::object();
  OJson msgs = OJson::array();
  if (body.contains("instructions") && !body["instructions"].is_null()) {
    if (!body["instructions"].is_string()) bad_field("instructions", "`instructions` must be a string");
    msgs.push_back({{"role", "developer"}, {"content", body["instructions"]}});
  }
  if (!body.contains("input")) bad_field("input", "`input` is missing; expected a string or an array of input items");
  const OJson& input = body["input"];
  auto item_text = [](const OJson& content, const std::string& where) -> OJson {
    if (content.is_string()) return content;
    if (!content.is_array()) bad_field(where, fmt::format("`{}` must be a string or an array of input_text parts", where));
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
      const OJson& p = content[i];
      std::string t = p.is_object() ? p.value("type", "") : "";
      if ((t != "input_text" && t != "output_text" && t != "text") || !p.contains("text") || !p["text"].is_string())
        bad_field(fmt::format("{}[{}]", where, i), fmt::format("`{}[{}]` must be {{\"type\": \"input_text\", \"text\": ...}} "
                                                                "(gpt-oss reads text only)", where, i));
      text += p["text"].get<std::string>();
    }
    return text;
  };
  if (input.is_string()) {
    msgs.push_back({{"role", "user"}, {"content", input}});
  } else if (input.is_array()) {
    for (size_t i = 0; i < input.size(); ++i) {
      const OJson& it = input[i];
      std::string where = fmt::format("input[{}]", i);
      if (!it.is_object()) bad_field(where, fmt::format("`{}` must be an object", where));
      std::string type = it.value("type", it.contains("role") ? "message" : "");
      if (type == "message") {
        std::string role = it.value("role", "");
        if (role != "user" && role != "assistant" && role != "system" && role != "developer")
          bad_field(where + ".role", fmt::format("`{}.role` is '{}'; expected user, assistant, system or developer", where, role));
        msgs.push_back({{"role", role}, {"content", item_text(it.value("content", OJson("")), where + ".content")}});
      } else if (type == "function_call") {
        if (!it.contains("name") || !it["name"].is_string() || !it.contains("call_id") || !it["call_id"].is_string())
          bad_field(where, fmt::format("`{}` (function_call) needs name, call_id and arguments", where));
        OJson call = {{"id", it["call_id"]}, {"type", "function"},
                      {"function", {{"name", it["name"]}, {"arguments", it.value("arguments", std::string("{}"))}}}};
        // Consecutive calls belong to one assistant message.
        if (!msgs.empty() && msgs.back()["role"] == "assistant" && msgs.back().contains("tool_calls"))
          msgs.back()["tool_calls"].push_back(call);
        else
          msgs.push_back({{"role", "assistant"}, {"content", nullptr}, {"tool_calls", OJson::array({call})}});
      } else if (type == "function_call_output") {
        if (!it.contains("call_id") || !it["call_id"].is_string())
          bad_field(where + ".call_id", fmt::format("`{}.call_id` is missing", where));
        OJson out = it.value("output", OJson(""));
        msgs.push_back({{"role", "tool"}, {"tool_call_id", it["call_id"]}, {"content", out.is_string() ? out : OJson(out.dump())}});
      } else if (type == "reasoning") {
        std::string text;
        for (const auto& c : it.value("content", OJson::array()))
          if (c.is_object() && c.contains("text") && c["text"].is_string()) text += c["text"].get<std::string>();
        if (!text.empty()) msgs.push_back({{"role", "assistant"}, {"content", ""}, {"reasoning_content", text}});
      } else {
        bad_field(where + ".type", fmt::format("`{}.type` is '{}'; expected message, function_call, function_call_output or reasoning", where, type));
      }
    }
  } else {
    bad_field("input", fmt::format("`input` is {}; expected a string or an array of input items", type_name(input)));
  }
  chat["messages"] = msgs;
  if (body.contains("model")) chat["model"] = body["model"];
  if (body.contains("tools") && !body["tools"].is_null()) {
    if (!body["tools"].is_array()) bad_field("tools", "`tools` must be an array");
    OJson tools = OJson::array();
    for (size_t i = 0; i < body["tools"].size(); ++i) {
      const OJson& t = body["tools"][i];
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("name") || !t["name"].is_string())
        bad_field(fmt::format("tools[{}]", i), fmt::format("`tools[{}]` must be {{\"type\": \"function\", \"name\": ..., \"parameters\": ...}}", i));
      OJson f = {{"name", t["name"]}};
      if (t.contains("description")) f["description"] = t["description"];
      if (t.contains("parameters")) f["parameters"] = t["parameters"];
      tools.push_back({{"type", "function"}, {"function", f}});
    }
    chat["tools"] = tools;
  }
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    const OJson& tc = body["tool_choice"];
    if (tc.is_object() && tc.value("type", "") == "function" && tc.contains("name"))
      chat["tool_choice"] = {{"type", "function"}, {"function", {{"name", tc["name"]}}}};
    else
      chat["tool_choice"] = tc;
  }
  if (body.contains("reasoning")) chat["reasoning"] = body["reasoning"];
  for (const char* k : {"temperature", "top_p", "seed", "stream", "parallel_tool_calls"})
    if (body.contains(k)) chat[k] = body[k];
  if (body.contains("max_output_tokens") && !body["max_output_tokens"].is_null()) {
    check_positive_int(body, "max_output_tokens");
    chat["max_tokens"] = body["max_output_tokens"];
  }
  if (body.contains("text") && body["text"].is_object() && body["text"].contains("format")) {
    const OJson& f = body["text"]["format"];
    if (f.is_object() && f.value("type", "") == "json_schema")
      chat["response_format"] = {{"type", "json_schema"},
                                 {"json_schema", {{"name", f.value("name", std::string("response"))},
                                                  {"schema", f.value("schema", OJson::object())}}}};
    else if (f.is_object() && f.value("type", "") == "json_object")
      chat["response_format"] = {{"type", "json_object"}};
  }
  return chat;
}

}  // namespace gptoss::server
