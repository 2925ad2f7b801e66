// The HTTP server against a scripted fake ChatService: OpenAI shapes (chat, streaming chunks, tool
// calls, responses), errors, auth, body and queue limits, disconnect => cancel, metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <httplib.h>

#include "server/api_error.h"
#include "server/auth.h"
#include "server/fake_chat_service.h"
#include "server/openai_request.h"
#include "server/server.h"

namespace gptoss::server {
namespace {

using nlohmann::json;
using testing::FakeChatService;

struct Harness {
  FakeChatService svc;
  std::unique_ptr<Server> server;
  int port = 0;
  explicit Harness(ServerOptions o = {}) {
    o.host = "127.0.0.1";
    o.port = 0;
    o.heartbeat_s = 0.05;
    server = std::make_unique<Server>(svc, o);
    port = server->start();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const json& body, httplib::Headers h = {}) {
    return client().Post(path.c_str(), h, body.dump(), "application/json");
  }
};

json user(const std::string& text, bool stream = false) {
  json r = {{"model", "fake-model"}, {"messages", json::array({{{"role", "user"}, {"content", text}}})}};
  if (stream) r["stream"] = true;
  return r;
}

std::vector<json> sse_data(const std::string& body, bool* saw_done = nullptr) {
  std::vector<json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    size_t d = ev.find("data: ");
    if (d == std::string::npos) continue;
    std::string data = ev.substr(d + 6);
    if (data == "[DONE]") {
      if (saw_done) *saw_done = true;
      continue;
    }
    out.push_back(json::parse(data));
  }
  return out;
}

void expect_error(const httplib::Result& r, int status, const std::string& code, const std::string& param = "") {
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status) << r->body;
  json j = json::parse(r->body);
  ASSERT_TRUE(j.contains("error")) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"]["type"].is_string());
  EXPECT_TRUE(j["error"].contains("param"));
  EXPECT_TRUE(j["error"].contains("code"));
  if (!code.empty()) {
    EXPECT_EQ(j["error"]["code"], code) << r->body;
  }
  if (!param.empty()) {
    EXPECT_EQ(j["error"]["param"], param) << r->body;
  }
}

TEST(Auth, ConstantTimeCompareAndBearerParsing) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_EQ(check_bearer("Bearer k1", "k1"), AuthResult::kOk);
  EXPECT_EQ(check_bearer("", "k1"), AuthResult::kMissing);
  EXPECT_EQ(check_bearer("Bearer k2", "k1"), AuthResult::kWrong);
  EXPECT_EQ(check_bearer("Basic k1", "k1"), AuthResult::kWrong);
  EXPECT_EQ(check_bearer("", ""), AuthResult::kOk);
}

TEST(Normalise, ToolChoiceAndResponseFormatBecomeInstructionsForLocalEngines) {
  OJson body = OJson::parse(R"({"messages":[{"role":"user","content":"hi"}],
    "tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],
    "tool_choice":{"type":"function","function":{"name":"b"}},
    "response_format":{"type":"json_schema","json_schema":{"name":"out","schema":{"type":"object"}}},
    "reasoning":{"effort":"high"}})");
  StreamOptions so;
  OJson r = normalise_chat_request(body, true, so);
  ASSERT_EQ(r["tools"].size(), 1u);
  EXPECT_EQ(r["tools"][0]["function"]["name"], "b");
  EXPECT_EQ(r["reasoning_effort"], "high");
  EXPECT_FALSE(r.contains("response_format"));
  ASSERT_EQ(r["messages"].size(), 3u);
  EXPECT_EQ(r["messages"][0]["role"], "developer");
  EXPECT_NE(r["messages"][0]["content"].get<std::string>().find("\"out\""), std::string::npos);
  EXPECT_NE(r["messages"][1]["content"].get<std::string>().find("`b`"), std::string::npos);
  // Remote engines get the fields as sent.
  OJson remote = normalise_chat_request(body, false, so);
  EXPECT_EQ(remote["tools"].size(), 2u);
  EXPECT_TRUE(remote.contains("response_format"));
}

TEST(Normalise, BadFieldsNameTheField) {
  auto param_of = [](const char* text) -> std::string {
    StreamOptions so;
    try {
      normalise_chat_request(OJson::parse(text), true, so);
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      return e.param;
    }
    return "(accepted)";
  };
  EXPECT_EQ(param_of(R"({"messages":[]})"), "messages");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"robot","content":"x"}]})"), "messages[0].role");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})"), "temperature");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"reasoning_effort":"max"})"), "reasoning_effort");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"tool_choice":"required"})"), "tool_choice");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":3})"), "top_logprobs");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}})"), "response_format.type");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})"), "stream_options");
  EXPECT_EQ(param_of(R"({"messages":[{"role":"user","content":"x"}],"n":2})"), "n");
}

TEST(Server, ChatCompletionCarriesContentReasoningAndUsage) {
  Harness h;
  auto r = h.post("/v1/chat/completions", user("hi"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "fake-model");
  const json& m = j["choices"][0]["message"];
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["content"], "Hello world");
  EXPECT_EQ(m["reasoning_content"], "thinking");
  EXPECT_EQ(m["reasoning"], "thinking");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["total_tokens"], 7);
}

TEST(Server, StreamingChunksEndWithUsageAndDone) {
  Harness h;
  json req = user("hi", true);
  req["stream_options"] = {{"include_usage", true}};
  auto r = h.post("/v1/chat/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  bool done = false;
  auto chunks = sse_data(r->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(chunks.size(), 5u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content, reasoning;
  json finish;
  for (const auto& c : chunks) {
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (c["choices"].empty()) continue;
    const json& d = c["choices"][0]["delta"];
    if (d.contains("content") && d["content"].is_string()) content += d["content"].get<std::string>();
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(content, "Hello world");
  EXPECT_EQ(reasoning, "thinking");
  EXPECT_EQ(finish, "stop");
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_EQ(chunks.back()["usage"]["completion_tokens"], 2);
}

TEST(Server, StreamedToolCallArguments) {
  Harness h;
  json req = user("tool please", true);
  req["tools"] = json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}])");
  auto r = h.post("/v1/chat/completions", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::string args, name, id;
  json finish;
  for (const auto& c : sse_data(r->body)) {
    if (c["choices"].empty()) continue;
    const json& d = c["choices"][0]["delta"];
    if (d.contains("tool_calls")) {
      const json& tc = d["tool_calls"][0];
      EXPECT_EQ(tc["index"], 0);
      if (tc.contains("id")) id = tc["id"], name = tc["function"]["name"];
      args += tc["function"]["arguments"].get<std::string>();
    }
    if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(id, "call_abc");
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(json::parse(args)["city"], "Paris");
  EXPECT_EQ(finish, "tool_calls");

  req.erase("stream");
  r = h.post("/v1/chat/completions", req);
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(j["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
}

TEST(Server, ErrorStatusesHaveOpenAIShape) {
  ServerOptions o;
  o.max_body_bytes = 4096;
  Harness h(o);
  auto c = h.client();
  expect_error(c.Post("/v1/chat/completions", "{not json", "application/json"), 400, "invalid_json");
  json bad = user("hi");
  bad["temperature"] = "hot";
  expect_error(h.post("/v1/chat/completions", bad), 400, "invalid_value", "temperature");
  json other = user("hi");
  other["model"] = "gpt-9";
  expect_error(h.post("/v1/chat/completions", other), 404, "model_not_found", "model");
  expect_error(c.Get("/v1/nowhere"), 404, "unknown_route");
  expect_error(h.post("/v1/chat/completions", user("toolong")), 400, "context_length_exceeded");
  expect_error(h.post("/v1/chat/completions", user("toolong", true)), 400, "context_length_exceeded");
  expect_error(h.post("/v1/chat/completions", user(std::string(5000, 'x'))), 413, "request_too_large");
  expect_error(h.post("/v1/completions", json{{"prompt", "x"}}), 404, "unsupported_endpoint");  // no local engine
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "fake-model");
  expect_error(c.Get("/v1/models/nope"), 404, "model_not_found");
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST(Server, ApiKeyIsRequiredExceptForHealthAndMetrics) {
  ServerOptions o;
  o.api_key = "sekrit";
  Harness h(o);
  expect_error(h.post("/v1/chat/completions", user("hi")), 401, "invalid_api_key");
  expect_error(h.post("/v1/chat/completions", user("hi"), {{"Authorization", "Bearer wrong"}}), 401, "invalid_api_key");
  auto ok = h.post("/v1/chat/completions", user("hi"), {{"Authorization", "Bearer sekrit"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  expect_error(h.client().Get("/v1/models"), 401, "invalid_api_key");
  EXPECT_EQ(h.client().Get("/health")->status, 200);
  EXPECT_EQ(h.client().Get("/metrics")->status, 200);
  EXPECT_TRUE(h.svc.requests().size() == 1);  // rejected requests never reached the service
}

TEST(Server, FullWaitQueueAnswers429ThenDrains) {
  ServerOptions o;
  o.max_active = 1;
  o.max_queue = 1;
  Harness h(o);
  std::vector<std::thread> ts;
  std::vector<int> statuses(2, 0);
  for (int i = 0; i < 2; ++i)
    ts.emplace_back([&, i] {
      auto r = h.post("/v1/chat/completions", user("hold"));
      statuses[i] = r ? r->status : -1;
    });
  // Wait until one runs and one waits.
  for (int i = 0; i < 200 && h.svc.requests().size() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto third = h.post("/v1/chat/completions", user("hi"));
  expect_error(third, 429, "queue_full");
  EXPECT_EQ(third->get_header_value("Retry-After"), "1");
  h.svc.release();
  for (auto& t : ts) t.join();
  EXPECT_EQ(statuses[0], 200);
  EXPECT_EQ(statuses[1], 200);
  std::string metrics = h.client().Get("/metrics")->body;
  EXPECT_NE(metrics.find("gptoss_requests_rejected_total 1"), std::string::npos) << metrics;
}

TEST(Server, ClientDisconnectCancelsTheStream) {
  Harness h;
  auto c = h.client();
  size_t got = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = user("slow", true).dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t n, uint64_t, uint64_t) {
    got += n;
    return got < 600;  // read a few chunks, then hang up
  };
  auto r = c.send(req);
  EXPECT_GE(got, 600u);
  for (int i = 0; i < 100 && (h.svc.cancels < 1 || h.svc.live > 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(h.svc.cancels, 1);
  EXPECT_EQ(h.svc.live, 0);
  std::string metrics = h.client().Get("/metrics")->body;
  EXPECT_NE(metrics.find("gptoss_requests_cancelled_total 1"), std::string::npos);
}

TEST(Server, ResponsesPlainAndStreaming) {
  Harness h;
  json req = {{"model", "fake-model"}, {"input", "hi"}, {"instructions", "be brief"}, {"reasoning", {{"effort", "low"}}}};
  auto r = h.post("/v1/responses", req);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["status"], "completed");
  ASSERT_EQ(j["output"].size(), 2u);
  EXPECT_EQ(j["output"][0]["type"], "reasoning");
  EXPECT_EQ(j["output"][1]["content"][0]["text"], "Hello world");
  EXPECT_EQ(j["usage"]["output_tokens"], 2);
  json sent = h.svc.requests().back();
  EXPECT_EQ(sent["messages"][0]["role"], "developer");
  EXPECT_EQ(sent["reasoning_effort"], "low");

  req["stream"] = true;
  req["input"] = json::parse(R"([{"role":"user","content":[{"type":"input_text","text":"tool now"}]}])");
  req["tools"] = json::parse(R"([{"type":"function","name":"get_weather","parameters":{"type":"object"}}])");
  r = h.post("/v1/responses", req);
  ASSERT_EQ(r->status, 200) << r->body;
  std::vector<std::string> types;
  std::string args;
  for (const auto& e : sse_data(r->body)) {
    types.push_back(e["type"]);
    if (e["type"] == "response.function_call_arguments.delta") args += e["delta"].get<std::string>();
  }
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.front(), "response.created");
  EXPECT_EQ(types.back(), "response.completed");
  EXPECT_NE(std::find(types.begin(), types.end(), "response.reasoning_text.delta"), types.end());
  EXPECT_EQ(json::parse(args)["city"], "Paris");
  json last = sse_data(r->body).back()["response"];
  EXPECT_EQ(last["output"][1]["type"], "function_call");
  EXPECT_EQ(last["output"][1]["name"], "get_weather");
  EXPECT_EQ(h.svc.requests().back()["tools"][0]["function"]["name"], "get_weather");
}

TEST(Server, MetricsExposeCountersAndHistograms) {
  Harness h;
  h.post("/v1/chat/completions", user("hi", true));
  h.post("/v1/chat/completions", user("hi"));
  // A stream is counted when httplib releases it, which can be just after the client has read its end.
  const std::string counted = "gptoss_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2";
  std::string m = h.client().Get("/metrics")->body;
  for (int i = 0; i < 200 && m.find(counted) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    m = h.client().Get("/metrics")->body;
  }
  EXPECT_NE(m.find(counted), std::string::npos) << m;
  EXPECT_NE(m.find("gptoss_time_to_first_token_seconds_count 2"), std::string::npos) << m;
  EXPECT_NE(m.find("gptoss_inter_token_latency_seconds_count 2"), std::string::npos) << m;  // 3 deltas streamed
  EXPECT_NE(m.find("gptoss_generation_tokens_total 4"), std::string::npos) << m;
  EXPECT_NE(m.find("gptoss_queue_depth 0"), std::string::npos) << m;
}

}  // namespace
}  // namespace gptoss::server

// --- the real pipeline: LocalChatService over the engine with the scripted fake model ---------------

#include "api/local_chat_service.h"
#include "engine/engine.h"
#include "engine/fake_runners.h"

namespace gptoss::server {
namespace {

struct LocalHarness {
  std::shared_ptr<Engine> engine;
  std::unique_ptr<LocalChatService> svc;
  std::unique_ptr<Server> server;
  int port = 0;
  explicit LocalHarness(int script_tokens) {
    Tokenizer tok = Tokenizer::from_file(std::string(GPTOSS_SHARED_DIR) + "/data/tokenizer/tokenizer.json");
    // A final-channel answer of `script_tokens` copies of " la".
    std::string text = "<|channel|>final<|message|>";
    for (int i = 0; i < script_tokens; ++i) text += " la";
    auto ids = tok.encode_with_special(text);
    auto runner = std::make_unique<ScriptedRunner>(std::vector<int32_t>(ids.begin(), ids.end()));
    EngineConfig ec;
    ec.max_model_len = 1024;
    ec.num_blocks = 512;
    engine = std::make_shared<Engine>(std::move(runner), ec);
    engine->set_tokenizer(tok);
    engine->start();
    svc = std::make_unique<LocalChatService>(engine, tok, "scripted");
    ServerOptions o;
    o.port = 0;
    o.heartbeat_s = 0.05;
    server = std::make_unique<Server>(*svc, o, engine, tok);
    port = server->start();
  }
  ~LocalHarness() {
    server->stop();
    engine->stop();
  }
};

TEST(LocalServer, DisconnectFreesKvBlocks) {
  LocalHarness h(900);  // far longer than the client will read
  httplib::Client c("127.0.0.1", h.port);
  size_t got = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = json{{"messages", json::array({{{"role", "user"}, {"content", "sing"}}})}, {"stream", true}}.dump();
  req.set_header("Content-Type", "application/json");
  int64_t used_while_streaming = -1;
  req.content_receiver = [&](const char*, size_t n, uint64_t, uint64_t) {
    got += n;
    if (got > 2000 && used_while_streaming < 0) used_while_streaming = h.engine->metrics().kv_blocks_used;
    return got < 4000;
  };
  c.send(req);
  EXPECT_GT(used_while_streaming, 0);
  int64_t used = -1;
  for (int i = 0; i < 100; ++i) {
    used = h.engine->metrics().kv_blocks_used;
    if (used == 0 && h.engine->metrics().running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(used, 0);
  std::string m = c.Get("/metrics")->body;
  EXPECT_NE(m.find("gptoss_kv_blocks_used 0"), std::string::npos) << m;
  EXPECT_NE(m.find("gptoss_requests_cancelled_total 1"), std::string::npos) << m;
}

TEST(LocalServer, ChatCompletionsAndContextLengthExceeded) {
  LocalHarness h(5);
  httplib::Client c("127.0.0.1", h.port);
  auto r = c.Post("/v1/chat/completions", json{{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}}.dump(),
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], " la la la la la");
  EXPECT_EQ(j["usage"]["completion_tokens"], 9);  // <|channel|> final <|message|>, 5 x " la", <|return|>
  // logprobs: one entry per generated token, with the asked-for alternatives.
  json lreq = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}, {"logprobs", true}, {"top_logprobs", 2}};
  r = c.Post("/v1/chat/completions", lreq.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  const json& lp = j["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(lp.is_array()) << r->body;
  ASSERT_FALSE(lp.empty());
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u) << lp[0].dump();
  std::string longtext;
  for (int i = 0; i < 1500; ++i) longtext += " word";
  r = c.Post("/v1/chat/completions", json{{"messages", json::array({{{"role", "user"}, {"content", longtext}}})}}.dump(),
             "application/json");
  expect_error(r, 400, "context_length_exceeded");
  r = c.Post("/v1/completions", json{{"prompt", "<|start|>assistant"}, {"max_tokens", 3}}.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(h.engine->metrics().kv_blocks_used, 0);
}

// A scripted model that claims a second LoRA adapter and records which adapters its sequences ask for.
class AdapterRecordingRunner : public ScriptedRunner {
 public:
  using ScriptedRunner::ScriptedRunner;
  int num_adapters() const override { return 2; }
  void forward(const ForwardBatch& batch, float* logits) override {
    for (const auto& s : batch.seqs) seen |= 1 << s.adapter;
    ScriptedRunner::forward(batch, logits);
  }
  std::atomic<int> seen{0};
};

// engine_params.lora_modules: the adapters are models of their own in /v1/models (parent: the base), and
// a request naming one as its model runs with that adapter, on chat and on raw completions.
TEST(LocalServer, LoraAdaptersAreSelectedByModelName) {
  Tokenizer tok = Tokenizer::from_file(std::string(GPTOSS_SHARED_DIR) + "/data/tokenizer/tokenizer.json");
  auto ids = tok.encode_with_special("<|channel|>final<|message|> ok");
  auto runner = std::make_unique<AdapterRecordingRunner>(std::vector<int32_t>(ids.begin(), ids.end()));
  AdapterRecordingRunner* rec = runner.get();
  EngineConfig ec;
  ec.max_model_len = 1024;
  ec.num_blocks = 512;
  auto engine = std::make_shared<Engine>(std::move(runner), ec);
  engine->set_tokenizer(tok);
  engine->start();
  LocalChatService svc(engine, tok, "base", {"my-lora"});
  ServerOptions o;
  o.port = 0;
  Server server(svc, o, engine, tok);
  const int port = server.start();
  httplib::Client c("127.0.0.1", port);

  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  json models = json::parse(r->body)["data"];
  ASSERT_EQ(models.size(), 2u) << r->body;
  EXPECT_EQ(models[1]["id"], "my-lora");
  EXPECT_EQ(models[1]["parent"], "base");
  r = c.Get("/v1/models/my-lora");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;

  auto chat = [&](const char* model) {
    json body = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}, {"model", model}};
    return c.Post("/v1/chat/completions", body.dump(), "application/json");
  };
  r = chat("base");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(rec->seen.exchange(0), 1);  // adapter 0 only
  r = chat("my-lora");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["model"], "my-lora");
  EXPECT_EQ(rec->seen.exchange(0), 2);  // adapter 1 only
  r = c.Post("/v1/completions", json{{"prompt", "<|start|>assistant"}, {"max_tokens", 2}, {"model", "my-lora"}}.dump(),
             "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(rec->seen.exchange(0), 2);
  expect_error(chat("other"), 404, "model_not_found");
  server.stop();
  engine->stop();
}

}  // namespace
}  // namespace gptoss::server
