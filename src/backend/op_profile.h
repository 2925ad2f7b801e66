// Wall time per backend op while profiling is on (Backend::set_profiling, `gptoss bench --profile`,
// GPTOSS_PROFILE=1). Both backends count their ops here. A device backend passes a `sync` that waits
// for its queue, called before and after the op while profiling: a row is then the op's device time
// plus its launch. Off, a scope costs one branch.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <string>

#include <fmt/format.h>

namespace gptoss {

class OpProfile {
 public:
  enum Op {
    kEmbed, kRmsNorm, kMatmul, kAdd, kRope, kKvStore, kAttention, kRouter, kMoe, kGather,
    // the LoRA trainer's (backend/train_ops.h)
    kMatmulBackward, kRmsNormBackward, kCrossEntropy, kAttentionBackward, kRopeBackward, kMoeBackward, kLoraBackward,
    kCopy, kNumOps
  };

  template <class Sync>
  class Scope {
   public:
    Scope(OpProfile& p, Op op, Sync sync) : p_(p), op_(op), sync_(sync) {
      if (!p_.on) return;
      sync_();
      start_ = std::chrono::steady_clock::now();
    }
    ~Scope() {
      if (!p_.on) return;
      sync_();
      auto& s = p_.stats_[size_t(op_)];
      s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      s.calls++;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpProfile& p_;
    Op op_;
    Sync sync_;
    std::chrono::steady_clock::time_point start_;
  };

  // A scope for a backend whose ops finish before they return (the CPU).
  auto scope(Op op) {
    return Scope(*this, op, [] {});
  }
  template <class Sync>
  auto scope(Op op, Sync sync) {
    return Scope<Sync>(*this, op, sync);
  }

  std::string report() const {
    static constexpr const char* kNames[] = {"embed",        "rms_norm",      "matmul_bf16",   "add",
                                             "rope",         "kv_store",      "attention",     "router_topk",
                                             "moe",          "gather_rows",   "matmul_bwd",    "rms_norm_bwd",
                                             "cross_entropy", "attention_bwd", "rope_bwd",     "moe_bwd",
                                             "lora_bwd",     "copy/scatter"};
    static_assert(std::size(kNames) == kNumOps);
    double total = 0;
    for (auto& s : stats_) total += s.seconds;
    std::string out = fmt::format("{:<14} {:>8} {:>10} {:>10} {:>6}\n", "op", "calls", "total ms", "us/call", "%");
    for (size_t i = 0; i < stats_.size(); ++i) {
      const auto& s = stats_[i];
      if (!s.calls) continue;
      out += fmt::format("{:<14} {:>8} {:>10.1f} {:>10.1f} {:>5.1f}%\n", kNames[i], s.calls, s.seconds * 1e3,
                         s.seconds * 1e6 / double(s.calls), total > 0 ? 100.0 * s.seconds / total : 0.0);
    }
    return out;
  }
  void reset() { stats_ = {}; }

  bool on = false;

 private:
  struct Stat {
    double seconds = 0;
    int64_t calls = 0;
  };
  std::array<Stat, kNumOps> stats_{};
};

}  // namespace gptoss
