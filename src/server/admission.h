// Admission control: at most `max_active` requests generate at once; up to `max_queue` more wait for a
// slot (FIFO); anything beyond is refused at once (the server answers 429 or 503).
//
// Contract: enter() returns a Ticket that holds a slot until destroyed, or an empty Ticket when the
// wait queue is full. It blocks while queued. Thread-safe. waiting()/active() feed /metrics.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace gptoss::server {

class Admission {
 public:
  Admission(int max_active, int max_queue) : max_active_(max_active), max_queue_(max_queue) {}

  class Ticket {
   public:
    Ticket() = default;
    explicit Ticket(Admission* a) : a_(a) {}
    Ticket(Ticket&& o) noexcept : a_(o.a_) { o.a_ = nullptr; }
    Ticket& operator=(Ticket&& o) noexcept {
      release();
      a_ = o.a_;
      o.a_ = nullptr;
      return *this;
    }
    ~Ticket() { release(); }
    explicit operator bool() const { return a_ != nullptr; }
    void release();

   private:
    Admission* a_ = nullptr;
  };

  Ticket enter();
  int active() const;
  int waiting() const;
  int64_t rejected() const;

 private:
  void leave();
  const int max_active_, max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0, waiting_ = 0;
  uint64_t next_ticket_ = 0, serving_ = 0;  // FIFO order among waiters
  int64_t rejected_ = 0;
};

}  // namespace gptoss::server
