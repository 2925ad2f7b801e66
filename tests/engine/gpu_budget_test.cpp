// The GPU KV budget (gpu_memory_utilization): a CPU backend dressed up as a device with 8 GB of memory, its
// allocations (the step's scratch) taken from the device's free memory.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/gpt_oss_runner.h"
#include "model/gpt_oss.h"

namespace gptoss {
namespace {

// Forwards every op to the CPU backend; reports a fixed device memory.
class FakeDeviceBackend final : public Backend {
 public:
  FakeDeviceBackend(size_t free, size_t total) : cpu_(make_cpu_backend()), info_{free, total} {}
  std::string name() const override { return "fake-device"; }
  std::string device_name() const override { return "fake 8 GB device"; }
  MemoryInfo memory_info() const override { return {info_.free - cpu_->allocated_bytes(), info_.total}; }
  void* alloc(size_t b) override { return cpu_->alloc(b); }
  void free(void* p) override { cpu_->free(p); }
  void to_device(void* d, const void* s, size_t b) override { cpu_->to_device(d, s, b); }
  void to_host(void* d, const void* s, size_t b) override { cpu_->to_host(d, s, b); }
  const void* prepare_weight(const void* h, size_t b) override { return cpu_->prepare_weight(h, b); }
  size_t allocated_bytes() const override { return cpu_->allocated_bytes(); }
  void embed(const int32_t* t, int64_t n, const uint16_t* tab, int64_t h, float* o) override { cpu_->embed(t, n, tab, h, o); }
  void rms_norm(const float* x, const uint16_t* w, float* y, int64_t n, int64_t d, float e) override {
    cpu_->rms_norm(x, w, y, n, d, e);
  }
  void matmul_bf16(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* b, float* y,
                   int64_t out) override {
    cpu_->matmul_bf16(x, n, in, w, b, y, out);
  }
  void add(float* x, const float* y, int64_t c) override { cpu_->add(x, y, c); }
  void rope(float* x, int64_t n, int h, int hd, const int32_t* p, const float* f, float a) override {
    cpu_->rope(x, n, h, hd, p, f, a);
  }
  void kv_store(const KvView& kv, int g, const float* k, const float* v, int64_t n, const int32_t* p,
                const int32_t* t) override {
    cpu_->kv_store(kv, g, k, v, n, p, t);
  }
  void attention(const float* q, int64_t n, int h, const KvView& kv, int g, const AttnSeqDesc* s, int ns,
                 const float* sk, int w, float sc, float* o) override {
    cpu_->attention(q, n, h, kv, g, s, ns, sk, w, sc, o);
  }
  void router_topk(const float* l, int64_t n, int e, int k, int32_t* i, float* w) override {
    cpu_->router_topk(l, n, e, k, i, w);
  }
  void moe(const float* x, int64_t n, int64_t h, const int32_t* i, const float* w, int k, const ExpertWeights& gu,
           const ExpertWeights& dn, float lim, float* o) override {
    cpu_->moe(x, n, h, i, w, k, gu, dn, lim, o);
  }
  void gather_rows(const float* s, const int32_t* r, int64_t n, int64_t d, float* o) override {
    cpu_->gather_rows(s, r, n, d, o);
  }

 private:
  std::unique_ptr<Backend> cpu_;
  MemoryInfo info_;
};

std::string tiny_dir() {
  const char* env = std::getenv("GPTOSS_SHARED_DIR");
  return std::string(env ? env : GPTOSS_SHARED_DIR) + "/fixtures/gpt-oss-tiny/mxfp4";
}

std::unique_ptr<GptOssRunner> runner_on(size_t free, size_t total) {
  auto backend = std::make_unique<FakeDeviceBackend>(free, total);
  auto model = GptOssModel::load(tiny_dir(), *backend);
  return std::make_unique<GptOssRunner>(std::move(backend), std::move(model));
}

constexpr size_t kGB = size_t(1) << 30;

constexpr size_t kReserve = size_t(256) << 20;

TEST(GpuKvBudget, UtilizationOfDeviceMemoryLessUsedStepAndReserve) {
  auto r = runner_on(/*free=*/6 * kGB, /*total=*/8 * kGB);
  const size_t loaded = r->backend().allocated_bytes();  // the model's own small buffers
  // 0.75 x 8 GB = 6 GB allowed, 2 GB already used (weights), the largest step's scratch (kept by the
  // backend and the model after the step ran; its KV pool freed), a 256 MiB reserve.
  const size_t budget = *r->device_kv_budget(0.75, 300, 8);
  const size_t scratch = r->backend().allocated_bytes() - loaded;
  EXPECT_GT(scratch, size_t(300) * r->model().config().hidden_size * 4);  // at least the step's residuals
  EXPECT_EQ(budget, 4 * kGB - loaded - scratch - kReserve);
  EXPECT_THROW(r->device_kv_budget(0.26, 300, 8), InputError);  // 2.08 GB allowed < 2 GB used + reserve
}

TEST(GpuKvBudget, HostBackendHasNoDeviceBudget) {
  auto r = GptOssRunner::load(tiny_dir(), "cpu");
  const size_t loaded = r->backend().allocated_bytes();
  EXPECT_FALSE(r->device_kv_budget(0.9, 2048, 64).has_value());
  EXPECT_EQ(r->backend().allocated_bytes(), loaded);  // and no step was run for it
}

TEST(GpuKvBudget, EngineSizesThePoolFromIt) {
  auto r = runner_on(/*free=*/7 * kGB, /*total=*/8 * kGB);
  const size_t per_block = r->kv_bytes_per_block(16);
  EngineConfig c;
  c.gpu_memory_utilization = 0.5;  // 4 GB - 1 GB used - the step's scratch - the reserve
  c.max_num_batched_tokens = 64;
  c.max_num_seqs = 4;
  Backend& backend = r->backend();
  Engine e(std::move(r), c);
  const size_t in_use = backend.allocated_bytes() - size_t(e.metrics().kv_blocks_total) * per_block;
  EXPECT_EQ(e.metrics().kv_blocks_total, int64_t((3 * kGB - in_use - kReserve) / per_block));
}

}  // namespace
}  // namespace gptoss
