// Bundled recipes (configs/recipes/gpt_oss/...) and how config names resolve to files.
//
// Names, tried in order:
//  1. an existing file path;
//  2. `oumi://configs/X.yaml` or `configs/X.yaml`: the bundled copy of Oumi's recipe (offline; no
//     download; Oumi recipes we do not bundle are an error listing the bundled ones);
//  3. an alias: gpt-oss-20b, gpt-oss-120b, gpt-oss-20b-lora (see config_aliases()).
// The bundled configs/ directory is found at run time: $GPTOSS_CONFIG_DIR (a directory that contains
// recipes/), else next to the binary (<exe>/../configs, <exe>/configs, <exe>/../share/gptoss/configs),
// else ./configs.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace gptoss {

struct RecipeInfo {
  std::string name;         // "oumi://configs/recipes/gpt_oss/inference/20b_infer.yaml"
  std::string path;         // file on disk
  std::string kind;         // inference | sft | quantization
  std::string description;  // first comment line of the file
  std::vector<std::string> aliases;
};

// "" when no bundled configs directory is found.
std::string bundled_configs_dir();
// Throws InputError naming the config and listing what is available.
std::string resolve_config_path(const std::string& name);
// Alias -> "configs/recipes/..." path relative to the bundled configs' parent.
const std::vector<std::pair<std::string, std::string>>& config_aliases();
// Every bundled recipe, sorted by name.
std::vector<RecipeInfo> list_recipes();

}  // namespace gptoss
