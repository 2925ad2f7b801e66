// gptoss quantize on the tiny fixture: exact layout, bit-exact OCP, lower error with the default
// rule, logits through our engine, refusals, cancellation, sharding, extra files, the -c config.
#include "quantize/quantize.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/gpt_oss.h"
#include "model/kv_pool.h"
#include "test_util.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string tiny(const std::string& variant) {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return std::string(e && *e ? e : GPTOSS_SHARED_DIR) + "/fixtures/gpt-oss-tiny/" + variant;
}

QuantizeOptions opts(const std::string& out, Mxfp4Rounding r = Mxfp4Rounding::Best) {
  QuantizeOptions o;
  o.model = tiny("bf16");
  o.output = out;
  o.rounding = r;
  o.verbose = false;
  return o;
}


// Relative RMS error of the dequantized MXFP4 experts of `q` against the bf16 experts of `ref`.
double expert_rel_rms(const Checkpoint& q, const Checkpoint& ref) {
  double err = 0, den = 0;
  int tensors = 0;
  for (const auto& name : ref.names()) {
    const bool gu = name.ends_with(".mlp.experts.gate_up_proj"), dn = name.ends_with(".mlp.experts.down_proj");
    if (!gu && !dn) continue;
    ++tensors;
    const TensorView& w = ref.get(name);  // [E, K, R]
    const TensorView& b = q.get(name + "_blocks");
    const TensorView& s = q.get(name + "_scales");
    const int64_t E = w.shape[0], K = w.shape[1], R = w.shape[2], KB = K / 32;
    const uint16_t* wv = w.as<uint16_t>();
    for (int64_t e = 0; e < E; ++e)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t kb = 0; kb < KB; ++kb) {
          float deq[32];
          const size_t blk = size_t((e * R + r) * KB + kb);
          mxfp4_dequantize_block(b.data + blk * 16, s.data[blk], deq);
          for (int k = 0; k < 32; ++k) {
            double x = bf16_to_f32(wv[(e * K + kb * 32 + k) * R + r]);
            err += (x - deq[k]) * (x - deq[k]);
            den += x * x;
          }
        }
  }
  EXPECT_GT(tensors, 0);
  return std::sqrt(err / den);
}

void expect_same_layout(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const auto& n : a.names()) {
    EXPECT_EQ(a.get(n).dtype, b.get(n).dtype) << n;
    EXPECT_EQ(a.get(n).shape, b.get(n).shape) << n;
  }
}

TEST(Quantize, OcpRuleReproducesTheFixtureBitForBit) {
  TempDir d;
  QuantizeReport r = quantize_checkpoint(opts(d / "out", Mxfp4Rounding::Ocp));
  EXPECT_EQ(r.shards, 1);
  Checkpoint fix = Checkpoint::open(tiny("mxfp4"));
  Checkpoint out = Checkpoint::open(d / "out");
  EXPECT_TRUE(out.sharded());  // model-00001-of-00001.safetensors + index, as save_pretrained writes
  expect_same_layout(fix, out);
  for (const auto& n : fix.names()) {
    const TensorView &a = fix.get(n), &b = out.get(n);
    ASSERT_EQ(a.nbytes, b.nbytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << n;
  }
  // config.json: the bf16 config plus the hub's quantization_config = the fixture's mxfp4 config.
  EXPECT_EQ(json::parse(read_file(d / "out/config.json")), json::parse(read_file(tiny("mxfp4") + "/config.json")));
  EXPECT_EQ(r.tensors.size(), 8u);
}

TEST(Quantize, DefaultRuleHasLowerWeightErrorThanTheFixture) {
  TempDir d;
  QuantizeReport r = quantize_checkpoint(opts(d / "out"));
  Checkpoint bf = Checkpoint::open(tiny("bf16"));
  Checkpoint ours = Checkpoint::open(d / "out");
  Checkpoint fix = Checkpoint::open(tiny("mxfp4"));
  expect_same_layout(fix, ours);
  const double e_ours = expert_rel_rms(ours, bf), e_fix = expert_rel_rms(fix, bf);
  EXPECT_LE(e_ours, e_fix);
  EXPECT_LT(e_ours, 0.99 * e_fix) << "the per-block best scale should gain something on random weights";
  EXPECT_NEAR(r.total.rel_rms(), e_ours, 1e-6 * e_ours);  // the printed number is the real error
  EXPECT_GT(r.triton_blocks, 0u);
  EXPECT_LT(r.triton_blocks, r.blocks);
  // Everything that is not an expert weight is copied byte for byte.
  for (const auto& n : bf.names()) {
    if (n.ends_with("gate_up_proj") || n.ends_with("down_proj")) continue;
    EXPECT_EQ(std::memcmp(bf.get(n).data, ours.get(n).data, bf.get(n).nbytes), 0) << n;
  }
}

TEST(Quantize, OutputLoadsInOurEngineWithLogitsNearTheBf16Reference) {
  TempDir d;
  quantize_checkpoint(opts(d / "out"));
  auto backend = make_cpu_backend();
  auto model = GptOssModel::load(d / "out", *backend);
  Checkpoint ref = Checkpoint::open(tiny("") + "reference.safetensors");
  const int64_t V = model->config().vocab_size;
  double num_ours = 0, num_fix = 0, den = 0;
  for (int j = 0; ref.find("bf16.seq" + std::to_string(j) + ".input_ids"); ++j) {
    const std::string p = "bf16.seq" + std::to_string(j);
    const TensorView& ids = ref.get(p + ".input_ids");
    std::vector<int32_t> tokens(ids.as<int32_t>(), ids.as<int32_t>() + ids.numel());
    const int block = 16;
    KvPool pool(model->config(), *backend, SequenceKv::blocks_needed(int64_t(tokens.size()), block), block);
    LinearBlockAllocator alloc(pool.num_blocks());
    SequenceKv seq(alloc, block);
    ForwardBatch b;
    b.seqs.push_back(seq.chunk(tokens, 0, /*all_logits=*/true));
    std::vector<float> logits(tokens.size() * size_t(V));
    model->forward(b, pool, logits.data());
    const float* want = ref.get(p + ".logits").as<float>();
    const float* fix = ref.get("mxfp4.seq" + std::to_string(j) + ".logits").as<float>();
    for (size_t i = 0; i < logits.size(); ++i) {
      ASSERT_TRUE(std::isfinite(logits[i]));
      num_ours += (double(logits[i]) - want[i]) * (double(logits[i]) - want[i]);
      num_fix += (double(fix[i]) - want[i]) * (double(fix[i]) - want[i]);
      den += double(want[i]) * want[i];
    }
  }
  ASSERT_GT(den, 0);
  const double e_ours = std::sqrt(num_ours / den), e_fix = std::sqrt(num_fix / den);
  std::printf("logits rel err vs bf16 reference: ours %.4f, fixture mxfp4 %.4f\n", e_ours, e_fix);
  EXPECT_LE(e_ours, 2.0 * e_fix);
}

TEST(Quantize, Refusals) {
  TempDir d;
  // Existing output without --overwrite: refused, left untouched.
  fs::create_directory(d / "out");
  write_file_atomic(d / "out/keep.txt", "x");
  std::string m = input_error_of([&] { quantize_checkpoint(opts(d / "out")); });
  EXPECT_NE(m.find("--overwrite"), std::string::npos) << m;
  EXPECT_TRUE(fs::exists(d / "out/keep.txt"));
  // With overwrite: replaced.
  QuantizeOptions o = opts(d / "out");
  o.overwrite = true;
  quantize_checkpoint(o);
  EXPECT_FALSE(fs::exists(d / "out/keep.txt"));
  EXPECT_TRUE(fs::exists(d / "out/model.safetensors.index.json"));
  // Already MXFP4.
  o = opts(d / "again");
  o.model = tiny("mxfp4");
  m = input_error_of([&] { quantize_checkpoint(o); });
  EXPECT_NE(m.find("already quantized"), std::string::npos) << m;
  // Unsupported method: the message lists the supported ones.
  o = opts(d / "again");
  o.method = "awq_q4_0";
  m = input_error_of([&] { quantize_checkpoint(o); });
  EXPECT_NE(m.find("'awq_q4_0'"), std::string::npos) << m;
  EXPECT_NE(m.find("supported: mxfp4"), std::string::npos) << m;
  // Missing input.
  o = opts(d / "again");
  o.model = d / "nope";
  m = input_error_of([&] { quantize_checkpoint(o); });
  EXPECT_NE(m.find("nope"), std::string::npos) << m;
  // No expert tensors.
  fs::create_directory(d / "noexp");
  fs::copy_file(tiny("bf16") + "/config.json", d / "noexp/config.json");
  std::vector<uint16_t> emb(1024 * 128);
  write_safetensors(d / "noexp/model.safetensors", {{"model.embed_tokens.weight", DType::BF16, {1024, 128}, emb.data()}});
  o = opts(d / "again");
  o.model = d / "noexp";
  m = input_error_of([&] { quantize_checkpoint(o); });
  EXPECT_NE(m.find("no expert weights"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(d / "again"));
  // Nothing left behind by the refused runs.
  for (const auto& e : fs::directory_iterator(d.str()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(Quantize, CancelledRunLeavesNothing) {
  TempDir d;
  std::atomic<bool> cancel{true};
  QuantizeOptions o = opts(d / "out");
  o.cancel = &cancel;
  std::string m = input_error_of([&] { quantize_checkpoint(o); });
  EXPECT_NE(m.find("interrupted"), std::string::npos) << m;
  EXPECT_TRUE(fs::is_empty(d.str()));
}

TEST(Quantize, ShardsCopiesFilesAndStaysLoadable) {
  TempDir d;
  // An input directory with the extra files a hub snapshot has.
  fs::create_directory(d / "in");
  fs::copy_file(tiny("bf16") + "/config.json", d / "in/config.json");
  fs::copy_file(tiny("bf16") + "/model.safetensors", d / "in/model.safetensors");
  write_file_atomic(d / "in/tokenizer.json", "{\"tok\": 1}");
  write_file_atomic(d / "in/generation_config.json", "{\"eos_token_id\": 1022}");
  write_file_atomic(d / "in/chat_template.jinja", "{{ messages }}");
  QuantizeOptions o = opts(d / "out");
  o.model = d / "in";
  o.max_shard_gb = 0.0005;  // 500 kB shards
  QuantizeReport r = quantize_checkpoint(o);
  EXPECT_GE(r.shards, 3);
  EXPECT_EQ(read_file(d / "out/tokenizer.json"), "{\"tok\": 1}");
  EXPECT_TRUE(fs::exists(d / "out/generation_config.json"));
  EXPECT_TRUE(fs::exists(d / "out/chat_template.jinja"));
  EXPECT_FALSE(fs::exists(d / "out/model.safetensors"));
  json index = json::parse(read_file(d / "out/model.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"].size(), 79u);
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), r.bytes_out);
  Checkpoint out = Checkpoint::open(d / "out");
  EXPECT_EQ(out.files().size(), size_t(r.shards));
  expect_same_layout(Checkpoint::open(tiny("mxfp4")), out);
}

TEST(Quantize, OumiConfig) {
  TempDir d;
  write_file_atomic(d / "q.yaml",
                    "model:\n  model_name: " + tiny("bf16") +
                        "\n  trust_remote_code: true\nmethod: mxfp4\noutput_path: " + (d / "out") +
                        "\noutput_format: safetensors\ncalibration_samples: 512\n");
  QuantizeOptions o = load_quantize_config(d / "q.yaml");
  EXPECT_EQ(o.model, tiny("bf16"));
  EXPECT_EQ(o.output, d / "out");
  EXPECT_EQ(o.method, "mxfp4");
  write_file_atomic(d / "bad.yaml", "model:\n  model_name: x\nmethod: mxfp4\noutput_pth: y\n");
  std::string m = input_error_of([&] { load_quantize_config(d / "bad.yaml"); });
  EXPECT_NE(m.find("'output_pth'"), std::string::npos) << m;
  EXPECT_NE(m.find("output_path"), std::string::npos) << m;
  write_file_atomic(d / "gguf.yaml", "model:\n  model_name: x\nmethod: mxfp4\noutput_format: gguf\n");
  m = input_error_of([&] { load_quantize_config(d / "gguf.yaml"); });
  EXPECT_NE(m.find("output_format is 'gguf'"), std::string::npos) << m;
  write_file_atomic(d / "nomodel.yaml", "method: mxfp4\n");
  m = input_error_of([&] { load_quantize_config(d / "nomodel.yaml"); });
  EXPECT_NE(m.find("model.model_name"), std::string::npos) << m;
}

}  // namespace
}  // namespace gptoss
