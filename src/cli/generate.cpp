// gptoss generate --model DIR --tokens 1,2,3 [--tokens 4,5 ...] --max-new-tokens N [--temperature T --seed S]
// Runs every --tokens prompt as one request through the engine (continuous batching over a paged KV
// cache), all of them concurrently, and prints each request's generated ids comma-separated on its own
// line, in the order the prompts were given (with one prompt: the ids are the last line of stdout).
// Temperature 0 is greedy (argmax, lowest id on ties) and does not depend on what else is in the
// batch; T > 0 samples from softmax(logits / T) with the engine's per-request counter RNG keyed by
// --seed, so a seeded request gives the same ids alone or in a batch. Generates exactly N tokens per
// request unless --stop-at-eos is given (then config.json's eos ids and the harmony stops end it).
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/gpt_oss_runner.h"
#include "engine/kv_cache.h"

namespace gptoss {
namespace {

struct Options {
  std::string model, adapter, device = "cpu", kv_cache_dtype = "auto";
  std::vector<std::string> tokens;
  int max_new_tokens = 16;
  double temperature = 0.0;
  uint64_t seed = 0;
  bool stop_at_eos = false;
  BackendOptions backend;
  int block_size = 16;
  int max_num_batched_tokens = 2048;
};

int run(const Options& o) {
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : o.tokens) {
    std::vector<int> ids = cli::parse_id_list(t, "--tokens");
    if (ids.empty()) fail_input("--tokens is empty; expected comma-separated token ids, e.g. --tokens 1,2,3");
    prompts.emplace_back(ids.begin(), ids.end());
  }
  if (o.max_new_tokens < 0) fail_input("--max-new-tokens is {}; expected >= 0", o.max_new_tokens);
  if (o.temperature < 0 || !std::isfinite(o.temperature))
    fail_input("--temperature is {}; expected a number >= 0 (0 = greedy)", o.temperature);
  if (o.block_size <= 0) fail_input("--block-size is {}; expected > 0", o.block_size);
  if (o.max_num_batched_tokens <= 0)
    fail_input("--max-num-batched-tokens is {}; expected > 0", o.max_num_batched_tokens);

  const KvDtype kv_dtype = cli::parse_kv_cache_dtype(o.kv_cache_dtype);
  auto runner = GptOssRunner::load(o.model, o.device, o.adapter, {}, o.backend);
  runner->set_kv_dtype(kv_dtype);
  const std::string device = runner->backend().device_name() +
                             (kv_dtype == KvDtype::f32 ? "" : std::string(", ") + kv_dtype_name(kv_dtype) + " KV cache");
  const int max_pos = runner->max_position();
  const int vocab = runner->vocab_size();
  for (const auto& p : prompts) {
    for (int32_t t : p)
      if (t < 0 || t >= vocab) fail_input("--tokens: token id {} is outside the vocabulary (0..{})", t, vocab - 1);
    if (int64_t(p.size()) + o.max_new_tokens > max_pos)
      fail_input("prompt ({}) + --max-new-tokens ({}) is {} positions; the model supports {}", p.size(),
                 o.max_new_tokens, int64_t(p.size()) + o.max_new_tokens, max_pos);
  }
  if (o.max_new_tokens == 0) {  // nothing to run: one empty line per request
    for (size_t i = 0; i < prompts.size(); ++i) fmt::print("\n");
    return 0;
  }

  // A pool that holds every request at its full length at once: nothing is preempted, and the run
  // costs the KV memory of the plain one-sequence-at-a-time loop.
  EngineConfig cfg;
  cfg.block_size = o.block_size;
  cfg.max_num_seqs = int(prompts.size());
  cfg.max_num_batched_tokens = o.max_num_batched_tokens;
  KvCacheManager probe(1, o.block_size, runner->sliding_window(), runner->has_full_attention(), false);
  int64_t longest = 0, blocks = 0;
  for (const auto& p : prompts) {
    const int64_t len = int64_t(p.size()) + o.max_new_tokens;
    longest = std::max(longest, len);
    blocks += probe.max_blocks_for(len, o.max_num_batched_tokens);
  }
  cfg.max_model_len = int(std::min<int64_t>(max_pos, longest + 1));
  cfg.num_blocks = std::max(blocks, probe.max_blocks_for(cfg.max_model_len, o.max_num_batched_tokens));

  std::vector<Request> reqs;
  for (auto& p : prompts) {
    Request r;
    r.prompt = p;
    r.params.temperature = float(o.temperature);
    r.params.seed = o.seed;
    r.params.max_new_tokens = o.max_new_tokens;
    r.params.ignore_eos = !o.stop_at_eos;
    r.params.harmony_stops = o.stop_at_eos;
    reqs.push_back(std::move(r));
  }
  Engine engine(std::move(runner), cfg);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<RequestOutput> outs = engine.generate_all(std::move(reqs));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < outs.size(); ++i)
    if (outs[i].reason == FinishReason::kError)
      fail_input("--tokens #{}: {}", i + 1, outs[i].message);

  const EngineMetrics m = engine.metrics();
  const double ttft = m.time_to_first_token.mean();
  const double decode_s = secs - ttft;
  fmt::print(stderr,
             "{} request(s): {} prompt tokens, {} new tokens in {:.3f} s; first token after {:.3f} s (mean), "
             "{:.2f} tok/s after it; engine overhead {:.1f} % ({})\n",
             outs.size(), m.prompt_tokens, m.generated_tokens, secs, ttft,
             decode_s > 0 ? double(m.generated_tokens - int64_t(outs.size())) / decode_s : 0.0,
             m.busy_s > 0 ? 100.0 * (m.busy_s - m.forward_s) / m.busy_s : 0.0, device);
  for (const auto& out : outs) {
    std::string line;
    for (size_t i = 0; i < out.tokens.size(); ++i) line += (i ? "," : "") + std::to_string(out.tokens[i]);
    fmt::print("{}\n", line);
  }
  return 0;
}

const cli::Registrar reg{"generate", "Generate token ids from prompt token ids through the engine (greedy or sampled)",
                         [](CLI::App& app) -> cli::Runner {
                           auto o = std::make_shared<Options>();
                           app.add_option("--model", o->model, "model directory")->required();
                           app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory applied on top");
                           app.add_option("--tokens", o->tokens,
                                          "prompt token ids, comma-separated; repeat for concurrent requests")
                               ->required()
                               ->expected(1)
                               ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
                           app.add_option("--max-new-tokens", o->max_new_tokens, "tokens to generate per request")
                               ->capture_default_str();
                           app.add_option("--temperature", o->temperature, "0 = greedy")->capture_default_str();
                           app.add_option("--seed", o->seed, "sampling seed")->capture_default_str();
                           app.add_flag("--stop-at-eos", o->stop_at_eos,
                                        "stop at an eos id of config.json or a harmony stop token");
                           app.add_option("--device", o->device, "cpu, cuda or auto")->capture_default_str();
                           app.add_option("--block-size", o->block_size, "KV block size (positions)")
                               ->capture_default_str();
                           app.add_option("--kv-cache-dtype", o->kv_cache_dtype,
                                          "KV cache element type: auto (float32), float32, bfloat16")
                               ->capture_default_str();
                           app.add_option("--max-num-batched-tokens", o->max_num_batched_tokens,
                                          "tokens per forward (prefill chunk budget)")
                               ->capture_default_str();
                           cli::add_cpu_options(app, &o->backend);
                           return [o] { return run(*o); };
                         }};

}  // namespace
}  // namespace gptoss
