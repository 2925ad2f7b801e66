#include "server/admission.h"

namespace gptoss::server {

void Admission::Ticket::release() {
  if (a_) a_->leave();
  a_ = nullptr;
}

Admission::Ticket Admission::enter() {
  std::unique_lock lock(mu_);
  if (active_ < max_active_ && waiting_ == 0) {
    ++active_;
    return Ticket(this);
  }
  if (waiting_ >= max_queue_) {
    ++rejected_;
    return Ticket();
  }
  ++waiting_;
  uint64_t mine = next_ticket_++;
  cv_.wait(lock, [&] { return serving_ == mine && active_ < max_active_; });
  --waiting_;
  ++serving_;
  ++active_;
  cv_.notify_all();  // the next waiter may fit too
  return Ticket(this);
}

void Admission::leave() {
  std::lock_guard lock(mu_);
  --active_;
  cv_.notify_all();
}

int Admission::active() const {
  std::lock_guard lock(mu_);
  return active_;
}
int Admission::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}
int64_t Admission::rejected() const {
  std::lock_guard lock(mu_);
  return rejected_;
}

}  // namespace gptoss::server
