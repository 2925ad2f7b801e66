// Picks the ChatService for `engine:` and builds it (model resolution, loading, engine start).
#include <chrono>
#include <cstdlib>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/local_chat_service.h"
#include "api/model_tokenizer.h"
#include "cli/infer_common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "engine/engine.h"
#include "engine/fake_runners.h"
#include "engine/gpt_oss_runner.h"
#include "hub/hub.h"
#include "remote/remote_chat_service.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::infer {

namespace {

namespace fs = std::filesystem;

// --- Test hook, not a user feature ----------------------------------------------------------------------
// $GPTOSS_TEST_SCRIPT names a JSON file {"turns": [harmony completion text, ...], "token_delay_ms": N,
// "prompt_log": PATH}. The model is then a ScriptedRunner that answers the n-th request with turns[n]
// (the last one repeats), one token per step, N ms per step; every prompt is appended to prompt_log as
// one JSON string per line. Everything else (config, tokenizer, harmony rendering, engine, parser, the
// interactive and batch front ends) is the real thing, so tests drive `gptoss infer` through a terminal
// with chosen model outputs: reasoning, tool calls, long replies to interrupt.

class SlowRunner : public ModelRunner {
 public:
  SlowRunner(std::unique_ptr<ModelRunner> inner, int delay_ms) : inner_(std::move(inner)), delay_ms_(delay_ms) {}
  int vocab_size() const override { return inner_->vocab_size(); }
  int sliding_window() const override { return inner_->sliding_window(); }
  bool has_full_attention() const override { return inner_->has_full_attention(); }
  std::vector<int> eos_token_ids() const override { return inner_->eos_token_ids(); }
  int max_position() const override { return inner_->max_position(); }
  size_t kv_bytes_per_block(int block_size) const override { return inner_->kv_bytes_per_block(block_size); }
  void allocate_kv(int num_blocks, int block_size) override { inner_->allocate_kv(num_blocks, block_size); }
  void forward(const ForwardBatch& batch, float* logits) override {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    inner_->forward(batch, logits);
  }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<ModelRunner> inner_;
  int delay_ms_;
};

class ScriptedChatService : public ChatService {
 public:
  ScriptedChatService(const std::string& script_path, Tokenizer tok, const std::string& model_name) {
    nlohmann::json j = nlohmann::json::parse(read_file(script_path));
    for (const auto& t : j.at("turns")) {
      std::vector<int> ids = tok.encode_with_special(t.get<std::string>());
      turns_.emplace_back(ids.begin(), ids.end());
    }
    GPTOSS_CHECK(!turns_.empty(), "{}: no turns", script_path);
    log_ = j.value("prompt_log", "");
    auto runner = std::make_unique<ScriptedRunner>();
    runner_ = runner.get();
    EngineConfig ec;
    ec.max_model_len = 16384;
    ec.num_blocks = 4096;
    auto engine = std::make_shared<Engine>(std::make_unique<SlowRunner>(std::move(runner), j.value("token_delay_ms", 0)), ec);
    engine->set_tokenizer(tok);
    engine->start();
    inner_ = std::make_unique<LocalChatService>(engine, tok, model_name);
  }
  std::unique_ptr<ChatStream> start(const nlohmann::json& request) override {
    return start_ordered(nlohmann::ordered_json::parse(request.dump()));
  }
  std::unique_ptr<ChatStream> start_ordered(const nlohmann::ordered_json& request) override {
    auto prepared = inner_->prepare(request);
    size_t n = std::min(next_++, turns_.size() - 1);
    runner_->add_script(prepared.prompt, turns_[n]);
    if (!log_.empty()) {
      std::vector<int> ids(prepared.prompt.begin(), prepared.prompt.end());
      std::ofstream(log_, std::ios::app) << nlohmann::json(inner_->tokenizer().decode(ids)).dump() << "\n";
    }
    return inner_->start_ordered(request);
  }
  std::string model_name() const override { return inner_->model_name(); }

 private:
  std::vector<std::vector<int32_t>> turns_;
  std::atomic<size_t> next_{0};
  std::string log_;
  ScriptedRunner* runner_ = nullptr;
  std::unique_ptr<LocalChatService> inner_;
};

std::unique_ptr<ChatService> make_local(const InferenceConfig& cfg, bool quiet) {
  auto t0 = std::chrono::steady_clock::now();
  HubOptions hopt;
  hopt.revision = cfg.model.model_revision;
  hopt.progress = !quiet;
  if (quiet) ProgressBar::set_enabled(false);
  std::string dir = resolve_model_dir(cfg.model.model_name, hopt);
  if (const char* script = std::getenv("GPTOSS_TEST_SCRIPT"); script && *script)
    return std::make_unique<ScriptedChatService>(script, load_model_tokenizer(cfg.model.tokenizer_name, dir, hopt), cfg.model.model_name);
  ProgressBar bar("loading " + cfg.model.model_name, 3, "steps");
  Tokenizer tok = load_model_tokenizer(cfg.model.tokenizer_name, dir, hopt);
  bar.set(1);
  HubOptions adapter_hopt = hopt;
  adapter_hopt.revision.clear();  // model_revision is the base model's
  const std::string adapter =
      cfg.model.adapter_model.empty() ? "" : resolve_adapter_dir(cfg.model.adapter_model, adapter_hopt);
  std::vector<std::string> names, dirs;
  for (const auto& [name, path] : cfg.engine_params.lora_modules) {
    if (name == cfg.model.model_name)
      fail_input("{}: engine_params.lora_modules names an adapter '{}', the base model's name; give it another",
                 cfg.source, name);
    names.push_back(name);
    dirs.push_back(resolve_adapter_dir(path, adapter_hopt));
  }
  auto runner = GptOssRunner::load(dir, cfg.engine_params.device, adapter, dirs,
                                   BackendOptions{.use_mmap = cfg.engine_params.use_mmap,
                                                  .threads = int(cfg.engine_params.num_threads.value_or(0))});
  KvDtype kv_dtype = KvDtype::f32;
  parse_kv_dtype(cfg.engine_params.kv_cache_dtype, &kv_dtype);  // the config reader checked the name
  runner->set_kv_dtype(kv_dtype);
  bar.set(2);
  std::string describe = runner->describe();
  EngineConfig ec;
  // engine_params.max_model_len is a requirement (an error when the KV cache cannot hold it);
  // model.model_max_length only bounds it (recipes set the model's 131072, more than a 16 GB GPU holds).
  if (cfg.engine_params.max_model_len) {
    ec.max_model_len = int(std::min<int64_t>(*cfg.engine_params.max_model_len, runner->max_position()));
  } else if (cfg.model.model_max_length) {
    ec.max_model_len = int(std::min<int64_t>(*cfg.model.model_max_length, runner->max_position()));
    ec.max_model_len_is_bound = true;
  }
  ec.max_num_seqs = int(cfg.engine_params.max_num_seqs);
  ec.gpu_memory_utilization = cfg.engine_params.gpu_memory_utilization;
  ec.kv_cache_bytes = int64_t(cfg.engine_params.kv_cache_gb * 1e9);
  auto engine = std::make_shared<Engine>(std::move(runner), ec);
  engine->set_tokenizer(tok);
  engine->start();
  bar.set(3);
  bar.finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!quiet) std::fprintf(stderr, "gptoss: loaded %s in %.1fs: %s\n", dir.c_str(), secs, describe.c_str());
  if (ec.max_model_len_is_bound && engine->config().max_model_len < ec.max_model_len)
    std::fprintf(stderr,
                 "gptoss: context %d tokens, not model.model_max_length %d: the KV cache holds no more (raise "
                 "engine_params.gpu_memory_utilization, or kv_cache_gb on a CPU%s, for longer)\n",
                 engine->config().max_model_len, ec.max_model_len,
                 kv_dtype == KvDtype::f32 ? ", or set engine_params.kv_cache_dtype: bfloat16" : "");
  return std::make_unique<LocalChatService>(engine, tok, cfg.model.model_name, names);
}

std::unique_ptr<ChatService> make_remote(const InferenceConfig& cfg) {
  auto kind = parse_remote_kind(cfg.engine);
  if (!kind)
    fail_input("{}: engine {} is not supported by gptoss; use NATIVE or VLLM (local), or TOGETHER, OPENAI, REMOTE, "
               "REMOTE_VLLM (remote)",
               cfg.source, cfg.engine);
  RemoteEngineOptions o;
  o.kind = *kind;
  o.model = cfg.model.model_name;
  const auto& r = cfg.remote_params;
  o.params.api_url = r.api_url;
  o.params.api_key = r.api_key;
  o.params.api_key_env_varname = r.api_key_env_varname;
  o.params.max_retries = int(r.max_retries);
  o.params.retry_backoff_base = r.retry_backoff_base;
  o.params.retry_backoff_max = r.retry_backoff_max;
  o.params.connection_timeout = r.connection_timeout;
  o.params.num_workers = int(r.num_workers);
  o.params.politeness_policy = r.politeness_policy;
  if (r.requests_per_minute) o.params.requests_per_minute = int(*r.requests_per_minute);
  if (r.input_tokens_per_minute) o.params.input_tokens_per_minute = int(*r.input_tokens_per_minute);
  if (r.output_tokens_per_minute) o.params.output_tokens_per_minute = int(*r.output_tokens_per_minute);
  return std::make_unique<RemoteChatService>(o);
}

}  // namespace

std::unique_ptr<ChatService> make_chat_service(const InferenceConfig& cfg, bool quiet) {
  if (is_local_engine(cfg.engine)) return make_local(cfg, quiet);
  return make_remote(cfg);
}

}  // namespace gptoss::infer
