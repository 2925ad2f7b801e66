#include "hub/hub.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace gptoss {

namespace {

constexpr const char* kDefaultEndpoint = "https://huggingface.co";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool offline(const HubOptions& opt) {
  std::string v = env("HF_HUB_OFFLINE");
  return opt.offline || v == "1" || v == "true" || v == "TRUE" || v == "yes";
}

std::string token(const HubOptions& opt) {
  if (!opt.token.empty()) return opt.token;
  std::string t = env("HF_TOKEN");
  return t.empty() ? env("HUGGING_FACE_HUB_TOKEN") : t;
}

std::string revision(const HubOptions& opt) { return opt.revision.empty() ? "main" : opt.revision; }

// Files gptoss needs from a hub repo: top-level config, tokenizer and weights.
bool wanted(const std::string& path) {
  static const std::vector<std::string> kNames = {"config.json", "generation_config.json", "tokenizer.json",
                                                  "tokenizer_config.json", "special_tokens_map.json",
                                                  "chat_template.jinja", "adapter_config.json"};
  if (path.find('/') != std::string::npos) return false;
  if (std::find(kNames.begin(), kNames.end(), path) != kNames.end()) return true;
  auto ends = [&](const std::string& s) {
    return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".safetensors") || ends(".safetensors.index.json");
}

std::string repo_folder(const std::string& repo, RepoKind kind) {
  std::string f = (kind == RepoKind::kDataset ? "datasets--" : "models--") + repo;
  size_t p;
  while ((p = f.find('/')) != std::string::npos) f.replace(p, 1, "--");
  return f;
}

// The config file of a kind of repo.
const char* config_file(RepoKind kind) { return kind == RepoKind::kModel ? "config.json" : "adapter_config.json"; }

// The hub's URL paths of a kind of repo: /api/<api>/ORG/NAME and /<prefix>ORG/NAME/resolve/.
const char* api_kind(RepoKind kind) { return kind == RepoKind::kDataset ? "datasets" : "models"; }
const char* resolve_prefix(RepoKind kind) { return kind == RepoKind::kDataset ? "datasets/" : ""; }

// The files a snapshot must hold: a model's config and weights (the index's shards, else any
// *.safetensors), or an adapter's config and adapter_model.safetensors.
std::vector<std::string> missing_in_snapshot(const fs::path& snap, RepoKind kind = RepoKind::kModel) {
  std::vector<std::string> missing;
  std::error_code ec;
  if (!fs::exists(snap / config_file(kind), ec)) missing.push_back(config_file(kind));
  if (kind == RepoKind::kAdapter) {
    if (!fs::exists(snap / "adapter_model.safetensors", ec)) missing.push_back("adapter_model.safetensors");
    return missing;
  }
  bool any_weights = false;
  for (const auto& e : fs::directory_iterator(snap, ec)) {
    std::string n = e.path().filename().string();
    if (n.size() > 21 && n.compare(n.size() - 23, 23, ".safetensors.index.json") == 0) {
      try {
        Json idx = Json::parse(read_file(e.path().string()));
        std::vector<std::string> shards;
        for (const auto& [k, v] : idx.at("weight_map").items()) shards.push_back(v.get<std::string>());
        std::sort(shards.begin(), shards.end());
        shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
        for (const auto& s : shards)
          if (!fs::exists(snap / s, ec)) missing.push_back(s);
        any_weights = true;
      } catch (const std::exception&) {
        missing.push_back(n + " (unreadable)");
      }
    }
  }
  if (!any_weights) {
    bool has = false;
    for (const auto& e : fs::directory_iterator(snap, ec))
      if (e.path().extension() == ".safetensors") has = true;
    if (!has) missing.push_back("*.safetensors (model weights)");
  }
  return missing;
}

std::string snapshot_for(const fs::path& repo_dir, const std::string& rev) {
  std::error_code ec;
  std::string commit = rev;
  fs::path ref = repo_dir / "refs" / rev;
  if (fs::is_regular_file(ref, ec)) {
    commit = read_file(ref.string());
    commit.erase(commit.find_last_not_of(" \r\n\t") + 1);
  }
  return (repo_dir / "snapshots" / commit).string();
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

void curl_init_once() {
  static CurlGlobal g;
}

struct CurlHandle {
  CURL* h;
  curl_slist* headers = nullptr;
  CurlHandle() : h(curl_easy_init()) { GPTOSS_CHECK(h, "curl_easy_init failed"); }
  ~CurlHandle() {
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
  }
};

void setup_common(CurlHandle& c, const std::string& url, const HubOptions& opt) {
  curl_easy_setopt(c.h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.h, CURLOPT_FOLLOWLOCATION, 1L);  // LFS files redirect to a CDN
  curl_easy_setopt(c.h, CURLOPT_USERAGENT, "gptoss/0.1");
  curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c.h, CURLOPT_LOW_SPEED_TIME, opt.low_speed_timeout_s);
  curl_easy_setopt(c.h, CURLOPT_NOSIGNAL, 1L);
  std::string t = token(opt);
  // libcurl drops custom Authorization headers on redirects to other hosts (CURLOPT_UNRESTRICTED_AUTH
  // is off), so the token never reaches the CDN.
  if (!t.empty()) c.headers = curl_slist_append(c.headers, ("Authorization: Bearer " + t).c_str());
}

size_t append_to_string(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

std::string hex(const unsigned char* d, unsigned n) {
  std::string s;
  for (unsigned i = 0; i < n; ++i) s += fmt::format("{:02x}", d[i]);
  return s;
}

// Streams a download into a file while hashing it (sha256, and git blob sha1).
struct Sink {
  std::FILE* f = nullptr;
  EVP_MD_CTX* sha256 = nullptr;
  EVP_MD_CTX* sha1 = nullptr;
  uint64_t written = 0;
  uint64_t start = 0;      // bytes already present when the request was sent
  bool checked_status = false;
  bool restarted = false;  // the server ignored Range: the file started over
  CURL* curl = nullptr;
  std::string path;
  uint64_t blob_size = 0;
  ProgressBar* bar = nullptr;
  uint64_t bar_base = 0;
};

void hash_reset(Sink& s) {
  EVP_DigestInit_ex(s.sha256, EVP_sha256(), nullptr);
  EVP_DigestInit_ex(s.sha1, EVP_sha1(), nullptr);
  std::string hdr = fmt::format("blob {}", s.blob_size);
  EVP_DigestUpdate(s.sha1, hdr.data(), hdr.size() + 1);  // includes the NUL
}

size_t sink_write(char* p, size_t size, size_t n, void* ud) {
  Sink& s = *static_cast<Sink*>(ud);
  if (!s.checked_status) {
    s.checked_status = true;
    long code = 0;
    curl_easy_getinfo(s.curl, CURLINFO_RESPONSE_CODE, &code);
    if (code == 200 && s.start > 0) {  // no Range support: start over
      std::fclose(s.f);
      s.f = std::fopen(s.path.c_str(), "wb");
      if (!s.f) return 0;
      s.start = 0;
      s.written = 0;
      s.restarted = true;
      hash_reset(s);
    } else if (code != 200 && code != 206) {
      return 0;  // an error page is not file content
    }
  }
  size_t bytes = size * n;
  if (std::fwrite(p, 1, bytes, s.f) != bytes) return 0;
  EVP_DigestUpdate(s.sha256, p, bytes);
  EVP_DigestUpdate(s.sha1, p, bytes);
  s.written += bytes;
  if (s.bar) s.bar->set(s.bar_base + s.start + s.written);
  return bytes;
}

std::string http_error_advice(long code, const std::string& repo, const std::string& what) {
  if (code == 401 || code == 403)
    return fmt::format("the hub answered {} for {}: {} is gated or private; accept its license on the hub and set "
                       "HF_TOKEN to an access token",
                       code, what, repo);
  if (code == 404) return fmt::format("the hub answered 404 for {}: no such repo, revision or file", what);
  return fmt::format("the hub answered HTTP {} for {}", code, what);
}

// Downloads one file into blobs/<name>, resuming blobs/<name>.incomplete. Returns the blob path.
std::string fetch_file(const std::string& repo, RepoKind kind, const std::string& commit, const HubFile& file,
                       const fs::path& blobs, const HubOptions& opt, ProgressBar* bar, uint64_t bar_base) {
  std::string blob_name = !file.sha256.empty() ? file.sha256 : file.git_sha1;
  if (blob_name.empty()) blob_name = "nohash-" + file.path;
  fs::path blob = blobs / blob_name;
  std::error_code ec;
  if (fs::is_regular_file(blob, ec) && fs::file_size(blob, ec) == file.size) return blob.string();
  fs::path part = blob;
  part += ".incomplete";
  std::string url =
      fmt::format("{}/{}{}/resolve/{}/{}", hub_endpoint(opt), resolve_prefix(kind), repo, commit, file.path);

  std::string last_error;
  for (int attempt = 1; attempt <= std::max(1, opt.max_attempts); ++attempt) {
    uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
    if (have > file.size) {  // not this file: start over
      fs::remove(part, ec);
      have = 0;
    }
    Sink s;
    s.path = part.string();
    s.blob_size = file.size;
    s.sha256 = EVP_MD_CTX_new();
    s.sha1 = EVP_MD_CTX_new();
    hash_reset(s);
    // Hash what is already on disk so the check covers the whole file.
    if (have > 0) {
      std::ifstream in(part, std::ios::binary);
      std::vector<char> buf(1 << 20);
      uint64_t left = have;
      while (left > 0 && in) {
        in.read(buf.data(), std::streamsize(std::min<uint64_t>(left, buf.size())));
        auto got = uint64_t(in.gcount());
        EVP_DigestUpdate(s.sha256, buf.data(), got);
        EVP_DigestUpdate(s.sha1, buf.data(), got);
        left -= got;
      }
    }
    s.start = have;
    s.f = std::fopen(s.path.c_str(), have > 0 ? "ab" : "wb");
    if (!s.f) {
      EVP_MD_CTX_free(s.sha256);
      EVP_MD_CTX_free(s.sha1);
      fail_input("{}: cannot create: {}", s.path, std::strerror(errno));
    }
    s.bar = bar;
    s.bar_base = bar_base;
    CURLcode rc = CURLE_OK;
    long code = 0;
    if (have < file.size || file.size == 0) {
      CurlHandle c;
      setup_common(c, url, opt);
      s.curl = c.h;
      if (have > 0) c.headers = curl_slist_append(c.headers, fmt::format("Range: bytes={}-", have).c_str());
      curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.headers);
      curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, sink_write);
      curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &s);
      rc = curl_easy_perform(c.h);
      curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &code);
    }
    std::fclose(s.f);
    unsigned char d256[EVP_MAX_MD_SIZE], d1[EVP_MAX_MD_SIZE];
    unsigned n256 = 0, n1 = 0;
    EVP_DigestFinal_ex(s.sha256, d256, &n256);
    EVP_DigestFinal_ex(s.sha1, d1, &n1);
    EVP_MD_CTX_free(s.sha256);
    EVP_MD_CTX_free(s.sha1);
    uint64_t size_now = s.start + s.written;

    if (code >= 400) {
      if (code == 416) {  // our partial file does not fit the server's: start over
        fs::remove(part, ec);
        last_error = "HTTP 416 on resume";
        continue;
      }
      fail_input("{}: {}", repo, http_error_advice(code, repo, file.path));
    }
    if (rc != CURLE_OK || size_now < file.size) {
      last_error = rc != CURLE_OK ? curl_easy_strerror(rc) : fmt::format("connection closed after {} of {} bytes", size_now, file.size);
      continue;  // keep the partial file; the next attempt resumes
    }
    if (size_now != file.size) {
      fs::remove(part, ec);
      fail_input("{}: {} has {} bytes; the hub says {}; the partial download was removed, run again to retry", repo,
                 file.path, size_now, file.size);
    }
    std::string got256 = hex(d256, n256), got1 = hex(d1, n1);
    if ((!file.sha256.empty() && got256 != file.sha256) || (file.sha256.empty() && !file.git_sha1.empty() && got1 != file.git_sha1)) {
      fs::remove(part, ec);
      fail_input("{}: {} failed its checksum: sha256 {} (git sha1 {}), the hub says {}; the download was removed, "
                 "run again to retry",
                 repo, file.path, got256, got1, !file.sha256.empty() ? file.sha256 : file.git_sha1);
    }
    fs::rename(part, blob, ec);
    if (ec) fail_input("{}: cannot move into place: {}", blob.string(), ec.message());
    return blob.string();
  }
  fail_input("{}: downloading {} from {} failed after {} attempts: {}; the partial file {} is kept and the next run "
             "resumes it",
             repo, file.path, url, opt.max_attempts, last_error, part.string());
}

}  // namespace

std::string hub_cache_dir(const HubOptions& opt) {
  if (!opt.cache_dir.empty()) return opt.cache_dir;
  if (std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = env("HF_HOME"); !v.empty()) return (fs::path(v) / "hub").string();
  std::string home = env("HOME");
  return (fs::path(home.empty() ? "/tmp" : home) / ".cache" / "huggingface" / "hub").string();
}

std::string hub_endpoint(const HubOptions& opt) {
  std::string e = !opt.endpoint.empty() ? opt.endpoint : env("HF_ENDPOINT");
  if (e.empty()) e = kDefaultEndpoint;
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

bool looks_like_repo_id(const std::string& name) {
  if (name.empty() || name[0] == '.' || name[0] == '/' || name[0] == '~') return false;
  size_t slash = name.find('/');
  return slash != std::string::npos && slash > 0 && slash + 1 < name.size() &&
         name.find('/', slash + 1) == std::string::npos;
}

std::string repo_cache_dir(const std::string& repo, RepoKind kind, const HubOptions& opt) {
  return (fs::path(hub_cache_dir(opt)) / repo_folder(repo, kind)).string();
}

std::string snapshot_dir(const std::string& repo, RepoKind kind, const HubOptions& opt) {
  return snapshot_for(repo_cache_dir(repo, kind, opt), revision(opt));
}

std::string find_cached_snapshot(const std::string& repo, const std::string& rev, const std::string& cache_dir,
                                 RepoKind kind) {
  std::error_code ec;
  fs::path snap = snapshot_for(fs::path(cache_dir) / repo_folder(repo, kind), rev);
  if (!fs::is_directory(snap, ec)) return "";
  return missing_in_snapshot(snap, kind).empty() ? snap.string() : "";
}

HubListing fetch_listing(const std::string& repo, const HubOptions& opt, RepoKind kind) {
  curl_init_once();
  std::string url = fmt::format("{}/api/{}/{}/revision/{}?blobs=true", hub_endpoint(opt), api_kind(kind), repo,
                                revision(opt));
  CurlHandle c;
  setup_common(c, url, opt);
  curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.headers);
  std::string body;
  curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(c.h);
  if (rc != CURLE_OK) fail_input("cannot reach {}: {}", hub_endpoint(opt), curl_easy_strerror(rc));
  long code = 0;
  curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) fail_input("{}", http_error_advice(code, repo, fmt::format("{} (revision {})", repo, revision(opt))));
  HubListing out;
  try {
    Json j = Json::parse(body);
    out.commit = j.value("sha", revision(opt));
    for (const auto& s : j.at("siblings")) {
      HubFile f;
      f.path = s.at("rfilename").get<std::string>();
      if (kind != RepoKind::kDataset && !wanted(f.path)) continue;
      f.size = s.value("size", uint64_t(0));
      f.git_sha1 = s.value("blobId", "");
      if (s.contains("lfs") && s["lfs"].is_object()) {
        f.sha256 = s["lfs"].value("sha256", "");
        f.size = s["lfs"].value("size", f.size);
      }
      out.files.push_back(std::move(f));
    }
  } catch (const Json::exception& e) {
    fail_input("{}: the hub's file list for {} is not what was expected: {}", url, repo, e.what());
  }
  // Small files first: config and index land before the shards, so a cut run is recognised as partial.
  std::stable_sort(out.files.begin(), out.files.end(), [](const HubFile& a, const HubFile& b) { return a.size < b.size; });
  if (kind == RepoKind::kDataset) return out;
  const std::string cfg = config_file(kind);
  bool has_config = std::any_of(out.files.begin(), out.files.end(), [&](const HubFile& f) { return f.path == cfg; });
  if (!has_config)
    fail_input("{} (revision {}) has no {}; it is not {}", repo, revision(opt), cfg,
               kind == RepoKind::kModel ? "a model gptoss can run" : "a PEFT adapter");
  return out;
}

std::string download_snapshot(const std::string& repo, const HubListing& listing, const HubOptions& opt,
                              RepoKind kind) {
  curl_init_once();
  fs::path repo_dir = repo_cache_dir(repo, kind, opt);
  fs::path blobs = repo_dir / "blobs", snap = repo_dir / "snapshots" / listing.commit;
  std::error_code ec;
  fs::create_directories(blobs, ec);
  fs::create_directories(snap, ec);
  if (ec) fail_input("{}: cannot create the cache directory: {} (set HF_HOME to a writable place)", repo_dir.string(), ec.message());
  // The ref first: an interrupted download is then found (and reported as partial) by the next run.
  if (revision(opt) != listing.commit) {
    fs::create_directories(repo_dir / "refs", ec);
    write_file_atomic((repo_dir / "refs" / revision(opt)).string(), listing.commit);
  }
  uint64_t total = 0;
  for (const auto& f : listing.files) total += f.size;
  ProgressBar bar(fmt::format("downloading {}", repo), total);
  if (!opt.progress) ProgressBar::set_enabled(false);
  uint64_t done = 0;
  for (const auto& f : listing.files) {
    fs::path link = snap / f.path;
    if (fs::exists(link, ec) && fs::file_size(link, ec) == f.size) {
      done += f.size;
      bar.set(done);
      continue;
    }
    std::string blob = fetch_file(repo, kind, listing.commit, f, blobs, opt, &bar, done);
    fs::remove(link, ec);
    fs::create_directories(link.parent_path(), ec);  // a dataset's data/train-*.parquet
    fs::create_symlink(fs::relative(blob, link.parent_path()), link, ec);
    if (ec) fs::copy_file(blob, link, fs::copy_options::overwrite_existing);  // filesystems without symlinks
    done += f.size;
    bar.set(done);
  }
  bar.finish();
  return snap.string();
}

namespace {

std::string resolve_dir(const std::string& name, const HubOptions& opt, RepoKind kind) {
  const bool model = kind == RepoKind::kModel;
  const char* what = model ? "model" : "adapter";
  std::error_code ec;
  if (fs::is_directory(name, ec)) return name;
  if (!looks_like_repo_id(name))
    fail_input("{} {}: no such directory; give a{} directory or a hub id such as {}", what, name,
               model ? " model" : "n adapter", model ? "openai/gpt-oss-20b" : "ORG/NAME");
  std::string cache = hub_cache_dir(opt), rev = revision(opt);
  fs::path repo_dir = fs::path(cache) / repo_folder(name, kind);
  if (std::string snap = find_cached_snapshot(name, rev, cache, kind); !snap.empty()) return snap;

  fs::path snap = snapshot_for(repo_dir, rev);
  std::string where = fs::is_directory(snap, ec)
                          ? snap.string()
                          : (repo_dir / "snapshots" / "<commit>").string() + " (and the commit in " +
                                (repo_dir / "refs" / rev).string() + ")";
  std::string missing = fs::is_directory(snap, ec) ? fmt::format("{}", fmt::join(missing_in_snapshot(snap, kind), ", "))
                        : model                    ? "config.json, tokenizer.json, *.safetensors"
                                                   : "adapter_config.json, adapter_model.safetensors";
  auto advice = [&] {
    return fmt::format("missing: {}. Put the files in {}, or download them elsewhere and pass that directory as {}",
                       missing, where, model ? "model.model_name" : "model.adapter_model");
  };
  if (offline(opt))
    fail_input("{} {} is not in the cache and downloads are off (HF_HUB_OFFLINE); {}", what, name, advice());
  HubListing listing;
  try {
    listing = fetch_listing(name, opt, kind);
  } catch (const InputError& e) {
    fail_input("{} {}: not in the cache and the download failed: {}; {}", what, name, e.what(), advice());
  }
  std::string dir = download_snapshot(name, listing, opt, kind);
  auto still = missing_in_snapshot(dir, kind);
  if (!still.empty()) fail_input("{} {}: downloaded, but {} still lacks {}", what, name, dir, fmt::join(still, ", "));
  return dir;
}

}  // namespace

std::string resolve_model_dir(const std::string& name, const HubOptions& opt) {
  return resolve_dir(name, opt, RepoKind::kModel);
}

std::string resolve_adapter_dir(const std::string& name, const HubOptions& opt) {
  return resolve_dir(name, opt, RepoKind::kAdapter);
}

std::string sha256_hex_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input("{}: cannot open", path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), size_t(in.gcount()));
  }
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(ctx, d, &n);
  EVP_MD_CTX_free(ctx);
  return hex(d, n);
}

}  // namespace gptoss
