// POST /v1/completions: a raw prompt (text with harmony special tokens allowed, or token ids) straight
// to the engine, no chat template. Needs the local engine and its tokenizer.
#include <fmt/format.h>

#include "core/error.h"
#include "engine/engine.h"
#include "server/context.h"

namespace gptoss::server {
namespace {

using nlohmann::json;

struct Completion {
  std::vector<int32_t> prompt;
  SamplingParams params;
  bool stream = false, include_usage = false;
};

Completion parse_completion(ServerContext& ctx, const OJson& body) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  Completion c;
  if (!body.contains("prompt")) bad_field("prompt", "`prompt` is missing; expected a string or an array of token ids");
  const OJson& p = body["prompt"];
  const Tokenizer& tok = *ctx.tokenizer;
  if (p.is_string()) {
    auto ids = tok.encode_with_special(p.get<std::string>());
    c.prompt.assign(ids.begin(), ids.end());
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    auto ids = tok.encode_with_special(p[0].get<std::string>());
    c.prompt.assign(ids.begin(), ids.end());
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    for (const auto& t : p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size())
        bad_field("prompt", fmt::format("`prompt` holds {}; expected token ids in [0, {})", t.dump(), tok.vocab_size()));
      c.prompt.push_back(t.get<int32_t>());
    }
  } else {
    bad_field("prompt", "`prompt` must be a string, a one-element array of strings, or an array of token ids");
  }
  if (c.prompt.empty()) bad_field("prompt", "`prompt` is empty");
  check_number(body, "temperature", 0, 2);
  check_number(body, "top_p", 0, 1, true);
  check_number(body, "frequency_penalty", -2, 2);
  check_number(body, "presence_penalty", -2, 2);
  check_positive_int(body, "max_tokens");
  SamplingParams& s = c.params;
  s.temperature = body.value("temperature", 1.0);
  s.top_p = body.value("top_p", 1.0);
  s.frequency_penalty = body.value("frequency_penalty", 0.0);
  s.presence_penalty = body.value("presence_penalty", 0.0);
  s.max_new_tokens = body.contains("max_tokens") && !body["max_tokens"].is_null() ? body["max_tokens"].get<int>() : 16;
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) bad_field("seed", "`seed` must be an integer");
    s.seed = body["seed"].get<uint64_t>();
  }
  if (body.contains("n") && !body["n"].is_null() && body["n"] != 1) bad_field("n", "only n = 1 is supported");
  if (body.contains("stop") && !body["stop"].is_null()) {
    if (body["stop"].is_string()) s.stop.push_back(body["stop"]);
    else if (body["stop"].is_array()) {
      for (const auto& x : body["stop"]) {
        if (!x.is_string()) bad_field("stop", "`stop` must be a string or an array of strings");
        s.stop.push_back(x);
      }
    } else {
      bad_field("stop", "`stop` must be a string or an array of strings");
    }
  }
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    const OJson& l = body["logprobs"];
    if (!l.is_number_integer() || l.get<int>() < 0 || l.get<int>() > 5)
      bad_field("logprobs", fmt::format("`logprobs` is {}; expected an integer in [0, 5]", l.dump()));
    s.logprobs = true;
    s.top_logprobs = l.get<int>();
  }
  if (body.contains("stream") && !body["stream"].is_null() && !body["stream"].is_boolean())
    bad_field("stream", "`stream` must be true or false");
  c.stream = body.value("stream", false) == true;
  if (body.contains("stream_options") && body["stream_options"].is_object())
    c.include_usage = body["stream_options"].value("include_usage", false) == true;
  try {
    validate_sampling_params(s, ctx.engine->runner().vocab_size());
  } catch (const InputError& e) {
    throw ApiError(400, e.what());
  }
  return c;
}

std::string finish_name(FinishReason r) { return r == FinishReason::kLength ? "length" : "stop"; }

ApiError engine_error(const Event& ev) {
  ChatEvent ce;
  ce.kind = ChatEvent::Kind::Error;
  ce.text = ev.message;
  ce.http_status = 400;
  return api_error_from_event(ce);
}

json logprob_entry(const Tokenizer& tok, const Event& ev) {
  json top = json::object();
  for (const auto& t : ev.top_logprobs) top[std::string(tok.token_bytes(t.token))] = t.logprob;
  return {{"token", std::string(tok.token_bytes(ev.token))}, {"logprob", ev.logprob}, {"top", top}};
}

json legacy_logprobs(const json& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t off = 0;
  for (const auto& e : entries) {
    tokens.push_back(e["token"]);
    lps.push_back(e["logprob"]);
    tops.push_back(e["top"]);
    offsets.push_back(off);
    off += e["token"].get<std::string>().size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

struct CompletionStream {
  ServerContext* ctx;
  RequestHandle handle;
  Admission::Ticket ticket;
  std::string id, model;
  int64_t created;
  Clock::time_point t0, last;
  bool include_usage, want_logprobs, saw_token = false, ended = false;
  int prompt_tokens = 0, completion_tokens = 0;
  std::optional<Event> pending;
};

void handle_completions(ServerContext& ctx, const httplib::Request& req, httplib::Response& res) {
  auto t0 = Clock::now();
  const std::string route = "/v1/completions";
  run_route(ctx, res, route, t0, [&] {
    if (!ctx.engine || !ctx.tokenizer)
      throw ApiError(404, "/v1/completions needs a local engine (engine: NATIVE); remote engines serve chat only",
                     "invalid_request_error", "", "unsupported_endpoint");
    OJson body = parse_body(req);
    ctx.check_model(body);
    Completion c = parse_completion(ctx, body);
    Admission::Ticket ticket = ctx.admit();
    RequestHandle h = ctx.engine->submit(Request{c.prompt, c.params, ctx.chat.adapter_for(body)});
    std::string id = ctx.new_id("cmpl-");
    std::string model = body.contains("model") && body["model"].is_string() ? body["model"].get<std::string>() : ctx.model_name();
    const Tokenizer& tok = *ctx.tokenizer;
    if (!c.stream) {
      std::string text;
      json lps = json::array();
      Event ev;
      int n = 0;
      for (;;) {
        ev = h.next();
        if (ev.type == Event::Type::kFinished) break;
        if (n++ == 0) ctx.metrics.first_token(seconds_since(t0));
        text += ev.text;
        if (c.params.logprobs) lps.push_back(logprob_entry(tok, ev));
      }
      if (ev.reason == FinishReason::kError) throw engine_error(ev);
      text += ev.text;
      int prompt = int(c.prompt.size());
      ctx.metrics.tokens(prompt, n);
      json choice = {{"index", 0}, {"text", text}, {"logprobs", c.params.logprobs ? legacy_logprobs(lps) : json(nullptr)},
                     {"finish_reason", finish_name(ev.reason)}};
      json out = {{"id", id}, {"object", "text_completion"}, {"created", unix_time()}, {"model", model},
                  {"choices", json::array({choice})},
                  {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", n}, {"total_tokens", prompt + n}}}};
      send_json(ctx, res, route, t0, out);
      return;
    }
    // Streaming: wait for the first event so an immediate engine error gets its HTTP status.
    Event first = h.next();
    if (first.type == Event::Type::kFinished && first.reason == FinishReason::kError) throw engine_error(first);
    auto st = std::make_shared<CompletionStream>();
    st->ctx = &ctx;
    st->handle = h;
    st->ticket = std::move(ticket);
    st->id = id;
    st->model = model;
    st->created = unix_time();
    st->t0 = t0;
    st->include_usage = c.include_usage;
    st->want_logprobs = c.params.logprobs;
    st->prompt_tokens = int(c.prompt.size());
    st->pending = first;
    const auto heartbeat = std::chrono::milliseconds(std::max(10, int(ctx.opts.heartbeat_s * 1000)));
    res.set_chunked_content_provider(
        "text/event-stream",
        [st, heartbeat](size_t, httplib::DataSink& sink) {
          if (st->ctx->stopping) return false;
          std::optional<Event> ev = std::move(st->pending);
          st->pending.reset();
          if (!ev) ev = st->handle.next_for(heartbeat);
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          if (!ev) return !st->ctx->stopping && write(": ping\n\n");
          auto chunk = [&](const std::string& text, json finish, json lp) {
            json j = {{"id", st->id}, {"object", "text_completion"}, {"created", st->created}, {"model", st->model},
                      {"choices", json::array({{{"index", 0}, {"text", text}, {"logprobs", lp}, {"finish_reason", finish}}})}};
            return "data: " + j.dump() + "\n\n";
          };
          if (ev->type == Event::Type::kToken) {
            if (!st->saw_token) st->ctx->metrics.first_token(seconds_since(st->t0));
            else st->ctx->metrics.inter_token(std::chrono::duration<double>(Clock::now() - st->last).count());
            st->saw_token = true;
            st->last = Clock::now();
            ++st->completion_tokens;
            json lp = st->want_logprobs ? legacy_logprobs(json::array({logprob_entry(*st->ctx->tokenizer, *ev)})) : json(nullptr);
            return write(chunk(ev->text, nullptr, lp));
          }
          std::string out;
          if (ev->reason == FinishReason::kError) {
            out = "data: " + error_json(engine_error(*ev)).dump() + "\n\n";
          } else {
            out = chunk(ev->text, finish_name(ev->reason), nullptr);
            if (st->include_usage) {
              json u = {{"id", st->id}, {"object", "text_completion"}, {"created", st->created}, {"model", st->model},
                        {"choices", json::array()},
                        {"usage", {{"prompt_tokens", st->prompt_tokens}, {"completion_tokens", st->completion_tokens},
                                   {"total_tokens", st->prompt_tokens + st->completion_tokens}}}};
              out += "data: " + u.dump() + "\n\n";
            }
          }
          out += "data: [DONE]\n\n";
          st->ctx->metrics.tokens(st->prompt_tokens, st->completion_tokens);
          st->ended = true;
          if (!write(out)) return false;
          sink.done();
          return true;
        },
        [st, route](bool success) {
          if (!success || !st->ended) {
            st->handle.cancel();
            st->ctx->metrics.cancelled();
          }
          st->ctx->metrics.request_done(route, success && st->ended ? 200 : 499, seconds_since(st->t0));
          st->ticket.release();
        });
  });
}

}  // namespace

void register_completions_routes(httplib::Server& http, ServerContext& ctx) {
  http.Post("/v1/completions", [&ctx](const httplib::Request& req, httplib::Response& res) { handle_completions(ctx, req, res); });
}

}  // namespace gptoss::server
