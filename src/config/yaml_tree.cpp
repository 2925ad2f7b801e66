#include "config/yaml_tree.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <regex>

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace gptoss {

namespace {

// YAML 1.2 core schema typing of a plain scalar.
ConfigJson type_plain_scalar(const std::string& s) {
  static const std::regex kInt(R"([-+]?[0-9]+)");
  static const std::regex kHex(R"(0x[0-9a-fA-F]+)");
  static const std::regex kFloat(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::regex_match(s, kInt)) {
    try {
      return std::stoll(s);
    } catch (...) {
      return std::stod(s);
    }
  }
  if (std::regex_match(s, kHex)) return std::stoll(s, nullptr, 16);
  if (std::regex_match(s, kFloat)) return std::stod(s);
  if (s == ".inf" || s == "+.inf" || s == ".Inf" || s == "+.Inf") return std::numeric_limits<double>::infinity();
  if (s == "-.inf" || s == "-.Inf") return -std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN") return std::numeric_limits<double>::quiet_NaN();
  return s;
}

// key_line: the line of the mapping key that holds n (errors point at the key, not at a nested value).
ConfigJson convert(const YAML::Node& n, const std::string& path, LineMap* lines, int key_line = -1) {
  if (lines && !path.empty()) (*lines)[path] = key_line >= 0 ? key_line + 1 : n.Mark().line + 1;
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return n.Tag() == "!" ? ConfigJson(n.Scalar()) : type_plain_scalar(n.Scalar());
    case YAML::NodeType::Sequence: {
      ConfigJson a = ConfigJson::array();
      for (size_t i = 0; i < n.size(); ++i)
        a.push_back(convert(n[i], path + "[" + std::to_string(i) + "]", lines));
      return a;
    }
    case YAML::NodeType::Map: {
      ConfigJson o = ConfigJson::object();
      for (const auto& kv : n) {
        std::string key = kv.first.as<std::string>();
        o[key] = convert(kv.second, path.empty() ? key : path + "." + key, lines, kv.first.Mark().line);
      }
      return o;
    }
  }
  return nullptr;
}

std::string show(const ConfigJson& v) {
  if (v.is_string()) return "'" + v.get<std::string>() + "'";
  return v.dump();
}

}  // namespace

ConfigJson yaml_to_json(const std::string& text, const std::string& source, LineMap* lines) {
  try {
    return convert(YAML::Load(text), "", lines);
  } catch (const YAML::Exception& e) {
    fail_input("{}:{}: invalid YAML: {}", source, e.mark.line + 1, e.msg);
  }
}

ConfigJson parse_scalar_value(const std::string& text) {
  // Flow collections ("[1, 2]", "{a: 1}") go through YAML; everything else is one plain scalar, so a
  // value such as "a: b" or "#x" stays the literal string the user typed.
  std::string t = text;
  if (!t.empty() && (t.front() == '[' || t.front() == '{')) {
    try {
      return convert(YAML::Load(t), "", nullptr);
    } catch (const YAML::Exception&) {
      return t;
    }
  }
  if (t.size() >= 2 && ((t.front() == '"' && t.back() == '"') || (t.front() == '\'' && t.back() == '\'')))
    return t.substr(1, t.size() - 2);
  return type_plain_scalar(t);
}

int edit_distance(const std::string& a, const std::string& b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = int(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = int(i);
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_d = std::numeric_limits<int>::max();
  for (const auto& c : candidates) {
    int d = edit_distance(word, c);
    // A key that contains the word (or vice versa) is a likely intent: "temp" -> "temperature".
    if (c.find(word) != std::string::npos || word.find(c) != std::string::npos) d = std::min(d, 2);
    if (d < best_d) best_d = d, best = c;
  }
  int limit = std::max<int>(2, int(word.size()) / 3);
  return best_d <= limit ? best : "";
}

FieldReader::FieldReader(const ConfigJson& node, std::string path, std::string source, const LineMap* lines)
    : node_(node.is_null() ? ConfigJson::object() : node), path_(std::move(path)), source_(std::move(source)),
      lines_(lines) {
  if (!node_.is_object())
    fail_input("{}: {} is {}; expected a mapping of keys", where(""), path_.empty() ? "the document" : path_,
               show(node_));
}

std::string FieldReader::dotted(const std::string& key) const {
  if (key.empty()) return path_;
  return path_.empty() ? key : path_ + "." + key;
}

std::string FieldReader::where(const std::string& key) const {
  std::string d = dotted(key);
  if (lines_) {
    auto it = lines_->find(d);
    if (it == lines_->end()) it = lines_->find(path_);
    if (it != lines_->end())
      return it->second < 0 ? fmt::format("command line (--{})", d) : fmt::format("{}:{}", source_, it->second);
  }
  return source_;
}

void FieldReader::fail_type(const std::string& key, const ConfigJson& v, const std::string& expected) const {
  fail_input("{}: {} is {}; expected {}", where(key), dotted(key), show(v), expected);
}

const ConfigJson* FieldReader::find(const char* key) {
  known_.emplace_back(key);
  auto it = node_.find(key);
  if (it == node_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool FieldReader::has(const char* key) const {
  auto it = node_.find(key);
  return it != node_.end() && !it->is_null();
}

const ConfigJson* FieldReader::raw(const char* key) const {
  auto it = node_.find(key);
  return it == node_.end() ? nullptr : &*it;
}

void FieldReader::get(const char* key, std::string& out) {
  const ConfigJson* v = find(key);
  if (!v) return;
  if (v->is_string()) out = v->get<std::string>();
  else if (v->is_number() || v->is_boolean()) out = v->dump();  // `revision: 1234` is still a name
  else fail_type(key, *v, "a string");
}

void FieldReader::get(const char* key, std::optional<std::string>& out) {
  if (!has(key)) {
    find(key);
    return;
  }
  std::string s;
  get(key, s);
  out = s;
}

void FieldReader::get(const char* key, bool& out) {
  const ConfigJson* v = find(key);
  if (!v) return;
  if (!v->is_boolean()) fail_type(key, *v, "true or false");
  out = v->get<bool>();
}

void FieldReader::get(const char* key, int64_t& out, int64_t lo, int64_t hi) {
  const ConfigJson* v = find(key);
  if (!v) return;
  int64_t x = 0;
  if (v->is_number_integer()) x = v->get<int64_t>();
  else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
           std::fabs(v->get<double>()) < 9e18) x = int64_t(v->get<double>());
  else fail_type(key, *v, "an integer");
  if (x < lo || x > hi) {
    std::string range = hi == INT64_MAX ? fmt::format("an integer >= {}", lo)
                        : lo == INT64_MIN ? fmt::format("an integer <= {}", hi)
                                          : fmt::format("an integer in {}..{}", lo, hi);
    fail_type(key, *v, range);
  }
  out = x;
}

void FieldReader::get(const char* key, std::optional<int64_t>& out, int64_t lo, int64_t hi) {
  if (!has(key)) {
    find(key);
    return;
  }
  int64_t x = 0;
  get(key, x, lo, hi);
  out = x;
}

void FieldReader::get(const char* key, double& out, double lo, double hi, bool lo_open) {
  const ConfigJson* v = find(key);
  if (!v) return;
  if (!v->is_number()) fail_type(key, *v, "a number");
  double x = v->get<double>();
  bool bad = std::isnan(x) || x < lo || x > hi || (lo_open && x == lo);
  if (bad) {
    std::string lo_s = fmt::format("{}{}", lo_open ? "> " : ">= ", lo);
    std::string range = hi >= 1e300 ? "a number " + lo_s
                        : lo <= -1e300 ? fmt::format("a number <= {}", hi)
                                       : fmt::format("a number {} and <= {}", lo_s, hi);
    fail_type(key, *v, range);
  }
  out = x;
}

void FieldReader::get(const char* key, std::vector<std::string>& out) {
  const ConfigJson* v = find(key);
  if (!v) return;
  out.clear();
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
    return;
  }
  if (!v->is_array()) fail_type(key, *v, "a list of strings");
  for (const auto& e : *v) {
    if (!e.is_string()) fail_type(key, *v, "a list of strings");
    out.push_back(e.get<std::string>());
  }
}

void FieldReader::get(const char* key, std::vector<int64_t>& out, int64_t lo, int64_t hi) {
  const ConfigJson* v = find(key);
  if (!v) return;
  out.clear();
  ConfigJson arr = v->is_array() ? *v : ConfigJson::array({*v});
  for (const auto& e : arr) {
    if (!e.is_number_integer()) fail_type(key, *v, "a list of integers");
    int64_t x = e.get<int64_t>();
    if (x < lo || x > hi) fail_type(key, e, fmt::format("integers in {}..{}", lo, hi));
    out.push_back(x);
  }
}

void FieldReader::get_enum(const char* key, std::string& out, const std::vector<std::string>& allowed,
                           bool case_insensitive) {
  const ConfigJson* v = find(key);
  if (!v) return;
  if (!v->is_string()) fail_type(key, *v, "one of " + fmt::format("{}", fmt::join(allowed, ", ")));
  std::string s = v->get<std::string>();
  for (const auto& a : allowed) {
    bool eq = case_insensitive
                  ? std::equal(a.begin(), a.end(), s.begin(), s.end(),
                               [](char x, char y) { return std::tolower(x) == std::tolower(y); })
                  : a == s;
    if (eq) {
      out = a;
      return;
    }
  }
  std::string hint = nearest(s, allowed);
  fail_input("{}: {} is '{}'; expected one of {}{}", where(key), dotted(key), s, fmt::join(allowed, ", "),
             hint.empty() ? "" : fmt::format(" (did you mean {}?)", hint));
}

void FieldReader::get_json(const char* key, ConfigJson& out) {
  const ConfigJson* v = find(key);
  if (v) out = *v;
}

void FieldReader::get_object(const char* key, ConfigJson& out) {
  const ConfigJson* v = find(key);
  if (!v) return;
  if (!v->is_object()) fail_type(key, *v, "a mapping");
  out = *v;
}

FieldReader FieldReader::sub(const char* key) {
  const ConfigJson* v = find(key);
  static const ConfigJson kEmpty = ConfigJson::object();
  if (v && !v->is_object()) fail_type(key, *v, "a mapping");
  return FieldReader(v ? *v : kEmpty, dotted(key), source_, lines_);
}

void FieldReader::finish() const {
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (std::find(known_.begin(), known_.end(), it.key()) != known_.end()) continue;
    std::string hint = nearest(it.key(), known_);
    if (!hint.empty())
      fail_input("{}: unknown key {}; did you mean {}?", where(it.key()), dotted(it.key()), dotted(hint));
    std::vector<std::string> sorted = known_;
    std::sort(sorted.begin(), sorted.end());
    fail_input("{}: unknown key {}; valid keys{} are: {}", where(it.key()), dotted(it.key()),
               path_.empty() ? "" : " of " + path_, fmt::join(sorted, ", "));
  }
}

}  // namespace gptoss
