#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace gptoss {

namespace {
std::atomic<int> g_requested_threads{0};
std::atomic<bool> g_global_created{false};

int default_threads() {
  if (const char* env = std::getenv("GPTOSS_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = default_threads();
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPool& ThreadPool::global() {
  // Marked once, as the pool is made (every kernel call passes here).
  static ThreadPool pool((g_global_created = true, g_requested_threads.load()));
  return pool;
}

void ThreadPool::set_global_threads(int threads) {
  if (threads <= 0) return;
  if (!g_global_created) {
    g_requested_threads = threads;
    return;
  }
  if (global().size() != threads)
    fail_input("{} CPU threads asked for, but this process's thread pool already runs {}; set the count before "
               "the first model loads",
               threads, global().size());
}

void ThreadPool::run_range(int index) {
  if (index < job_parts_) {
    int64_t begin = job_n_ * index / job_parts_;
    int64_t end = job_n_ * (index + 1) / job_parts_;
    if (begin < end) (*job_)(begin, end, index);
  }
}

void ThreadPool::worker_main(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little (cheap wake-up for back-to-back jobs), then sleep.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < 20000) {
      ++spins;
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_.load() != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    run_range(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int parts = int(std::min<int64_t>(size(), (n + grain - 1) / grain));
  if (parts <= 1 || workers_.empty()) {
    fn(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  job_ = &fn;
  job_n_ = n;
  job_parts_ = parts;
  pending_.store(int(workers_.size()), std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  run_range(0);
  while (pending_.load(std::memory_order_acquire) != 0) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  job_ = nullptr;
}

}  // namespace gptoss
