#include "hub/dataset_files.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "core/atomic_file.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace gptoss {
namespace {

using SplitPatterns = std::map<std::string, std::vector<std::string>>;  // split -> glob patterns

constexpr const char* kSep = "[-._ 0-9]";  // what may stand around a split keyword in a name

// The datasets library's keywords of the three standard splits.
const std::map<std::string, std::vector<std::string>>& split_keywords() {
  static const std::map<std::string, std::vector<std::string>> k = {
      {"train", {"train", "training"}},
      {"validation", {"validation", "valid", "dev", "val"}},
      {"test", {"test", "testing", "eval", "evaluation"}}};
  return k;
}

bool is_data_file(const std::string& path) {
  for (const char* ext : {".parquet", ".jsonl", ".json"}) {
    const size_t n = std::char_traits<char>::length(ext);
    if (path.size() > n && path.compare(path.size() - n, n, ext) == 0) return true;
  }
  return false;
}

// No segment starts with "." or "__" (hidden files, __pycache__, .git).
bool visible(const std::string& path) {
  size_t start = 0;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string seg = path.substr(start, end - start);
    if (seg.rfind('.', 0) == 0 || seg.rfind("__", 0) == 0) return false;
    start = end + 1;
  }
  return true;
}

// The character class starting at p (after '['); advances p past ']'. Returns false when p has no ']'.
bool class_matches(const char*& p, char c, bool* matched) {
  const char* q = p;
  bool negate = *q == '!' || *q == '^';
  if (negate) ++q;
  bool hit = false;
  bool first = true;
  while (*q && (*q != ']' || first)) {
    first = false;
    if (q[1] == '-' && q[2] && q[2] != ']') {
      hit |= c >= q[0] && c <= q[2];
      q += 3;
    } else {
      hit |= c == *q;
      ++q;
    }
  }
  if (*q != ']') return false;
  p = q + 1;
  *matched = (hit != negate) && c != '/';
  return true;
}

bool glob_at(const char* p, const char* s) {
  for (;;) {
    if (*p == '\0') return *s == '\0';
    if (p[0] == '*' && p[1] == '*') {
      const char* rest = p + 2;
      if (*rest == '/' && glob_at(rest + 1, s)) return true;  // "**/" as no folder at all
      for (const char* t = s;; ++t) {
        if (glob_at(rest, t)) return true;
        if (*t == '\0') return false;
      }
    }
    if (*p == '*') {
      for (const char* t = s;; ++t) {
        if (glob_at(p + 1, t)) return true;
        if (*t == '\0' || *t == '/') return false;
      }
    }
    if (*s == '\0') return false;
    if (*p == '?') {
      if (*s == '/') return false;
    } else if (*p == '[') {
      const char* q = p + 1;
      bool matched = false;
      if (class_matches(q, *s, &matched)) {
        if (!matched) return false;
        p = q;
        ++s;
        continue;
      }
      if (*s != '[') return false;  // no closing ']': a literal '['
    } else if (*p != *s) {
      return false;
    }
    ++p;
    ++s;
  }
}

std::vector<std::string> matching(const std::vector<std::string>& files, const std::vector<std::string>& patterns) {
  std::set<std::string> out;
  for (const auto& f : files)
    for (const auto& pat : patterns) {
      std::string pp = pat;
      while (pp.rfind("./", 0) == 0) pp = pp.substr(2);
      if (glob_match(pp, f)) out.insert(f);
    }
  return {out.begin(), out.end()};
}

// The README's YAML header ("---" ... "---"), or "" when it has none.
std::string front_matter(const std::string& readme) {
  if (readme.rfind("---", 0) != 0) return "";
  size_t start = readme.find('\n');
  if (start == std::string::npos) return "";
  size_t end = readme.find("\n---", start);
  return end == std::string::npos ? "" : readme.substr(start + 1, end - start);
}

std::vector<std::string> patterns_of(const YAML::Node& n, const std::string& what) {
  std::vector<std::string> out;
  if (n.IsScalar()) {
    out.push_back(n.as<std::string>());
  } else if (n.IsSequence()) {
    for (const auto& e : n) {
      if (!e.IsScalar()) fail_input("{}: a data_files path is not a string", what);
      out.push_back(e.as<std::string>());
    }
  } else {
    fail_input("{}: a data_files path is neither a pattern nor a list of patterns", what);
  }
  return out;
}

// A config's data_files in the README's forms: a pattern or list of patterns (all "train"), a list of
// {split, path} entries, or a map split -> pattern(s).
SplitPatterns config_patterns(const YAML::Node& data_files, const std::string& what) {
  SplitPatterns out;
  if (data_files.IsScalar()) {
    out["train"] = patterns_of(data_files, what);
  } else if (data_files.IsMap()) {
    for (const auto& kv : data_files) out[kv.first.as<std::string>()] = patterns_of(kv.second, what);
  } else if (data_files.IsSequence()) {
    for (const auto& e : data_files) {
      if (e.IsScalar()) {
        out["train"].push_back(e.as<std::string>());
      } else if (e.IsMap() && e["path"]) {
        const std::string split = e["split"] ? e["split"].as<std::string>() : "train";
        for (auto& p : patterns_of(e["path"], what)) out[split].push_back(std::move(p));
      } else {
        fail_input("{}: a data_files entry is neither a pattern nor {{split, path}}", what);
      }
    }
  } else {
    fail_input("{}: data_files is empty", what);
  }
  return out;
}

// Rule 1: the README's configs, or nothing when it declares none.
std::optional<SplitPatterns> readme_patterns(const std::string& readme, const std::string& subset,
                                             const std::string& what) {
  const std::string yaml = front_matter(readme);
  if (yaml.empty()) return std::nullopt;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    fail_input("{}: README.md's YAML header does not parse ({}); fix it or give data files directly", what,
               e.what());
  }
  if (!root.IsMap() || !root["configs"] || !root["configs"].IsSequence()) return std::nullopt;
  std::vector<std::string> names;
  // (A default-constructed YAML::Node is a defined null, so "none yet" needs optional.)
  std::optional<YAML::Node> chosen, named_default, marked_default;
  try {
    for (const auto& entry : root["configs"]) {
      const YAML::Node& c = entry;  // as a Node: assigning the iterator's value would convert it
      const std::string name = c["config_name"] ? c["config_name"].as<std::string>() : "default";
      names.push_back(name);
      if (name == subset) chosen = c;
      if (name == "default") named_default = c;
      if (c["default"] && c["default"].as<bool>()) marked_default = c;
    }
  } catch (const YAML::Exception& e) {
    fail_input("{}: README.md's configs are not what the datasets library reads ({})", what, e.what());
  }
  if (names.empty()) return std::nullopt;
  if (subset.empty()) {
    chosen = marked_default ? marked_default : named_default;
    if (!chosen && names.size() == 1) chosen = YAML::Node(root["configs"][0]);
    if (!chosen)
      fail_input("{} has several configs ({}); choose one with the dataset's subset", what, fmt::join(names, ", "));
  } else if (!chosen) {
    fail_input("{} has no config '{}' (subset); it has: {}", what, subset, fmt::join(names, ", "));
  }
  if (!(*chosen)["data_files"]) return std::nullopt;  // a config without files: the default patterns
  return config_patterns((*chosen)["data_files"], fmt::format("{} README.md", what));
}

// Rule 2: the datasets library's default patterns, tried in its order.
SplitPatterns default_patterns(const std::vector<std::string>& files) {
  // Sharded files of any split name: data/<split>-00000-of-00002.parquet.
  static const std::regex sharded(R"(^data/([^/]+)-[0-9]{5}-of-[0-9]{5}[^/]*\.[^/]+$)");
  SplitPatterns out;
  for (const auto& f : files) {
    std::smatch m;
    if (std::regex_match(f, m, sharded)) {
      const std::string split = m[1];
      out[split] = {"data/" + split + "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*"};
    }
  }
  if (!out.empty()) return out;
  const std::string s = kSep;
  using Builder = std::vector<std::string> (*)(const std::string&, const std::string&);
  const Builder in_dir = [](const std::string& k, const std::string& s) {
    return std::vector<std::string>{k + "/**", k + s + "*/**", "**/*" + s + k + "/**", "**/*" + s + k + s + "*/**"};
  };
  const Builder in_name = [](const std::string& k, const std::string& s) {
    return std::vector<std::string>{"**/" + k + s + "*", "**/*" + s + k + s + "*"};
  };
  for (Builder build : {in_dir, in_name}) {
    for (const auto& [split, keywords] : split_keywords())
      for (const auto& k : keywords)
        for (auto& p : build(k, s)) out[split].push_back(std::move(p));
    for (auto it = out.begin(); it != out.end();)
      it = matching(files, it->second).empty() ? out.erase(it) : std::next(it);
    if (!out.empty()) return out;
  }
  out["train"] = {"**"};
  return out;
}

// Every shard of an "-NNNNN-of-MMMMM" series among `files` is there.
bool shards_complete(const std::vector<std::string>& files) {
  static const std::regex shard(R"(^(.*)-([0-9]{5})-of-([0-9]{5})(.*)$)");
  std::map<std::string, std::pair<int, int>> series;  // name with the index blanked -> (count, total)
  for (const auto& f : files) {
    std::smatch m;
    if (!std::regex_match(f, m, shard)) continue;
    auto& [count, total] = series[m[1].str() + "-*-of-" + m[3].str() + m[4].str()];
    ++count;
    total = std::atoi(m[3].str().c_str());
  }
  return std::all_of(series.begin(), series.end(), [](const auto& s) { return s.second.first == s.second.second; });
}

// Every file under `root`, relative, '/'-separated.
std::vector<std::string> files_under(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().lexically_relative(root).generic_string());  // not through links
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string readme_in(const fs::path& root) {
  std::error_code ec;
  return fs::is_regular_file(root / "README.md", ec) ? read_file((root / "README.md").string()) : "";
}

std::vector<std::string> absolute(const fs::path& root, const std::vector<std::string>& rel) {
  std::vector<std::string> out;
  for (const auto& r : rel) out.push_back((root / r).string());
  return out;
}

bool offline_now(const HubOptions& opt) {
  const char* v = std::getenv("HF_HUB_OFFLINE");
  const std::string s = v ? v : "";
  return opt.offline || s == "1" || s == "true" || s == "TRUE" || s == "yes";
}

std::vector<std::string> from_hub(const std::string& repo, const std::string& subset, const std::string& split,
                                  const HubOptions& opt) {
  const std::string what = "dataset " + repo;
  const fs::path snap = snapshot_dir(repo, RepoKind::kDataset, opt);
  std::error_code ec;
  std::string cache_problem = "it is not in the cache (" + repo_cache_dir(repo, RepoKind::kDataset, opt) + ")";
  if (fs::is_directory(snap, ec)) {
    try {
      const std::vector<std::string> files = files_under(snap);
      std::vector<std::string> chosen = split_data_files(files, readme_in(snap), subset, split, what);
      if (shards_complete(chosen)) return absolute(snap, chosen);
      cache_problem = fmt::format("the cached snapshot {} lacks shards of {}", snap.string(), fmt::join(chosen, ", "));
    } catch (const InputError& e) {
      cache_problem = fmt::format("the cached snapshot {} does not have it: {}", snap.string(), e.what());
    }
  }
  if (offline_now(opt))
    fail_input("{}: {} and downloads are off (HF_HUB_OFFLINE); put its files there or set the dataset's "
               "dataset_path to a local file or folder",
               what, cache_problem);
  HubListing listing;
  try {
    listing = fetch_listing(repo, opt, RepoKind::kDataset);
  } catch (const InputError& e) {
    fail_input("{}: {} and the download failed: {}; set the dataset's dataset_path to a local file or folder", what,
               cache_problem, e.what());
  }
  // The README first: its configs say which files the split needs.
  HubListing readme{listing.commit, {}};
  std::vector<std::string> paths;
  for (const auto& f : listing.files) {
    paths.push_back(f.path);
    if (f.path == "README.md") readme.files.push_back(f);
  }
  std::string dir = download_snapshot(repo, readme, opt, RepoKind::kDataset);
  const std::vector<std::string> chosen = split_data_files(paths, readme_in(dir), subset, split, what);
  HubListing data{listing.commit, {}};
  for (const auto& f : listing.files)
    if (std::binary_search(chosen.begin(), chosen.end(), f.path)) data.files.push_back(f);
  dir = download_snapshot(repo, data, opt, RepoKind::kDataset);
  return absolute(dir, chosen);
}

}  // namespace

bool glob_match(const std::string& pattern, const std::string& path) { return glob_at(pattern.c_str(), path.c_str()); }

std::vector<std::string> split_data_files(const std::vector<std::string>& all, const std::string& readme,
                                          const std::string& subset, const std::string& split,
                                          const std::string& what) {
  std::vector<std::string> files;
  for (const auto& f : all)
    if (is_data_file(f) && visible(f)) files.push_back(f);
  std::sort(files.begin(), files.end());
  std::optional<SplitPatterns> patterns = readme_patterns(readme, subset, what);
  if (!patterns && !subset.empty() && subset != "default")
    fail_input("{} declares no configs in its README.md, so it has no subset '{}'; leave subset out", what, subset);
  if (!patterns) patterns = default_patterns(files);
  std::vector<std::string> splits;
  for (const auto& [name, pats] : *patterns)
    if (!matching(files, pats).empty()) splits.push_back(name);
  auto it = patterns->find(split);
  std::vector<std::string> chosen = it == patterns->end() ? std::vector<std::string>{} : matching(files, it->second);
  if (chosen.empty()) {
    if (files.empty())
      fail_input("{} has no data files (*.parquet, *.jsonl, *.json)", what);
    fail_input("{} has no split '{}'; its splits: {}", what, split,
               splits.empty() ? std::string("none") : fmt::format("{}", fmt::join(splits, ", ")));
  }
  return chosen;
}

std::vector<std::string> resolve_dataset_files(const std::string& name, const std::string& subset,
                                               const std::string& split, const HubOptions& opt) {
  std::error_code ec;
  if (fs::is_regular_file(name, ec)) return {name};
  if (fs::is_directory(name, ec)) {
    const fs::path root(name);
    return absolute(root, split_data_files(files_under(root), readme_in(root), subset, split, "dataset " + name));
  }
  if (!looks_like_repo_id(name))
    fail_input("dataset {}: no such file or folder, and not a hub id (ORG/NAME)", name);
  return from_hub(name, subset, split, opt);
}

}  // namespace gptoss
