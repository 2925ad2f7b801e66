// The CPU backend's TrainOps (backend/train_ops.h): backend memory is host memory, so each op is the
// reference function of grad_ops.h on the same pointers; the LoRA term's backward is written here.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/grad_ops.h"
#include "backend/op_profile.h"
#include "backend/train_ops.h"
#include "core/thread_pool.h"

namespace gptoss {
namespace {

class CpuTrainOps final : public TrainOps {
 public:
  explicit CpuTrainOps(OpProfile& profile) : profile_(profile) {}

  void zero(float* x, int64_t count) override {
    auto t = profile_.scope(OpProfile::kCopy);
    std::fill(x, x + count, 0.0f);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    auto t = profile_.scope(OpProfile::kCopy);
    std::memcpy(dst, src, bytes);
  }
  void scatter_rows(const float* src, const int32_t* rows, int64_t n_rows, int64_t dim, float* dst) override {
    auto t = profile_.scope(OpProfile::kCopy);
    for (int64_t i = 0; i < n_rows; ++i) std::memcpy(dst + int64_t(rows[i]) * dim, src + i * dim, size_t(dim) * 4);
  }
  void matmul_bf16_backward_x(const float* dy, int64_t n, int64_t out, const uint16_t* w, int64_t in,
                              float* dx) override {
    auto t = profile_.scope(OpProfile::kMatmulBackward);
    cpu::matmul_bf16_backward_x(dy, n, out, w, in, dx);
  }
  void rms_norm_backward(const float* x, const uint16_t* w, const float* dy, int64_t n, int64_t d, float eps,
                         float* dx) override {
    auto t = profile_.scope(OpProfile::kRmsNormBackward);
    cpu::rms_norm_backward(x, w, dy, n, d, eps, dx);
  }
  double cross_entropy(const float* logits, int64_t n, int64_t vocab, const int32_t* target, double grad_scale,
                       float* dlogits) override {
    auto t = profile_.scope(OpProfile::kCrossEntropy);
    return cpu::cross_entropy(logits, n, vocab, target, dlogits, grad_scale);
  }
  void attention_backward(const float* q, const float* k, const float* v, int64_t T, int heads, int kv_heads,
                          int head_dim, const float* sinks, int window, float scale, const float* dout, float* dq,
                          float* dk, float* dv) override {
    auto t = profile_.scope(OpProfile::kAttentionBackward);
    cpu::attention_backward(q, k, v, T, heads, kv_heads, head_dim, sinks, window, scale, dout, dq, dk, dv);
  }
  void rope_backward(float* dx, int64_t n, int heads, int head_dim, const int32_t* positions, const float* inv_freq,
                     float attn_factor) override {
    auto t = profile_.scope(OpProfile::kRopeBackward);
    cpu::rope_backward(dx, n, heads, head_dim, positions, inv_freq, attn_factor);
  }
  void moe_backward(const float* h, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                    const ExpertWeights& gate_up, const ExpertWeights& down, float swiglu_limit, const float* dout,
                    float* dh, float* d_logits, const float* gate_up_pre) override {
    auto t = profile_.scope(OpProfile::kMoeBackward);
    cpu::moe_backward(h, n, hidden, idx, w, k, gate_up, down, swiglu_limit, dout, dh, d_logits, gate_up_pre);
  }

  // With u = A x (r values a token) and du = s dy B: dB += s dy^T u, dA += du^T x, dx += du A. Sums in double.
  void lora_backward(const float* x, const float* dy, int64_t n, int64_t in, int64_t out, const float* a,
                     const float* b, int r, double s, double grad_scale, float* ga, float* gb, float* dx) override {
    auto t = profile_.scope(OpProfile::kLoraBackward);
    std::vector<double> u(size_t(n * r)), du(size_t(n * r));
    ThreadPool& pool = ThreadPool::global();
    pool.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t j = 0; j < r; ++j) {
          double ua = 0, ub = 0;
          for (int64_t c = 0; c < in; ++c) ua += double(a[j * in + c]) * x[t * in + c];
          for (int64_t o = 0; o < out; ++o) ub += double(dy[t * out + o]) * b[o * r + j];
          u[size_t(t * r + j)] = ua;
          du[size_t(t * r + j)] = s * ub;
        }
    });
    pool.parallel_for(out, [&](int64_t o0, int64_t o1, int) {  // dB
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t j = 0; j < r; ++j) {
          double g = 0;
          for (int64_t t = 0; t < n; ++t) g += double(dy[t * out + o]) * u[size_t(t * r + j)];
          gb[o * r + j] += float(grad_scale * s * g);
        }
    });
    pool.parallel_for(in, [&](int64_t c0, int64_t c1, int) {  // dA and dx, by input column
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t j = 0; j < r; ++j) {
          double g = 0;
          for (int64_t t = 0; t < n; ++t) g += du[size_t(t * r + j)] * x[t * in + c];
          ga[j * in + c] += float(grad_scale * g);
        }
        for (int64_t t = 0; t < n; ++t) {
          double g = 0;
          for (int64_t j = 0; j < r; ++j) g += du[size_t(t * r + j)] * a[j * in + c];
          dx[t * in + c] += float(g);
        }
      }
    });
  }

 private:
  OpProfile& profile_;
};

}  // namespace

std::unique_ptr<TrainOps> make_cpu_train_ops(OpProfile& profile) { return std::make_unique<CpuTrainOps>(profile); }

}  // namespace gptoss
