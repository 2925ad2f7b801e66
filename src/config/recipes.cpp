#include "config/recipes.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/yaml_tree.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace gptoss {

namespace {

constexpr const char* kOumiScheme = "oumi://";

fs::path exe_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : p.parent_path();
}

bool is_configs_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p / "recipes", ec);
}

}  // namespace

std::string bundled_configs_dir() {
  if (const char* env = std::getenv("GPTOSS_CONFIG_DIR"); env && *env && is_configs_dir(env)) return env;
  fs::path e = exe_dir();
  std::vector<fs::path> candidates;
  if (!e.empty()) {
    // build/gptoss and build/tests both sit one level below the repository root.
    candidates = {e / ".." / "configs", e / "configs", e / ".." / "share" / "gptoss" / "configs",
                  e / ".." / ".." / "configs"};
  }
  candidates.push_back(fs::current_path() / "configs");
  for (const auto& c : candidates)
    if (is_configs_dir(c)) return fs::weakly_canonical(c).string();
  return "";
}

const std::vector<std::pair<std::string, std::string>>& config_aliases() {
  static const std::vector<std::pair<std::string, std::string>> kAliases = {
      {"gpt-oss-20b", "configs/recipes/gpt_oss/inference/20b_infer.yaml"},
      {"gpt-oss-120b", "configs/recipes/gpt_oss/inference/120b_infer.yaml"},
      {"gpt-oss-20b-lora", "configs/recipes/gpt_oss/sft/20b_lora_train.yaml"},
  };
  return kAliases;
}

std::vector<RecipeInfo> list_recipes() {
  std::vector<RecipeInfo> out;
  std::string dir = bundled_configs_dir();
  if (dir.empty()) return out;
  fs::path root = fs::path(dir).parent_path();
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().extension() != ".yaml") continue;
    RecipeInfo r;
    std::string rel = fs::relative(entry.path(), root).generic_string();
    r.name = kOumiScheme + rel;
    r.path = entry.path().string();
    r.kind = entry.path().parent_path().filename().string();
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("# ", 0) == 0) {
        r.description = line.substr(2);
        break;
      }
    }
    for (const auto& [alias, target] : config_aliases())
      if (target == rel) r.aliases.push_back(alias);
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string resolve_config_path(const std::string& name) {
  std::error_code ec;
  if (name.empty()) fail_input("no config given; pass -c FILE, -c oumi://configs/..., or an alias such as gpt-oss-20b");
  if (name.rfind(kOumiScheme, 0) != 0 && fs::is_regular_file(name, ec)) return name;

  std::string rel;
  if (name.rfind(kOumiScheme, 0) == 0) rel = name.substr(std::string(kOumiScheme).size());
  else if (name.rfind("configs/", 0) == 0) rel = name;
  for (const auto& [alias, target] : config_aliases())
    if (name == alias) rel = target;

  std::vector<std::string> names;
  for (const auto& r : list_recipes()) names.push_back(r.name);
  for (const auto& [alias, target] : config_aliases()) names.push_back(alias);

  if (!rel.empty()) {
    std::string dir = bundled_configs_dir();
    if (dir.empty())
      fail_input("{}: the bundled configs directory was not found next to the binary; set GPTOSS_CONFIG_DIR to "
                 "the configs/ folder of the gptoss source tree",
                 name);
    fs::path p = fs::path(dir).parent_path() / rel;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  std::string hint = nearest(name, names);
  fail_input("{}: no such config file, bundled recipe or alias{}; bundled: {} (see `gptoss infer --list`)", name,
             hint.empty() ? "" : fmt::format(" (did you mean {}?)", hint), fmt::join(names, ", "));
}

}  // namespace gptoss
