#include "api/model_tokenizer.h"

#include <filesystem>

#include "core/error.h"

namespace gptoss {

Tokenizer load_model_tokenizer(const std::string& tokenizer_name, const std::string& model_dir,
                               const HubOptions& hub) {
  namespace fs = std::filesystem;
  if (!tokenizer_name.empty()) {
    if (fs::is_regular_file(tokenizer_name)) return Tokenizer::from_file(tokenizer_name);
    return Tokenizer::from_model_dir(resolve_model_dir(tokenizer_name, hub));
  }
  if (!fs::exists(fs::path(model_dir) / "tokenizer.json"))
    fail_input("{}: no tokenizer.json; copy o200k_harmony's tokenizer.json (from openai/gpt-oss-20b) there, or set "
               "model.tokenizer_name to a directory or file that has it",
               model_dir);
  return Tokenizer::from_model_dir(model_dir);
}

}  // namespace gptoss
