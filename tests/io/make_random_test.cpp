// make-random writes exactly the fixture's layout (tensor names, shapes, dtypes, config.json) for
// MXFP4 and bf16 experts, deterministically, and shards when asked. Runs the gptoss binary.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "io/safetensors.h"

namespace gptoss {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string binary() {
  const char* e = std::getenv("GPTOSS_BINARY");
  return e && *e ? e : GPTOSS_BINARY;
}
std::string fixture(const std::string& v) {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return std::string(e && *e ? e : GPTOSS_SHARED_DIR) + "/fixtures/gpt-oss-tiny/" + v;
}

class MakeRandom : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(binary())) GTEST_SKIP() << "gptoss binary not built: " << binary();
    std::string t = (fs::temp_directory_path() / "gptoss-mr-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  int run(const std::string& args) {
    std::string cmd = binary() + " make-random " + args + " > /dev/null 2> " + dir_ + "/stderr.txt";
    return std::system(cmd.c_str());
  }
  std::string dir_;
};

void expect_same_layout(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const auto& n : a.names()) {
    EXPECT_EQ(a.get(n).dtype, b.get(n).dtype) << n;
    EXPECT_EQ(a.get(n).shape, b.get(n).shape) << n;
  }
}

TEST_F(MakeRandom, TinyMatchesTheFixtureLayout) {
  for (const char* variant : {"mxfp4", "bf16"}) {
    SCOPED_TRACE(variant);
    const std::string out = dir_ + "/" + variant;
    ASSERT_EQ(run(std::string("--shape tiny --seed 3 --output ") + out +
                  (std::string(variant) == "bf16" ? " --bf16-experts" : "")),
              0);
    Checkpoint fix = Checkpoint::open(fixture(variant));
    Checkpoint ours = Checkpoint::open(out);
    expect_same_layout(fix, ours);
    EXPECT_EQ(json::parse(read_file(out + "/config.json")), json::parse(read_file(fixture(variant) + "/config.json")));
    // Values are sane: bf16 weights small and finite, norms near 1, scales 121..123.
    const TensorView& q = ours.get("model.layers.0.self_attn.q_proj.weight");
    double ss = 0;
    for (int64_t i = 0; i < q.numel(); ++i) {
      float v = bf16_to_f32(q.as<uint16_t>()[i]);
      ASSERT_TRUE(std::isfinite(v));
      ss += double(v) * v;
    }
    EXPECT_NEAR(std::sqrt(ss / double(q.numel())), 0.02, 0.002);
    const TensorView& norm = ours.get("model.norm.weight");
    for (int64_t i = 0; i < norm.numel(); ++i) EXPECT_NEAR(bf16_to_f32(norm.as<uint16_t>()[i]), 1.0, 0.15);
    if (std::string(variant) == "mxfp4") {
      const TensorView& s = ours.get("model.layers.1.mlp.experts.down_proj_scales");
      int seen[3] = {};
      for (int64_t i = 0; i < s.numel(); ++i) {
        ASSERT_GE(s.data[i], 121);
        ASSERT_LE(s.data[i], 123);
        seen[s.data[i] - 121]++;
      }
      EXPECT_GT(seen[0] * seen[1] * seen[2], 0);
    }
  }
}

TEST_F(MakeRandom, DeterministicSeededVocabAndShards) {
  ASSERT_EQ(run("--shape tiny --seed 5 --output " + dir_ + "/a"), 0);
  ASSERT_EQ(run("--shape tiny --seed 5 --output " + dir_ + "/b"), 0);
  ASSERT_EQ(run("--shape tiny --seed 6 --output " + dir_ + "/c"), 0);
  EXPECT_EQ(read_file(dir_ + "/a/model.safetensors"), read_file(dir_ + "/b/model.safetensors"));
  EXPECT_NE(read_file(dir_ + "/a/model.safetensors"), read_file(dir_ + "/c/model.safetensors"));
  // An existing non-empty output is refused (exit code 2 = input error) and left alone.
  EXPECT_NE(run("--shape tiny --output " + dir_ + "/a"), 0);
  EXPECT_NE(read_file(dir_ + "/stderr.txt").find("exists"), std::string::npos);
  // --vocab with the real tokenizer size keeps the real special ids; sharding splits the file.
  ASSERT_EQ(run("--shape tiny --vocab 201088 --max-shard-gb 0.02 --output " + dir_ + "/v"), 0);
  json cfg = json::parse(read_file(dir_ + "/v/config.json"));
  EXPECT_EQ(cfg["vocab_size"], 201088);
  EXPECT_EQ(cfg["eos_token_id"], 200002);
  EXPECT_EQ(cfg["pad_token_id"], 199999);
  Checkpoint v = Checkpoint::open(dir_ + "/v");
  EXPECT_TRUE(v.sharded());
  EXPECT_GE(v.files().size(), 3u);
  EXPECT_EQ(v.get("lm_head.weight").shape, (std::vector<int64_t>{201088, 128}));
  EXPECT_EQ(v.size(), 79u);
  // Nothing temporary left next to the outputs.
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(MakeRandom, InspectPrintsCountsBytesAndDecodeReads) {
  const std::string out = dir_ + "/inspect.txt";
  ASSERT_EQ(std::system((binary() + " inspect --model " + fixture("mxfp4") + " > " + out).c_str()), 0);
  const std::string text = read_file(out);
  for (const char* want : {"4 layers: 2 sliding (window 8), 2 full", "top-2", "MXFP4", "tensors        79 in 1 file(s)",
                           "BF16       63 tensors", "U8         16 tensors", "decode reads"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  ASSERT_NE(std::system((binary() + " inspect --model " + fixture("bf16") + " > " + out).c_str()), 1);
  EXPECT_NE(read_file(out).find("expert format  bf16"), std::string::npos);
  // A directory without config.json is an input error (exit code 2).
  EXPECT_EQ(WEXITSTATUS(std::system((binary() + " inspect --model " + dir_ + " 2> /dev/null").c_str())), 2);
}

}  // namespace
}  // namespace gptoss
