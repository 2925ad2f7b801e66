// LoRA training on the CUDA backend against the CPU backend on both tiny fixtures (MXFP4 and bf16 experts):
// the loss and every gradient of a random rank-2 adapter on all five module kinds, for a micro-batch of two
// sequences (one past the sliding window), with the experts' gate_up values kept and recomputed. Skips
// without a GPU (CI), runs on the device.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/kernel_tester.h"
#include "model/gpt_oss.h"
#include "model/model_test_util.h"
#include "train/backward.h"
#include "train/lora_state_util.h"

namespace gptoss {
namespace {

// Every gradient of st, in order.
std::vector<float> flat_grads(const train::LoraState& st) {
  std::vector<float> all;
  for (const LoraWeights& g : st.grads) {
    all.insert(all.end(), g.a.begin(), g.a.end());
    all.insert(all.end(), g.b.begin(), g.b.end());
  }
  return all;
}

class CudaTrain : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTrain, LossAndLoraGradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU in this build/machine";
  std::mt19937 rng(5);
  std::vector<int32_t> a(21), b(6), la(21, -100), lb(6, -100);
  for (auto& t : a) t = int32_t(rng() % 1000);
  for (auto& t : b) t = int32_t(rng() % 1000);
  for (size_t i = 2; i + 1 < a.size(); ++i) la[i] = a[i + 1];
  for (size_t i = 0; i + 1 < b.size(); ++i) lb[i] = b[i + 1];
  const std::vector<train::TrainSequence> seqs = {{a, la}, {b, lb}};
  for (int variant = 0; variant < 3; ++variant) {  // gate_up kept, recomputed; gradient checkpointing
    train::BackwardOptions opt;
    opt.grad_scale = 0.5;
    opt.logit_chunk = 8;
    opt.keep_gate_up_bytes = variant == 1 ? 0.0 : train::kKeepGateUpBytes;
    opt.checkpoint_layers = variant == 2;
    std::vector<std::vector<float>> grads;
    std::vector<double> loss, eval;
    for (const char* device : {"cpu", "cuda"}) {
      auto backend = make_backend(device);
      auto model = GptOssModel::load(testing::tiny_dir() + "/" + GetParam(), *backend);
      train::LoraState st = testing::random_lora_state(model->config(), 2, 11);
      st.apply_to(*model);
      const train::SequenceLoss res = train::batch_loss_and_grads(*model, seqs, st, opt);
      EXPECT_EQ(res.labelled, 18 + 5);
      loss.push_back(res.loss);
      eval.push_back(train::batch_loss(*model, seqs, 8).loss);
      grads.push_back(flat_grads(st));
    }
    EXPECT_NEAR(loss[1], loss[0], 1e-5 * loss[0]) << GetParam() << " variant " << variant;
    EXPECT_NEAR(eval[1], eval[0], 1e-5 * eval[0]) << GetParam() << " variant " << variant;
    EXPECT_LT(cpu::testing::rel_error(grads[1].data(), grads[0].data(), int64_t(grads[0].size())), 1e-5) << GetParam() << " variant " << variant;
    EXPECT_GT(loss[0], 1.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaTrain, ::testing::Values("mxfp4", "bf16"));

}  // namespace
}  // namespace gptoss
