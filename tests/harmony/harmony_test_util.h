// Shared helpers for the harmony tests: paths, the tokenizer, the conformance cases.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace gptoss::harmony::testing {

inline std::string shared_dir() {
  if (const char* e = std::getenv("GPTOSS_SHARED_DIR"); e && *e) return e;
  return GPTOSS_SHARED_DIR;
}

inline std::string harmony_dir() { return shared_dir() + "/data/harmony"; }

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Upstream compares after .rstrip() / trim_end().
inline std::string rstrip(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r'))
    s.pop_back();
  return s;
}

inline const Tokenizer& tokenizer() {
  static const Tokenizer tok = Tokenizer::from_file(shared_dir() + "/data/tokenizer/tokenizer.json");
  return tok;
}

inline std::vector<nlohmann::ordered_json> load_cases() {
  std::vector<nlohmann::ordered_json> out;
  std::ifstream f(harmony_dir() + "/cases.jsonl");
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::ordered_json::parse(line));
  return out;
}

}  // namespace gptoss::harmony::testing
