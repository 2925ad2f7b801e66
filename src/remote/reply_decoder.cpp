#include "remote/reply_decoder.h"

#include "core/error.h"

namespace gptoss {
namespace {

using nlohmann::json;

ChatEvent delta(ChatEvent::Kind kind, std::string text) {
  ChatEvent ev;
  ev.kind = kind;
  ev.text = std::move(text);
  return ev;
}

std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  // Some servers send content as an array of parts [{type: "text", text: ...}].
  if (v.is_array()) {
    std::string s;
    for (const auto& part : v)
      if (part.is_object() && part.contains("text") && part["text"].is_string()) s += part["text"].get<std::string>();
    return s;
  }
  return {};
}

std::string reasoning_of(const json& m) {
  if (m.contains("reasoning_content")) {
    std::string r = text_of(m["reasoning_content"]);
    if (!r.empty()) return r;
  }
  if (m.contains("reasoning")) return text_of(m["reasoning"]);
  return {};
}

const json& first_choice(const json& obj) {
  if (!obj.is_object()) fail("reply is not a JSON object");
  if (obj.contains("error") && !obj["error"].is_null())
    fail("server reported an error: {}", upstream_error_message(obj.dump()));
  auto it = obj.find("choices");
  if (it == obj.end() || !it->is_array()) fail("reply has no `choices` array");
  static const json kEmpty = json::object();
  if (it->empty()) return kEmpty;  // the usage-only chunk of include_usage
  const json& c = (*it)[0];
  if (!c.is_object()) fail("reply: choices[0] is not an object");
  return c;
}

}  // namespace

int ReplyDecoder::call_slot(const json& tc) {
  std::string key;
  if (tc.contains("index") && tc["index"].is_number_integer()) key = "i" + std::to_string(tc["index"].get<int>());
  else if (tc.contains("id") && tc["id"].is_string()) key = "d" + tc["id"].get<std::string>();
  else key = "n" + std::to_string(calls_.size());
  for (size_t i = 0; i < calls_.size(); ++i)
    if (calls_[i].upstream_key == key) return int(i);
  calls_.push_back({key, "", "", ""});
  return int(calls_.size()) - 1;
}

void ReplyDecoder::add_chunk(const json& chunk, std::vector<ChatEvent>& out) {
  const json& choice = first_choice(chunk);
  if (chunk.contains("usage") && chunk["usage"].is_object()) usage_ = chunk["usage"];
  if (choice.empty()) return;
  if (choice.contains("delta") && choice["delta"].is_object()) {
    const json& d = choice["delta"];
    std::string r = reasoning_of(d);
    if (!r.empty()) {
      reasoning_ += r;
      out.push_back(delta(ChatEvent::Kind::ReasoningDelta, r));
    }
    if (d.contains("content")) {
      std::string c = text_of(d["content"]);
      if (!c.empty()) {
        content_ += c;
        out.push_back(delta(ChatEvent::Kind::ContentDelta, c));
      }
    }
    if (d.contains("tool_calls") && d["tool_calls"].is_array()) {
      for (const auto& tc : d["tool_calls"]) {
        if (!tc.is_object()) continue;
        int slot = call_slot(tc);
        Call& call = calls_[slot];
        bool first = call.name.empty() && call.id.empty() && call.arguments.empty();
        ChatEvent ev = delta(ChatEvent::Kind::ToolCallDelta, "");
        ev.tool_index = slot;
        if (tc.contains("id") && tc["id"].is_string() && call.id.empty()) call.id = tc["id"].get<std::string>();
        if (tc.contains("function") && tc["function"].is_object()) {
          const json& f = tc["function"];
          if (f.contains("name") && f["name"].is_string()) call.name += f["name"].get<std::string>();
          if (f.contains("arguments") && f["arguments"].is_string()) ev.text = f["arguments"].get<std::string>();
        }
        call.arguments += ev.text;
        if (first) {
          if (call.id.empty()) call.id = "call_" + std::to_string(slot);
          ev.tool_id = call.id;
          ev.tool_name = call.name;
        }
        if (first || !ev.text.empty()) out.push_back(std::move(ev));
      }
    }
  }
  if (choice.contains("logprobs") && choice["logprobs"].is_object()) {
    has_logprobs_ = true;
    const json& lp = choice["logprobs"];
    if (lp.contains("content") && lp["content"].is_array())
      for (const auto& t : lp["content"]) logprobs_content_.push_back(t);
  }
  if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
    finish_reason_ = choice["finish_reason"].get<std::string>();
  if (!out.empty()) emitted_ = true;
}

void ReplyDecoder::add_reply(const json& reply, std::vector<ChatEvent>& out) {
  const json& choice = first_choice(reply);
  if (choice.empty()) fail("reply has an empty `choices` array");
  if (!choice.contains("message") || !choice["message"].is_object()) fail("reply: choices[0] has no `message`");
  // A whole reply is a single chunk whose delta is the message.
  json chunk = {{"choices", json::array({json{{"index", 0}, {"delta", choice["message"]}}})}};
  json& c0 = chunk["choices"][0];
  if (choice.contains("finish_reason")) c0["finish_reason"] = choice["finish_reason"];
  if (choice.contains("logprobs")) c0["logprobs"] = choice["logprobs"];
  if (reply.contains("usage")) chunk["usage"] = reply["usage"];
  json& tcs = c0["delta"]["tool_calls"];
  if (tcs.is_array())
    for (size_t i = 0; i < tcs.size(); ++i)
      if (tcs[i].is_object() && !tcs[i].contains("index")) tcs[i]["index"] = int(i);
  add_chunk(chunk, out);
}

ChatEvent ReplyDecoder::done() const {
  ChatEvent ev;
  ev.kind = ChatEvent::Kind::Done;
  json msg = {{"role", "assistant"}, {"content", content_}};
  if (content_.empty() && !calls_.empty()) msg["content"] = nullptr;
  if (!reasoning_.empty()) {
    msg["reasoning_content"] = reasoning_;
    msg["reasoning"] = reasoning_;
  }
  if (!calls_.empty()) {
    json tcs = json::array();
    for (const auto& c : calls_)
      tcs.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    msg["tool_calls"] = std::move(tcs);
  }
  ev.message = std::move(msg);
  ev.finish_reason = finish_reason_.empty() ? (calls_.empty() ? "stop" : "tool_calls") : finish_reason_;
  if (usage_.is_object()) {
    ev.usage = usage_;
  } else {
    ev.usage = {{"prompt_tokens", 0}, {"completion_tokens", 0}, {"total_tokens", 0}};
  }
  if (has_logprobs_) ev.logprobs = {{"content", logprobs_content_}};
  return ev;
}

std::string upstream_error_message(const std::string& body) {
  std::string msg = body;
  try {
    json j = json::parse(body);
    if (j.is_object() && j.contains("error")) {
      const json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) msg = e["message"].get<std::string>();
      else if (e.is_string()) msg = e.get<std::string>();
    } else if (j.is_object() && j.contains("message") && j["message"].is_string()) {
      msg = j["message"].get<std::string>();
    }
  } catch (const json::exception&) {
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
  return msg;
}

}  // namespace gptoss
