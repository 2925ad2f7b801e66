#include "backend/cpu/cpu_backend.h"
#include "backend/train_ops.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "core/thread_pool.h"

namespace gptoss {

namespace {
// Allocation header: the size, so free() can keep allocated_bytes() exact.
constexpr size_t kHeader = 64;

cpu::PagedKv paged(const KvView& kv) {
  return cpu::PagedKv{kv.pool, kv.block_size, kv.layers_per_group, kv.kv_heads, kv.head_dim, kv.dtype};
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      if (c != std::string::npos) return line.substr(line.find_first_not_of(" \t", c + 1));
    }
  return "CPU";
}
}  // namespace

const void* CpuBackend::prepare_weight(const void* host, size_t bytes) {
  if (copy_weights_ && bytes > 0) {
    const void* copy = weights_.copy(host, bytes);
    // The mapped checkpoint pages are not needed any more: reclaim them (MADV_PAGEOUT drops clean file
    // pages and leaves anonymous memory as it is where there is no swap; MADV_DONTNEED would zero a
    // caller's anonymous buffer), so the process's resident memory is the copy alone.
#ifndef MADV_PAGEOUT
    constexpr int MADV_PAGEOUT = 21;  // Linux 5.4; older kernels return EINVAL, which is fine
#endif
    advise_pages(host, bytes, MADV_PAGEOUT, /*whole_pages_only=*/true);
    return copy;
  }
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14; older kernels return EINVAL, which is fine
#endif
  static const size_t budget = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGESIZE)) / 4 * 3;
  if (bytes > 0 && populated_bytes_ + bytes <= budget) {
    populated_bytes_ += bytes;
    advise_pages(host, bytes, MADV_POPULATE_READ, /*whole_pages_only=*/false);
  }
  return host;
}

CpuBackend::CpuBackend(const BackendOptions& options) : copy_weights_(!options.use_mmap) {
  ThreadPool::set_global_threads(options.threads);
  if (const char* env = std::getenv("GPTOSS_PROFILE")) profile_.on = env[0] && env[0] != '0';
  if (const char* env = std::getenv("GPTOSS_NO_MMAP")) copy_weights_ = copy_weights_ || (env[0] && env[0] != '0');
}

// Chunks of 2 MiB-aligned anonymous memory asked to be huge pages; weights are copied in, 64-byte aligned.
const void* HugePageArena::copy(const void* src, size_t bytes) {
  constexpr size_t kChunk = size_t(256) << 20;
  const size_t need = (bytes + 63) / 64 * 64;
  if (chunks_.empty() || used_ + need > chunks_.back().size()) {
    chunks_.emplace_back(std::max(kChunk, need), "the CPU backend's copy of the weights (use_mmap off)");
    used_ = 0;
  }
  char* dst = static_cast<char*>(chunks_.back().data()) + used_;
  std::memcpy(dst, src, bytes);
  used_ += need;
  return dst;
}

CpuBackend::~CpuBackend() = default;

std::string CpuBackend::device_name() const {
  return fmt::format("{} ({} threads, {}{})", cpu_model_name(), ThreadPool::global().size(),
                     cpu::isa_name(cpu::cpu_isa()), copy_weights_ ? ", weights copied to huge pages" : "");
}

void* CpuBackend::alloc(size_t bytes) {
  size_t total = kHeader + ((bytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, total);
  if (!p) fail("cpu backend: out of memory allocating {} bytes", bytes);
  std::memset(p, 0, total);
  *static_cast<size_t*>(p) = total;
  allocated_ += total;
  return static_cast<char*>(p) + kHeader;
}

void CpuBackend::free(void* p) {
  if (!p) return;
  char* base = static_cast<char*>(p) - kHeader;
  allocated_ -= *reinterpret_cast<size_t*>(base);
  std::free(base);
}

void CpuBackend::to_device(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }


void CpuBackend::embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out) {
  auto t = profile_.scope(OpProfile::kEmbed);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* row = table + int64_t(tokens[i]) * hidden;
    float* o = out + i * hidden;
    for (int64_t j = 0; j < hidden; ++j) o[j] = bf16_to_f32(row[j]);
  }
}

void CpuBackend::rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps) {
  auto t = profile_.scope(OpProfile::kRmsNorm);
  cpu::rms_norm(x, w, y, n, d, eps);
}

void CpuBackend::matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias,
                             float* y, int64_t out) {
  auto t = profile_.scope(OpProfile::kMatmul);
  cpu::bf16w_matmul(x, n, in, w, bias, y, out);
}

void CpuBackend::add(float* x, const float* y, int64_t count) {
  auto t = profile_.scope(OpProfile::kAdd);
  for (int64_t i = 0; i < count; ++i) x[i] += y[i];
}

void CpuBackend::rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                      const float* inv_freq, float attn_factor) {
  auto t = profile_.scope(OpProfile::kRope);
  cpu::rope_yarn(x, n, heads, head_dim, positions, inv_freq, attn_factor);
}

void CpuBackend::kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                          const int32_t* positions, const int32_t* block_table) {
  auto t = profile_.scope(OpProfile::kKvStore);
  cpu::kv_store(paged(kv), group_layer, k, v, n, positions, block_table);
}

void CpuBackend::attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer,
                           const AttnSeqDesc* seqs, int n_seqs, const float* sinks, int window, float scale,
                           float* out) {
  auto t = profile_.scope(OpProfile::kAttention);
  thread_local std::vector<cpu::AttnSeq> s;
  s.resize(size_t(n_seqs));
  for (int i = 0; i < n_seqs; ++i) s[i] = {seqs[i].token_offset, seqs[i].n_tokens, seqs[i].start_pos, seqs[i].block_table};
  cpu::attention_sinks_paged(q, n, heads, paged(kv), group_layer, s.data(), n_seqs, sinks, window, scale, out);
}

void CpuBackend::router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) {
  auto t = profile_.scope(OpProfile::kRouter);
  cpu::router_topk_softmax(logits, n, experts, k, idx, w);
}

void CpuBackend::moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                     const ExpertWeights& gu, const ExpertWeights& dn, float limit, float* out) {
  moe_keep_gate_up(x, n, hidden, idx, w, k, gu, dn, limit, out, nullptr);
}

void CpuBackend::moe_keep_gate_up(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w,
                                  int k, const ExpertWeights& gu, const ExpertWeights& dn, float limit, float* out,
                                  float* gate_up_out) {
  auto t = profile_.scope(OpProfile::kMoe);
  GPTOSS_CHECK(gu.mxfp4 == dn.mxfp4, "gate_up and down experts must share a format");
  if (gu.mxfp4) {
    cpu::Mxfp4Experts g{gu.blocks, gu.scales, gu.bias, gu.rows, gu.cols, gu.experts};
    cpu::Mxfp4Experts d{dn.blocks, dn.scales, dn.bias, dn.rows, dn.cols, dn.experts};
    cpu::f32_mxfp4w_moe(x, n, hidden, idx, w, k, g, d, limit, out, gate_up_out);
  } else {
    cpu::Bf16Experts g{gu.w, gu.bias, gu.rows, gu.cols, gu.experts};
    cpu::Bf16Experts d{dn.w, dn.bias, dn.rows, dn.cols, dn.experts};
    cpu::f32_bf16w_moe(x, n, hidden, idx, w, k, g, d, limit, out, gate_up_out);
  }
}

void CpuBackend::gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) {
  auto t = profile_.scope(OpProfile::kGather);
  for (int64_t i = 0; i < n_rows; ++i) std::memcpy(dst + i * dim, src + int64_t(rows[i]) * dim, size_t(dim) * 4);
}

TrainOps* CpuBackend::train_ops() {
  if (!train_ops_) train_ops_ = make_cpu_train_ops(profile_);
  return train_ops_.get();
}

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace gptoss
