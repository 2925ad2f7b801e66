// OpenAI chat <-> harmony mapping.
#include <gtest/gtest.h>

#include <cstdlib>

#include "api/chat_mapping.h"
#include "core/error.h"
#include "harmony/harmony.h"
#include "harmony/parser.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace gptoss {
namespace {

using OJson = nlohmann::ordered_json;
using harmony::Role;

const Tokenizer& tokenizer() {
  static const Tokenizer tok = [] {
    const char* e = std::getenv("GPTOSS_SHARED_DIR");
    std::string dir = e && *e ? e : GPTOSS_SHARED_DIR;
    return Tokenizer::from_file(dir + "/data/tokenizer/tokenizer.json");
  }();
  return tok;
}

std::string render(const OJson& req, ChatMappingOptions opts = {}) {
  return harmony::render_for_completion(chat_to_harmony(req, opts).conversation, Role::kAssistant);
}

std::string error_of(const OJson& req) {
  return input_error_of([&] { chat_to_harmony(req); });
}

TEST(ChatToHarmony, SystemDeveloperToolsAndEffort) {
  OJson req = OJson::parse(R"({
    "reasoning_effort": "high",
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
      {"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Gets the weather.",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                     "required": ["city"]}}}]})");
  EXPECT_EQ(render(req, {.current_date = "2025-08-05", .model_identity = std::nullopt}),
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
            "Knowledge cutoff: 2024-06\nCurrent date: 2025-08-05\n\nReasoning: high\n\n"
            "# Valid channels: analysis, commentary, final. Channel must be included for every message.\n"
            "Calls to these tools must go to the commentary channel: 'functions'.<|end|>"
            "<|start|>developer<|message|># Instructions\n\nBe brief.\n\nUse metric units.\n\n# Tools\n\n"
            "## functions\n\nnamespace functions {\n\n// Gets the weather.\ntype get_weather = (_: {\n"
            "city: string,\ndays?: number,\n}) => any;\n\n} // namespace functions<|end|>"
            "<|start|>user<|message|>Weather in Paris?<|end|><|start|>assistant");
  EXPECT_EQ(chat_to_harmony(req).effort, harmony::ReasoningEffort::kHigh);
  EXPECT_TRUE(chat_to_harmony(req).has_tools);
}

TEST(ChatToHarmony, PlainJsonOverloadAndDefaults) {
  nlohmann::json req = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  HarmonyRequest h = chat_to_harmony(req);
  EXPECT_EQ(h.effort, harmony::ReasoningEffort::kMedium);
  EXPECT_FALSE(h.has_tools);
  ASSERT_EQ(h.conversation.messages.size(), 2u);  // system + user: no developer message
  EXPECT_EQ(harmony::render_for_completion(h.conversation, Role::kAssistant),
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
            "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
            "Channel must be included for every message.<|end|><|start|>user<|message|>hi<|end|><|start|>assistant");
}

TEST(ChatToHarmony, ToolCallLoopWithReasoning) {
  for (const char* key : {"reasoning_content", "reasoning", "thinking"}) {
    OJson req = OJson::parse(R"({"messages": [
      {"role": "user", "content": "Weather in Tokyo?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Tokyo\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 20}"}]})");
    req["messages"][1][key] = "Need the weather tool.";
    std::string r = render(req);
    EXPECT_NE(r.find("<|start|>user<|message|>Weather in Tokyo?<|end|>"
                     "<|start|>assistant<|channel|>analysis<|message|>Need the weather tool.<|end|>"
                     "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json"
                     "<|message|>{\"city\": \"Tokyo\"}<|call|>"
                     "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{\"temp\": 20}"
                     "<|end|><|start|>assistant"),
              std::string::npos)
        << key << "\n" << r;
  }
}

TEST(ChatToHarmony, PastReasoningIsDroppedOnceTheTurnIsFinal) {
  OJson req = OJson::parse(R"({"messages": [
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4", "reasoning_content": "Simple."},
    {"role": "user", "content": "3+3?"}]})");
  std::string r = render(req);
  EXPECT_EQ(r.find("Simple."), std::string::npos);
  EXPECT_NE(r.find("<|start|>assistant<|channel|>final<|message|>4<|end|>"), std::string::npos);
}

TEST(ChatToHarmony, ToolPropertyOrderIsKept) {
  OJson req = OJson::parse(R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function",
    "function": {"name": "f", "description": "", "parameters": {"type": "object",
    "properties": {"zeta": {"type": "string"}, "alpha": {"type": "string"}}}}}]})");
  std::string r = render(req);
  EXPECT_LT(r.find("zeta?: string"), r.find("alpha?: string"));
}

TEST(ChatToHarmony, ErrorsNameTheField) {
  EXPECT_NE(error_of(OJson::parse(R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
      {"role": "robot", "content": "c"}]})")).find("messages[2].role"), std::string::npos);
  EXPECT_NE(error_of(OJson::parse(R"({"messages": [{"role": "user", "content": "a"}], "reasoning_effort": "max"})"))
                .find("reasoning_effort is 'max'"), std::string::npos);
  EXPECT_NE(error_of(OJson::parse(R"({"messages": [{"role": "user", "content": "a"}],
      "tools": [{"type": "function", "function": {"description": "x"}}]})")).find("tools[0].function.name"),
            std::string::npos);
  EXPECT_NE(error_of(OJson::parse(R"({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "1"}]})"))
                .find("messages[0].tool_call_id is 'nope'"), std::string::npos);
  EXPECT_NE(error_of(OJson::parse(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"))
                .find("messages[0].content[0].type"), std::string::npos);
  EXPECT_NE(error_of(OJson::parse(R"({"messages": []})")).find("messages is empty"), std::string::npos);
  EXPECT_NE(error_of(OJson::parse(R"({"model": "x"})")).find("messages is missing"), std::string::npos);
}

std::vector<harmony::Message> parse(const std::string& text) {
  return harmony::parse_completion(tokenizer(), tokenizer().encode_with_special(text), {.role = Role::kAssistant});
}

TEST(HarmonyToChat, FinalAndReasoning) {
  auto ms = parse("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Answer.<|return|>");
  nlohmann::json m = harmony_to_chat_message(ms);
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["content"], "Answer.");
  EXPECT_EQ(m["reasoning_content"], "Think.");
  EXPECT_FALSE(m.contains("tool_calls"));
  EXPECT_EQ(chat_finish_reason(harmony::Terminator::kReturn, false), "stop");
  EXPECT_EQ(chat_finish_reason(harmony::Terminator::kEndOfInput, true), "length");
}

TEST(HarmonyToChat, ToolCallsAndFinishReason) {
  auto ms = parse("<|channel|>analysis<|message|>Use tool.<|end|><|start|>assistant to=functions.get_weather"
                  "<|channel|>commentary <|constrain|>json<|message|>{\"city\": \"Tokyo\"}<|call|>");
  int n = 0;
  nlohmann::json m = harmony_to_chat_message(ms, [&] { return "call_" + std::to_string(n++); });
  EXPECT_TRUE(m["content"].is_null());
  ASSERT_EQ(m["tool_calls"].size(), 1u);
  EXPECT_EQ(m["tool_calls"][0]["id"], "call_0");
  EXPECT_EQ(m["tool_calls"][0]["type"], "function");
  EXPECT_EQ(m["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(m["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Tokyo\"}");
  EXPECT_EQ(chat_finish_reason(harmony::Terminator::kCall, false), "tool_calls");
  std::string id = random_tool_call_id();
  EXPECT_TRUE(id.starts_with("call_"));
  EXPECT_EQ(id.size(), 29u);
}

TEST(ChatEventMapperTest, StreamingGivesSameMessageAndDeltas) {
  std::string text = "<|channel|>analysis<|message|>Checking.<|end|><|start|>assistant<|channel|>commentary"
                     "<|message|>Let me look.<|end|><|start|>assistant to=functions.f<|channel|>commentary json"
                     "<|message|>{\"a\":1}<|call|>";
  harmony::StreamParser p(tokenizer(), {.role = Role::kAssistant});
  ChatEventMapper mapper([] { return std::string("call_x"); });
  std::string reasoning, content, args;
  int starts = 0;
  for (int t : tokenizer().encode_with_special(text)) {
    for (const auto& ev : p.push(t)) {
      for (const ChatEvent& ce : mapper.map(ev)) {
        if (ce.kind == ChatEvent::Kind::ReasoningDelta) reasoning += ce.text;
        if (ce.kind == ChatEvent::Kind::ContentDelta) content += ce.text;
        if (ce.kind == ChatEvent::Kind::ToolCallDelta) {
          EXPECT_EQ(ce.tool_index, 0);
          if (!ce.tool_id.empty()) {
            ++starts;
            EXPECT_EQ(ce.tool_name, "f");
          }
          args += ce.text;
        }
      }
    }
  }
  EXPECT_EQ(reasoning, "Checking.");
  EXPECT_EQ(content, "Let me look.");
  EXPECT_EQ(args, "{\"a\":1}");
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(mapper.last_terminator(), harmony::Terminator::kCall);
  EXPECT_EQ(mapper.message(), harmony_to_chat_message(p.messages(), [] { return std::string("call_x"); }));
}

}  // namespace
}  // namespace gptoss
