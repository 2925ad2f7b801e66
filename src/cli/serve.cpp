// gptoss serve: an OpenAI-compatible HTTP server (src/server/) over the config's engine.
//
//   gptoss serve -c gpt-oss-20b [--host 127.0.0.1] [--port 8000] [--api-key KEY | env GPTOSS_API_KEY]
//   gptoss serve -c remote.yaml                      (engine: TOGETHER/OPENAI/REMOTE...: a proxy)
//   gptoss serve --scripted replies.json --tokenizer tokenizer.json   (scripted fake model, for tests)
// Config overrides as in `gptoss infer` (--engine_params.max_num_seqs 128, ...). Ctrl-C stops it.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "api/local_chat_service.h"
#include "cli/command.h"
#include "cli/infer_common.h"
#include "config/config.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/fake_runners.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {
namespace {

struct Options {
  std::string config;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  size_t max_body_bytes = 8u << 20;
  int max_active = 0;
  int max_queue = 256;
  int queue_full_status = 429;
  std::string served_model_name;
  std::string scripted, tokenizer;
  bool quiet = false;
};

// A LocalChatService over the engine's ScriptedRunner: replies are harmony completions given in a JSON
// file {"default": TEXT, "scripts": [{"request": CHAT_REQUEST, "completion": TEXT}]} (TEXT may hold
// special tokens, e.g. "<|channel|>final<|message|>Hi<|return|>"). A request whose rendered prompt
// starts with a script's request prompt gets that script; others get the default.
std::unique_ptr<LocalChatService> make_scripted(const Options& o, int max_seqs, const std::string& name) {
  if (o.tokenizer.empty()) fail_input("serve --scripted needs --tokenizer FILE (o200k_harmony's tokenizer.json)");
  Tokenizer tok = Tokenizer::from_file(o.tokenizer);
  nlohmann::ordered_json spec;
  try {
    spec = nlohmann::ordered_json::parse(read_file(o.scripted));
  } catch (const nlohmann::json::exception& e) {
    fail_input("{}: not valid JSON ({}); expected {{\"default\": TEXT, \"scripts\": [...]}}", o.scripted, e.what());
  }
  auto encode = [&](const nlohmann::ordered_json& v, const std::string& where) {
    if (!v.is_string()) fail_input("{}: {} is not a string; expected a harmony completion", o.scripted, where);
    auto ids = tok.encode_with_special(v.get<std::string>());
    return std::vector<int32_t>(ids.begin(), ids.end());
  };
  auto runner = std::make_unique<ScriptedRunner>(
      spec.contains("default") ? encode(spec["default"], "default") : std::vector<int32_t>{});
  ScriptedRunner* scripted = runner.get();
  EngineConfig ec;
  ec.max_num_seqs = max_seqs;
  ec.max_model_len = 8192;
  ec.num_blocks = int64_t(max_seqs) * (8192 / 16) / 4 + 64;
  auto engine = std::make_shared<Engine>(std::move(runner), ec);
  engine->set_tokenizer(tok);
  engine->start();
  auto svc = std::make_unique<LocalChatService>(engine, tok, name);
  if (spec.contains("scripts")) {
    for (size_t i = 0; i < spec["scripts"].size(); ++i) {
      const auto& s = spec["scripts"][i];
      auto prepared = svc->prepare(s.at("request"));
      scripted->add_script(prepared.prompt, encode(s.at("completion"), "scripts[" + std::to_string(i) + "].completion"));
    }
  }
  return svc;
}

int run(const Options& o, const std::vector<std::string>& extras) {
  // Signals go to the thread that waits for them, not to the engine or HTTP threads (block them
  // before any thread starts).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  server::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.api_key = o.api_key;
  if (so.api_key.empty())
    if (const char* k = std::getenv("GPTOSS_API_KEY")) so.api_key = k;
  so.max_body_bytes = o.max_body_bytes;
  so.max_queue = o.max_queue;
  so.queue_full_status = o.queue_full_status;

  std::unique_ptr<ChatService> svc;
  std::shared_ptr<Engine> engine;
  std::optional<Tokenizer> tok;
  if (!o.scripted.empty()) {
    std::string name = o.served_model_name.empty() ? "gpt-oss-scripted" : o.served_model_name;
    int seqs = o.max_active > 0 ? o.max_active : 256;
    auto local = make_scripted(o, seqs, name);
    so.max_active = seqs;
    engine = std::shared_ptr<Engine>(&local->engine(), [](Engine*) {});
    tok = local->tokenizer();
    svc = std::move(local);
  } else {
    if (o.config.empty())
      fail_input("no config: pass -c FILE, -c oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml or -c gpt-oss-20b");
    InferenceConfig cfg = load_inference_config(o.config, parse_override_args(extras));
    svc = infer::make_chat_service(cfg, o.quiet);
    if (auto* local = dynamic_cast<LocalChatService*>(svc.get())) {
      engine = std::shared_ptr<Engine>(&local->engine(), [](Engine*) {});
      tok = local->tokenizer();
      so.max_active = o.max_active > 0 ? o.max_active : int(cfg.engine_params.max_num_seqs);
    } else {
      so.emulate_constraints = false;  // the remote server gets tool_choice/response_format as sent
      so.max_active = o.max_active > 0 ? o.max_active : int(std::max<int64_t>(1, cfg.remote_params.num_workers) * 4);
    }
    if (!o.served_model_name.empty()) so.model_aliases.push_back(o.served_model_name);
  }
  server::Server server(*svc, so, engine, tok);
  int port = server.start();
  std::printf("gptoss: serving %s at http://%s:%d/v1 (OpenAI API; GET /health, /metrics)%s\n", svc->model_name().c_str(),
              o.host.c_str(), port, so.api_key.empty() ? "" : "; API key required");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  if (!o.quiet) std::fprintf(stderr, "gptoss: stopping (signal %d)\n", sig);
  server.stop();
  return 0;
}

const cli::Registrar reg{
    "serve", "OpenAI-compatible HTTP server (chat completions, responses, completions, models, metrics)",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<Options>();
      app.add_option("-c,--config", o->config, "inference config file, oumi://configs/... name, or alias");
      app.add_option("--host", o->host, "address to listen on (default 127.0.0.1)");
      app.add_option("--port", o->port, "port (default 8000; 0: any free port, printed at start)");
      app.add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' (default $GPTOSS_API_KEY)");
      app.add_option("--max-body-bytes", o->max_body_bytes, "larger request bodies get 413 (default 8 MiB)");
      app.add_option("--max-active", o->max_active,
                     "requests generating at once (default engine_params.max_num_seqs; remote: 4 x num_workers)");
      app.add_option("--max-queue", o->max_queue, "requests waiting for a slot; beyond: 429 (default 256)");
      app.add_option("--queue-full-status", o->queue_full_status, "status when the queue is full: 429 or 503")
          ->check(CLI::IsMember({429, 503}));
      app.add_option("--served-model-name", o->served_model_name, "extra name accepted in `model`");
      app.add_option("--scripted", o->scripted, "serve a scripted fake model from this JSON file (tests)");
      app.add_option("--tokenizer", o->tokenizer, "tokenizer.json for --scripted");
      app.add_flag("-q,--quiet", o->quiet, "no progress output");
      app.allow_extras();
      app.footer("Config overrides: any key as --section.key VALUE, e.g. --engine_params.max_num_seqs 128");
      CLI::App* a = &app;
      return [o, a] { return run(*o, a->remaining()); };
    }};

}  // namespace
}  // namespace gptoss
