// The CUDA backend: device memory, weight upload, and the op launchers of kernels.cuh.
// Host metadata (token ids, positions, block tables, sequence descriptors) of a model forward is
// uploaded once by run_forward (forward_stage.h), and decode forwards are replayed as CUDA graphs
// (graph_cache.h). Ops called outside a forward (tests, tools) copy their metadata into a device arena
// per op; the copies are ordered on the backend's one stream, so reusing the arena is safe.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "backend/backend.h"
#include "backend/op_profile.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/forward_stage.h"
#include "backend/cuda/graph_cache.h"
#include "backend/cuda/kernels.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/train_kernels.cuh"
#include "backend/cuda/train_ops_cuda.h"

namespace gptoss {
namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
      fail_input("device cuda: no usable CUDA GPU here ({}); use --device cpu (or engine_params.device: cpu)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "no GPU visible");
    GPTOSS_CUDA_CHECK(cudaSetDevice(0));
    cudaDeviceProp prop{};
    GPTOSS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    name_ = prop.name;
    GPTOSS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    if (const char* env = std::getenv("GPTOSS_PROFILE")) profile_.on = env[0] && env[0] != '0';
    if (const char* env = std::getenv("GPTOSS_CUDA_GRAPHS")) graphs_on_ = !(env[0] == '0' && env[1] == 0);
  }

  ~CudaBackend() override {
    train_ops_.reset();  // its buffers go back through free() while the backend is whole
    cudaStreamSynchronize(stream_);
    graphs_.clear();
    for (auto& [p, n] : sizes_) cudaFree(p);
    for (void* p : weights_) cudaFree(p);
    for (void* p : host_tables_) cudaFreeHost(p);
    if (arena_) cudaFree(arena_);
    if (counters_) cudaFree(counters_);
    for (float* p : {h_scratch_, y_scratch_, tc_scratch_, attn_scratch_})
      if (p) cudaFree(p);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return name_; }

  void* alloc(size_t bytes) override {
    not_capturing("alloc");
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess)
      fail("cuda backend: out of GPU memory allocating {} bytes ({})", bytes, cudaGetErrorString(e));
    GPTOSS_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
    sizes_[p] = bytes;
    allocated_ += bytes;
    return p;
  }

  void free(void* p) override {
    if (!p) return;
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    not_capturing("free");
    GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    graphs_.clear();  // a recording may point into this allocation
    allocated_ -= it->second;
    sizes_.erase(it);
    GPTOSS_CUDA_CHECK(cudaFree(p));
  }

  void to_device(void* dst, const void* src, size_t bytes) override {
    GPTOSS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }

  void to_host(void* dst, const void* src, size_t bytes) override {
    GPTOSS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  const void* prepare_weight(const void* host, size_t bytes) override {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess)
      fail("cuda backend: out of GPU memory uploading a {}-byte weight ({}); the model does not fit this GPU",
           bytes, cudaGetErrorString(e));
    GPTOSS_CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    weights_.push_back(p);
    return p;
  }

  // The embedding table in pinned, mapped host memory: embed reads one 5.6 KB row a token over the bus
  // (the 20b's and 120b's 1.16 GB stay free for the KV cache, as llama.cpp keeps token embeddings on the
  // host). Written once here, so write-combined. Uploaded as any weight when pinning fails.
  const void* prepare_gather_table(const void* host, size_t bytes) override {
    void* p = nullptr;
    if (cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocMapped | cudaHostAllocWriteCombined) !=
        cudaSuccess) {
      cudaGetLastError();  // clear the error: the upload below is the fallback
      return prepare_weight(host, bytes);
    }
    std::memcpy(p, host, bytes);
    void* d = nullptr;
    GPTOSS_CUDA_CHECK(cudaHostGetDevicePointer(&d, p, 0));
    host_tables_.push_back(p);
    return d;
  }

  double probe_bandwidth() override {
    const size_t bytes = size_t(1) << 30;
    char *a = nullptr, *b = nullptr;
    GPTOSS_CUDA_CHECK(cudaMalloc(&a, bytes));
    GPTOSS_CUDA_CHECK(cudaMalloc(&b, bytes));
    GPTOSS_CUDA_CHECK(cudaMemsetAsync(a, 1, bytes, stream_));
    cudaEvent_t e0, e1;
    GPTOSS_CUDA_CHECK(cudaEventCreate(&e0));
    GPTOSS_CUDA_CHECK(cudaEventCreate(&e1));
    GPTOSS_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream_));  // warm-up
    const int reps = 10;
    GPTOSS_CUDA_CHECK(cudaEventRecord(e0, stream_));
    for (int i = 0; i < reps; ++i)
      GPTOSS_CUDA_CHECK(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, stream_));
    GPTOSS_CUDA_CHECK(cudaEventRecord(e1, stream_));
    GPTOSS_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    GPTOSS_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * double(bytes) * reps / (double(ms) / 1e3);  // read + write
  }

  MemoryInfo memory_info() const override {
    MemoryInfo m;
    GPTOSS_CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
    return m;
  }

  void synchronize() override { GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void set_profiling(bool on) override { profile_.on = on; }
  std::string profile_report() const override { return profile_.report(); }
  void reset_profile() override { profile_.reset(); }
  size_t allocated_bytes() const override { return allocated_; }

  // Runs the forward's ops with its metadata uploaded once; a decode batch seen before is recorded as a
  // CUDA graph (its second sight) and replayed from then on (GPTOSS_CUDA_GRAPHS=0 turns that off).
  void run_forward(const ForwardMeta& meta, const std::function<void()>& ops) override {
    int caps[2] = {cuda::ForwardStage::table_cap(meta, 0), cuda::ForwardStage::table_cap(meta, 1)};
    if (stage_.upload(meta, caps, stream_)) graphs_.clear();
    struct EndForward {
      cuda::ForwardStage& stage;
      ~EndForward() {
        stage.clear();
        cuda::pdl_this_forward() = true;
      }
    } end{stage_};
    cuda::pdl_this_forward() = meta.n_tokens <= cuda::kPdlMaxTokens;
    // A decode batch: one token and one logit row a sequence (every sequence is in each group it has).
    const int n_seqs = std::max(meta.n_seqs[0], meta.n_seqs[1]);
    const bool decode = meta.replayable && graphs_on_ && !profile_.on && meta.n_tokens == n_seqs &&
                        meta.n_logit_rows == meta.n_tokens;
    if (!decode) return ops();
    const cuda::GraphKey key{meta.owner,         meta.kv_pool, meta.variant, meta.n_tokens, meta.n_logit_rows,
                             {meta.n_seqs[0], meta.n_seqs[1]}, {caps[0], caps[1]}};
    if (cudaGraphExec_t exec = graphs_.find(key)) {
      GPTOSS_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
      return;
    }
    if (graphs_.first_sight(key)) return ops();
    record_and_launch(key, ops);
  }

  void embed(const int32_t* tokens, int64_t n, const uint16_t* table, int64_t hidden, float* out) override {
    auto t = op_scope(OpProfile::kEmbed);
    cuda::launch_embed(forward_or_stage(stage_.tokens(tokens, n), tokens, n), n, table, hidden, out, stream_);
  }
  void rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float eps) override {
    auto t = op_scope(OpProfile::kRmsNorm);
    cuda::launch_rms_norm(x, w, y, n, d, eps, stream_);
  }
  void matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                   int64_t out) override {
    const Linear linear{w, bias, y, out};
    matmul_bf16_multi(x, n, in, &linear, 1);
  }
  // Prefill-sized inputs and decode batches of 2+ tokens go to the tensor cores (exact bf16 limbs of x, see
  // matmul_bf16_tc.cu and matmul_bf16_skinny.cu), single tokens to the CUDA cores (matmul_bf16.cu).
  void matmul_bf16_multi(const float* x, int64_t n, int64_t in, const Linear* linears, int count) override {
    auto t = op_scope(OpProfile::kMatmul);
    const bool skinny = cuda::matmul_bf16_skinny_applies(n, in, total_rows(linears, count));
    if (!skinny && !cuda::matmul_bf16_tc_applies(n, in)) {
      if (n > cuda::kSkinnyMaxTokens && !has_bias(linears, count)) return matmul_any_shape(x, n, in, linears, count);
      return cuda::launch_matmul_bf16_multi(x, n, in, linears, count, stream_);
    }
    grow(tc_scratch_, tc_cap_, (cuda::matmul_bf16_tc_scratch_bytes(n, in) + 3) / 4);  // x's bf16 limbs
    if (skinny)
      cuda::launch_matmul_bf16_skinny(x, n, in, linears, count, tc_scratch_, stream_);
    else
      cuda::launch_matmul_bf16_tc(x, n, in, linears, count, tc_scratch_, stream_);
  }
  void add_rms_norm(float* x, const float* y, const uint16_t* w, float* out, int64_t n, int64_t d,
                    float eps) override {
    auto t = op_scope(OpProfile::kRmsNorm);
    cuda::launch_add_rms_norm(x, y, w, out, n, d, eps, stream_);
  }
  void add(float* x, const float* y, int64_t count) override {
    auto t = op_scope(OpProfile::kAdd);
    cuda::launch_add(x, y, count, stream_);
  }
  void rope(float* x, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
            float attn_factor) override {
    rope_qk(x, heads, nullptr, 0, n, head_dim, positions, inv_freq, attn_factor);
  }
  void rope_qk(float* q, int q_heads, float* k, int kv_heads, int64_t n, int head_dim, const int32_t* positions,
               const float* inv_freq, float attn_factor) override {
    auto t = op_scope(OpProfile::kRope);
    const int32_t* dpos = forward_or_stage(stage_.positions(positions, n), positions, n);
    cuda::launch_rope_qk(q, q_heads, k, kv_heads, n, head_dim, dpos, inv_freq, attn_factor, stream_);
  }
  void kv_store(const KvView& kv, int group_layer, const float* k, const float* v, int64_t n, const int32_t* positions,
                const int32_t* block_table) override {
    auto t = op_scope(OpProfile::kKvStore);
    if (n == 0) return;
    int32_t max_pos = *std::max_element(positions, positions + n);
    begin_op(size_t(n + max_pos / kv.block_size + 1) * 4, 2);
    const int32_t* dpos = stage(positions, n);
    const int32_t* dtab = stage(block_table, max_pos / kv.block_size + 1);
    upload();
    cuda::launch_kv_store(kv, group_layer, k, v, n, dpos, dtab, stream_);
  }
  void kv_store_seqs(const KvView& kv, int group_layer, const float* k, const float* v, const AttnSeqDesc* seqs,
                     int n_seqs, const int32_t* positions) override {
    auto t = op_scope(OpProfile::kKvStore);
    const StagedSeqs st = find_or_stage_seqs(kv, seqs, n_seqs, positions);
    if (st.n == 0) return;
    cuda::launch_kv_store_seqs(kv, group_layer, k, v, st.n, st.positions, st.token_seq, st.seqs, stream_);
  }
  void rope_qk_kv_store(float* q, int q_heads, float* k, const float* v, int kv_heads, int64_t n, int head_dim,
                        const int32_t* positions, const float* inv_freq, float attn_factor, const KvView& kv,
                        int group_layer, const AttnSeqDesc* seqs, int n_seqs) override {
    auto t = op_scope(OpProfile::kRope);
    const StagedSeqs st = find_or_stage_seqs(kv, seqs, n_seqs, positions);
    GPTOSS_CHECK(st.n == n, "rope + kv_store: sequences cover {} of {} tokens", st.n, n);
    cuda::launch_rope_kv_store(q, q_heads, k, v, kv_heads, n, head_dim, st.positions, inv_freq, attn_factor, kv,
                               group_layer, st.token_seq, st.seqs, stream_);
  }
  void attention(const float* q, int64_t n, int heads, const KvView& kv, int group_layer, const AttnSeqDesc* seqs,
                 int n_seqs, const float* sinks, int window, float scale, float* out) override {
    auto t = op_scope(OpProfile::kAttention);
    if (n == 0) return;
    const StagedSeqs st = find_or_stage_seqs(kv, seqs, n_seqs, nullptr);
    GPTOSS_CHECK(st.n == n, "attention: sequences cover {} of {} tokens", st.n, n);
    if (const size_t bytes = cuda::attention_scratch_bytes(n, heads, kv.kv_heads, kv.head_dim))
      grow(attn_scratch_, attn_cap_, bytes / sizeof(float));
    cuda::launch_attention(q, n, heads, kv, group_layer, st.seqs, st.token_seq, sinks, window, scale, out,
                           attn_scratch_, stream_);
  }
  void router_topk(const float* logits, int64_t n, int experts, int k, int32_t* idx, float* w) override {
    auto t = op_scope(OpProfile::kRouter);
    cuda::launch_router_topk(logits, n, experts, k, idx, w, stream_);
  }
  void add_rms_norm_router(float* x, const float* y, const uint16_t* norm_w, float* out, int64_t n, int64_t d,
                           float eps, const uint16_t* router_w, const uint16_t* router_b, float* logits, int experts,
                           int k, int32_t* idx, float* w) override {
    if (!cuda::add_rms_norm_router_applies(n, d, experts, router_w))
      return Backend::add_rms_norm_router(x, y, norm_w, out, n, d, eps, router_w, router_b, logits, experts, k, idx,
                                          w);
    auto t = op_scope(OpProfile::kRouter);
    cuda::launch_add_rms_norm_router(x, y, norm_w, out, n, d, eps, router_w, router_b, logits, experts, k, idx, w,
                                     counters(n), stream_);
  }
  void moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
           const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out) override {
    run_moe(x, n, hidden, idx, w, k, gate_up, down, swiglu_limit, out, nullptr);
  }
  void moe_add_rms_norm(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                        const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float*,
                        float* x, const uint16_t* norm_w, float* out, float eps) override {
    const cuda::MoeResidual residual{x, norm_w, out, eps};
    run_moe(h, n, hidden, idx, w, k, gate_up, down, swiglu_limit, nullptr, &residual);
  }
  void gather_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) override {
    auto t = op_scope(OpProfile::kGather);
    const int32_t* drows = forward_or_stage(stage_.logit_rows(rows, n_rows), rows, n_rows);
    cuda::launch_gather_rows(src, drows, n_rows, dim, dst, stream_);
  }

  // Training (backend/train_ops.h, train_ops_cuda.cpp).
  TrainOps* train_ops() override { return cuda_train_ops(); }
  void moe_keep_gate_up(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                        const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out,
                        float* gate_up_out) override {
    auto t = op_scope(OpProfile::kMoe);
    cuda_train_ops()->moe_keep_gate_up(x, n, hidden, idx, w, k, gate_up, down, swiglu_limit, out, gate_up_out);
  }

 private:
  // Times the op while profiling (waiting for the stream before and after it).
  OpProfile::Scope<cuda::StreamSync> op_scope(OpProfile::Op op) {
    return profile_.scope(op, cuda::StreamSync{stream_});
  }

  cuda::CudaTrainOps* cuda_train_ops() {
    if (!train_ops_) train_ops_ = cuda::make_train_ops(*this, stream_, profile_);
    return train_ops_.get();
  }

  static bool has_bias(const Linear* linears, int count) {
    return std::any_of(linears, linears + count, [](const Linear& l) { return l.bias != nullptr; });
  }

  // Many tokens of an input too short or odd for the prefill kernel (`in` % 32 != 0: a LoRA term's rank-wide
  // input): the trainer's tensor-core GEMM, which takes any shape (each block of the decode kernel would do
  // one step of `in`: a rank-8 input of 1800 tokens took ~1 ms a call).
  void matmul_any_shape(const float* x, int64_t n, int64_t in, const Linear* linears, int count) {
    for (int i = 0; i < count; ++i) {
      const cuda::GemmW w{cuda::WFormat::kBf16, linears[i].w, nullptr, linears[i].out, in};
      if (const size_t bytes = cuda::train_gemm_scratch_bytes(n, w, true, {}))
        grow(tc_scratch_, tc_cap_, (bytes + 3) / 4);
      cuda::launch_train_gemm(n, {x, in, 1}, w, true, {}, 1.0f, false, linears[i].y, linears[i].out, tc_scratch_,
                              stream_);
    }
  }

  static int64_t total_rows(const Linear* linears, int count) {
    int64_t rows = 0;
    for (int i = 0; i < count; ++i) rows += linears[i].out;
    return rows;
  }

  void run_moe(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
               const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out,
               const cuda::MoeResidual* residual) {
    auto t = op_scope(OpProfile::kMoe);
    int64_t inter = gate_up.rows / 2;
    grow(h_scratch_, h_cap_, size_t(n * k * inter));
    grow(y_scratch_, y_cap_, size_t(n * k * hidden));
    if (const size_t bytes = cuda::moe_tc_scratch_bytes(n, k, hidden, gate_up))
      grow(tc_scratch_, tc_cap_, (bytes + 3) / 4);
    cuda::launch_moe(x, n, hidden, idx, w, k, gate_up, down, swiglu_limit, h_scratch_, y_scratch_, tc_scratch_, out,
                     residual, stream_);
  }

  // `count` int32 counters for the kernels whose last thread block finishes an item (common.cuh's
  // last_block_of): zero when allocated, and each kernel leaves them zero.
  int32_t* counters(int64_t count) {
    if (count <= 0) return nullptr;
    if (grow(counters_, counters_cap_, size_t(count)))
      GPTOSS_CUDA_CHECK(cudaMemsetAsync(counters_, 0, counters_cap_ * sizeof(int32_t), stream_));
    return counters_;
  }

  // `found` (the forward's device copy of `host`, or null) or else a copy of host[0 .. n) staged for this op.
  const int32_t* forward_or_stage(const int32_t* found, const int32_t* host, int64_t n) {
    if (found) return found;
    begin_op(size_t(n) * 4, 1);
    const int32_t* d = stage(host, n);
    upload();
    return d;
  }

  // Makes room for `bytes` of stagings (plus alignment) for the op about to run. Called before the
  // first stage() of an op, so growing never invalidates a pointer already handed out.
  void begin_op(size_t bytes, int pieces) {
    not_capturing("an op with metadata that is not the forward's");
    arena_used_ = 0;
    size_t need = bytes + size_t(pieces) * 256;
    if (need <= arena_cap_) return;
    if (arena_) {
      GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream_));
      GPTOSS_CUDA_CHECK(cudaFree(arena_));
    }
    arena_cap_ = std::max<size_t>(need * 2, 1 << 20);
    GPTOSS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&arena_), arena_cap_));
  }

  // Places n items of host data in the op's staging area (256-byte aligned) and returns the device pointer
  // they will have; upload() then copies the whole area with one cudaMemcpyAsync before the launch (a copy
  // per piece cost a driver call each: 66 a layer for attention at batch 64). The host side is pageable
  // memory, which cudaMemcpyAsync copies out before returning, so it can be refilled by the next op.
  template <class T>
  const T* stage(const T* host, int64_t n) {
    size_t bytes = size_t(n) * sizeof(T);
    size_t off = (arena_used_ + 255) & ~size_t(255);
    GPTOSS_CHECK(off + bytes <= arena_cap_, "cuda staging arena overflow ({} + {} > {})", off, bytes, arena_cap_);
    if (host_stage_.size() < off + bytes) host_stage_.resize(std::max(off + bytes, host_stage_.size() * 2));
    if (bytes) std::memcpy(host_stage_.data() + off, host, bytes);
    arena_used_ = off + bytes;
    return reinterpret_cast<const T*>(arena_ + off);
  }
  void upload() {
    if (arena_used_)
      GPTOSS_CUDA_CHECK(cudaMemcpyAsync(arena_, host_stage_.data(), arena_used_, cudaMemcpyHostToDevice, stream_));
  }

  // The device copies of a ragged batch's sequence descriptors (block tables included), the sequence of
  // every token, and (when `positions` is given, host, one per token) the positions; one upload.
  struct StagedSeqs {
    int64_t n = 0;
    const cuda::DevAttnSeq* seqs = nullptr;
    const int32_t* token_seq = nullptr;
    const int32_t* positions = nullptr;
  };
  // The forward's device copy of seqs when they are its sequences (positions too), else stage_seqs.
  StagedSeqs find_or_stage_seqs(const KvView& kv, const AttnSeqDesc* seqs, int n_seqs, const int32_t* positions) {
    const cuda::ForwardStage::Seqs* f = stage_.seqs(seqs, n_seqs);
    const int64_t n = stage_.n_tokens();
    const int32_t* dpos = positions ? stage_.positions(positions, n) : nullptr;
    if (!f || (positions && !dpos)) return stage_seqs(kv, seqs, n_seqs, positions);
    return StagedSeqs{n, f->seqs, f->token_seq, dpos};
  }

  StagedSeqs stage_seqs(const KvView& kv, const AttnSeqDesc* seqs, int n_seqs, const int32_t* positions) {
    int64_t n = 0;
    size_t table_bytes = 0;
    StagedSeqs st;
    for (int i = 0; i < n_seqs; ++i) {
      n = std::max(n, seqs[i].token_offset + seqs[i].n_tokens);
      table_bytes += size_t(seqs[i].n_tokens ? (seqs[i].start_pos + seqs[i].n_tokens - 1) / kv.block_size + 1 : 0) * 4;
    }
    st.n = n;
    if (n == 0) return st;
    begin_op(table_bytes + size_t(n_seqs) * sizeof(cuda::DevAttnSeq) + size_t(n) * 8, n_seqs + 3);
    dev_seqs_.resize(size_t(n_seqs));
    token_seq_.assign(size_t(n), -1);
    for (int i = 0; i < n_seqs; ++i) {
      const AttnSeqDesc& s = seqs[i];
      const int64_t blocks = s.n_tokens ? (s.start_pos + s.n_tokens - 1) / kv.block_size + 1 : 0;
      dev_seqs_[size_t(i)] = {s.token_offset, s.n_tokens, s.start_pos, stage(s.block_table, blocks)};
      for (int64_t t = 0; t < s.n_tokens; ++t) token_seq_[size_t(s.token_offset + t)] = i;
    }
    GPTOSS_CHECK(std::find(token_seq_.begin(), token_seq_.end(), -1) == token_seq_.end(),
                 "sequences do not cover all {} tokens of the batch", n);
    st.seqs = stage(dev_seqs_.data(), int64_t(dev_seqs_.size()));
    st.token_seq = stage(token_seq_.data(), n);
    if (positions) st.positions = stage(positions, n);
    upload();
    return st;
  }

  // Makes p hold at least `count` elements (doubling); returns whether it reallocated (contents lost).
  template <class T>
  bool grow(T*& p, size_t& cap, size_t count) {
    if (count <= cap) return false;
    not_capturing("a scratch buffer growing");
    if (p) {
      GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream_));
      GPTOSS_CUDA_CHECK(cudaFree(p));
      graphs_.clear();
    }
    cap = std::max(count, cap * 2);
    GPTOSS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), cap * sizeof(T)));
    return true;
  }

  // Records ops() on the stream into a graph for key, keeps it and launches it. A failure while
  // recording (a CUDA error, or an op that would allocate or copy its own metadata) ends the capture
  // and is rethrown; nothing of the forward has run then.
  void record_and_launch(const cuda::GraphKey& key, const std::function<void()>& ops) {
    GPTOSS_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
    cudaGraph_t graph = nullptr;
    try {
      ops();
    } catch (...) {
      capturing_ = false;
      if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    capturing_ = false;
    GPTOSS_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    GPTOSS_CUDA_CHECK(e);
    // A full cache destroys its least recently used recording, which may still be running.
    if (graphs_.size() >= cuda::GraphCache::kMaxGraphs) GPTOSS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    graphs_.put(key, exec);
    GPTOSS_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  }

  // Allocation, freeing, syncs and per-op metadata copies cannot be recorded into a graph.
  void not_capturing(const char* what) const {
    GPTOSS_CHECK(!capturing_, "cuda backend: {} while recording a decode forward as a CUDA graph", what);
  }

  std::string name_;
  cudaStream_t stream_ = nullptr;
  cuda::ForwardStage stage_;
  cuda::GraphCache graphs_;
  bool graphs_on_ = true;
  bool capturing_ = false;
  std::vector<char> host_stage_;
  std::vector<cuda::DevAttnSeq> dev_seqs_;
  std::vector<int32_t> token_seq_;
  std::unordered_map<void*, size_t> sizes_;
  std::vector<void*> weights_;
  std::vector<void*> host_tables_;  // prepare_gather_table's pinned host buffers
  size_t allocated_ = 0;
  char* arena_ = nullptr;
  size_t arena_cap_ = 0, arena_used_ = 0;
  float* h_scratch_ = nullptr;
  float* y_scratch_ = nullptr;
  float* tc_scratch_ = nullptr;    // limbs of x for the tensor-core kernels (MoE, prefill matmuls)
  float* attn_scratch_ = nullptr;  // the parts of a split attention (attention.cu)
  size_t h_cap_ = 0, y_cap_ = 0, tc_cap_ = 0, attn_cap_ = 0;
  int32_t* counters_ = nullptr;
  size_t counters_cap_ = 0;
  OpProfile profile_;
  std::unique_ptr<cuda::CudaTrainOps> train_ops_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

bool cuda_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

}  // namespace gptoss
