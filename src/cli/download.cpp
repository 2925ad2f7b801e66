// gptoss download REPO [--repo-type model|adapter|dataset] [--revision R] [--cache-dir DIR]
//                      [--subset NAME] [--split NAME]
// Fetches a hub repo into the Hugging Face cache (as `hf download` does) and prints where it is: a model's
// or adapter's snapshot directory, or a dataset split's data files, one a line. Already-cached files are
// not fetched again; HF_TOKEN, HF_ENDPOINT, HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE apply (hub/hub.h).
#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "hub/dataset_files.h"
#include "hub/hub.h"

namespace gptoss {
namespace {

struct DownloadOptions {
  std::string repo;
  std::string repo_type = "model";
  std::string subset;
  std::string split = "train";
  HubOptions hub;
};

int run(const DownloadOptions& o) {
  if (o.repo_type == "model") {
    fmt::print("{}\n", resolve_model_dir(o.repo, o.hub));
  } else if (o.repo_type == "adapter") {
    fmt::print("{}\n", resolve_adapter_dir(o.repo, o.hub));
  } else if (o.repo_type == "dataset") {
    for (const std::string& f : resolve_dataset_files(o.repo, o.subset, o.split, o.hub)) fmt::print("{}\n", f);
  } else {
    fail_input("--repo-type is '{}'; expected model, adapter or dataset", o.repo_type);
  }
  return 0;
}

const cli::Registrar reg{
    "download", "Fetch a hub model, adapter or dataset into the Hugging Face cache and print where it is",
    [](CLI::App& app) -> cli::Runner {
      auto o = std::make_shared<DownloadOptions>();
      app.add_option("repo", o->repo, "hub id ORG/NAME")->required();
      app.add_option("--repo-type", o->repo_type, "model, adapter (a PEFT LoRA) or dataset")->capture_default_str();
      app.add_option("--revision", o->hub.revision, "branch, tag or commit (default main)");
      app.add_option("--cache-dir", o->hub.cache_dir, "cache directory (default $HF_HUB_CACHE, $HF_HOME/hub, "
                                                      "~/.cache/huggingface/hub)");
      app.add_option("--subset", o->subset, "dataset config (README configs), when it has several");
      app.add_option("--split", o->split, "dataset split whose files to fetch")->capture_default_str();
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace gptoss
