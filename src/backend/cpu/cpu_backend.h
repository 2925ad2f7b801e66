// The CPU backend: a thin adapter from the Backend interface to the kernels of backend/cpu/kernels.h.
// Memory is host RAM (64-byte aligned); prepare_weight returns the mapped pointer itself (no copy), or
// with BackendOptions::use_mmap off (`--no-mmap`, `engine_params.use_mmap: false` or GPTOSS_NO_MMAP=1, as
// llama.cpp's --no-mmap) a copy in anonymous memory backed by 2 MiB pages.
//
// Why the copy exists: on a VM whose guest memory the host maps with 4 KiB pages, every 4 KiB of a
// streamed weight costs a nested page walk. Measured on the 2-vCPU Zen 5 dev VM, 20b shape: the MXFP4 MoE
// of the model's experts streams 4-6 GB/s from the mapped checkpoint, 9-11 GB/s from 4 KiB anonymous pages,
// 18 GB/s from huge pages; whole-model decode 2.5 -> 6.5-8.3 tok/s at batch 1, 8.4-9.1 -> 12.4-12.7 at 16.
// The cost: the weights' bytes in private memory (13.8 GB for the 20b) and a slower load (~35 s).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>
#include <vector>

#include "backend/backend.h"
#include "backend/op_profile.h"
#include "core/mmap_file.h"

namespace gptoss {

// Weights copied into anonymous memory backed by 2 MiB pages (CpuBackend with use_mmap off).
class HugePageArena {
 public:
  HugePageArena() = default;
  HugePageArena(const HugePageArena&) = delete;
  HugePageArena& operator=(const HugePageArena&) = delete;
  const void* copy(const void* src, size_t bytes);  // 64-byte aligned

 private:
  std::vector<HugeBuffer> chunks_;  // 256 MiB each (or one weight's size, if larger)
  size_t used_ = 0;                 // of the last chunk
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options = {});
  ~CpuBackend() override;
  std::string name() const override { return "cpu"; }
  std::string device_name() const override;

  void* alloc(size_t bytes) override;
  void free(void* p) override;
  void to_device(void* dst, const void* host_src, size_t bytes) override;
  void to_host(void* host_dst, const void* src, size_t bytes) override;
  // Returns host itself; while the weights seen so far fit in 3/4 of physical RAM, also maps their pages
  // now (MADV_POPULATE_READ), so the first forward passes do not pay a page fault per 4 KiB of weights.
  // With use_mmap off: a copy in huge pages, the mapped source pages dropped from this process.
  const void* prepare_weight(const void* host, size_t bytes) override;
  size_t allocated_bytes() const override { return allocated_.load(); }

  void set_profiling(bool on) override { profile_.on = on; }
  std::string profile_report() const override { return profile_.report(); }
  void reset_profile() override { profile_.reset(); }

  void embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out) override;
  void rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps) override;
  void matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                   int64_t out) override;
  void add(float* x, const float* y, int64_t count) override;
  void rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
            float attn_factor) override;
  void kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                const int32_t* positions, const int32_t* block_table) override;
  void attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer,
                 const AttnSeqDesc* seqs, int n_seqs, const float* sinks, int window, float scale,
                 float* out) override;
  void router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) override;
  void moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
           const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out) override;
  void moe_keep_gate_up(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                        const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out,
                        float* gate_up_out) override;
  void gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) override;
  TrainOps* train_ops() override;

 private:
  std::unique_ptr<TrainOps> train_ops_;
  std::atomic<size_t> allocated_{0};
  size_t populated_bytes_ = 0;  // weights prefaulted by prepare_weight
  bool copy_weights_ = false;   // use_mmap off (or GPTOSS_NO_MMAP=1): weights copied into huge pages
  HugePageArena weights_;
  OpProfile profile_;
};

}  // namespace gptoss
