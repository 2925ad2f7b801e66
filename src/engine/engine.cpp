#include "engine/engine.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/kv_cache.h"
#include "engine/stop_strings.h"

namespace gptoss {

using Clock = std::chrono::steady_clock;

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
  }
  return "?";
}

Histogram Histogram::latency() {
  Histogram h;
  h.bounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0};
  h.counts.assign(h.bounds.size() + 1, 0);
  return h;
}

void Histogram::add(double v) {
  size_t i = std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin();
  ++counts[i];
  ++count;
  sum += v;
}

// ---- request state shared with handles --------------------------------------------------------

// Lets handles outlive their engine: cancel() after the engine is gone does nothing.
struct EngineWaker {
  std::mutex mu;
  std::function<void()> wake;  // cleared by ~Engine
};

struct RequestState {
  uint64_t id = 0;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  bool finished = false;             // the kFinished event was pushed
  std::optional<Event> final_event;  // the kFinished event once read
  std::atomic<bool> cancel_requested{false};
  bool logprobs_requested = false;   // set before the handle is returned
  std::weak_ptr<EngineWaker> waker;  // nudges the engine thread (gone with the engine)
  // Statistics (under mu).
  int prompt_tokens = 0, cached_prompt_tokens = 0, preemptions = 0;
  double ttft_s = 0.0;

  void push(Event e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (finished) return;
      if (e.type == Event::Type::kFinished) finished = true;
      events.push_back(std::move(e));
    }
    cv.notify_all();
  }
};

namespace {

Event take_event(RequestState& s) {  // caller holds s.mu and knows an event is available
  if (s.events.empty()) return *s.final_event;
  Event e = std::move(s.events.front());
  s.events.pop_front();
  if (e.type == Event::Type::kFinished) s.final_event = e;
  return e;
}

std::shared_ptr<RequestState> finished_with_error(uint64_t id, const std::string& msg) {
  auto s = std::make_shared<RequestState>();
  s->id = id;
  Event e;
  e.type = Event::Type::kFinished;
  e.reason = FinishReason::kError;
  e.message = msg;
  s->push(std::move(e));
  return s;
}

}  // namespace

uint64_t RequestHandle::id() const { return state_ ? state_->id : 0; }

Event RequestHandle::next() {
  GPTOSS_CHECK(state_, "next() on an empty RequestHandle");
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->cv.wait(lock, [&] { return !state_->events.empty() || state_->final_event; });
  return take_event(*state_);
}

std::optional<Event> RequestHandle::next_for(std::chrono::milliseconds timeout) {
  GPTOSS_CHECK(state_, "next_for() on an empty RequestHandle");
  std::unique_lock<std::mutex> lock(state_->mu);
  if (!state_->cv.wait_for(lock, timeout, [&] { return !state_->events.empty() || state_->final_event; }))
    return std::nullopt;
  return take_event(*state_);
}

RequestOutput RequestHandle::wait() {
  RequestOutput out;
  for (;;) {
    Event e = next();
    if (e.type == Event::Type::kToken) {
      out.tokens.push_back(e.token);
      out.text += e.text;
      if (state_->logprobs_requested) {
        out.logprobs.push_back(e.logprob);
        out.top_logprobs.push_back(std::move(e.top_logprobs));
      }
      continue;
    }
    out.text += e.text;
    out.reason = e.reason;
    out.message = e.message;
    out.stop_token = e.stop_token;
    out.stop_string = e.stop_string;
    break;
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  out.prompt_tokens = state_->prompt_tokens;
  out.cached_prompt_tokens = state_->cached_prompt_tokens;
  out.preemptions = state_->preemptions;
  out.ttft_s = state_->ttft_s;
  return out;
}

void RequestHandle::cancel() {
  if (!state_) return;
  state_->cancel_requested = true;
  if (auto w = state_->waker.lock()) {
    std::lock_guard<std::mutex> lock(w->mu);
    if (w->wake) w->wake();
  }
}

bool RequestHandle::finished() const {
  if (!state_) return true;
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->finished;
}

// ---- the engine ---------------------------------------------------------------------------------

namespace {

struct Sequence {
  std::shared_ptr<RequestState> state;
  SamplingParams params;
  uint64_t seed = 0;
  uint64_t arrival = 0;
  std::vector<int32_t> tokens;  // prompt + generated
  int prompt_len = 0;
  int max_len = 0;              // finish with kLength when tokens reach this
  int num_computed = 0;         // positions whose KV is in the cache
  bool ever_admitted = false;
  bool done = false;
  SeqBlocks blocks;
  int adapter = 0;
  PenaltyState penalties;
  std::vector<int> stop_ids;
  std::unique_ptr<TokenDecoder> decoder;
  std::unique_ptr<StopStringMatcher> stop_matcher;
  Clock::time_point submitted, last_token;
  int generated() const { return int(tokens.size()) - prompt_len; }
};

struct Scheduled {
  Sequence* seq;
  int num_tokens;
};

}  // namespace

struct Engine::Impl {
  Impl(ModelRunner& r, const EngineConfig& c, int num_blocks)
      : runner(r),
        cfg(c),
        kv(num_blocks, c.block_size, r.sliding_window(), r.has_full_attention(), c.enable_prefix_caching) {}

  ModelRunner& runner;
  const EngineConfig& cfg;
  KvCacheManager kv;
  DecoderFactory decoder_factory;

  std::mutex mu;  // incoming, stop flag
  std::condition_variable cv;
  std::deque<std::unique_ptr<Sequence>> incoming;
  bool stop_requested = false;
  bool wake_pending = false;
  std::thread thread;
  bool thread_running = false;
  bool stopped = false;  // stop() ran: new requests are refused
  std::shared_ptr<EngineWaker> waker = std::make_shared<EngineWaker>();

  std::mutex step_mu;  // one stepper at a time (the engine thread, or generate_all's caller)
  std::vector<std::unique_ptr<Sequence>> running;
  std::deque<std::unique_ptr<Sequence>> waiting;  // ordered by arrival
  std::vector<float> logits;
  uint64_t next_arrival = 0;

  mutable std::mutex metrics_mu;
  EngineMetrics m;
  struct StepRecord {
    Clock::time_point start, end;
    int64_t tokens;
  };
  std::deque<StepRecord> rate_window;

  std::atomic<uint64_t> next_id{1};
  std::mt19937_64 seed_rng{std::random_device{}()};
  std::mutex seed_mu;

  void wake() {
    {
      std::lock_guard<std::mutex> lock(mu);
      wake_pending = true;
    }
    cv.notify_all();
  }

  // --- step pieces (engine thread / stepper only) ---
  void drain_incoming() {
    std::lock_guard<std::mutex> lock(mu);
    while (!incoming.empty()) {
      waiting.push_back(std::move(incoming.front()));
      incoming.pop_front();
    }
  }

  // Events of a step are delivered after the step's metrics are published, so a reader that sees a
  // request finish also sees its blocks returned.
  std::vector<std::pair<std::shared_ptr<RequestState>, Event>> outbox;
  void flush_outbox() {
    for (auto& [st, e] : outbox) st->push(std::move(e));
    outbox.clear();
  }

  void emit_token(Sequence& s, const SampleResult& r, std::string text) {
    Event e;
    e.type = Event::Type::kToken;
    e.token = r.token;
    e.text = std::move(text);
    e.logprob = r.logprob;
    e.top_logprobs = r.top_logprobs;
    outbox.emplace_back(s.state, std::move(e));
  }

  void finish(Sequence& s, FinishReason reason, std::string message, int stop_token = -1,
              std::string stop_string = {}) {
    kv.free(s.blocks);
    Event e;
    e.type = Event::Type::kFinished;
    e.reason = reason;
    e.message = std::move(message);
    e.stop_token = stop_token;
    e.stop_string = std::move(stop_string);
    if (reason != FinishReason::kStop || stop_token >= 0) {
      // Text still held back (an incomplete character, a possible stop string's beginning).
      std::string tail = s.decoder ? s.decoder->flush() : std::string();
      if (s.stop_matcher) {
        tail = s.stop_matcher->push(tail);
        if (!s.stop_matcher->matched()) tail += s.stop_matcher->finish();
      }
      e.text = std::move(tail);
    }
    outbox.emplace_back(s.state, std::move(e));
    s.done = true;
    std::lock_guard<std::mutex> lock(metrics_mu);
    ++m.requests_finished;
  }

  void preempt(Sequence& s) {
    kv.free(s.blocks);
    s.num_computed = 0;
    {
      std::lock_guard<std::mutex> lock(s.state->mu);
      ++s.state->preemptions;
    }
    std::lock_guard<std::mutex> lock(metrics_mu);
    ++m.preemptions;
  }

  void drop_cancelled() {
    for (auto& s : running)
      if (s->state->cancel_requested) finish(*s, FinishReason::kAbort, "cancelled");
    for (auto& s : waiting)
      if (s->state->cancel_requested) finish(*s, FinishReason::kAbort, "cancelled");
    std::erase_if(running, [](const auto& s) { return s->done; });
    std::erase_if(waiting, [](const auto& s) { return s->done; });
  }

  std::vector<Scheduled> schedule() {
    std::vector<Scheduled> out;
    int budget = cfg.max_num_batched_tokens;
    std::sort(running.begin(), running.end(), [](const auto& a, const auto& b) { return a->arrival < b->arrival; });
    bool preempted = false;
    // Running requests first, oldest first; on a block shortage the newest running request yields.
    for (size_t i = 0; i < running.size() && budget > 0; ++i) {
      Sequence& s = *running[i];
      int n = std::min(int(s.tokens.size()) - s.num_computed, budget);
      GPTOSS_CHECK(n > 0, "running request {} has nothing to compute", s.state->id);
      bool ok = true;
      while (!kv.allocate(s.blocks, s.num_computed, s.num_computed + n)) {
        Sequence& victim = *running.back();
        preempt(victim);
        preempted = true;
        std::unique_ptr<Sequence> v = std::move(running.back());
        running.pop_back();
        auto pos = std::upper_bound(waiting.begin(), waiting.end(), v->arrival,
                                    [](uint64_t a, const auto& w) { return a < w->arrival; });
        waiting.insert(pos, std::move(v));
        if (&victim == &s) {
          ok = false;
          break;
        }
      }
      if (!ok) break;
      out.push_back({&s, n});
      budget -= n;
    }
    // Then waiting requests, in arrival order, while they fit (not after a preemption: the pool is full).
    while (!preempted && !waiting.empty() && budget > 0 && int(running.size()) < cfg.max_num_seqs) {
      Sequence& s = *waiting.front();
      int hit = kv.match_prefix(s.blocks, s.tokens);
      int n = std::min(int(s.tokens.size()) - hit, budget);
      if (!kv.allocate(s.blocks, hit, hit + n)) {
        kv.free(s.blocks);
        break;
      }
      s.num_computed = hit;
      if (!s.ever_admitted) {
        s.ever_admitted = true;
        {
          std::lock_guard<std::mutex> lock(s.state->mu);
          s.state->cached_prompt_tokens = hit;
        }
        std::lock_guard<std::mutex> lock(metrics_mu);
        m.prefix_cache_queries += s.prompt_len;
        m.prefix_cache_hits += hit;
      }
      out.push_back({&s, n});
      budget -= n;
      running.push_back(std::move(waiting.front()));
      waiting.pop_front();
    }
    return out;
  }

  // After a token was appended: stop conditions, events.
  void after_sample(Sequence& s, const SampleResult& r, Clock::time_point now) {
    const int tok = r.token;
    s.tokens.push_back(tok);
    s.penalties.add_output(tok);
    {
      std::lock_guard<std::mutex> lock(metrics_mu);
      ++m.generated_tokens;
      if (s.generated() == 1) {
        double ttft = std::chrono::duration<double>(now - s.submitted).count();
        m.time_to_first_token.add(ttft);
        std::lock_guard<std::mutex> lock2(s.state->mu);
        s.state->ttft_s = ttft;
      } else {
        m.inter_token_latency.add(std::chrono::duration<double>(now - s.last_token).count());
      }
    }
    s.last_token = now;
    if (std::find(s.stop_ids.begin(), s.stop_ids.end(), tok) != s.stop_ids.end()) {
      emit_token(s, r, {});
      finish(s, FinishReason::kStop, fmt::format("stop token {}", tok), tok);
      return;
    }
    std::string text = s.decoder ? s.decoder->push(tok) : std::string();
    if (s.stop_matcher) {
      text = s.stop_matcher->push(text);
      if (s.stop_matcher->matched()) {
        emit_token(s, r, std::move(text));
        std::string str = s.stop_matcher->matched_string();
        finish(s, FinishReason::kStop, fmt::format("stop string \"{}\"", str), -1, str);
        return;
      }
    }
    emit_token(s, r, std::move(text));
    if (int(s.tokens.size()) >= s.max_len)
      finish(s, FinishReason::kLength, fmt::format("{} new tokens generated", s.generated()));
  }

  // One engine step. Returns false when there was nothing to do.
  bool step() {
    bool worked = false;
    try {
      worked = step_inner();
    } catch (...) {
      publish_counts();
      flush_outbox();
      throw;
    }
    publish_counts();
    flush_outbox();
    return worked;
  }

  bool step_inner() {
    drain_incoming();
    drop_cancelled();
    std::vector<Scheduled> sched = schedule();
    publish_counts();
    if (sched.empty()) {
      if (!running.empty()) return true;  // everything running yielded its blocks: retry
      if (waiting.empty()) return false;
      // Nothing runs and the oldest request still does not fit: the admission check should have
      // caught it; fail it rather than spin.
      finish(*waiting.front(), FinishReason::kError,
             fmt::format("request does not fit in the KV cache ({} of {} blocks free)", kv.num_free(), kv.num_blocks()));
      waiting.pop_front();
      publish_counts();
      return true;
    }
    const auto t0 = Clock::now();
    ForwardBatch batch;
    batch.seqs.reserve(sched.size());
    for (const auto& sc : sched) {
      Sequence& s = *sc.seq;
      SeqChunk c;
      c.tokens = std::span<const int32_t>(s.tokens).subspan(s.num_computed, sc.num_tokens);
      c.start_pos = s.num_computed;
      c.blocks_full = s.blocks.full;
      c.blocks_swa = s.blocks.swa;
      c.adapter = s.adapter;
      batch.seqs.push_back(c);
    }
    const int vocab = runner.vocab_size();
    logits.resize(size_t(batch.logit_rows()) * vocab);
    const auto tf0 = Clock::now();
    try {
      runner.forward(batch, logits.data());
    } catch (const std::exception& e) {
      for (const auto& sc : sched) finish(*sc.seq, FinishReason::kError, fmt::format("model forward failed: {}", e.what()));
      std::erase_if(running, [](const auto& s) { return s->done; });
      publish_counts();
      return true;
    }
    const double forward_s = std::chrono::duration<double>(Clock::now() - tf0).count();
    // Sample every request whose known tokens are now all computed (in parallel: big vocabularies).
    std::vector<int> to_sample;
    int64_t prompt_computed = 0;
    for (int i = 0; i < int(sched.size()); ++i) {
      Sequence& s = *sched[i].seq;
      prompt_computed += std::max(0, std::min(s.prompt_len, s.num_computed + sched[i].num_tokens) - s.num_computed);
      s.num_computed += sched[i].num_tokens;
      kv.on_computed(s.blocks, s.tokens, s.num_computed);
      if (s.num_computed == int(s.tokens.size())) to_sample.push_back(i);
    }
    std::vector<SampleResult> results(to_sample.size());
    auto sample_one = [&](int64_t k) {
      Sequence& s = *sched[to_sample[k]].seq;
      std::span<const float> row(logits.data() + size_t(to_sample[k]) * vocab, vocab);
      results[k] = sample_token(row, s.params, s.penalties, s.seed, uint64_t(s.generated()));
    };
    if (to_sample.size() > 1 && vocab >= 4096) {
      ThreadPool::global().parallel_for(
          int64_t(to_sample.size()), [&](int64_t b, int64_t e, int) { for (int64_t k = b; k < e; ++k) sample_one(k); });
    } else {
      for (size_t k = 0; k < to_sample.size(); ++k) sample_one(int64_t(k));
    }
    const auto now = Clock::now();
    for (size_t k = 0; k < to_sample.size(); ++k) after_sample(*sched[to_sample[k]].seq, results[k], now);
    std::erase_if(running, [](const auto& s) { return s->done; });
    const auto t1 = Clock::now();
    {
      std::lock_guard<std::mutex> lock(metrics_mu);
      ++m.steps;
      m.prompt_tokens += prompt_computed;
      m.busy_s += std::chrono::duration<double>(t1 - t0).count();
      m.forward_s += forward_s;
      rate_window.push_back({t0, t1, int64_t(to_sample.size())});
      while (rate_window.size() > 1 && t1 - rate_window.front().start > std::chrono::seconds(10))
        rate_window.pop_front();
      int64_t n = 0;
      for (const auto& r : rate_window) n += r.tokens;
      double span = std::chrono::duration<double>(t1 - rate_window.front().start).count();
      m.tokens_per_s = span > 0 ? double(n) / span : 0.0;
    }
    publish_counts();
    return true;
  }

  void publish_counts() {
    std::lock_guard<std::mutex> lock(metrics_mu);
    m.running = int(running.size());
    m.waiting = int(waiting.size());
    m.kv_blocks_total = kv.num_blocks();
    m.kv_blocks_used = kv.num_used();
    m.kv_blocks_free = kv.num_free();
    m.kv_blocks_cached = kv.num_cached();
  }

  void abort_all(const std::string& why) {
    drain_incoming();
    for (auto& s : running) finish(*s, FinishReason::kAbort, why);
    for (auto& s : waiting) finish(*s, FinishReason::kAbort, why);
    running.clear();
    waiting.clear();
    publish_counts();
    flush_outbox();
  }

  bool has_work() const { return !running.empty() || !waiting.empty(); }

  void thread_main() {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop_requested || !incoming.empty() || wake_pending || has_work(); });
        wake_pending = false;
        if (stop_requested) break;
      }
      std::lock_guard<std::mutex> lock(step_mu);
      try {
        step();
      } catch (const std::exception& e) {
        abort_all(fmt::format("engine error: {}", e.what()));
      }
    }
    std::lock_guard<std::mutex> lock(step_mu);
    abort_all("engine stopped");
  }
};

Engine::Engine(std::unique_ptr<ModelRunner> runner, EngineConfig config)
    : runner_(std::move(runner)), config_(std::move(config)) {
  GPTOSS_CHECK(runner_, "Engine needs a model runner");
  EngineConfig& c = config_;
  const int max_pos = runner_->max_position();
  if (c.block_size < 1 || c.block_size > 1024)
    fail_input("engine: block_size is {}; expected 1..1024 (16 is usual)", c.block_size);
  if (c.max_num_seqs < 1) fail_input("engine: max_num_seqs is {}; expected >= 1", c.max_num_seqs);
  if (c.max_num_batched_tokens < 1)
    fail_input("engine: max_num_batched_tokens is {}; expected >= 1", c.max_num_batched_tokens);
  if (c.max_model_len < 0) fail_input("engine: max_model_len is {}; expected >= 1 (0 = the model's)", c.max_model_len);
  if (c.max_model_len > max_pos)
    fail_input("engine: max_model_len is {}; the model supports at most {} positions", c.max_model_len, max_pos);
  if (!(c.gpu_memory_utilization > 0.0 && c.gpu_memory_utilization <= 1.0))
    fail_input("engine: gpu_memory_utilization is {}; expected (0, 1]", c.gpu_memory_utilization);
  int64_t blocks = c.num_blocks;
  const size_t per_block = runner_->kv_bytes_per_block(c.block_size);
  const char* budget_key = "num_blocks";  // what sizes the pool, for messages
  if (blocks <= 0) {
    std::optional<size_t> budget =
        runner_->device_kv_budget(c.gpu_memory_utilization, c.max_num_batched_tokens, c.max_num_seqs);
    budget_key = budget ? "engine_params.gpu_memory_utilization" : "engine_params.kv_cache_gb";
    int64_t bytes = budget ? int64_t(*budget) : c.kv_cache_bytes;
    blocks = per_block ? bytes / int64_t(per_block) : 0;
    if (blocks < 1)
      fail_input("engine: the KV budget of {} bytes holds no block of {} bytes; raise {}", bytes, per_block,
                 budget_key);
  }
  blocks = std::min<int64_t>(blocks, 1 << 24);
  // max_model_len must fit in the pool; when it was not given (or only bounds it), take the longest that fits.
  KvCacheManager probe(1, c.block_size, runner_->sliding_window(), runner_->has_full_attention(), false);
  auto fits = [&](int64_t len) { return probe.max_blocks_for(len, c.max_num_batched_tokens) <= blocks; };
  auto longest_fit = [&](int64_t hi) {
    int64_t lo = 0;
    while (lo < hi) {
      int64_t mid = (lo + hi + 1) / 2;
      if (fits(mid)) lo = mid; else hi = mid - 1;
    }
    return lo;
  };
  if (c.max_model_len == 0 || (c.max_model_len_is_bound && !fits(c.max_model_len))) {
    const int64_t lo = longest_fit(c.max_model_len ? c.max_model_len : max_pos);
    if (lo < 1) fail_input("engine: {} KV blocks hold no sequence; raise {}", blocks, budget_key);
    c.max_model_len = int(lo);
  } else if (!fits(c.max_model_len)) {
    fail_input("engine: max_model_len {} needs {} KV blocks of {} tokens but the pool has {} ({} bytes each), "
               "which hold {} tokens a sequence; lower engine_params.max_model_len or raise {}",
               c.max_model_len, probe.max_blocks_for(c.max_model_len, c.max_num_batched_tokens), c.block_size,
               blocks, per_block, longest_fit(c.max_model_len), budget_key);
  }
  c.num_blocks = blocks;
  runner_->allocate_kv(int(blocks), c.block_size);
  impl_ = std::make_unique<Impl>(*runner_, config_, int(blocks));
  impl_->waker->wake = [im = impl_.get()] { im->wake(); };
  impl_->publish_counts();
}

Engine::~Engine() {
  if (!impl_) return;
  stop();
  std::lock_guard<std::mutex> lock(impl_->waker->mu);
  impl_->waker->wake = nullptr;
}

void Engine::set_decoder_factory(DecoderFactory factory) { impl_->decoder_factory = std::move(factory); }

int Engine::num_blocks() const { return impl_->kv.num_blocks(); }

void Engine::start() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->thread_running) return;
  impl_->stop_requested = false;
  impl_->stopped = false;
  impl_->thread_running = true;
  impl_->thread = std::thread([this] { impl_->thread_main(); });
}

void Engine::stop() {
  if (!impl_) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->thread_running) return;
    impl_->stop_requested = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->thread_running = false;
  impl_->stopped = true;
}

RequestHandle Engine::submit(Request req) {
  Impl& im = *impl_;
  const uint64_t id = im.next_id++;
  auto seq = std::make_unique<Sequence>();
  try {
    const EngineConfig& c = config_;
    const int vocab = runner_->vocab_size();
    const int n = int(req.prompt.size());
    if (n == 0) fail_input("request: the prompt is empty; expected at least one token id");
    for (int32_t t : req.prompt)
      if (t < 0 || t >= vocab) fail_input("request: prompt token id {} is outside the vocabulary (0..{})", t, vocab - 1);
    validate_sampling_params(req.params, vocab);
    if (n >= c.max_model_len)
      fail_input("request: the prompt has {} tokens but max_model_len is {}, which leaves no room for output; "
                 "shorten the prompt or raise max_model_len", n, c.max_model_len);
    const int max_new = req.params.max_new_tokens;
    if (max_new > 0 && int64_t(n) + max_new > c.max_model_len)
      fail_input("request: prompt ({} tokens) + max_new_tokens ({}) is {}, over max_model_len {}; lower "
                 "max_new_tokens to at most {}", n, max_new, int64_t(n) + max_new, c.max_model_len, c.max_model_len - n);
    const int max_len = max_new > 0 ? n + max_new : c.max_model_len;
    const int64_t need = im.kv.max_blocks_for(max_len, c.max_num_batched_tokens);
    if (need > im.kv.num_blocks())
      fail_input("request: {} tokens need up to {} KV blocks but the whole pool has {}; lower max_new_tokens or "
                 "raise kv_cache_bytes", max_len, need, im.kv.num_blocks());
    if (req.adapter < 0 || req.adapter >= runner_->num_adapters())
      fail_input("request: LoRA adapter {} does not exist; the model has {} (0 = the default)", req.adapter,
                 runner_->num_adapters());
    if (!req.params.stop.empty() && !im.decoder_factory)
      fail_input("request: stop strings need a tokenizer, and none is attached to the engine; use stop_token_ids "
                 "or load the model's tokenizer");
    seq->tokens = std::move(req.prompt);
    seq->adapter = req.adapter;
    // The prefix cache keys an adapter's blocks apart: its q/k/v projections make other K and V.
    if (req.adapter) seq->blocks.root = 0x9e3779b97f4a7c15ull * uint64_t(req.adapter) + 0x632be59bd9b4e019ull;
    seq->prompt_len = n;
    seq->max_len = max_len;
  } catch (const InputError& e) {
    return RequestHandle(finished_with_error(id, e.what()));
  }
  auto state = std::make_shared<RequestState>();
  state->id = id;
  state->prompt_tokens = seq->prompt_len;
  state->logprobs_requested = req.params.logprobs || req.params.top_logprobs > 0;
  state->waker = im.waker;
  seq->state = state;
  seq->params = std::move(req.params);
  if (seq->params.seed) {
    seq->seed = *seq->params.seed;
  } else {
    std::lock_guard<std::mutex> lock(im.seed_mu);
    seq->seed = im.seed_rng();
  }
  seq->penalties.init(seq->tokens, seq->params);
  seq->stop_ids = seq->params.stop_token_ids;
  if (seq->params.harmony_stops) {
    seq->stop_ids.push_back(kHarmonyReturnToken);
    seq->stop_ids.push_back(kHarmonyCallToken);
  }
  if (!seq->params.ignore_eos)
    for (int id : runner_->eos_token_ids()) seq->stop_ids.push_back(id);
  if (im.decoder_factory) seq->decoder = im.decoder_factory();
  if (!seq->params.stop.empty()) seq->stop_matcher = std::make_unique<StopStringMatcher>(seq->params.stop);
  seq->submitted = Clock::now();
  {
    std::lock_guard<std::mutex> lock(im.mu);
    if (im.stopped) {
      Event e;
      e.type = Event::Type::kFinished;
      e.reason = FinishReason::kAbort;
      e.message = "engine stopped";
      state->push(std::move(e));
      return RequestHandle(state);
    }
    seq->arrival = im.next_arrival++;
    im.incoming.push_back(std::move(seq));
    im.wake_pending = true;
  }
  im.cv.notify_all();
  return RequestHandle(state);
}

std::vector<RequestOutput> Engine::generate_all(std::vector<Request> reqs) {
  std::vector<RequestHandle> handles;
  handles.reserve(reqs.size());
  for (auto& r : reqs) handles.push_back(submit(std::move(r)));
  bool threaded;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    threaded = impl_->thread_running;
  }
  if (!threaded) {
    std::lock_guard<std::mutex> lock(impl_->step_mu);
    auto all_done = [&] {
      return std::all_of(handles.begin(), handles.end(), [](const RequestHandle& h) { return h.finished(); });
    };
    while (!all_done()) {
      if (!impl_->step() && !all_done()) {
        impl_->abort_all("engine idle with unfinished requests");
        break;
      }
    }
  }
  std::vector<RequestOutput> out;
  out.reserve(handles.size());
  for (auto& h : handles) out.push_back(h.wait());
  return out;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(impl_->metrics_mu);
  return impl_->m;
}

}  // namespace gptoss
