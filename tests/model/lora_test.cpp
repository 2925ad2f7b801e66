// LoRA adapters (model/lora.h): the adapted forward equals the forward of the same model with the adapter
// merged into its weights (an adapter built so that the merge is exact in bf16), the limb arithmetic
// matches a double-precision reference for random adapters, and every unsupported or malformed adapter is
// a clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <unistd.h>

#include "backend/backend.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/gpt_oss.h"
#include "model/lora.h"
#include "model/lora_merge.h"
#include "model_test_util.h"
#include "random_model.h"
#include "test_util.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;
using testing::rel_err;

class Lora : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_ = GptOssConfig::preset("tiny");
    testing::write_random_model(base(), cfg_, /*mxfp4=*/true, 11);
    backend_ = make_cpu_backend();
  }

  std::string base() const { return dir_ / "base"; }
  std::string path(const std::string& name) const { return dir_ / name; }

  // Writes an adapter directory: config keys over the defaults, tensors as given.
  void write_adapter(const std::string& dir, const nlohmann::json& extra, const std::vector<TensorData>& tensors) {
    fs::create_directories(dir);
    nlohmann::json c = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 4}, {"bias", "none"},
                        {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj"}}, {"use_rslora", false},
                        {"use_dora", false}, {"fan_in_fan_out", false}, {"modules_to_save", nullptr}};
    for (auto& [k, v] : extra.items()) c[k] = v;
    write_file_atomic(dir + "/adapter_config.json", c.dump(2));
    write_safetensors(dir + "/adapter_model.safetensors", tensors);
  }

  // Logits of every position of `tokens` on the model in dir (with the adapter in adapter_dir).
  std::vector<float> logits(const std::string& dir, const std::string& adapter_dir = "") {
    auto model = GptOssModel::load(dir, *backend_, adapter_dir);
    const int64_t n = int64_t(tokens_.size());
    KvPool pool(model->config(), *backend_, SequenceKv::blocks_needed(n, 4), 4);
    LinearBlockAllocator alloc(pool.num_blocks());
    SequenceKv seq(alloc, 4);
    ForwardBatch b;
    b.seqs.push_back(seq.chunk(tokens_, 0, true));
    std::vector<float> out(size_t(n) * size_t(model->config().vocab_size));
    model->forward(b, pool, out.data());
    return out;
  }

  std::string error_of(const std::string& adapter_dir) {
    try {
      LoraAdapter::load(adapter_dir, cfg_, *backend_);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }

  // Writes path("adapter"), an adapter of rank 2 with one-hot rows of A: scale * B A adds W[:, j0] to column
  // j0 (doubling it) and -W[:, j1] / 2 to column j1 (halving it), both exact in bf16, and path("merged"), the
  // checkpoint with those columns changed: the adapter merged exactly. Modules: q_proj of layer 1, o_proj
  // of layer 0 (its tensors in BF16, the others F32), v_proj of layer 2 and the router of layer 3.
  void write_exact_adapter_and_merge() {
    Checkpoint ck = Checkpoint::open(base());
    const float scale = 2.0f;  // lora_alpha 4 / r 2
    struct Target {
      std::string weight, peft;
      int64_t j0, j1;
      bool bf16;
    };
    const std::vector<Target> targets = {
        {"model.layers.1.self_attn.q_proj.weight", "base_model.model.model.layers.1.self_attn.q_proj", 3, 100, false},
        {"model.layers.0.self_attn.o_proj.weight", "base_model.model.model.layers.0.self_attn.o_proj", 0, 255, true},
        {"model.layers.2.self_attn.v_proj.weight", "base_model.model.model.layers.2.self_attn.v_proj", 7, 8, false},
        {"model.layers.3.mlp.router.weight", "base_model.model.model.layers.3.mlp.router", 1, 127, false}};
    // The merged checkpoint: every base tensor, the targets' two columns changed.
    std::vector<std::vector<uint8_t>> merged_data;
    std::vector<TensorData> merged;
    merged_data.reserve(ck.size());
    for (const std::string& name : ck.names()) {
      const TensorView& t = ck.get(name);
      auto& buf = merged_data.emplace_back(t.data, t.data + t.nbytes);
      merged.push_back({name, t.dtype, t.shape, buf.data()});
    }
    std::vector<std::vector<float>> f32_store;
    std::vector<std::vector<uint16_t>> bf16_store;
    std::vector<TensorData> adapter;
    for (const Target& tg : targets) {
      const TensorView& w = ck.get(tg.weight);
      const int64_t out = w.shape[0], in = w.shape[1];
      const uint16_t* wv = w.as<uint16_t>();
      std::vector<float> a(size_t(2 * in), 0.f), b(size_t(out * 2));
      a[size_t(tg.j0)] = 1.f;
      a[size_t(in + tg.j1)] = 1.f;
      for (int64_t o = 0; o < out; ++o) {
        b[size_t(o * 2)] = bf16_to_f32(wv[o * in + tg.j0]) / scale;
        b[size_t(o * 2 + 1)] = -bf16_to_f32(wv[o * in + tg.j1]) / (2 * scale);
      }
      auto it = std::find_if(merged.begin(), merged.end(), [&](const TensorData& d) { return d.name == tg.weight; });
      auto* m = reinterpret_cast<uint16_t*>(const_cast<void*>(static_cast<const void*>(it->data)));
      for (int64_t o = 0; o < out; ++o) {
        m[o * in + tg.j0] = f32_to_bf16(2 * bf16_to_f32(wv[o * in + tg.j0]));
        m[o * in + tg.j1] = f32_to_bf16(bf16_to_f32(wv[o * in + tg.j1]) / 2);
        ASSERT_EQ(bf16_to_f32(m[o * in + tg.j1]) * 2, bf16_to_f32(wv[o * in + tg.j1]));  // exact
      }
      auto add = [&](const std::vector<float>& v, const char* suffix, std::vector<int64_t> shape) {
        if (tg.bf16) {
          auto& h = bf16_store.emplace_back(v.size());
          for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
          adapter.push_back({tg.peft + suffix, DType::BF16, shape, h.data()});
        } else {
          auto& h = f32_store.emplace_back(v);
          adapter.push_back({tg.peft + suffix, DType::F32, shape, h.data()});
        }
      };
      add(a, ".lora_A.weight", {2, in});
      add(b, ".lora_B.weight", {out, 2});
    }
    write_adapter(path("adapter"), {}, adapter);
    fs::create_directories(path("merged"));
    fs::copy_file(base() + "/config.json", path("merged") + "/config.json");
    write_safetensors(path("merged") + "/model.safetensors", merged);
  }

  TempDir dir_{"lora"};
  GptOssConfig cfg_;
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> tokens_ = {5, 900, 17, 3, 1000, 64, 2, 777, 31};
};

TEST_F(Lora, AdaptedForwardEqualsTheExactlyMergedCheckpoint) {
  write_exact_adapter_and_merge();
  const auto want = logits(path("merged"));
  const auto got = logits(base(), path("adapter"));
  const auto plain = logits(base());
  EXPECT_LE(rel_err(got, want), 2e-6);
  EXPECT_GT(rel_err(plain, want), 1e-3) << "the adapter must change the logits for this test to mean anything";

  auto model = GptOssModel::load(base(), *backend_, path("adapter"));
  EXPECT_EQ(model->adapter()->describe(), "LoRA r=2 alpha=4 on q_proj, v_proj, o_proj, router of 4 layers");
}

// merge-lora writes exactly the hand-merged tensors for the exact adapter (and copies everything else).
TEST_F(Lora, MergeWritesTheExactMergeAndCopiesTheRest) {
  write_exact_adapter_and_merge();
  fs::copy_file(base() + "/config.json", base() + "/generation_config.json");  // a side file to carry over
  const MergeLoraReport r = merge_lora({base(), path("adapter"), path("out")});
  EXPECT_EQ(r.merged_tensors, 4);
  Checkpoint want = Checkpoint::open(path("merged")), got = Checkpoint::open(path("out"));
  ASSERT_EQ(got.names(), want.names());
  for (const std::string& name : want.names()) {
    const TensorView &a = got.get(name), &b = want.get(name);
    ASSERT_EQ(a.dtype, b.dtype) << name;
    ASSERT_EQ(a.shape, b.shape) << name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << name;
  }
  EXPECT_TRUE(fs::exists(path("out") + "/generation_config.json"));
  EXPECT_EQ(GptOssConfig::load(path("out")).raw, GptOssConfig::load(base()).raw);
  // An existing output is refused and left as it was; nothing else appears.
  try {
    merge_lora({base(), path("adapter"), path("out")});
    ADD_FAILURE() << "an existing output directory was overwritten";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--overwrite"), std::string::npos) << e.what();
  }
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir_.str())) entries += e.path().filename().string().find("out.tmp") == 0;
  EXPECT_EQ(entries, 0u);
}

// A random adapter on every module: each merged weight is bf16(W + 2 B A) (checked against a double
// product for every element of two modules: at most the one-ulp difference a rounding tie can make), and
// the merged checkpoint's logits follow the adapted forward up to that rounding (2.4e-2 here, where the
// base model is 0.65 away: this random model amplifies weight noise).
TEST_F(Lora, MergedRandomAdapterFollowsTheAdaptedForward) {
  testing::write_random_adapter(path("random"), cfg_, 8);
  merge_lora({base(), path("random"), path("merged_random")});
  Checkpoint ad = Checkpoint::open(path("random") + "/adapter_model.safetensors");
  Checkpoint b = Checkpoint::open(base()), m = Checkpoint::open(path("merged_random"));
  for (const char* mod : {"layers.2.self_attn.o_proj", "layers.0.mlp.router"}) {
    SCOPED_TRACE(mod);
    const TensorView &A = ad.get(std::string("base_model.model.model.") + mod + ".lora_A.weight"),
                     &B = ad.get(std::string("base_model.model.model.") + mod + ".lora_B.weight");
    const TensorView& W = b.get(std::string("model.") + mod + ".weight");
    const TensorView& M = m.get(std::string("model.") + mod + ".weight");
    const int64_t out = W.shape[0], in = W.shape[1], r = A.shape[0];
    int off_by_one = 0;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double d = 0;
        for (int64_t k = 0; k < r; ++k) d += double(B.as<float>()[o * r + k]) * A.as<float>()[k * in + i];
        const uint16_t want = f32_to_bf16(float(double(bf16_to_f32(W.as<uint16_t>()[o * in + i])) + 2 * d));
        const uint16_t got = M.as<uint16_t>()[o * in + i];
        ASSERT_LE(std::abs(int(got) - int(want)), 1) << o << "," << i;
        off_by_one += got != want;
      }
    EXPECT_LE(off_by_one, out * in / 100);
  }
  const auto adapted = logits(base(), path("random")), merged = logits(path("merged_random"));
  const auto plain = logits(base());
  EXPECT_LT(rel_err(merged, adapted), 0.05);
  EXPECT_GT(rel_err(plain, adapted), 0.3);
}

// A batch whose sequences use different adapters (none, two named ones, one of them twice and not
// adjacent) gives each sequence the logits it has alone with its adapter; a bad index is an error.
TEST_F(Lora, EachSequenceOfABatchUsesItsOwnAdapter) {
  testing::write_random_adapter(path("a1"), cfg_, 4, 1);
  testing::write_random_adapter(path("a2"), cfg_, 8, 2);
  auto model = GptOssModel::load(base(), *backend_);
  const int i1 = model->add_adapter(LoraAdapter::load(path("a1"), cfg_, *backend_));
  const int i2 = model->add_adapter(LoraAdapter::load(path("a2"), cfg_, *backend_));
  ASSERT_EQ(model->num_adapters(), 3);
  const int vocab = cfg_.vocab_size, bs = 4;
  const std::vector<int> adapters = {0, i1, i2, i1};
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < adapters.size(); ++i)
    prompts.emplace_back(tokens_.begin(), tokens_.begin() + long(3 + 2 * i));
  auto run = [&](const std::vector<size_t>& which) {
    KvPool pool(model->config(), *backend_, 64, bs);
    LinearBlockAllocator alloc(64);
    std::vector<SequenceKv> seqs;
    for (size_t k = 0; k < which.size(); ++k) seqs.emplace_back(alloc, bs);
    ForwardBatch b;
    int64_t rows = 0;
    for (size_t k = 0; k < which.size(); ++k) {
      b.seqs.push_back(seqs[k].chunk(prompts[which[k]], 0, true));
      b.seqs.back().adapter = adapters[which[k]];
      rows += int64_t(prompts[which[k]].size());
    }
    std::vector<float> out(size_t(rows) * size_t(vocab));
    model->forward(b, pool, out.data());
    return out;
  };
  const auto batch = run({0, 1, 2, 3});
  size_t row = 0;
  for (size_t i = 0; i < adapters.size(); ++i) {
    const auto alone = run({i});
    EXPECT_LE(rel_err(batch.data() + row * size_t(vocab), alone), 1e-5) << "sequence " << i;
    row += prompts[i].size();
  }
  // The adapter matters: sequence 0's prompt (adapter 0) is the head of sequence 3's (adapter i1).
  const std::vector<float> seq0(batch.begin(), batch.begin() + long(prompts[0].size()) * vocab);
  const size_t row3 = prompts[0].size() + prompts[1].size() + prompts[2].size();
  EXPECT_GT(rel_err(batch.data() + row3 * size_t(vocab), seq0), 1e-3);
  ForwardBatch bad;
  KvPool pool(model->config(), *backend_, 8, bs);
  LinearBlockAllocator alloc(8);
  SequenceKv seq(alloc, bs);
  bad.seqs.push_back(seq.chunk(prompts[0], 0, false));
  bad.seqs.back().adapter = 3;
  std::vector<float> out(static_cast<size_t>(vocab));
  try {
    model->forward(bad, pool, out.data());
    ADD_FAILURE() << "adapter 3 of 3 was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("asks for LoRA adapter 3; the model has 3"), std::string::npos) << e.what();
  }
}

// The three bf16 limbs carry f32 precision: random f32 A and B (with rsLoRA's scale) against a double
// reference of scale * B (A x); one limb alone would be off by ~1e-3.
TEST_F(Lora, LimbsKeepF32PrecisionForRandomAdapters) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.f, 1.f);
  const int64_t n = 5, in = 96, out = 37, r = 6;
  const double scale = 16.0 / std::sqrt(double(r));
  std::vector<float> a(size_t(r * in)), b(size_t(out * r)), x(size_t(n * in)), y0(size_t(n * out));
  for (auto* v : {&a, &b, &x, &y0})
    for (float& e : *v) e = d(rng);
  std::vector<float> bs(b);
  for (float& e : bs) e = float(double(e) * scale);
  auto la = split_bf16_limbs(a), lb = split_bf16_limbs(bs);
  LoraLinear L;
  L.rank = int(r);
  L.in = in;
  L.out = out;
  for (int l = 0; l < 3; ++l) {
    L.a[size_t(l)] = la[size_t(l)].data();
    L.b[size_t(l)] = lb[size_t(l)].data();
  }
  std::vector<float> t0(size_t(n * r)), t1(t0), t2(t0), u(size_t(n * out)), y(y0);
  float* const t[3] = {t0.data(), t1.data(), t2.data()};
  apply_lora(*backend_, L, x.data(), n, y.data(), t, u.data());
  std::vector<float> ref(y0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t k = 0; k < r; ++k) {
        double ax = 0;
        for (int64_t j = 0; j < in; ++j) ax += double(a[size_t(k * in + j)]) * x[size_t(i * in + j)];
        acc += double(b[size_t(o * r + k)]) * scale * ax;
      }
      ref[size_t(i * out + o)] = float(double(y0[size_t(i * out + o)]) + acc);
    }
  EXPECT_LE(rel_err(y, ref), 1e-6);
}

TEST_F(Lora, BadAdaptersAreClearErrors) {
  const int64_t H = cfg_.hidden_size, Q = cfg_.q_dim();
  std::vector<float> a(size_t(2 * H), 0.5f), b(size_t(Q * 2), 0.25f);
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj";
  const std::vector<TensorData> good = {{q + ".lora_A.weight", DType::F32, {2, H}, a.data()},
                                        {q + ".lora_B.weight", DType::F32, {Q, 2}, b.data()}};
  write_adapter(path("ok"), {}, good);
  EXPECT_EQ(error_of(path("ok")), "");

  EXPECT_NE(error_of(path("missing")).find("is not a directory"), std::string::npos);
  fs::create_directories(path("empty"));
  EXPECT_NE(error_of(path("empty")).find("adapter_config.json: no such file"), std::string::npos);

  auto with = [&](const char* name, const nlohmann::json& extra, const std::vector<TensorData>& t) {
    write_adapter(path(name), extra, t);
    return error_of(path(name));
  };
  EXPECT_NE(with("dora", {{"use_dora", true}}, good).find("'use_dora' is true"), std::string::npos);
  EXPECT_NE(with("bias", {{"bias", "all"}}, good).find("'bias' is 'all'"), std::string::npos);
  EXPECT_NE(with("lbias", {{"lora_bias", true}}, good).find("'lora_bias' is true"), std::string::npos);
  EXPECT_EQ(with("neutral", {{"rank_pattern", nlohmann::json::object()}, {"layer_replication", nullptr}}, good), "");
  EXPECT_NE(with("save", {{"modules_to_save", {"lm_head"}}}, good).find("'modules_to_save'"), std::string::npos);
  EXPECT_NE(with("pattern", {{"rank_pattern", {{"q_proj", 4}}}}, good).find("'rank_pattern'"), std::string::npos);
  EXPECT_NE(with("rank", {{"r", 4}}, good).find("expected [4, 128] (r, in)"), std::string::npos);
  EXPECT_NE(with("r0", {{"r", 0}}, good).find("'r' is 0"), std::string::npos);
  EXPECT_NE(with("type", {{"peft_type", "IA3"}}, good).find("LORA adapters only"), std::string::npos);
  EXPECT_NE(with("alpha", {{"lora_alpha", "big"}}, good).find("'lora_alpha' is \"big\"; expected a number"),
            std::string::npos);
  EXPECT_NE(with("onlyA", {}, {good[0]}).find("layer 0 q_proj has lora_A but no lora_B"), std::string::npos);
  std::vector<float> e(size_t(2 * H));
  EXPECT_NE(with("experts", {}, {{"base_model.model.model.layers.0.mlp.experts.gate_up_proj.lora_A.weight",
                                  DType::F32, {2, H}, e.data()}})
                .find("is not a LoRA weight gptoss applies"),
            std::string::npos);
  EXPECT_NE(with("layer", {}, {{"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", DType::F32,
                                {2, H}, a.data()}})
                .find("is for layer 9, but the model has 4 layers"),
            std::string::npos);
  fs::create_directories(path("bin"));
  write_file_atomic(path("bin") + "/adapter_config.json", "{\"r\": 2}");
  write_file_atomic(path("bin") + "/adapter_model.bin", "x");
  EXPECT_NE(error_of(path("bin")).find("adapter_model.bin (pickle)"), std::string::npos);
  write_adapter(path("badjson"), {}, good);
  write_file_atomic(path("badjson") + "/adapter_config.json", "{\"r\": 2");
  EXPECT_NE(error_of(path("badjson")).find("not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace gptoss
