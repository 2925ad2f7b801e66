#include "api/local_chat_service.h"

#include <chrono>
#include <ctime>
#include <deque>

#include <fmt/format.h>

#include "api/chat_mapping.h"
#include "core/error.h"
#include "harmony/parser.h"

namespace gptoss {

namespace {

using Json = nlohmann::ordered_json;
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

// One assistant turn as it streams out of the engine.
class LocalStream : public ChatStream {
 public:
  LocalStream(RequestHandle h, const Tokenizer& tok, bool raw, bool logprobs, int prompt_tokens)
      : h_(std::move(h)), tok_(tok), raw_(raw), want_logprobs_(logprobs), prompt_tokens_(prompt_tokens),
        parser_(tok_, harmony::ParserOptions{Role::kAssistant, /*strict=*/false}), raw_decoder_(tok_),
        mapper_([this] { return fmt::format("call_{}_{}", h_.id(), calls_++); }) {}

  bool next(ChatEvent& ev) override {
    while (pending_.empty() && !finished_) pull();
    if (pending_.empty()) return false;
    ev = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }

  void cancel() override { h_.cancel(); }

  // A stream dropped before its end (a client went away) must not keep decoding in the engine.
  ~LocalStream() override {
    if (!finished_) h_.cancel();
  }

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
      nlohmann::json top = nlohmann::json::array();
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
    if (pe.kind == harmony::ParseEvent::Kind::kError && warning_.empty()) warning_ = pe.error;
    for (auto& ce : mapper_.map(pe)) {
      if (ce.kind == ChatEvent::Kind::ToolCallDelta) pending_.push_back(std::move(ce));
      else if (!ce.text.empty()) push_text(ce.kind, ce.text);
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

  void on_finish(const Event& e) {
    if (e.reason == FinishReason::kError) {
      ChatEvent ev;
      ev.kind = ChatEvent::Kind::Error;
      ev.text = e.message;
      ev.http_status = 400;
      pending_.push_back(std::move(ev));
      return;
    }
    nlohmann::json msg;
    if (raw_) {
      raw_text_ += raw_decoder_.flush();
      msg = {{"role", "assistant"}, {"content", raw_text_}};
    } else {
      for (auto& pe : parser_.finish()) on_parse_event(pe);
      msg = mapper_.message();
    }
    bool calls = msg.contains("tool_calls") && !msg["tool_calls"].empty();
    ChatEvent ev;
    ev.kind = ChatEvent::Kind::Done;
    ev.message = msg;
    ev.finish_reason = e.reason == FinishReason::kAbort ? "cancelled"
                       : calls                          ? "tool_calls"
                       : chat_finish_reason(mapper_.last_terminator(), e.reason == FinishReason::kLength);
    ev.usage = {{"prompt_tokens", prompt_tokens_},
                {"completion_tokens", completion_tokens_},
                {"total_tokens", prompt_tokens_ + completion_tokens_}};
    if (want_logprobs_) ev.logprobs = {{"content", logprobs_}};
    ev.text = warning_;
    pending_.push_back(std::move(ev));
  }

  RequestHandle h_;
  int calls_ = 0;
  Tokenizer tok_;
  bool raw_, want_logprobs_;
  int prompt_tokens_, completion_tokens_ = 0;
  harmony::StreamParser parser_;
  IncrementalDecoder raw_decoder_;
  std::string raw_text_, warning_;
  ChatEventMapper mapper_;
  bool finished_ = false;
  std::deque<ChatEvent> pending_;
  nlohmann::json logprobs_ = nlohmann::json::array();
};

}  // namespace

LocalChatService::LocalChatService(std::shared_ptr<Engine> engine, Tokenizer tok, std::string model_name,
                                   std::vector<std::string> adapter_names)
    : engine_(std::move(engine)), tok_(std::move(tok)), model_name_(std::move(model_name)),
      adapter_names_(std::move(adapter_names)) {}

harmony::Conversation LocalChatService::conversation(const Json& request) const {
  ChatMappingOptions opts;
  opts.current_date = today_utc();
  return chat_to_harmony(request, opts).conversation;
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

std::unique_ptr<ChatStream> LocalChatService::start(const nlohmann::json& request) {
  return start_ordered(Json::parse(request.dump()));
}

std::unique_ptr<ChatStream> LocalChatService::start_ordered(const Json& request) {
  Prepared p = prepare(request);
  int prompt_tokens = int(p.prompt.size());
  bool logprobs = p.params.logprobs;
  bool raw = p.raw;
  RequestHandle h = engine_->submit(Request{std::move(p.prompt), std::move(p.params), adapter_for(request)});
  return std::make_unique<LocalStream>(std::move(h), tok_, raw, logprobs, prompt_tokens);
}

}  // namespace gptoss
