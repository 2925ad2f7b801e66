// Weights loading: zero-copy views, and clear errors for missing tensors, wrong shapes and dtypes.
// The broken checkpoints are written to a temporary directory from the fixture's tensors.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/gpt_oss.h"
#include "model/kv_pool.h"
#include "model_test_util.h"
#include "test_util.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;

// Copies the fixture checkpoint `variant` into a temp dir, letting `edit` change the tensor list.
void write_variant(const std::string& variant, const std::string& out_dir,
                   const std::function<void(std::vector<TensorData>&, std::vector<std::vector<uint8_t>>&)>& edit) {
  const std::string src = testing::tiny_dir() + "/" + variant;
  write_file_atomic(out_dir + "/config.json", read_file(src + "/config.json"));
  Checkpoint c = Checkpoint::open(src);
  std::vector<TensorData> tensors;
  std::vector<std::vector<uint8_t>> storage;  // replacement bytes, kept alive here
  storage.reserve(16);
  for (const auto& name : c.names()) {
    const TensorView& t = c.get(name);
    tensors.push_back({t.name, t.dtype, t.shape, t.data});
  }
  edit(tensors, storage);
  write_safetensors(out_dir + "/model.safetensors", tensors);
}

std::string load_error(const std::string& dir) {
  auto be = make_cpu_backend();
  return input_error_of([&] { GptOssModel::load(dir, *be); });
}

TEST(Weights, ViewsPointIntoTheMappedFileWithoutCopies) {
  auto be = make_cpu_backend();
  for (const char* variant : {"mxfp4", "bf16"}) {
    auto model = GptOssModel::load(testing::tiny_dir() + "/" + variant, *be);
    const Weights& w = model->weights();
    const Checkpoint& c = w.checkpoint();
    EXPECT_EQ(static_cast<const void*>(w.embed), c.get("model.embed_tokens.weight").data);
    EXPECT_EQ(static_cast<const void*>(w.layers.back().q_w),
              c.get("model.layers." + std::to_string(w.layers.size() - 1) + ".self_attn.q_proj.weight").data);
    if (w.mxfp4_experts) {
      EXPECT_EQ(static_cast<const void*>(w.layers[0].gate_up.blocks),
                c.get("model.layers.0.mlp.experts.gate_up_proj_blocks").data);
    } else {
      EXPECT_EQ(static_cast<const void*>(w.layers[0].down.w), c.get("model.layers.0.mlp.experts.down_proj").data);
    }
    EXPECT_EQ(w.mxfp4_experts, std::string(variant) == "mxfp4");
    // Only the sinks are converted: a few floats per layer.
    EXPECT_LT(be->allocated_bytes(), size_t(64 * 1024));
  }
}

TEST(Weights, MissingTensorIsNamed) {
  TempDir dir;
  write_variant("mxfp4", dir.str(), [](auto& tensors, auto&) {
    std::erase_if(tensors, [](const TensorData& t) { return t.name == "model.layers.1.self_attn.k_proj.bias"; });
  });
  const std::string msg = load_error(dir.str());
  EXPECT_NE(msg.find("model.layers.1.self_attn.k_proj.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(Weights, MissingExpertScalesAreNamed) {
  TempDir dir;
  write_variant("mxfp4", dir.str(), [](auto& tensors, auto&) {
    std::erase_if(tensors, [](const TensorData& t) { return t.name == "model.layers.0.mlp.experts.down_proj_scales"; });
  });
  const std::string msg = load_error(dir.str());
  EXPECT_NE(msg.find("model.layers.0.mlp.experts.down_proj_scales"), std::string::npos) << msg;
}

TEST(Weights, WrongShapeNamesFoundAndExpected) {
  TempDir dir;
  std::vector<int64_t> expected;
  write_variant("bf16", dir.str(), [&](auto& tensors, auto&) {
    for (auto& t : tensors)
      if (t.name == "model.layers.0.self_attn.o_proj.weight") {
        expected = t.shape;
        std::swap(t.shape[0], t.shape[1]);  // same byte count, transposed shape
      }
  });
  ASSERT_EQ(expected.size(), 2u);
  const std::string msg = load_error(dir.str());
  const std::string found = "[" + std::to_string(expected[1]) + ", " + std::to_string(expected[0]) + "]";
  const std::string want = "[" + std::to_string(expected[0]) + ", " + std::to_string(expected[1]) + "]";
  EXPECT_NE(msg.find("model.layers.0.self_attn.o_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find(found), std::string::npos) << msg;
  EXPECT_NE(msg.find(want), std::string::npos) << msg;
}

TEST(Weights, WrongDtypeIsNamed) {
  TempDir dir;
  write_variant("mxfp4", dir.str(), [](auto& tensors, auto& storage) {
    for (auto& t : tensors)
      if (t.name == "model.norm.weight") {
        // Same shape, stored as f32 (twice the bytes).
        int64_t n = t.shape[0];
        auto& buf = storage.emplace_back(size_t(n) * 4, uint8_t(0));
        t.dtype = DType::F32;
        t.data = buf.data();
      }
  });
  const std::string msg = load_error(dir.str());
  EXPECT_NE(msg.find("model.norm.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("F32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("BF16"), std::string::npos) << msg;
}

// use_mmap off (--no-mmap, engine_params.use_mmap: false): the CPU backend copies every weight into huge
// pages (llama.cpp's --no-mmap); the forward reads the copies and gives the same logits, bit for bit, as
// over the mapped checkpoint. GPTOSS_NO_MMAP=1 does the same.
TEST(CpuBackend, NoMmapCopiesWeightsAndGivesTheSameLogits) {
  const std::string dir = testing::tiny_dir() + "/mxfp4";
  auto logits_of = [&](Backend& be) {
    auto model = GptOssModel::load(dir, be);
    const std::vector<int32_t> ids = {1, 5, 9, 200, 7};
    KvPool pool(model->config(), be, SequenceKv::blocks_needed(int64_t(ids.size()), 16), 16);
    LinearBlockAllocator alloc(pool.num_blocks());
    SequenceKv seq(alloc, 16);
    ForwardBatch b;
    b.seqs.push_back(seq.chunk(ids, 0, /*all_logits=*/true));
    std::vector<float> logits(ids.size() * size_t(model->config().vocab_size));
    model->forward(b, pool, logits.data());
    return logits;
  };
  auto mapped = make_cpu_backend();
  auto copied = make_backend("cpu", BackendOptions{.use_mmap = false});
  std::unique_ptr<Backend> copied_by_env;
  {
    ScopedEnv env("GPTOSS_NO_MMAP", "1");
    copied_by_env = make_cpu_backend();
  }
  EXPECT_EQ(mapped->device_name().find("huge pages"), std::string::npos);
  EXPECT_NE(copied->device_name().find("weights copied to huge pages"), std::string::npos) << copied->device_name();
  EXPECT_NE(copied_by_env->device_name().find("weights copied to huge pages"), std::string::npos);
  // A caller's anonymous buffer over several pages keeps its contents (only mapped file pages are dropped).
  std::vector<uint8_t> bytes(5 * 4096 + 100);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 7 + 1);
  const std::vector<uint8_t> want = bytes;
  EXPECT_EQ(mapped->prepare_weight(bytes.data(), bytes.size()), bytes.data());
  const void* c = copied->prepare_weight(bytes.data(), bytes.size());
  ASSERT_NE(c, bytes.data());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c) % 64, 0u);
  EXPECT_EQ(std::memcmp(c, want.data(), want.size()), 0);
  EXPECT_EQ(bytes, want);
  EXPECT_EQ(logits_of(*copied), logits_of(*mapped));
}

TEST(KvPool, SizesAndGroupIndices) {
  GptOssConfig cfg = GptOssConfig::load(testing::tiny_dir() + "/mxfp4");
  const int lg = std::max(cfg.num_full_layers(), cfg.num_sliding_layers());
  EXPECT_EQ(KvPool::layers_per_group(cfg), lg);
  EXPECT_EQ(KvPool::bytes_per_block(cfg, 16),
            size_t(16) * size_t(lg) * 2 * size_t(cfg.num_key_value_heads) * size_t(cfg.head_dim) * 4);
  auto be = make_cpu_backend();
  KvPool pool(cfg, *be, 5, 16);
  EXPECT_EQ(pool.num_blocks(), 5);
  EXPECT_EQ(pool.bytes(), 5 * KvPool::bytes_per_block(cfg, 16));
  EXPECT_EQ(pool.dtype(), KvDtype::f32);
  // A bf16 pool: half the bytes a block, twice the blocks in the same budget.
  EXPECT_EQ(2 * KvPool::bytes_per_block(cfg, 16, KvDtype::bf16), KvPool::bytes_per_block(cfg, 16));
  KvPool half(cfg, *be, 5, 16, KvDtype::bf16);
  EXPECT_EQ(half.dtype(), KvDtype::bf16);
  EXPECT_EQ(half.view().dtype, KvDtype::bf16);
  EXPECT_EQ(2 * half.bytes(), pool.bytes());
  int full = 0, swa = 0;
  for (int l = 0; l < cfg.num_hidden_layers; ++l) EXPECT_EQ(pool.group_layer(l), cfg.is_sliding(l) ? swa++ : full++);

  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, 16);
  seq.ensure(17);  // two logical blocks in each group
  EXPECT_EQ(seq.blocks_full().size(), 2u);
  EXPECT_EQ(seq.blocks_swa().size(), 2u);
  EXPECT_EQ(alloc.used(), 4);
  EXPECT_THROW(seq.ensure(33), InputError);  // needs 6 blocks, the pool has 5
}

TEST(Forward, RejectsBadBatches) {
  auto be = make_cpu_backend();
  auto model = GptOssModel::load(testing::tiny_dir() + "/mxfp4", *be);
  KvPool pool(model->config(), *be, 8, 4);
  LinearBlockAllocator alloc(pool.num_blocks());
  SequenceKv seq(alloc, 4);
  std::vector<float> logits(size_t(model->config().vocab_size) * 8);

  std::vector<int32_t> bad_token = {1, int32_t(model->config().vocab_size)};
  ForwardBatch b;
  b.seqs.push_back(seq.chunk(bad_token, 0, false));
  EXPECT_THROW(model->forward(b, pool, logits.data()), InputError);

  // A block table that does not cover the chunk.
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  std::vector<int32_t> short_table = {0};
  ForwardBatch c;
  c.seqs.push_back(SeqChunk{tokens, 0, short_table, short_table, false});
  try {
    model->forward(c, pool, logits.data());
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("logical block 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gptoss
