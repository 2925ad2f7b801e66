// Shared by the libFuzzer targets: the o200k_harmony tokenizer, found through $GPTOSS_SHARED_DIR or
// the shared/ folder next to the source tree.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace gptoss::fuzz {

inline const Tokenizer& tokenizer() {
  static std::unique_ptr<Tokenizer> tok = [] {
    std::string dir;
    if (const char* e = std::getenv("GPTOSS_SHARED_DIR"); e && *e)
      dir = e;
    else
      dir = (std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "shared").string();
    std::string path = dir + "/data/tokenizer/tokenizer.json";
    if (!std::filesystem::exists(path)) {
      std::fprintf(stderr, "fuzz: %s not found; set GPTOSS_SHARED_DIR\n", path.c_str());
      std::abort();
    }
    return std::make_unique<Tokenizer>(Tokenizer::from_file(path));
  }();
  return *tok;
}

}  // namespace gptoss::fuzz
