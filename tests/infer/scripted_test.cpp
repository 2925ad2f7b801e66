// LocalChatService and batch mode on a scripted backend: the engine runs a ScriptedRunner that emits
// chosen harmony token sequences, so the parsed messages can be checked exactly (reasoning + final,
// tool call, malformed output, truncation, raw output, cancel), and sampling fields from the config
// can be followed into the engine's SamplingParams.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/local_chat_service.h"
#include "config/config.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/fake_runners.h"
#include "tokenizer/tokenizer.h"

// The batch front end and request builder live in the CLI; compile them into this test.
#include "cli/infer_batch.cpp"
#include "cli/infer_request.cpp"
#include "test_util.h"

namespace fs = std::filesystem;

namespace gptoss {
namespace {

using OJson = nlohmann::ordered_json;
using Json = nlohmann::json;

std::string shared_dir() {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return e && *e ? e : GPTOSS_SHARED_DIR;
}

const Tokenizer& tokenizer() {
  static Tokenizer t = Tokenizer::from_file(shared_dir() + "/data/tokenizer/tokenizer.json");
  return t;
}

class Scripted : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = std::make_unique<ScriptedRunner>();
    runner_ = r.get();
    EngineConfig ec;
    ec.max_model_len = 8192;
    ec.num_blocks = 2048;
    engine_ = std::make_shared<Engine>(std::move(r), ec);
    engine_->set_tokenizer(tokenizer());
    engine_->start();
    svc_ = std::make_unique<LocalChatService>(engine_, tokenizer(), "scripted");
  }
  void TearDown() override {
    svc_.reset();
    engine_->stop();
  }
  // The model answers `request` with `harmony` (ScriptedRunner ends with <|return|> past the script).
  void script(const OJson& request, const std::string& harmony) {
    auto ids = tokenizer().encode_with_special(harmony);
    runner_->add_script(svc_->prepare(request).prompt, std::vector<int32_t>(ids.begin(), ids.end()));
  }
  static OJson user(const std::string& text, OJson extra = OJson::object()) {
    OJson r = {{"messages", {{{"role", "user"}, {"content", text}}}}, {"temperature", 0}};
    for (auto& [k, v] : extra.items()) r[k] = v;
    return r;
  }
  struct Run {
    std::vector<ChatEvent> events;
    ChatEvent done;
    std::string reasoning, content;
  };
  Run run(const OJson& request) {
    Run out;
    auto s = svc_->start_ordered(request);
    ChatEvent ev;
    while (s->next(ev)) {
      if (ev.kind == ChatEvent::Kind::ReasoningDelta) out.reasoning += ev.text;
      if (ev.kind == ChatEvent::Kind::ContentDelta) out.content += ev.text;
      if (ev.kind == ChatEvent::Kind::Done || ev.kind == ChatEvent::Kind::Error) out.done = ev;
      out.events.push_back(ev);
    }
    return out;
  }
  ScriptedRunner* runner_ = nullptr;
  std::shared_ptr<Engine> engine_;
  std::unique_ptr<LocalChatService> svc_;
};

TEST_F(Scripted, ReasoningThenFinal) {
  OJson req = user("Hi");
  script(req, "<|channel|>analysis<|message|>User says hi. Respond politely.<|end|>"
              "<|start|>assistant<|channel|>final<|message|>Hello! How can I help?<|return|>");
  Run r = run(req);
  ASSERT_EQ(r.done.kind, ChatEvent::Kind::Done) << r.done.text;
  EXPECT_EQ(r.done.message, Json::parse(R"({"role": "assistant", "content": "Hello! How can I help?",
                                            "reasoning_content": "User says hi. Respond politely."})"));
  EXPECT_EQ(r.done.finish_reason, "stop");
  EXPECT_EQ(r.done.text, "");  // no parse warning
  EXPECT_EQ(r.reasoning, "User says hi. Respond politely.");
  EXPECT_EQ(r.content, "Hello! How can I help?");
  // Streamed: several deltas, all reasoning before any content.
  int reasoning_events = 0;
  bool seen_content = false;
  for (const auto& e : r.events) {
    if (e.kind == ChatEvent::Kind::ReasoningDelta) {
      ++reasoning_events;
      EXPECT_FALSE(seen_content);
    }
    if (e.kind == ChatEvent::Kind::ContentDelta) seen_content = true;
  }
  EXPECT_GT(reasoning_events, 1);
  int script_tokens = int(tokenizer().encode_with_special("<|channel|>analysis<|message|>User says hi. Respond politely.<|end|>"
                                                          "<|start|>assistant<|channel|>final<|message|>Hello! How can I help?<|return|>")
                              .size());
  EXPECT_EQ(r.done.usage["completion_tokens"], script_tokens);
  EXPECT_EQ(r.done.usage["prompt_tokens"], int(svc_->prepare(req).prompt.size()));
  EXPECT_EQ(r.done.usage["total_tokens"], r.done.usage["prompt_tokens"].get<int>() + script_tokens);
}

TEST_F(Scripted, ToolCall) {
  OJson tools = OJson::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
  OJson req = user("Weather in Paris?", {{"tools", tools}});
  script(req, "<|channel|>analysis<|message|>Need the weather.<|end|>"
              "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
              "<|message|>{\"city\": \"Paris\"}<|call|>");
  Run r = run(req);
  ASSERT_EQ(r.done.kind, ChatEvent::Kind::Done) << r.done.text;
  EXPECT_EQ(r.done.finish_reason, "tool_calls");
  Json m = r.done.message;
  ASSERT_EQ(m["tool_calls"].size(), 1u);
  std::string id = m["tool_calls"][0]["id"];
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_EQ(m["tool_calls"][0], Json::parse(R"({"id": ")" + id + R"(", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}})"));
  EXPECT_EQ(m["reasoning_content"], "Need the weather.");
  EXPECT_TRUE(m["content"].is_null() || m["content"] == "");
  // The first tool delta names the call; the rest carry the arguments.
  std::string args;
  int first = -1;
  for (size_t i = 0; i < r.events.size(); ++i)
    if (r.events[i].kind == ChatEvent::Kind::ToolCallDelta) {
      if (first < 0) {
        first = int(i);
        EXPECT_EQ(r.events[i].tool_name, "get_weather");
        EXPECT_EQ(r.events[i].tool_id, id);
        EXPECT_EQ(r.events[i].tool_index, 0);
      }
      args += r.events[i].text;
    }
  EXPECT_EQ(args, "{\"city\": \"Paris\"}");
  // The tool schema reached the prompt in the developer message.
  auto prepared = svc_->prepare(req);
  std::vector<int> prompt(prepared.prompt.begin(), prepared.prompt.end());
  EXPECT_NE(tokenizer().decode(prompt).find("type get_weather = (_: {\ncity?: string,\n}) => any;"), std::string::npos)
      << tokenizer().decode(prompt);
}

TEST_F(Scripted, MalformedOutputIsParsedBestEffortWithAWarning) {
  OJson req = user("Say something");
  script(req, "no header at all, just text");
  Run r = run(req);
  ASSERT_EQ(r.done.kind, ChatEvent::Kind::Done);
  EXPECT_EQ(r.done.finish_reason, "stop");
  EXPECT_EQ(r.done.message["role"], "assistant");
  EXPECT_FALSE(r.done.message.contains("tool_calls"));
  // The text is kept (as content) rather than lost, and nothing crashed.
  std::string all = r.done.message.dump();
  EXPECT_NE(all.find("no header at all, just text"), std::string::npos) << all;

  OJson req2 = user("Another");
  script(req2, "<|channel|>final<|message|>Fine<|end|><|start|><|message|>junk<|end|>"
               "<|start|>assistant<|channel|>final<|message|> answer.<|return|>");
  Run r2 = run(req2);
  ASSERT_EQ(r2.done.kind, ChatEvent::Kind::Done);
  EXPECT_NE(r2.done.text, "") << "a malformed header gives a parse warning";
  EXPECT_EQ(r2.done.message["content"], "Fine answer.") << r2.done.message.dump();
}

TEST_F(Scripted, LengthRawAndCancel) {
  OJson req = user("Count", {{"max_tokens", 6}});
  script(req, "<|channel|>final<|message|>one two three four five six seven eight<|return|>");
  Run r = run(req);
  EXPECT_EQ(r.done.finish_reason, "length");
  EXPECT_EQ(r.done.usage["completion_tokens"], 6);
  std::vector<int> six = tokenizer().encode_with_special("<|channel|>final<|message|>one two three four five six");
  six.resize(6);
  std::string expect = tokenizer().decode(std::vector<int>(six.begin() + 3, six.end()));
  EXPECT_EQ(r.done.message["content"], expect);

  // skip_special_tokens: false -> the raw harmony text, special tokens included.
  OJson raw = user("Raw", {{"skip_special_tokens", false}});
  const std::string text = "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>ok";
  script(raw, text);
  Run rr = run(raw);
  EXPECT_EQ(rr.done.message["content"], text + "<|return|>");
  EXPECT_EQ(rr.content, text + "<|return|>");
  EXPECT_EQ(rr.reasoning, "");

  // cancel() mid-stream ends with finish_reason "cancelled".
  std::string long_text = "<|channel|>final<|message|>";
  for (int i = 0; i < 3000; ++i) long_text += " w";
  OJson lr = user("Long");
  script(lr, long_text);
  auto s = svc_->start_ordered(lr);
  ChatEvent ev;
  ASSERT_TRUE(s->next(ev));
  s->cancel();
  ChatEvent last;
  int n = 0;
  while (s->next(ev)) last = ev, ++n;
  EXPECT_EQ(last.kind, ChatEvent::Kind::Done);
  EXPECT_EQ(last.finish_reason, "cancelled");
  EXPECT_LT(last.usage["completion_tokens"].get<int>(), 3000);
}

TEST_F(Scripted, DroppingAStreamFreesTheEngine) {
  std::string long_text = "<|channel|>final<|message|>";
  for (int i = 0; i < 5000; ++i) long_text += " w";
  OJson req = user("Long");
  script(req, long_text);
  {
    auto s = svc_->start_ordered(req);
    ChatEvent ev;
    ASSERT_TRUE(s->next(ev));
    EXPECT_EQ(engine_->metrics().running, 1);
  }  // dropped unfinished
  int running = -1;
  for (int i = 0; i < 200 && running != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    running = engine_->metrics().running;
  }
  EXPECT_EQ(running, 0);
  EXPECT_LT(engine_->metrics().generated_tokens, 5000);
}

TEST_F(Scripted, BadRequestsAndEngineErrors) {
  auto err = [&](const OJson& req) {
    try {
      run(req);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(user("x", {{"temperature", "hot"}})).find("temperature is \"hot\"; expected a number"), std::string::npos);
  EXPECT_NE(err(user("x", {{"top_p", 0}})).find("top_p"), std::string::npos);
  EXPECT_NE(err(user("x", {{"n", 2}})).find("request: n is 2"), std::string::npos);
  EXPECT_NE(err(OJson{{"messages", OJson::array()}}).find("messages"), std::string::npos);
  // Over the engine's limit: an Error event (400), not an exception.
  Run r = run(user("x", {{"max_tokens", 100000}}));
  EXPECT_EQ(r.done.kind, ChatEvent::Kind::Error);
  EXPECT_EQ(r.done.http_status, 400);
  EXPECT_NE(r.done.text.find("max_model_len"), std::string::npos) << r.done.text;
}

TEST_F(Scripted, GenerationParamsReachTheEngine) {
  InferenceConfig cfg = parse_inference_config(
      "model: {model_name: x}\n"
      "generation:\n  max_new_tokens: 77\n  temperature: 0.6\n  top_p: 0.9\n  min_p: 0.05\n"
      "  frequency_penalty: 0.5\n  presence_penalty: -0.25\n  logit_bias: {200012: -100, 7: 2.5}\n"
      "  seed: 1234\n  stop_strings: [DONE, STOP]\n  stop_token_ids: [200012]\n  reasoning_effort: high\n",
      "gen.yaml");
  OJson req = infer::build_request(cfg, OJson::array({{{"role", "user"}, {"content", "hi"}}}));
  LocalChatService::Prepared p = svc_->prepare(req);
  const SamplingParams& s = p.params;
  EXPECT_FLOAT_EQ(s.temperature, 0.6f);
  EXPECT_FLOAT_EQ(s.top_p, 0.9f);
  EXPECT_FLOAT_EQ(s.min_p, 0.05f);
  EXPECT_FLOAT_EQ(s.frequency_penalty, 0.5f);
  EXPECT_FLOAT_EQ(s.presence_penalty, -0.25f);
  EXPECT_EQ(s.logit_bias, (std::map<int, float>{{7, 2.5f}, {200012, -100.0f}}));
  EXPECT_EQ(s.seed.value(), 1234u);
  EXPECT_EQ(s.stop, (std::vector<std::string>{"DONE", "STOP"}));
  EXPECT_EQ(s.stop_token_ids, std::vector<int>{200012});
  EXPECT_EQ(s.max_new_tokens, 77);
  EXPECT_FALSE(p.raw);
  std::vector<int> prompt(p.prompt.begin(), p.prompt.end());
  EXPECT_NE(tokenizer().decode(prompt).find("Reasoning: high"), std::string::npos);
  // Greedy by default (Oumi's temperature 0.0), raw with skip_special_tokens: false.
  InferenceConfig d = parse_inference_config("model: {model_name: x}\ngeneration: {skip_special_tokens: false}\n", "d.yaml");
  LocalChatService::Prepared pd = svc_->prepare(infer::build_request(d, OJson::array({{{"role", "user"}, {"content", "hi"}}})));
  EXPECT_EQ(pd.params.temperature, 0.0f);
  EXPECT_EQ(pd.params.max_new_tokens, 1024);
  EXPECT_TRUE(pd.raw);
}

// A service that counts starts and fails conversations whose last user message is "FAIL".
class CountingService : public ChatService {
 public:
  explicit CountingService(ChatService& inner) : inner_(inner) {}
  std::unique_ptr<ChatStream> start(const Json& r) override { return start_ordered(OJson::parse(r.dump())); }
  std::unique_ptr<ChatStream> start_ordered(const OJson& r) override {
    ++starts;
    if (r["messages"].back()["content"] == "FAIL") throw Error("scripted failure");
    return inner_.start_ordered(r);
  }
  std::string model_name() const override { return "counting"; }
  std::atomic<int> starts{0};

 private:
  ChatService& inner_;
};

class Batch : public Scripted {
 protected:
  void SetUp() override {
    Scripted::SetUp();
    cfg_ = parse_inference_config("model: {model_name: scripted}\ngeneration: {max_new_tokens: 200}\n", "b.yaml");
  }
  std::string path(const std::string& name) const { return dir_ / name; }
  void script_row(const std::string& line, const std::string& harmony) {
    OJson row = OJson::parse(line);
    OJson msgs = OJson::array();
    for (const auto& m : row["messages"]) msgs.push_back(infer::normalise_message(m, "row"));
    script(infer::build_request(cfg_, msgs, row.contains("tools") ? &row["tools"] : nullptr), harmony);
  }
  std::vector<OJson> read_jsonl(const std::string& p) {
    std::vector<OJson> out;
    std::ifstream in(p);
    std::string l;
    while (std::getline(in, l)) out.push_back(OJson::parse(l));
    return out;
  }
  TempDir dir_{"batch_test"};
  InferenceConfig cfg_;
};

const char* kRowA = R"({"conversation_id": "a", "messages": [{"role": "user", "content": "Hi"}], "metadata": {"src": 1}})";
const char* kRowB =
    R"({"messages": [{"role": "system", "content": "Use tools."}, {"role": "user", "content": [{"type": "text", "content": "Weather?"}]}],)"
    R"( "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]})";
const char* kRowC = R"({"messages": [{"role": "user", "content": "Bye"}]})";

TEST_F(Batch, OutputRowsAreExactAndInInputOrder) {
  const std::string a = "<|channel|>analysis<|message|>Greet.<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>";
  script_row(kRowA, a);
  script_row(kRowB, "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Oslo\"}<|call|>");
  script_row(kRowC, "<|channel|>final<|message|>Goodbye.<|return|>");
  write_file_atomic(path("in.jsonl"), std::string(kRowA) + "\n" + kRowB + "\n\n" + kRowC + "\n");
  infer::BatchOptions o{path("in.jsonl"), path("out.jsonl"), true, true, 3};
  EXPECT_EQ(infer::run_batch(*svc_, cfg_, o), 0);
  auto rows = read_jsonl(path("out.jsonl"));
  ASSERT_EQ(rows.size(), 3u);
  // Row A: the input with the assistant message appended; key order of the input kept.
  EXPECT_EQ(rows[0].dump(),
            R"({"conversation_id":"a","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!","reasoning_content":"Greet."}],"metadata":{"src":1,"finish_reason":"stop","usage":)" +
                rows[0]["metadata"]["usage"].dump() + "}}");
  EXPECT_EQ(rows[0]["metadata"]["usage"]["completion_tokens"], tokenizer().encode_with_special(a).size());
  // Row B: a tool call.
  const OJson& b = rows[1]["messages"].back();
  EXPECT_EQ(rows[1]["metadata"]["finish_reason"], "tool_calls");
  EXPECT_EQ(Json::parse(b["tool_calls"][0]["function"].dump()),
            Json::parse(R"({"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"})"));
  EXPECT_EQ(b["content"], nullptr);
  EXPECT_EQ(rows[1]["tools"][0]["function"]["name"], "get_weather");  // input kept
  // Row C.
  EXPECT_EQ(rows[2]["messages"].back().dump(), R"({"role":"assistant","content":"Goodbye."})");
  EXPECT_FALSE(fs::exists(path("out.jsonl.partial")));
}

TEST_F(Batch, BadLinesFailOrAreSkippedWithLineNumbers) {
  script_row(kRowA, "<|channel|>final<|message|>A<|return|>");
  script_row(kRowC, "<|channel|>final<|message|>C<|return|>");
  write_file_atomic(path("in.jsonl"), std::string(kRowA) + "\n{not json\n" + R"({"messages": [{"role": "robot", "content": "x"}]})" +
                                          "\n" + kRowC + "\n");
  infer::BatchOptions o{path("in.jsonl"), path("out.jsonl"), true, true, 2};
  std::string err;
  try {
    infer::run_batch(*svc_, cfg_, o);
  } catch (const InputError& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("2 bad line(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("in.jsonl:2: not valid JSON"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(path("out.jsonl")));

  o.fail_on_error = false;
  testing::internal::CaptureStderr();
  EXPECT_EQ(infer::run_batch(*svc_, cfg_, o), 0);
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("in.jsonl:3: messages[0]: role is 'robot'"), std::string::npos) << log;
  auto rows = read_jsonl(path("out.jsonl"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["messages"].back()["content"], "A");
  EXPECT_EQ(rows[1]["messages"].back()["content"], "C");
}

TEST_F(Batch, ARerunResumesFromTheScratchFile) {
  script_row(kRowA, "<|channel|>final<|message|>A<|return|>");
  script_row(kRowC, "<|channel|>final<|message|>C<|return|>");
  const std::string fail_row = R"({"messages": [{"role": "user", "content": "FAIL"}]})";
  write_file_atomic(path("in.jsonl"), std::string(kRowA) + "\n" + fail_row + "\n" + kRowC + "\n");
  CountingService counting(*svc_);
  infer::BatchOptions o{path("in.jsonl"), path("out.jsonl"), true, true, 1};
  std::string err;
  try {
    infer::run_batch(counting, cfg_, o);
  } catch (const Error& e) {
    err = e.what();
  }
  EXPECT_NE(err.find("in.jsonl:2: scripted failure"), std::string::npos) << err;
  EXPECT_NE(err.find("a rerun resumes there"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(path("out.jsonl")));
  auto partial = read_jsonl(path("out.jsonl.partial"));
  ASSERT_EQ(partial.size(), 1u);  // row A finished before row 2 failed (one worker, input order)
  EXPECT_EQ(partial[0]["line"], 1);

  // Fix the failing line and rerun: row A comes from the scratch file, rows 2 and 3 are generated.
  const std::string fixed = R"({"messages": [{"role": "user", "content": "Bye"}]})";
  write_file_atomic(path("in.jsonl"), std::string(kRowA) + "\n" + fixed + "\n" + kRowC + "\n");
  counting.starts = 0;
  EXPECT_EQ(infer::run_batch(counting, cfg_, o), 0);
  EXPECT_EQ(counting.starts.load(), 2);
  auto rows = read_jsonl(path("out.jsonl"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["messages"].back()["content"], "A");
  EXPECT_EQ(rows[1]["messages"].back()["content"], "C");  // same prompt as row C
  EXPECT_FALSE(fs::exists(path("out.jsonl.partial")));
}

}  // namespace
}  // namespace gptoss
