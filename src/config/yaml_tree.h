// YAML documents as typed JSON trees, plus the field reader the schemas are written with.
//
// Why JSON: every other layer (tools, chat templates, logit_bias, API requests) already speaks
// nlohmann::json, and a typed tree lets command-line overrides and file values go through one validator.
//
// Contract:
//  - yaml_to_json(): plain scalars are typed as YAML 1.2 core schema does (null/~, true/false in any of
//    the three casings, ints, floats incl. 2e-4 and .inf); quoted scalars stay strings. `lines` receives
//    "a.b.c" -> 1-based line of each node, for error messages.
//  - parse_scalar_value(): the same typing for a command-line override value ("0.7", "[1, 2]", "null").
//  - FieldReader::get*(): read one key of a mapping into a typed destination if present (absent keys
//    leave the default untouched); type and range errors throw InputError naming file:line, the dotted
//    key, the value and what is expected. finish() rejects keys that were never asked for, suggesting the
//    nearest valid key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gptoss {

// Ordered: key order from the file is kept (tool JSON Schemas render their properties in that order).
using ConfigJson = nlohmann::ordered_json;
using LineMap = std::map<std::string, int>;

// Throws InputError naming `source` on a YAML syntax error.
ConfigJson yaml_to_json(const std::string& text, const std::string& source, LineMap* lines = nullptr);
ConfigJson parse_scalar_value(const std::string& text);

// Edit distance (insert/delete/substitute = 1); used for "did you mean" suggestions.
int edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word`, or "" if none is close (distance > max(2, |word|/3)).
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

class FieldReader {
 public:
  // node: a mapping (or null, read as empty); path: dotted prefix ("generation"), "" at top level.
  FieldReader(const ConfigJson& node, std::string path, std::string source, const LineMap* lines);

  void get(const char* key, std::string& out);
  void get(const char* key, std::optional<std::string>& out);
  void get(const char* key, bool& out);
  void get(const char* key, int64_t& out, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX);
  void get(const char* key, std::optional<int64_t>& out, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX);
  void get(const char* key, double& out, double lo = -1e300, double hi = 1e300, bool lo_open = false);
  void get(const char* key, std::vector<std::string>& out);  // a single string is a one-item list
  void get(const char* key, std::vector<int64_t>& out, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX);
  void get_enum(const char* key, std::string& out, const std::vector<std::string>& allowed,
                bool case_insensitive = false);
  void get_json(const char* key, ConfigJson& out);  // any value, kept as is
  void get_object(const char* key, ConfigJson& out);  // a mapping (null -> {})
  // A nested mapping: marks `key` known and returns a reader for it (empty if absent).
  FieldReader sub(const char* key);
  // A reader for a node found inside this one (list items), sharing the source and line map.
  FieldReader child(const ConfigJson& node, const std::string& path) const {
    return FieldReader(node, path, source_, lines_);
  }
  bool has(const char* key) const;
  const ConfigJson* raw(const char* key) const;

  // Throws for the first key that no get*/sub asked about.
  void finish() const;

  std::string where(const std::string& key) const;  // "file:line: a.b.key"
  std::string dotted(const std::string& key) const;
  [[noreturn]] void fail_type(const std::string& key, const ConfigJson& v, const std::string& expected) const;

 private:
  const ConfigJson* find(const char* key);
  ConfigJson node_;
  std::string path_, source_;
  const LineMap* lines_;
  std::vector<std::string> known_;
};

}  // namespace gptoss
