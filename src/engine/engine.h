// The engine: many requests share one model through a paged KV cache and continuous batching.
//
// One engine thread owns the model (ModelRunner) and the KV cache. Every step it
//   1. drops cancelled requests (their blocks return to the pool at once),
//   2. schedules running requests first (decodes: 1 token; unfinished prefills: a chunk), then admits
//      waiting requests (prefix-cache lookup, then a prefill chunk) while the step's token budget
//      (max_num_batched_tokens), max_num_seqs and free KV blocks allow,
//   3. when a running request needs a block and none is free, preempts the most recently arrived
//      running request (its blocks are freed; it re-queues and later recomputes its prompt plus the
//      tokens it already generated — nothing is emitted twice),
//   4. runs one ragged forward over all scheduled chunks and samples a token for every request whose
//      chunk reached the end of its known tokens.
//
// Thread safety: submit(), metrics(), and every RequestHandle method may be called from any thread.
// start()/stop() from one controlling thread.
//
// Errors: a request over a limit (empty prompt, prompt longer than max_model_len, prompt +
// max_new_tokens > max_model_len, more KV blocks than the whole pool, bad sampling parameters, stop
// strings without a tokenizer, token ids outside the vocabulary) is finished at once with
// FinishReason::kError and a message naming the limit and the fix; submit() itself does not throw.
// A forward() that throws finishes the requests of that batch with kError.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/model_runner.h"
#include "engine/sampling.h"

namespace gptoss {

class Tokenizer;

struct EngineConfig {
  int max_model_len = 0;                   // 0: the longest the KV pool holds, up to the runner's max_position()
  // max_model_len is an upper bound (it came from the model's model_max_length, not the engine's own
  // setting): when the pool cannot hold it, the longest length that fits is taken instead of an error.
  bool max_model_len_is_bound = false;
  int max_num_seqs = 256;                  // requests running at once
  int max_num_batched_tokens = 2048;       // tokens per forward (decodes + prefill chunks)
  int block_size = 16;                     // positions per KV block
  int64_t num_blocks = 0;                  // > 0: exactly this many blocks (overrides the budgets)
  int64_t kv_cache_bytes = int64_t(4) << 30;  // CPU budget for the KV pool
  double gpu_memory_utilization = 0.9;     // GPU: fraction of device memory for weights + KV
  bool enable_prefix_caching = true;
};

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "abort", "error"

// One item of a request's stream: a token, or the end (type kFinished, exactly once, last).
struct Event {
  enum class Type { kToken, kFinished };
  Type type = Type::kToken;
  int token = -1;                          // kToken: the generated id
  std::string text;                        // text delta (tokenizer attached); stop strings withheld.
                                           // kFinished may carry held-back text that is not a stop.
  float logprob = 0.0f;                    // kToken with params.logprobs
  std::vector<TokenLogprob> top_logprobs;  // kToken with params.top_logprobs > 0
  FinishReason reason = FinishReason::kNone;  // kFinished
  std::string message;                     // kFinished: error text, or what stopped generation
  int stop_token = -1;                     // kFinished by a stop token (it is also the last kToken)
  std::string stop_string;                 // kFinished by a stop string (not in any text)
};

// Everything a request produced, collected (RequestHandle::wait, Engine::generate_all).
struct RequestOutput {
  std::vector<int> tokens;  // generated ids; a stop token that ended generation is the last one
  std::string text;
  std::vector<float> logprobs;                          // per token, when requested
  std::vector<std::vector<TokenLogprob>> top_logprobs;  // per token, when requested
  FinishReason reason = FinishReason::kNone;
  std::string message;
  int stop_token = -1;
  std::string stop_string;
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache (first admission)
  int preemptions = 0;
  double ttft_s = 0.0;           // submit -> first token
};

struct Request {
  std::vector<int32_t> prompt;  // token ids
  SamplingParams params;
  int adapter = 0;  // LoRA adapter of the model (ModelRunner::num_adapters): 0 the default one, or none
};

struct RequestState;  // shared between the engine and the handle (engine.cpp)

class RequestHandle {
 public:
  RequestHandle() = default;
  explicit RequestHandle(std::shared_ptr<RequestState> s) : state_(std::move(s)) {}

  uint64_t id() const;
  // Blocks until the next event. After the kFinished event has been returned, returns it again.
  Event next();
  // As next(), but gives up after `timeout` (nullopt).
  std::optional<Event> next_for(std::chrono::milliseconds timeout);
  // Reads all remaining events until kFinished and collects them (events already taken with next()
  // are not included, except that prompt/cache/ttft statistics are always complete).
  RequestOutput wait();
  // Asks the engine to stop this request: at its next step it frees the request's blocks and
  // finishes it with kAbort. Safe to call repeatedly, and after it finished (no effect).
  void cancel();
  bool finished() const;  // the kFinished event has been produced (maybe not yet read)
  bool valid() const { return state_ != nullptr; }

 private:
  std::shared_ptr<RequestState> state_;
};

// Turns one request's token stream into text (e.g. IncrementalDecoder). One instance per request.
class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  virtual std::string push(int token) = 0;
  virtual std::string flush() = 0;
};
using DecoderFactory = std::function<std::unique_ptr<TokenDecoder>()>;

// Simple latency histogram with fixed bucket bounds (seconds), Prometheus-style (cumulative on
// export, stored per bucket here).
struct Histogram {
  std::vector<double> bounds;    // upper bounds, ascending; an implicit +Inf bucket follows
  std::vector<int64_t> counts;   // bounds.size() + 1
  int64_t count = 0;
  double sum = 0.0;
  static Histogram latency();  // 1 ms .. 60 s
  void add(double v);
  double mean() const { return count ? sum / double(count) : 0.0; }
};

struct EngineMetrics {
  int running = 0;
  int waiting = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;    // referenced by a live request
  int64_t kv_blocks_free = 0;    // total - used (includes kv_blocks_cached)
  int64_t kv_blocks_cached = 0;  // unreferenced but kept for the prefix cache (evictable, LRU)
  int64_t prefix_cache_queries = 0;  // prompt tokens looked up
  int64_t prefix_cache_hits = 0;     // of which served from cache
  double prefix_cache_hit_rate() const {
    return prefix_cache_queries ? double(prefix_cache_hits) / double(prefix_cache_queries) : 0.0;
  }
  Histogram time_to_first_token = Histogram::latency();  // seconds
  Histogram inter_token_latency = Histogram::latency();  // seconds
  int64_t requests_finished = 0;
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0;     // computed by forward (cache hits excluded)
  int64_t generated_tokens = 0;
  int64_t steps = 0;
  double tokens_per_s = 0.0;       // generated tokens/s over the last ~10 s of busy steps
  double busy_s = 0.0;             // total time spent in steps
  double forward_s = 0.0;          // of which inside the model's forward (the rest is engine overhead)
};

class Engine {
 public:
  Engine(std::unique_ptr<ModelRunner> runner, EngineConfig config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Optional: text deltas and stop strings need a decoder per request. Call before start().
  void set_decoder_factory(DecoderFactory factory);
  void set_tokenizer(const Tokenizer& tok);  // IncrementalDecoder-based factory

  void start();  // launches the engine thread
  // Finishes unfinished requests with kAbort and joins the thread; until start() is called again,
  // submit() finishes new requests at once with kAbort. Handles stay valid after the engine is gone.
  void stop();

  RequestHandle submit(Request req);
  // Runs all requests concurrently and returns their outputs in the given order. Works with or
  // without start() (without, the calling thread drives the steps).
  std::vector<RequestOutput> generate_all(std::vector<Request> reqs);

  EngineMetrics metrics() const;
  const EngineConfig& config() const { return config_; }  // resolved limits
  int num_blocks() const;
  const ModelRunner& runner() const { return *runner_; }

  struct Impl;

 private:
  std::unique_ptr<ModelRunner> runner_;
  EngineConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptoss
