// Model resolution and download against a loopback "hub" (fake_hub.h) serving the tiny fixture under the
// hub's URL scheme, with fault modes (cut connection, wrong bytes, 401).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "hub/fake_hub.h"
#include "hub/hub.h"
#include "test_util.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace gptoss {
namespace {

std::string shared_dir() {
  const char* e = std::getenv("GPTOSS_SHARED_DIR");
  return e && *e ? e : GPTOSS_SHARED_DIR;
}

using testing::FakeHub;

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = fs::temp_directory_path() / fmt::format("gptoss_hub_test_{}_{}", ::getpid(), counter_++);
    fs::remove_all(cache_);
    std::string fx = shared_dir() + "/fixtures/gpt-oss-tiny/mxfp4/";
    hub_.files["config.json"] = read_file(fx + "config.json");
    hub_.files["model.safetensors"] = read_file(fx + "model.safetensors");
    hub_.lfs["model.safetensors"] = true;
    hub_.files["tokenizer.json"] = read_file(shared_dir() + "/data/tokenizer/tokenizer.json");
    hub_.lfs["tokenizer.json"] = true;
    hub_.files["original/model.safetensors"] = "not needed";  // must be skipped
    hub_.files["README.md"] = "# tiny";                       // must be skipped
    opt_.endpoint = hub_.endpoint();
    opt_.cache_dir = cache_.string();
    opt_.progress = false;
    opt_.token = "hf_test_token";
  }
  void TearDown() override { fs::remove_all(cache_); }
  fs::path snapshot() const {
    return cache_ / "models--openai--gpt-oss-tiny" / "snapshots" / FakeHub::kCommit;
  }
  static inline int counter_ = 0;
  FakeHub hub_;
  HubOptions opt_;
  fs::path cache_;
};

TEST_F(HubTest, DownloadsIntoTheCacheLayoutAndThenUsesTheCache) {
  std::string dir = resolve_model_dir("openai/gpt-oss-tiny", opt_);
  EXPECT_EQ(fs::path(dir), snapshot());
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    SCOPED_TRACE(f);
    EXPECT_TRUE(fs::is_symlink(snapshot() / f));  // snapshots link into blobs/, as huggingface_hub does
    EXPECT_EQ(read_file((snapshot() / f).string()), hub_.files[f]);
  }
  EXPECT_FALSE(fs::exists(snapshot() / "original"));
  EXPECT_FALSE(fs::exists(snapshot() / "README.md"));
  EXPECT_EQ(read_file((cache_ / "models--openai--gpt-oss-tiny" / "refs" / "main").string()), FakeHub::kCommit);
  EXPECT_TRUE(fs::exists(cache_ / "models--openai--gpt-oss-tiny" / "blobs" /
                         FakeHub::run_sha256(hub_.files["model.safetensors"])));
  ASSERT_EQ(hub_.requests.size(), 4u);  // listing + 3 files
  EXPECT_EQ(hub_.requests[0].path, "/api/models/openai/gpt-oss-tiny/revision/main?blobs=true");
  for (const auto& r : hub_.requests) EXPECT_EQ(r.auth, "Bearer hf_test_token");
  EXPECT_EQ(hub_.requests_for("model.safetensors").at(0).range, "");

  // Second time: straight from the cache, no network, even offline.
  HubOptions off = opt_;
  off.offline = true;
  EXPECT_EQ(resolve_model_dir("openai/gpt-oss-tiny", off), dir);
  EXPECT_EQ(hub_.requests.size(), 4u);
}

// A PEFT adapter repo (adapter_config.json + adapter_model.safetensors, no config.json) resolves through the
// same cache and download; a model repo asked for as an adapter, and an adapter repo as a model, are errors.
TEST_F(HubTest, AdapterReposResolveLikeModels) {
  FakeHub adapter_hub;
  adapter_hub.repo = "someone/gpt-oss-tiny-lora";
  adapter_hub.files["adapter_config.json"] = R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16})";
  adapter_hub.files["adapter_model.safetensors"] = hub_.files["model.safetensors"];  // any bytes will do here
  adapter_hub.lfs["adapter_model.safetensors"] = true;
  adapter_hub.files["README.md"] = "# adapter";
  HubOptions o = opt_;
  o.endpoint = adapter_hub.endpoint();
  std::string dir = resolve_adapter_dir("someone/gpt-oss-tiny-lora", o);
  EXPECT_EQ(fs::path(dir), cache_ / "models--someone--gpt-oss-tiny-lora" / "snapshots" / FakeHub::kCommit);
  EXPECT_EQ(read_file(dir + "/adapter_config.json"), adapter_hub.files["adapter_config.json"]);
  EXPECT_EQ(read_file(dir + "/adapter_model.safetensors"), adapter_hub.files["adapter_model.safetensors"]);
  EXPECT_FALSE(fs::exists(fs::path(dir) / "README.md"));
  HubOptions off = o;
  off.offline = true;
  EXPECT_EQ(resolve_adapter_dir("someone/gpt-oss-tiny-lora", off), dir);  // from the cache
  std::string e = input_error_of([&] { resolve_model_dir("someone/gpt-oss-tiny-lora", o); });
  EXPECT_NE(e.find("has no config.json; it is not a model gptoss can run"), std::string::npos) << e;
  e = input_error_of([&] { resolve_adapter_dir("openai/gpt-oss-tiny", opt_); });
  EXPECT_NE(e.find("has no adapter_config.json; it is not a PEFT adapter"), std::string::npos) << e;
  e = input_error_of([&] { resolve_adapter_dir("not-an-id", opt_); });
  EXPECT_NE(e.find("adapter not-an-id: no such directory"), std::string::npos) << e;
}

TEST_F(HubTest, ResumesAfterACutConnection) {
  const size_t cut = 100000;
  ASSERT_GT(hub_.files["model.safetensors"].size(), cut * 2);
  hub_.cut_after["model.safetensors"] = cut;
  std::string dir = resolve_model_dir("openai/gpt-oss-tiny", opt_);
  EXPECT_EQ(read_file(dir + "/model.safetensors"), hub_.files["model.safetensors"]);
  auto reqs = hub_.requests_for("model.safetensors");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].range, "");
  EXPECT_EQ(reqs[1].range, fmt::format("bytes={}-", cut));  // only the rest was fetched
}

TEST_F(HubTest, ResumesAcrossRuns) {
  const size_t cut = 123457;
  hub_.cut_after["model.safetensors"] = cut;
  opt_.max_attempts = 1;
  std::string e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", opt_); });
  EXPECT_NE(e.find("downloading model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("is kept and the next run resumes it"), std::string::npos) << e;
  fs::path part = cache_ / "models--openai--gpt-oss-tiny" / "blobs" /
                  (FakeHub::run_sha256(hub_.files["model.safetensors"]) + ".incomplete");
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), cut);
  // Offline now: the snapshot is partial, so the error lists the missing weights and where they go.
  HubOptions off = opt_;
  off.offline = true;
  e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", off); });
  EXPECT_NE(e.find("downloads are off"), std::string::npos) << e;
  EXPECT_NE(e.find("missing: *.safetensors (model weights)"), std::string::npos) << e;
  EXPECT_NE(e.find(snapshot().string()), std::string::npos) << e;
  // The next run continues from byte `cut`.
  std::string dir = resolve_model_dir("openai/gpt-oss-tiny", opt_);
  EXPECT_EQ(read_file(dir + "/model.safetensors"), hub_.files["model.safetensors"]);
  EXPECT_EQ(hub_.requests_for("model.safetensors").back().range, fmt::format("bytes={}-", cut));
  EXPECT_FALSE(fs::exists(part));
}

TEST_F(HubTest, ChecksumMismatchFailsAndRemovesTheBadFile) {
  hub_.corrupt["model.safetensors"] = true;
  std::string e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", opt_); });
  EXPECT_NE(e.find("model.safetensors failed its checksum"), std::string::npos) << e;
  EXPECT_NE(e.find(FakeHub::run_sha256(hub_.files["model.safetensors"])), std::string::npos) << e;
  for (const auto& f : fs::directory_iterator(cache_ / "models--openai--gpt-oss-tiny" / "blobs"))
    EXPECT_EQ(f.path().string().find(FakeHub::run_sha256(hub_.files["model.safetensors"])), std::string::npos)
        << "left behind: " << f.path();
  // A non-LFS file is checked against its git blob sha1.
  hub_.corrupt.clear();
  hub_.corrupt["config.json"] = true;
  fs::remove_all(cache_);
  e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", opt_); });
  EXPECT_NE(e.find("config.json failed its checksum"), std::string::npos) << e;
}

TEST_F(HubTest, ClearErrorsWhenOfflineGatedOrUnreachable) {
  HubOptions off = opt_;
  off.offline = true;
  std::string e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", off); });
  EXPECT_NE(e.find("model openai/gpt-oss-tiny is not in the cache and downloads are off"), std::string::npos) << e;
  EXPECT_NE(e.find("missing: config.json, tokenizer.json, *.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("models--openai--gpt-oss-tiny/snapshots/<commit>"), std::string::npos) << e;
  EXPECT_TRUE(hub_.requests.empty());

  hub_.status_override = 401;
  e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", opt_); });
  EXPECT_NE(e.find("gated or private"), std::string::npos) << e;
  EXPECT_NE(e.find("HF_TOKEN"), std::string::npos) << e;
  hub_.status_override = 0;

  e = input_error_of([&] { resolve_model_dir("openai/no-such-model", opt_); });
  EXPECT_NE(e.find("404"), std::string::npos) << e;

  HubOptions dead = opt_;
  dead.endpoint = "http://127.0.0.1:1";
  e = input_error_of([&] { resolve_model_dir("openai/gpt-oss-tiny", dead); });
  EXPECT_NE(e.find("cannot reach http://127.0.0.1:1"), std::string::npos) << e;

  e = input_error_of([&] { resolve_model_dir("./no/such/dir", opt_); });
  EXPECT_NE(e.find("no such directory"), std::string::npos) << e;
}

TEST_F(HubTest, LocalDirectoriesAndAPrefilledCache) {
  std::string fx = shared_dir() + "/fixtures/gpt-oss-tiny/mxfp4";
  EXPECT_EQ(resolve_model_dir(fx, opt_), fx);
  // A cache filled by huggingface_hub: refs/main -> snapshot with real files.
  fs::path repo = cache_ / "models--someone--model";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots" / "abc123");
  write_file_atomic((repo / "refs" / "main").string(), "abc123\n");
  fs::copy_file(fx + "/config.json", repo / "snapshots" / "abc123" / "config.json");
  fs::copy_file(fx + "/model.safetensors", repo / "snapshots" / "abc123" / "model.safetensors");
  HubOptions off = opt_;
  off.offline = true;
  EXPECT_EQ(resolve_model_dir("someone/model", off), (repo / "snapshots" / "abc123").string());
  EXPECT_TRUE(hub_.requests.empty());
  // Environment: HF_HOME/hub unless HF_HUB_CACHE (empty is unset).
  {
    ScopedEnv home("HF_HOME", "/x/hf");
    {
      ScopedEnv cache("HF_HUB_CACHE", "");
      EXPECT_EQ(hub_cache_dir(), "/x/hf/hub");
    }
    ScopedEnv cache("HF_HUB_CACHE", "/y/cache");
    EXPECT_EQ(hub_cache_dir(), "/y/cache");
  }
  {
    ScopedEnv endpoint("HF_ENDPOINT", "http://mirror.example/");
    EXPECT_EQ(hub_endpoint(), "http://mirror.example");
  }
  {
    ScopedEnv endpoint("HF_ENDPOINT", "");
    EXPECT_EQ(hub_endpoint(), "https://huggingface.co");
  }
  EXPECT_TRUE(looks_like_repo_id("openai/gpt-oss-20b"));
  EXPECT_FALSE(looks_like_repo_id("./openai/gpt-oss-20b"));
  EXPECT_FALSE(looks_like_repo_id("gpt-oss-20b"));
}

}  // namespace
}  // namespace gptoss
