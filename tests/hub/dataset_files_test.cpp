// Which files hold a dataset's split (the datasets library's rules: README configs, else its default
// patterns), and hub datasets resolved from the cache or downloaded through the loopback hub.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "hub/dataset_files.h"
#include "hub/fake_hub.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace gptoss {
namespace {

using testing::FakeHub;
using Files = std::vector<std::string>;

// The header of HuggingFaceH4/Multilingual-Thinking's README.md (the recipe's dataset), shortened.
constexpr const char* kThinkingReadme = R"(---
viewer: true
dataset_info:
  features:
  - name: messages
    list:
    - name: content
      dtype: string
  splits:
  - name: train
    num_examples: 1000
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
license: apache-2.0
---

# Dataset summary
)";

TEST(GlobMatch, FsspecRules) {
  EXPECT_TRUE(glob_match("data/train-*", "data/train-00000-of-00001.parquet"));
  EXPECT_FALSE(glob_match("data/train-*", "data/sub/train-0.parquet"));
  EXPECT_FALSE(glob_match("data/train-*", "data/test-0.parquet"));
  EXPECT_TRUE(glob_match("**/train[-._ 0-9]*", "train.jsonl"));          // "**/" as no folder
  EXPECT_TRUE(glob_match("**/train[-._ 0-9]*", "a/b/train_2.parquet"));
  EXPECT_FALSE(glob_match("**/train[-._ 0-9]*", "trainer.jsonl"));       // not the word
  EXPECT_FALSE(glob_match("**/train[-._ 0-9]*", "train/part.parquet"));  // '/' is in no class
  EXPECT_TRUE(glob_match("train/**", "train/x/y.parquet"));
  EXPECT_TRUE(glob_match("**", "a/b.json"));
  EXPECT_TRUE(glob_match("a?c", "abc"));
  EXPECT_FALSE(glob_match("a?c", "a/c"));
  EXPECT_TRUE(glob_match("[!x]*.json", "a.json"));
  EXPECT_FALSE(glob_match("[!x]*.json", "x.json"));
  EXPECT_TRUE(glob_match("data/[0-9][0-9].json", "data/42.json"));
  EXPECT_TRUE(glob_match("a[b", "a[b"));  // an unclosed class is a literal '['
}

TEST(SplitDataFiles, ReadmeConfigsDecide) {
  const Files files = {"README.md", ".gitattributes", "data/train-00000-of-00002.parquet",
                       "data/train-00001-of-00002.parquet", "extra/test.parquet"};
  EXPECT_EQ(split_data_files(files, kThinkingReadme, "", "train", "d"),
            (Files{"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}));
  // The README names no test split, so the test file the default patterns would find is not one.
  std::string e = input_error_of([&] { split_data_files(files, kThinkingReadme, "", "test", "dataset x/y"); });
  EXPECT_NE(e.find("dataset x/y has no split 'test'; its splits: train"), std::string::npos) << e;
  e = input_error_of([&] { split_data_files(files, kThinkingReadme, "fr", "train", "dataset x/y"); });
  EXPECT_NE(e.find("no config 'fr' (subset); it has: default"), std::string::npos) << e;

  const std::string several = R"(---
configs:
- config_name: en
  data_files: en/*.jsonl
- config_name: fr
  default: true
  data_files:
    train: [fr/train.jsonl]
    test: fr/test.jsonl
- config_name: de
  data_files:
  - split: train
    path:
    - de/a.parquet
    - de/b.parquet
---
)";
  const Files many = {"en/1.jsonl", "en/2.jsonl", "fr/train.jsonl", "fr/test.jsonl", "de/a.parquet", "de/b.parquet"};
  EXPECT_EQ(split_data_files(many, several, "", "test", "d"), Files{"fr/test.jsonl"});  // default: true
  EXPECT_EQ(split_data_files(many, several, "en", "train", "d"), (Files{"en/1.jsonl", "en/2.jsonl"}));
  EXPECT_EQ(split_data_files(many, several, "de", "train", "d"), (Files{"de/a.parquet", "de/b.parquet"}));
  const std::string no_default = R"(---
configs:
- config_name: a
  data_files: a.jsonl
- config_name: b
  data_files: b.jsonl
---
)";
  e = input_error_of([&] { split_data_files({"a.jsonl", "b.jsonl"}, no_default, "", "train", "dataset x/y"); });
  EXPECT_NE(e.find("several configs (a, b); choose one with the dataset's subset"), std::string::npos) << e;
}

TEST(SplitDataFiles, DefaultPatterns) {
  // Sharded files name any split.
  const Files sharded = {"data/train_sft-00000-of-00001.parquet", "data/test_sft-00000-of-00001.parquet"};
  EXPECT_EQ(split_data_files(sharded, "", "", "train_sft", "d"), Files{"data/train_sft-00000-of-00001.parquet"});
  // Split keywords in file names; hidden files and non-data files are not data.
  const Files named = {"train.jsonl", "dev.jsonl", "test-0.parquet", ".hidden/train.jsonl", "train.csv", "notes.txt"};
  EXPECT_EQ(split_data_files(named, "# no header", "", "train", "d"), Files{"train.jsonl"});
  EXPECT_EQ(split_data_files(named, "", "", "validation", "d"), Files{"dev.jsonl"});
  EXPECT_EQ(split_data_files(named, "", "", "test", "d"), Files{"test-0.parquet"});
  // Split keywords in folder names win over file names.
  const Files dirs = {"train/a.parquet", "train/b.parquet", "test/test_a.parquet", "valid/x.jsonl"};
  EXPECT_EQ(split_data_files(dirs, "", "", "train", "d"), (Files{"train/a.parquet", "train/b.parquet"}));
  EXPECT_EQ(split_data_files(dirs, "", "", "validation", "d"), Files{"valid/x.jsonl"});
  // No split anywhere: everything is train.
  const Files plain = {"conversations.jsonl", "more/part.parquet"};
  EXPECT_EQ(split_data_files(plain, "", "", "train", "d"), (Files{"conversations.jsonl", "more/part.parquet"}));
  std::string e = input_error_of([&] { split_data_files(plain, "", "", "test", "dataset d"); });
  EXPECT_NE(e.find("no split 'test'; its splits: train"), std::string::npos) << e;
  e = input_error_of([&] { split_data_files({"a.txt"}, "", "", "train", "dataset d"); });
  EXPECT_NE(e.find("has no data files"), std::string::npos) << e;
  e = input_error_of([&] { split_data_files(plain, "", "fr", "train", "dataset d"); });
  EXPECT_NE(e.find("no subset 'fr'"), std::string::npos) << e;
}

class HubDataset : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_.dataset = true;
    hub_.repo = "HuggingFaceH4/Multilingual-Thinking";
    hub_.files["README.md"] = kThinkingReadme;
    hub_.files[".gitattributes"] = "*.parquet filter=lfs";
    for (const char* f : {"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}) {
      hub_.files[f] = std::string("PAR1 shard ") + f;
      hub_.lfs[f] = true;
    }
    hub_.files["data/test-00000-of-00001.parquet"] = "PAR1 test";  // not in the README's configs: not fetched
    opt_.endpoint = hub_.endpoint();
    opt_.cache_dir = (root_ / "cache").string();
    opt_.progress = false;
  }
  fs::path snapshot() const {
    return root_ / "cache" / "datasets--HuggingFaceH4--Multilingual-Thinking" / "snapshots" / FakeHub::kCommit;
  }
  TempDir dir_{"hub_dataset"};
  fs::path root_ = dir_.str();
  FakeHub hub_;
  HubOptions opt_;
};

TEST_F(HubDataset, DownloadsTheSplitsFilesThenUsesTheCache) {
  const Files got = resolve_dataset_files("HuggingFaceH4/Multilingual-Thinking", "", "train", opt_);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(fs::path(got[0]), snapshot() / "data/train-00000-of-00002.parquet");
  EXPECT_EQ(fs::path(got[1]), snapshot() / "data/train-00001-of-00002.parquet");
  EXPECT_EQ(read_file(got[1]), "PAR1 shard data/train-00001-of-00002.parquet");
  EXPECT_TRUE(fs::is_symlink(got[0]));  // into blobs/, as huggingface_hub lays it out
  EXPECT_EQ(hub_.requests.at(0).path, "/api/datasets/HuggingFaceH4/Multilingual-Thinking/revision/main?blobs=true");
  EXPECT_EQ(hub_.requests.size(), 4u);  // listing, README.md, two shards
  EXPECT_TRUE(hub_.requests_for("test-00000-of-00001.parquet").empty());
  EXPECT_TRUE(hub_.requests_for(".gitattributes").empty());

  HubOptions off = opt_;
  off.offline = true;
  EXPECT_EQ(resolve_dataset_files("HuggingFaceH4/Multilingual-Thinking", "", "train", off), got);
  EXPECT_EQ(hub_.requests.size(), 4u);

  // A cache that lost a shard is not used: offline that is an error naming what is missing.
  fs::remove(got[1]);
  std::string e = input_error_of([&] { resolve_dataset_files("HuggingFaceH4/Multilingual-Thinking", "", "train", off); });
  EXPECT_NE(e.find("lacks shards"), std::string::npos) << e;
  EXPECT_NE(e.find("HF_HUB_OFFLINE"), std::string::npos) << e;
  EXPECT_NE(e.find("dataset_path"), std::string::npos) << e;
  // Online it fetches the missing shard again.
  EXPECT_EQ(resolve_dataset_files("HuggingFaceH4/Multilingual-Thinking", "", "train", opt_), got);
  EXPECT_TRUE(fs::exists(got[1]));
}

TEST_F(HubDataset, ErrorsNameTheDatasetAndTheFix) {
  std::string e = input_error_of([&] { resolve_dataset_files("HuggingFaceH4/Multilingual-Thinking", "", "test", opt_); });
  EXPECT_NE(e.find("no split 'test'; its splits: train"), std::string::npos) << e;
  hub_.status_override = 401;
  HubOptions other = opt_;
  other.cache_dir = (root_ / "empty-cache").string();
  e = input_error_of([&] { resolve_dataset_files("HuggingFaceH4/Multilingual-Thinking", "", "train", other); });
  EXPECT_NE(e.find("dataset HuggingFaceH4/Multilingual-Thinking"), std::string::npos) << e;
  EXPECT_NE(e.find("HF_TOKEN"), std::string::npos) << e;
  e = input_error_of([&] { resolve_dataset_files("not-a-repo-or-file", "", "train", opt_); });
  EXPECT_NE(e.find("no such file or folder, and not a hub id"), std::string::npos) << e;
}

// `gptoss download --repo-type dataset` fetches the split's files and prints them, one a line.
TEST_F(HubDataset, DownloadSubcommandPrintsTheFiles) {
  const std::string cmd = fmt::format(
      "HF_ENDPOINT={} HF_TOKEN= {} download HuggingFaceH4/Multilingual-Thinking --repo-type dataset --cache-dir {} "
      "2>&1",
      hub_.endpoint(), GPTOSS_BINARY, opt_.cache_dir);
  std::string out;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  EXPECT_EQ(::pclose(p), 0) << out;
  EXPECT_EQ(out, (snapshot() / "data/train-00000-of-00002.parquet").string() + "\n" +
                     (snapshot() / "data/train-00001-of-00002.parquet").string() + "\n");
  std::string bad = cmd;
  bad.replace(bad.find("--repo-type dataset"), 19, "--repo-type space");
  p = ::popen(bad.c_str(), "r");
  out.clear();
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  EXPECT_NE(::pclose(p), 0);
  EXPECT_NE(out.find("--repo-type is 'space'; expected model, adapter or dataset"), std::string::npos) << out;
}

TEST_F(HubDataset, LocalFilesAndFolders) {
  const fs::path root = root_ / "local";
  fs::create_directories(root / "data");
  write_file_atomic((root / "data/train.jsonl").string(), "{}\n");
  write_file_atomic((root / "data/test.jsonl").string(), "{}\n");
  EXPECT_EQ(resolve_dataset_files(root.string(), "", "test", opt_), Files{(root / "data/test.jsonl").string()});
  const std::string file = (root / "data/train.jsonl").string();
  EXPECT_EQ(resolve_dataset_files(file, "", "ignored-for-a-file", opt_), Files{file});
  EXPECT_TRUE(hub_.requests.empty());
}

}  // namespace
}  // namespace gptoss
