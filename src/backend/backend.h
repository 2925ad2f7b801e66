// The backend op interface: everything the model forward needs from a device, nothing more.
//
// Memory spaces. Activations, the KV pool and prepared weights live in the backend's memory (host RAM
// for the CPU backend, GPU memory for CUDA); the model holds such pointers but never dereferences
// them. Small per-call metadata (token ids, positions, block tables, sequence descriptors) is passed
// in HOST memory: a device backend copies what it needs.
//
// Weights. prepare_weight() turns host bytes (usually a slice of the memory-mapped checkpoint) into a
// pointer the ops can read: the CPU backend returns the host pointer itself (no copy, so a 13 GB
// checkpoint costs no private memory); a GPU backend uploads once and owns the copy.
//
// Layouts: activations f32 row-major, n = number of tokens; bf16 stored as uint16_t. The paged KV
// layout and the op semantics are those of backend/cpu/kernels.h (the reference implementation).
//
// Every op may run asynchronously; to_host() and synchronize() wait for everything before them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace gptoss {

class TrainOps;  // backend/train_ops.h

// Paged KV pool (see model/batch.h): K of (block b, group-layer g, slot s, kv head h) starts at
// pool + ((((b*Lg + g)*2 + 0)*block_size + s)*kv_heads + h)*head_dim; V uses 1 instead of 0.
struct KvView {
  void* pool = nullptr;  // backend memory, elements of `dtype`
  int block_size = 0;
  int layers_per_group = 0;  // Lg
  int kv_heads = 0;
  int head_dim = 0;
  KvDtype dtype = KvDtype::f32;
};

// One sequence of a ragged batch: rows [token_offset, token_offset + n_tokens) of the activations,
// at positions start_pos, start_pos + 1, ...; block_table (host memory) maps logical -> physical blocks.
struct AttnSeqDesc {
  int64_t token_offset = 0;
  int64_t n_tokens = 0;
  int32_t start_pos = 0;
  const int32_t* block_table = nullptr;
};

// Expert weights of one layer, as prepared by the backend. Either MXFP4 (hub layout: blocks
// [E, rows, cols/32, 16] u8, scales [E, rows, cols/32] e8m0) or bf16 (hub bf16 layout, input-major:
// w [E, cols, rows]); bias [E, rows] bf16 in both cases.
struct ExpertWeights {
  bool mxfp4 = true;
  const uint8_t* blocks = nullptr;  // MXFP4 only
  const uint8_t* scales = nullptr;  // MXFP4 only
  const uint16_t* w = nullptr;      // bf16 only
  const uint16_t* bias = nullptr;
  int64_t rows = 0, cols = 0;
  int experts = 0;
};

// The host metadata of one model forward (see Backend::run_forward): the op calls inside it pass
// these same host pointers. seqs[0] / seqs[1] are the sequence descriptors of the full-attention and
// sliding-window layer groups (n_seqs 0 when the model has no layer of a group).
struct ForwardMeta {
  const void* owner = nullptr;    // the model running the forward (part of a replay's identity)
  const void* kv_pool = nullptr;  // the KV pool it reads and writes (likewise)
  const int32_t* tokens = nullptr;
  const int32_t* positions = nullptr;  // [n_tokens]
  int64_t n_tokens = 0;
  const AttnSeqDesc* seqs[2] = {nullptr, nullptr};
  int n_seqs[2] = {0, 0};
  const int32_t* logit_rows = nullptr;
  int64_t n_logit_rows = 0;
  int block_size = 0;
  uint64_t variant = 0;    // anything else that shapes the op sequence (part of a replay's identity)
  bool replayable = true;  // false when the ops read results back to the host mid-forward
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;         // "cpu", "cuda"
  virtual std::string device_name() const = 0;  // e.g. "AMD EPYC (2 threads)"

  // --- memory -------------------------------------------------------------------------------------
  virtual void* alloc(size_t bytes) = 0;  // zero-filled; throws Error when out of memory
  virtual void free(void* p) = 0;
  virtual void to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void to_host(void* host_dst, const void* src, size_t bytes) = 0;  // waits for pending work
  virtual const void* prepare_weight(const void* host, size_t bytes) = 0;   // see the header comment
  // A weight read only by embed(), a few rows a token: a GPU backend may leave it in pinned host memory
  // that its kernels read over the bus instead of spending device memory on it (the default: as
  // prepare_weight).
  virtual const void* prepare_gather_table(const void* host, size_t bytes) { return prepare_weight(host, bytes); }
  virtual void synchronize() {}
  // Bytes of backend memory allocated through alloc()/prepare_weight() that are not mapped weights.
  virtual size_t allocated_bytes() const = 0;

  // Measured memory bandwidth of the device in bytes/s (reads + writes of a large device copy), or 0
  // when the backend leaves it to the caller (the CPU bench probes host memory itself).
  virtual double probe_bandwidth() { return 0.0; }
  // Device memory in bytes: {free, total} for backends with their own memory (GPU); {0, 0} for the
  // CPU backend, whose KV budget is a byte count from the config instead.
  struct MemoryInfo {
    size_t free = 0, total = 0;
  };
  virtual MemoryInfo memory_info() const { return {}; }

  // --- profiling (optional): wall time per op, synchronized around each op while enabled ----------
  virtual void set_profiling(bool on) {}
  virtual std::string profile_report() const { return {}; }  // a table, one line per op; "" if unsupported
  virtual void reset_profile() {}

  // --- one forward ---------------------------------------------------------------------------------
  // Runs ops(): the op calls of one model forward, whose host metadata are the arrays of meta. A
  // device backend uploads meta once for all of them (instead of per op). The CUDA backend also records
  // the ops of a decode batch (one token a sequence, meta.replayable) into a CUDA graph the second time
  // it sees that shape and from then on replays the recording instead of calling ops(): so ops() must
  // only issue backend ops, with arguments that depend on nothing but the shape and meta's contents.
  virtual void run_forward(const ForwardMeta& meta, const std::function<void()>& ops) { ops(); }

  // --- ops (semantics: backend/cpu/kernels.h) -------------------------------------------------------
  // out[n, hidden] = bf16 rows of table[vocab, hidden] selected by tokens (host).
  virtual void embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out) = 0;
  // y[n, d] = x / sqrt(mean(x^2) + eps) * w; x may equal y.
  virtual void rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps) = 0;
  // y[n, out] = x[n, in] W^T + bias; W [out, in] bf16, bias bf16 [out] or nullptr.
  virtual void matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias,
                           float* y, int64_t out) = 0;
  // x[i] += y[i] for i < count.
  virtual void add(float* x, const float* y, int64_t count) = 0;
  // In-place YaRN RoPE on x[n, heads, head_dim] (half-split); positions (host) [n].
  virtual void rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                    const float* inv_freq, float attn_factor) = 0;
  // Stores k, v [n, kv_heads, head_dim] of one sequence at positions (host) through block_table (host).
  virtual void kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n,
                        const int32_t* positions, const int32_t* block_table) = 0;
  // Attention with per-head sinks over the paged cache; window 0 = full causal.
  virtual void attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer,
                         const AttnSeqDesc* seqs, int n_seqs, const float* sinks, int window, float scale,
                         float* out) = 0;
  // Top-k of each row of logits[n, E] (ties: lower index), then softmax over the k: idx, w [n, k].
  virtual void router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) = 0;
  // out[n, hidden] = sum_j w[t,j] * expert_{idx[t,j]}(x_t) with the clamped SwiGLU (see kernels.h).
  virtual void moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                   const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out) = 0;
  // moe, also keeping every token-slot's gate_up output as the SwiGLU took it (bias added) in
  // gate_up_out [n*k, gate_up.rows] (slot t*k+j): what the LoRA trainer's backward reuses instead of
  // recomputing it. A backend without it throws (one whose train_ops() is null).
  virtual void moe_keep_gate_up(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit,
                                float* out, float* gate_up_out);
  // dst[i, :] = src[rows[i], :] for i < n_rows; rows in host memory.
  virtual void gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) = 0;

  // --- training: the LoRA trainer's backward ops (backend/train_ops.h); null when this backend has none.
  // Owned by the backend, made on first use.
  virtual TrainOps* train_ops() { return nullptr; }
  // train_ops(), or an InputError naming the backend when it has none.
  TrainOps& require_train_ops();

  // --- fused ops: one launch where a backend has a kernel for them, else the plain ops ---------------
  // x[n, d] += y, then out = rms_norm(x) with w (out must not alias x or y).
  virtual void add_rms_norm(float* x, const float* y, const uint16_t* w, float* out, int64_t n, int64_t d,
                            float eps) {
    add(x, y, n * d);
    rms_norm(x, w, out, n, d, eps);
  }
  // The residual step that ends a block: add_rms_norm with w, or only x += y without one (the last layer).
  void add_then_rms_norm(float* x, const float* y, const uint16_t* w, float* out, int64_t n, int64_t d, float eps) {
    if (w)
      add_rms_norm(x, y, w, out, n, d, eps);
    else
      add(x, y, n * d);
  }
  // rope on q [n, q_heads, head_dim] and k [n, kv_heads, head_dim] at the same positions (host).
  virtual void rope_qk(float* q, int q_heads, float* k, int kv_heads, int64_t n, int head_dim,
                       const int32_t* positions, const float* inv_freq, float attn_factor) {
    rope(q, n, q_heads, head_dim, positions, inv_freq, attn_factor);
    rope(k, n, kv_heads, head_dim, positions, inv_freq, attn_factor);
  }
  // kv_store for every sequence of a ragged batch: the K/V rows of sequence i start at row
  // seqs[i].token_offset; positions (host) has one entry per token of the batch.
  virtual void kv_store_seqs(const KvView& kv, int group_layer, const float* k, const float* v,
                             const AttnSeqDesc* seqs, int n_seqs, const int32_t* positions) {
    const int64_t width = int64_t(kv.kv_heads) * kv.head_dim;
    for (int i = 0; i < n_seqs; ++i) {
      const AttnSeqDesc& s = seqs[i];
      kv_store(kv, group_layer, k + s.token_offset * width, v + s.token_offset * width, s.n_tokens,
               positions + s.token_offset, s.block_table);
    }
  }
  // rope_qk, then kv_store_seqs of the rotated k and v (k keeps its rotated values).
  virtual void rope_qk_kv_store(float* q, int q_heads, float* k, const float* v, int kv_heads, int64_t n,
                                int head_dim, const int32_t* positions, const float* inv_freq, float attn_factor,
                                const KvView& kv, int group_layer, const AttnSeqDesc* seqs, int n_seqs) {
    rope_qk(q, q_heads, k, kv_heads, n, head_dim, positions, inv_freq, attn_factor);
    kv_store_seqs(kv, group_layer, k, v, seqs, n_seqs, positions);
  }
  // add_rms_norm, then the router on its output: logits[n, experts] = out W^T + bias (matmul_bf16) and
  // their router_topk into idx, w [n, k]. (The CUDA backend does it in one launch for decode batches.)
  virtual void add_rms_norm_router(float* x, const float* y, const uint16_t* norm_w, float* out, int64_t n, int64_t d,
                                   float eps, const uint16_t* router_w, const uint16_t* router_b, float* logits,
                                   int experts, int k, int32_t* idx, float* w) {
    add_rms_norm(x, y, norm_w, out, n, d, eps);
    matmul_bf16(out, n, d, router_w, router_b, logits, experts);
    router_topk(logits, n, experts, k, idx, w);
  }
  // moe of h into y, then the residual: x += y and out = rms_norm(x) with norm_w (add_rms_norm), or only
  // x += y when norm_w is null. out may be h (the experts have read it by then); y is scratch, its
  // contents afterwards unspecified (the CUDA backend sums the experts straight into x).
  virtual void moe_add_rms_norm(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                                const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* y,
                                float* x, const uint16_t* norm_w, float* out, float eps) {
    moe(h, n, hidden, idx, w, k, gate_up, down, swiglu_limit, y);
    add_then_rms_norm(x, y, norm_w, out, n, hidden, eps);
  }
  // Several linears of the same input: y_i[n, out_i] = x[n, in] W_i^T + bias_i (q, k and v).
  struct Linear {
    const uint16_t* w;
    const uint16_t* bias;
    float* y;
    int64_t out;
  };
  virtual void matmul_bf16_multi(const float* x, int64_t n, int64_t in, const Linear* linears, int count) {
    for (int i = 0; i < count; ++i)
      matmul_bf16(x, n, in, linears[i].w, linears[i].bias, linears[i].y, linears[i].out);
  }
};

// How a backend takes the checkpoint's weights. use_mmap (the default): the CPU backend computes straight
// from the memory-mapped files; false copies every weight into anonymous 2 MiB pages instead (llama.cpp's
// --no-mmap; the environment variable GPTOSS_NO_MMAP=1 does the same). The CUDA backend copies the weights
// to the GPU either way.
// threads: the CPU backend's thread count (llama.cpp's -t; 0: $GPTOSS_THREADS, else every hardware thread).
struct BackendOptions {
  bool use_mmap = true;
  int threads = 0;
};

// "cpu", "cuda", or "auto" (CUDA when this build has it and a GPU is present, else CPU).
// Throws InputError for other names.
std::unique_ptr<Backend> make_backend(const std::string& device, const BackendOptions& options = {});
std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options = {});
// Defined by backend/cuda (or the stub in builds without nvcc, which throws InputError).
std::unique_ptr<Backend> make_cuda_backend();
// True when this binary has a CUDA backend and a GPU is visible (the stub says false).
bool cuda_available();

// An owning backend allocation (RAII); grows without keeping the old contents.
class BackendBuffer {
 public:
  BackendBuffer() = default;
  explicit BackendBuffer(Backend& b) : backend_(&b) {}
  ~BackendBuffer() { reset(); }
  BackendBuffer(BackendBuffer&& o) noexcept : backend_(o.backend_), ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  BackendBuffer& operator=(BackendBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = o.backend_;
      ptr_ = o.ptr_;
      bytes_ = o.bytes_;
      o.ptr_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  BackendBuffer(const BackendBuffer&) = delete;
  BackendBuffer& operator=(const BackendBuffer&) = delete;

  // Makes the buffer at least `bytes` long (reallocating, contents lost, when it is shorter).
  void reserve(size_t bytes) {
    if (bytes <= bytes_) return;
    reset();
    ptr_ = backend_->alloc(bytes);
    bytes_ = bytes;
  }
  void reset() {
    if (ptr_) backend_->free(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  template <class T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  float* f32() const { return static_cast<float*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace gptoss
