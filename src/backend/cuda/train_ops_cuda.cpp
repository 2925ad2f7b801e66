// CudaTrainOps: the LoRA trainer's ops as launches of train_kernels.cuh on the backend's stream. The
// products (dense input gradients, the experts, the LoRA terms) are all one grouped GEMM
// (train_gemm.cu); the MoE groups its token-slots by expert on the host (the choices are copied back
// once per call: n * k ints) with the CPU kernels' cpu::moe::Routing.
#include "backend/cuda/train_ops_cuda.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/kernels_moe.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/train_kernels.cuh"
#include "backend/op_profile.h"
#include "core/error.h"

namespace gptoss::cuda {
namespace {

class TrainOpsCuda final : public CudaTrainOps {
 public:
  TrainOpsCuda(Backend& b, cudaStream_t s, OpProfile& profile)
      : b_(b), s_(s), profile_(profile), rows_(b), offsets_dev_(b), order_dev_(b), tokens_dev_(b), row_loss_(b),
        attn_(b), g_(b), z_(b), dg_(b), dw_(b), y_(b), u_(b), du_(b), split_(b) {}

  void zero(float* x, int64_t count) override {
    auto t = scope(OpProfile::kCopy);
    launch_zero(x, count, s_);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    auto t = scope(OpProfile::kCopy);
    if (bytes) GPTOSS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s_));
  }
  void scatter_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) override {
    auto t = scope(OpProfile::kCopy);
    launch_scatter_rows(src, upload(rows_, rows, n_rows), n_rows, dim, dst, s_);
  }

  void matmul_bf16_backward_x(const float* dy, int64_t n, int64_t out, const uint16_t* w, int64_t in,
                              float* dx) override {
    auto t = scope(OpProfile::kMatmulBackward);
    gemm(n, {dy, out, 1}, {WFormat::kBf16, w, nullptr, out, in}, false, {}, 1.0f, true, dx, in);
  }
  void rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                         float* dx) override {
    auto t = scope(OpProfile::kRmsNormBackward);
    launch_rms_norm_backward(x, w, dy, n, d, eps, dx, s_);
  }
  double cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, double grad_scale,
                       float* dlogits) override {
    auto t = scope(OpProfile::kCrossEntropy);
    if (n <= 0) return 0.0;
    const int64_t count = std::count_if(target, target + n, [](int32_t t) { return t >= 0; });
    float* row_loss = scratch(row_loss_, n);
    launch_cross_entropy(logits, n, vocab, upload(rows_, target, n), count ? float(grad_scale / double(count)) : 0.0f,
                         row_loss, dlogits, s_);
    std::vector<float> loss(static_cast<size_t>(n));
    b_.to_host(loss.data(), row_loss, loss.size() * sizeof(float));
    double total = 0;
    for (float l : loss) total += l;
    return count ? total / double(count) : 0.0;
  }

  void attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads,
                          int head_dim, const float* sinks, int window, float scale, const float* dout, float* dq,
                          float* dk, float* dv) override {
    auto t = scope(OpProfile::kAttentionBackward);
    GPTOSS_CHECK(head_dim % 2 == 0 && head_dim <= 128, "attention backward: head_dim {} (even, <= 128 on CUDA)",
                 head_dim);
    const size_t bytes = attention_backward_scratch_bytes(T, heads);
    launch_attention_backward(q, k, v, T, heads, kv_heads, head_dim, sinks, window, scale, dout, dq, dk, dv,
                              bytes ? scratch(attn_, int64_t((bytes + 3) / 4)) : nullptr, s_);
  }
  void rope_backward(float* dx, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
                     float attn_factor) override {
    auto t = scope(OpProfile::kRopeBackward);
    launch_rope_backward(dx, n, heads, head_dim, upload(rows_, positions, n), inv_freq, attn_factor, s_);
  }

  // Per expert (grouped): Z = dout D, dG = the SwiGLU's backward of w Z, DH = dG GU; then per token the
  // slots' DH summed and the routing softmax's backward (train_moe.cu).
  void moe_backward(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                    const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, const float* dout,
                    float* dh, float* d_logits, const float* gate_up_pre) override {
    auto t = scope(OpProfile::kMoeBackward);
    check_experts(gate_up, down, hidden, k);
    if (n <= 0) return;
    const int64_t slots = n * k, inter = down.cols;
    const Groups g = group(idx, n, k, gate_up.experts);
    const float* pre = gate_up_pre ? gate_up_pre : gate_up_forward(h, n, hidden, idx, k, gate_up, g);
    float* z = scratch(z_, slots * inter);
    gemm(slots, {dout, hidden, 1}, weights(down), false, g.by_token, 1.0f, false, z, inter);
    float* dg = scratch(dg_, slots * 2 * inter);
    float* dw = scratch(dw_, slots);
    launch_moe_slot_backward(pre, z, dout, idx, w, down.bias, n, k, inter, hidden, swiglu_limit, dg, dw, s_);
    float* dhs = scratch(y_, slots * hidden);
    gemm(slots, {dg, 2 * inter, 1}, weights(gate_up), false, g.by_slot, 1.0f, false, dhs, hidden);
    launch_moe_token_backward(dhs, idx, w, dw, n, k, gate_up.experts, hidden, dh, d_logits, s_);
  }

  void moe_keep_gate_up(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                        const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, float* out,
                        float* gate_up_out) override {
    check_experts(gate_up, down, hidden, k);
    if (n <= 0) return;
    const int64_t slots = n * k, inter = down.cols;
    const Groups g = group(idx, n, k, gate_up.experts);
    float* pre = gate_up_out ? gate_up_out : scratch(g_, slots * 2 * inter);
    gemm(slots, {x, hidden, 1}, weights(gate_up), true, g.by_token, 1.0f, false, pre, 2 * inter);
    launch_slot_bias(pre, slots, 2 * inter, idx, gate_up.bias, s_);
    float* act = scratch(z_, slots * inter);
    launch_swiglu_slots(pre, slots, inter, swiglu_limit, act, s_);
    float* y = scratch(y_, slots * hidden);
    gemm(slots, {act, inter, 1}, weights(down), true, g.by_slot, 1.0f, false, y, hidden);
    launch_moe_combine(y, down.bias, idx, w, n, k, hidden, out, s_);
  }

  // u = x A^T [n, r], du = s dy B [n, r]; gb += gs s dy^T u, ga += gs du^T x, dx += du A.
  void lora_backward(const float* x, const float* dy, int64_t n, int64_t in, int64_t out, const float* a,
                     const float* b, int r, double s, double grad_scale, float* ga, float* gb, float* dx) override {
    auto t = scope(OpProfile::kLoraBackward);
    if (n <= 0) return;
    const GemmW wa{WFormat::kF32, a, nullptr, r, in, in, 1};
    float* u = scratch(u_, n * r);
    float* du = scratch(du_, n * r);
    gemm(n, {x, in, 1}, wa, true, {}, 1.0f, false, u, r);
    gemm(n, {dy, out, 1}, {WFormat::kF32, b, nullptr, out, r, r, 1}, false, {}, float(s), false, du, r);
    gemm(out, {dy, 1, out}, {WFormat::kF32, u, nullptr, n, r, r, 1}, false, {}, float(grad_scale * s), true, gb, r);
    gemm(r, {du, 1, r}, {WFormat::kF32, x, nullptr, n, in, in, 1}, false, {}, float(grad_scale), true, ga, in);
    gemm(n, {du, r, 1}, wa, false, {}, 1.0f, true, dx, in);
  }

 private:
  // Times the op while profiling (waiting for the stream before and after it), as the backend's ops.
  OpProfile::Scope<StreamSync> scope(OpProfile::Op op) { return profile_.scope(op, StreamSync{s_}); }

  // The token-slots of a MoE call grouped by expert (token order within an expert): product row i is slot
  // order[i]; by_token reads A's row of the slot's token (the layer input), by_slot A's row of the slot.
  struct Groups {
    GemmGroups by_token, by_slot;
  };
  Groups group(const int32_t* idx, int64_t n, int k, int experts) {
    const int64_t slots = n * k;
    choice_.resize(size_t(slots));
    b_.to_host(choice_.data(), idx, size_t(slots) * sizeof(int32_t));
    routing_.build(choice_.data(), n, k, experts);
    int64_t max_rows = 0;
    for (int e : routing_.active) max_rows = std::max<int64_t>(max_rows, routing_.count(e));
    const int32_t* offsets = upload(offsets_dev_, routing_.start.data(), experts + 1);
    const int32_t* order = upload(order_dev_, routing_.sorted.data(), slots);
    const int32_t* tokens = upload(tokens_dev_, routing_.tokens.data(), slots);
    return {{experts, offsets, max_rows, tokens, order}, {experts, offsets, max_rows, order, order}};
  }

  // Each slot's gate_up output with its bias (the forward's values), into scratch.
  const float* gate_up_forward(const float* h, int64_t n, int64_t hidden, const int32_t* idx, int k,
                               const ExpertWeights& gate_up, const Groups& g) {
    const int64_t slots = n * k;
    float* pre = scratch(g_, slots * gate_up.rows);
    gemm(slots, {h, hidden, 1}, weights(gate_up), true, g.by_token, 1.0f, false, pre, gate_up.rows);
    launch_slot_bias(pre, slots, gate_up.rows, idx, gate_up.bias, s_);
    return pre;
  }

  static GemmW weights(const ExpertWeights& e) {
    if (e.mxfp4) return {WFormat::kMxfp4, e.blocks, e.scales, e.rows, e.cols};
    return {WFormat::kBf16InputMajor, e.w, nullptr, e.rows, e.cols};
  }
  static void check_experts(const ExpertWeights& gate_up, const ExpertWeights& down, int64_t hidden, int k) {
    GPTOSS_CHECK(gate_up.mxfp4 == down.mxfp4 && gate_up.experts == down.experts && gate_up.cols == hidden &&
                     gate_up.rows == 2 * down.cols && down.rows == hidden && k >= 1 && k <= gate_up.experts,
                 "MoE shapes: gate_up [{}, {}, {}], down [{}, {}, {}], hidden {}, k {}", gate_up.experts, gate_up.rows,
                 gate_up.cols, down.experts, down.rows, down.cols, hidden, k);
  }

  void gemm(int64_t m, const GemmA& a, const GemmW& w, bool transposed, const GemmGroups& g, float alpha,
            bool accumulate, float* c, int64_t ldc) {
    const size_t bytes = train_gemm_scratch_bytes(m, w, transposed, g);
    launch_train_gemm(m, a, w, transposed, g, alpha, accumulate, c, ldc,
                      bytes ? scratch(split_, int64_t((bytes + 3) / 4)) : nullptr, s_);
  }

  // buf as at least `count` floats (grown; contents not kept).
  float* scratch(BackendBuffer& buf, int64_t count) {
    buf.reserve(size_t(std::max<int64_t>(count, 1)) * sizeof(float));
    return buf.f32();
  }
  // A device copy of host[0 .. n) in buf (stream-ordered: the kernels before it have read the old contents).
  const int32_t* upload(BackendBuffer& buf, const int32_t* host, int64_t n) {
    int32_t* d = reinterpret_cast<int32_t*>(scratch(buf, n));
    if (n > 0) b_.to_device(d, host, size_t(n) * sizeof(int32_t));
    return d;
  }

  Backend& b_;
  cudaStream_t s_;
  OpProfile& profile_;
  BackendBuffer rows_, offsets_dev_, order_dev_, tokens_dev_;        // uploaded host metadata
  BackendBuffer row_loss_, attn_, g_, z_, dg_, dw_, y_, u_, du_, split_;  // scratch
  std::vector<int32_t> choice_;  // the MoE call's expert choices, copied back
  cpu::moe::Routing routing_;     // grouped by expert
};

}  // namespace

std::unique_ptr<CudaTrainOps> make_train_ops(Backend& backend, cudaStream_t stream, OpProfile& profile) {
  return std::make_unique<TrainOpsCuda>(backend, stream, profile);
}

}  // namespace gptoss::cuda
