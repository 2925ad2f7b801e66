// Model directory resolution: a local directory, the Hugging Face cache, or a download from the hub.
//
// resolve_model_dir(name) returns a directory holding config.json, the *.safetensors weights and (when the
// hub has them) tokenizer.json / generation_config.json. Lookup order:
//  1. `name` is an existing directory: returned as is (nothing is checked; the loader names what is missing).
//  2. `name` looks like a hub id ("ORG/NAME"): the cache layout
//       <cache>/models--ORG--NAME/snapshots/<commit>/   (refs/<revision> holds <commit>)
//     where <cache> is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. A snapshot is
//     complete when it has config.json, tokenizer.json (if the hub has one) and every weight shard.
//  3. Otherwise the files are downloaded from $HF_ENDPOINT (default https://huggingface.co) with libcurl,
//     sending "Authorization: Bearer $HF_TOKEN" when set, into that layout:
//       GET /api/models/ORG/NAME/revision/REV?blobs=true   -> commit sha + file list with sizes, lfs sha256
//       GET /ORG/NAME/resolve/<commit>/<file>               -> bytes (Range: bytes=N- to resume)
//     Each file streams into blobs/<sha>.incomplete (kept across runs and connection cuts: the next attempt
//     resumes with a Range request), is checked against the hub's size and sha256 (LFS) or git blob sha1,
//     then renamed to blobs/<sha> and linked from snapshots/<commit>/<file>. A cut connection is retried
//     (resuming) up to HubOptions::max_attempts times; a checksum mismatch removes the partial file and
//     fails. Only top-level files are fetched (the hub repos also hold original/ and metal/ copies).
//  4. Offline ($HF_HUB_OFFLINE=1 or HubOptions::offline) or failing: InputError that names the model, the
//     files that are missing and the directory to put them in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gptoss {

struct HubOptions {
  std::string endpoint;   // "": $HF_ENDPOINT or https://huggingface.co
  std::string token;      // "": $HF_TOKEN (or $HUGGING_FACE_HUB_TOKEN)
  std::string cache_dir;  // "": see above
  std::string revision;   // "": "main"
  bool offline = false;   // also forced by $HF_HUB_OFFLINE=1
  bool progress = true;   // progress bar on stderr (when it is a terminal)
  int max_attempts = 5;   // per file, for cut connections
  long low_speed_timeout_s = 60;  // a transfer slower than 1 byte/s for this long counts as cut
};

std::string resolve_model_dir(const std::string& name, const HubOptions& opt = {});

// What a repo holds: a model (config.json and safetensors weights), a PEFT adapter (adapter_config.json
// and adapter_model.safetensors) or a dataset (data files; hub/dataset_files.h says which a split needs).
// Datasets live under /api/datasets/, /datasets/ORG/NAME/resolve/ and <cache>/datasets--ORG--NAME/.
enum class RepoKind { kModel, kAdapter, kDataset };
// resolve_model_dir for a PEFT LoRA adapter: a local directory, the cache, or a download, the same way.
std::string resolve_adapter_dir(const std::string& name, const HubOptions& opt = {});

// Pieces, exposed for tests and for `gptoss download`.
std::string hub_cache_dir(const HubOptions& opt = {});
std::string hub_endpoint(const HubOptions& opt = {});
bool looks_like_repo_id(const std::string& name);  // "ORG/NAME", no leading '.', '/', '~'
// <cache>/models--ORG--NAME (datasets--ORG--NAME for a dataset).
std::string repo_cache_dir(const std::string& repo, RepoKind kind, const HubOptions& opt = {});
// <repo_cache_dir>/snapshots/<commit of refs/revision> (the revision itself when no ref names it); it may
// not exist.
std::string snapshot_dir(const std::string& repo, RepoKind kind, const HubOptions& opt = {});
// The snapshot directory for repo@revision if the cache has a complete one, else "" (models and adapters).
std::string find_cached_snapshot(const std::string& repo, const std::string& revision, const std::string& cache_dir,
                                 RepoKind kind = RepoKind::kModel);

struct HubFile {
  std::string path;     // "model-00000-of-00002.safetensors"
  uint64_t size = 0;
  std::string sha256;   // LFS files
  std::string git_sha1; // blobId (git blob sha1 of the content)
};
struct HubListing {
  std::string commit;
  std::vector<HubFile> files;  // a model's or adapter's: the top-level files gptoss needs; a dataset's: all
};
HubListing fetch_listing(const std::string& repo, const HubOptions& opt = {}, RepoKind kind = RepoKind::kModel);
// Downloads everything the listing names into the cache (files in folders keep their paths); returns the
// snapshot directory.
std::string download_snapshot(const std::string& repo, const HubListing& listing, const HubOptions& opt = {},
                              RepoKind kind = RepoKind::kModel);

std::string sha256_hex_of_file(const std::string& path);

}  // namespace gptoss
