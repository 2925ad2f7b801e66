// Renderer tests beyond cases.jsonl: the five upstream files without a case line, the public API, and
// the JSON-Schema converter's rules on shapes the cases do not show.
#include <gtest/gtest.h>

#include "core/error.h"
#include "harmony/case_json.h"
#include "harmony/harmony.h"
#include "harmony/parser.h"
#include "harmony_test_util.h"

namespace gptoss::harmony {
namespace {

using Json = nlohmann::ordered_json;
using namespace gptoss::harmony::testing;

std::string expected(const std::string& file) { return rstrip(read_text(harmony_dir() + "/expected/" + file)); }

Json case_named(const std::string& name) {
  for (Json& c : load_cases())
    if (c["name"] == name) return c;
  throw std::runtime_error("no case " + name);
}

void expect_text_and_tokens(const std::vector<Piece>& pieces, const std::string& want) {
  EXPECT_EQ(pieces_to_text(pieces), want);
  EXPECT_EQ(pieces_to_tokens(pieces, tokenizer()), tokenizer().encode_with_special(want));
}

TEST(UpstreamFiles, SimpleConvoLowEffort) {
  Conversation conv;
  SystemContent sys = SystemContent::defaults();
  sys.reasoning_effort = ReasoningEffort::kLow;
  conv.messages.push_back(Message::system_message(sys));
  DeveloperContent dev;
  dev.instructions = "Answer the user's questions like a robot.";
  conv.messages.push_back(Message::developer_message(dev));
  conv.messages.push_back(Message::text(Role::kUser, "What is the capital of the largest country in the world?"));
  expect_text_and_tokens(render_for_completion_pieces(conv, Role::kAssistant),
                         expected("test_simple_convo_low_effort.txt"));
}

TEST(UpstreamFiles, ReasoningSystemMessageWithDates) {
  Conversation conv;
  SystemContent sys = SystemContent::defaults();
  sys.knowledge_cutoff = "2021-01";
  sys.current_date = "2021-01-01";
  sys.valid_channels = {"analysis", "final"};
  conv.messages.push_back(Message::system_message(sys));
  conv.messages.push_back(Message::text(Role::kUser, "What is 42 * pi?"));
  expect_text_and_tokens(render_for_completion_pieces(conv, Role::kAssistant),
                         expected("test_reasoning_system_message_with_dates.txt"));
}

TEST(UpstreamFiles, KeepAnalysisBetweenFinals) {
  Conversation conv;
  auto assistant = [](std::string channel, std::string text) {
    Message m = Message::text(Role::kAssistant, std::move(text));
    m.channel = std::move(channel);
    return m;
  };
  conv.messages = {Message::text(Role::kUser, "What is 2 + 2?"), assistant("final", "4"),
                   Message::text(Role::kUser, "What is 3 + 5?"), assistant("analysis", "thinking 3+5"),
                   assistant("final", "8")};
  // The analysis message comes after the first final message, so it is kept.
  expect_text_and_tokens(render_conversation_pieces(conv, {.auto_drop_analysis = true}),
                         expected("test_keep_analysis_between_finals.txt"));
}

TEST(UpstreamFiles, BrowserAndFunctionTool) {
  Json c = case_named("browser_tool_only");
  c["developer"] = Json::parse(R"({"instructions": null, "function_tools": [{"name": "lookup_weather",
    "description": "Use this tool to lookup the weather in a given location. Call it with the parameter 'location', can be any textual description of a location.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]})");
  Conversation conv = conversation_from_json(c);
  EXPECT_EQ(render_for_completion(conv, Role::kAssistant), expected("test_browser_and_function_tool.txt"));
}

TEST(UpstreamFiles, ToolResponseParsing) {
  std::vector<int> ids = tokenizer().encode_with_special(expected("test_tool_response_parsing.txt"));
  std::vector<Message> ms = parse_completion(tokenizer(), ids, {});
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].author.role, Role::kTool);
  EXPECT_EQ(ms[0].author.name, "browser.search");
  EXPECT_EQ(ms[0].recipient, "assistant");
  EXPECT_EQ(ms[0].channel, "commentary");
  EXPECT_EQ(ms[0].content, R"({"result": "https://openai.com/"})");
  // And it renders back to the same tokens (the file has no closing <|end|>; end of input closed it).
  Conversation conv{ms};
  ids.push_back(tok::kEnd);
  EXPECT_EQ(render_conversation_tokens(conv, tokenizer()), ids);
}

TEST(Render, ToolMessageNeedsAuthorName) {
  Conversation conv{{Message::text(Role::kTool, "42")}};
  try {
    render_conversation(conv);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("messages[0]"), std::string::npos) << e.what();
  }
}

TEST(Render, AuthorNameAndRecipientAndTrainingReturn) {
  Message u = Message::text(Role::kUser, "hi");
  u.author.name = "alice";
  Message a = Message::text(Role::kAssistant, "hello");
  a.channel = "final";
  Conversation conv{{u, a}};
  EXPECT_EQ(render_for_training(conv),
            "<|start|>user:alice<|message|>hi<|end|><|start|>assistant<|channel|>final<|message|>hello<|return|>");
  Message call = Message::text(Role::kAssistant, "{}");
  call.recipient = "functions.f";
  call.channel = "commentary";
  call.content_type = "json";
  EXPECT_EQ(pieces_to_text(render_message_pieces(call)),
            "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{}<|call|>");
}

TEST(Render, DropsOnlyAnalysisBeforeFirstFinalWhenLastAssistantIsFinal) {
  auto assistant = [](std::string channel, std::string text) {
    Message m = Message::text(Role::kAssistant, std::move(text));
    m.channel = std::move(channel);
    return m;
  };
  Conversation conv{{Message::text(Role::kUser, "q"), assistant("analysis", "a1"), assistant("final", "f1"),
                     Message::text(Role::kUser, "q2"), assistant("analysis", "a2")}};
  // Last assistant message is analysis (ongoing): nothing dropped.
  EXPECT_NE(render_for_completion(conv, Role::kAssistant).find("a1"), std::string::npos);
  conv.messages.push_back(assistant("final", "f2"));
  std::string r = render_for_completion(conv, Role::kAssistant);
  EXPECT_EQ(r.find("a1"), std::string::npos);
  EXPECT_NE(r.find("a2"), std::string::npos);
  EXPECT_NE(render_for_completion(conv, Role::kAssistant, {.auto_drop_analysis = false}).find("a1"),
            std::string::npos);
}

TEST(Render, EmptyFunctionListAndBareNamespaceDescription) {
  DeveloperContent dev;
  dev.with_function_tools({});
  Conversation conv{{Message::system_message(SystemContent::defaults()), Message::developer_message(dev)}};
  std::string r = render_conversation(conv);
  // An empty functions list renders its heading but does not announce the functions channel rule.
  EXPECT_NE(r.find("<|start|>developer<|message|># Tools\n\n## functions\n<|end|>"), std::string::npos) << r;
  EXPECT_EQ(r.find("Calls to these tools"), std::string::npos);
}

// ---- JSON Schema -> TypeScript ----

std::string ts(const char* schema) { return json_schema_to_typescript(Json::parse(schema)); }

TEST(SchemaTs, Scalars) {
  EXPECT_EQ(ts(R"({"type": "string"})"), "string");
  EXPECT_EQ(ts(R"({"type": "integer"})"), "number");
  EXPECT_EQ(ts(R"({"type": "boolean"})"), "boolean");
  EXPECT_EQ(ts(R"({"type": ["string", "integer", "null"]})"), "string | number | null");
  EXPECT_EQ(ts(R"({"type": "string", "enum": ["a", "b"]})"), R"("a" | "b")");
  EXPECT_EQ(ts(R"({"type": "number", "enum": [1, 2]})"), "number");
  EXPECT_EQ(ts(R"({"enum": ["x"]})"), "any");
  EXPECT_EQ(ts(R"({"type": "array"})"), "Array<any>");
  EXPECT_EQ(ts(R"({"type": "array", "items": {"type": "integer"}})"), "number[]");
  EXPECT_EQ(ts(R"(17)"), "any");
  EXPECT_EQ(ts(R"({})"), "any");
}

TEST(SchemaTs, NestedObjectsIndentFourSpacesPerLevel) {
  EXPECT_EQ(ts(R"({"type": "object", "properties": {
      "user": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
               "required": ["name"]}}, "required": ["user"]})"),
            "{\nuser: {\n    name: string,\n    age?: number,\n    },\n}");
}

TEST(SchemaTs, PropertyCommentsDefaultsAndNullable) {
  EXPECT_EQ(ts(R"({"type": "object", "properties": {
      "q": {"type": "string", "title": "Query", "description": "What to find", "examples": ["a", 1]},
      "n": {"type": "integer", "default": 3, "nullable": true},
      "mode": {"type": "string", "enum": ["x", "y"], "default": "x"},
      "s": {"type": "string", "default": "hi"}}})"),
            "{\n// Query\n//\n// What to find\n// Examples:\n// - \"a\"\nq?: string,\n"
            "n?: number | null, // default: 3\nmode?: \"x\" | \"y\", // default: x\ns?: string, // default: \"hi\"\n}");
}

TEST(SchemaTs, OneOfPropertyAndTopLevel) {
  EXPECT_EQ(ts(R"({"type": "object", "properties": {"v": {"oneOf": [{"type": "string", "nullable": true},
      {"type": "integer", "description": "count", "default": 1}], "description": "value", "default": "a"}},
      "required": ["v"]})"),
            "{\n// value\n// default: \"a\"\nv:\n | string | null\n | number // count default: 1\n,\n}");
  EXPECT_EQ(ts(R"({"oneOf": [{"type": "string"}, {"type": "boolean"}]})"), "\n | string\n | boolean");
}

TEST(SchemaTs, UpstreamEdgeRules) {
  // type "null" has no case upstream (any); anyOf is not rendered (any); only string examples are listed.
  EXPECT_EQ(ts(R"({"type": "null"})"), "any");
  EXPECT_EQ(ts(R"({"anyOf": [{"type": "string"}, {"type": "number"}]})"), "any");
  // A nested object's own description sits at its properties' indent, before its brace.
  EXPECT_EQ(ts(R"({"type": "object", "properties": {"o": {"type": "object", "description": "inner",
      "properties": {"a": {"type": "string"}}}}})"),
            "{\n// inner\no?:     // inner\n{\n    a?: string,\n    },\n}");
  // A property description equal to the first variant's is not written twice; variants' nested lines
  // are 3 spaces deeper than " | ".
  EXPECT_EQ(ts(R"({"type": "object", "properties": {"v": {"description": "same", "oneOf": [
      {"type": "string", "description": "same"}, {"type": "object", "properties": {"b": {"type": "boolean"}},
      "description": "obj"}]}}})"),
            "{\nv?:\n | string\n |    // obj\n{\n   b?: boolean,\n   } // obj\n,\n}");
}

TEST(SchemaTs, HostileDepthIsBounded) {
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += R"({"type": "array", "items": )";
  deep += R"({"type": "string"})";
  for (int i = 0; i < 5000; ++i) deep += "}";
  std::string out = ts(deep.c_str());
  EXPECT_TRUE(out.starts_with("any[]")) << out.substr(0, 40);
}

}  // namespace
}  // namespace gptoss::harmony
