// A fixed pool of worker threads for data-parallel kernels. parallel_for splits [0, n) into one
// contiguous range per thread (the caller's thread takes part) and returns when all are done.
// Workers spin briefly before sleeping, so back-to-back small ops (decode) pay no wake-up latency.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gptoss {

class ThreadPool {
 public:
  // threads == 0: std::thread::hardware_concurrency() (or $GPTOSS_THREADS).
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // fn(begin, end, thread_index) over a split of [0, n) in chunks of `grain` items at least.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t grain = 1);

  // The process-wide pool used by the CPU backend, created on first use with set_global_threads' count, or
  // else $GPTOSS_THREADS, or else every hardware thread.
  static ThreadPool& global();
  static constexpr int kMaxThreads = 1024;  // the most threads a setting (-t, num_threads) may ask for
  // The global pool's thread count (> 0), before its first use; 0 changes nothing. Once the pool runs,
  // asking for another count throws gptoss::InputError (its size is fixed for the process).
  static void set_global_threads(int threads);

 private:
  void worker_main(int index);
  void run_range(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_parts_ = 0;
  std::mutex call_mu_;  // one parallel_for at a time
};

}  // namespace gptoss
