// JSON Schema -> harmony's TypeScript-like tool signatures (upstream json_schema_to_typescript).
//
// The output format is the model's training format, so oddities are kept on purpose: nested property
// lists are indented 4 spaces per level with the closing brace indented too, oneOf variants go on
// their own " | " lines (their nested lines 3 spaces deeper), only `type: string` looks at `enum`,
// integer renders as number, `type: "null"` and anyOf render as any, only string examples are listed,
// and string defaults of enums are written bare while other string defaults are quoted.
#include <algorithm>

#include "harmony/harmony.h"

namespace gptoss::harmony {
namespace {

using Json = nlohmann::ordered_json;

// Deeper schemas render as `any`: keeps the recursion bounded for hostile input (no real tool
// schema nests this deep).
constexpr int kMaxDepth = 64;

std::string to_ts(const Json& schema, const std::string& indent, int depth);

const Json* get(const Json& s, const char* key) {
  if (!s.is_object()) return nullptr;
  auto it = s.find(key);
  return it == s.end() ? nullptr : &*it;
}

const std::string* get_str(const Json& s, const char* key) {
  const Json* v = get(s, key);
  return v && v->is_string() ? v->get_ptr<const std::string*>() : nullptr;
}

bool is_enum(const Json& s) {
  const Json* e = get(s, "enum");
  return e && e->is_array() && !e->empty();
}

bool is_nullable(const Json& s) {
  const Json* n = get(s, "nullable");
  return n && n->is_boolean() && n->get<bool>();
}

// Compact JSON as serde_json's Display writes it (no spaces, UTF-8 kept).
std::string compact(const Json& v) {
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string default_comment(const Json& schema, const Json& def) {
  if (def.is_string()) {
    const auto& s = def.get_ref<const std::string&>();
    return is_enum(schema) ? "default: " + s : "default: \"" + s + "\"";
  }
  return "default: " + compact(def);
}

std::string with_nullable(const Json& schema, std::string type) {
  if (is_nullable(schema) && type.find("null") == std::string::npos) type += " | null";
  return type;
}

// Trailing " // description default: x" after a oneOf variant; `skip_desc` drops the description
// (upstream does not repeat a property's description on its variants).
std::string variant_trailing(const Json& variant, bool skip_desc = false) {
  std::vector<std::string> parts;
  if (const std::string* d = get_str(variant, "description"); d && !skip_desc) parts.push_back(*d);
  if (const Json* def = get(variant, "default")) parts.push_back(default_comment(variant, *def));
  if (parts.empty()) return "";
  std::string out = " // ";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? " " : "") + parts[i];
  return out;
}

// Each variant on its own "<indent> | " line; nested lines are indented 3 more spaces (under the type,
// past " | "). prop_desc: the property's description, or null for a top-level union; desc_above: it
// was written above the property, so the first variant's own description is left out.
std::string one_of_variants(const Json& arr, const std::string& indent, int depth,
                            const std::string* prop_desc = nullptr, bool desc_above = false) {
  std::string out;
  size_t i = 0;
  for (const Json& variant : arr) {
    out += "\n" + indent + " | ";
    out += with_nullable(variant, to_ts(variant, indent + "   ", depth + 1));
    const std::string* vd = get_str(variant, "description");
    bool skip = (i == 0 && desc_above) || (prop_desc && vd && *vd == *prop_desc);
    out += variant_trailing(variant, skip);
    ++i;
  }
  return out;
}

std::string object_type(const Json& schema, const std::string& indent, int depth) {
  std::string out;
  if (const std::string* d = get_str(schema, "description")) out += indent + "// " + *d + "\n";
  out += "{\n";
  const Json* props = get(schema, "properties");
  if (props && props->is_object()) {
    std::vector<std::string> required;
    if (const Json* r = get(schema, "required"); r && r->is_array())
      for (const Json& x : *r)
        if (x.is_string()) required.push_back(x.get<std::string>());
    for (const auto& [key, val] : props->items()) {
      bool req = std::find(required.begin(), required.end(), key) != required.end();
      std::string opt = req ? "" : "?";
      const Json* one_of = get(val, "oneOf");
      bool is_one_of = one_of && one_of->is_array();
      if (const std::string* t = get_str(val, "title")) out += indent + "// " + *t + "\n" + indent + "//\n";
      if (!is_one_of)
        if (const std::string* d = get_str(val, "description")) out += indent + "// " + *d + "\n";
      if (const Json* ex = get(val, "examples"); ex && ex->is_array() && !ex->empty()) {
        out += indent + "// Examples:\n";
        for (const Json& e : *ex)
          if (e.is_string()) out += indent + "// - \"" + e.get<std::string>() + "\"\n";
      }
      if (is_one_of) {
        // A union property: its description and default go above, each variant on its own line.
        const std::string* d = get_str(val, "description");
        const std::string* first_d = one_of->empty() ? nullptr : get_str((*one_of)[0], "description");
        bool above = d && !(first_d && *first_d == *d);
        if (above) out += indent + "// " + *d + "\n";
        if (const Json* def = get(val, "default")) out += indent + "// " + default_comment(val, *def) + "\n";
        out += indent + key + opt + ":";
        out += one_of_variants(*one_of, indent, depth + 1, d, above);
        out += "\n" + indent + ",\n";
        continue;
      }
      out += indent + key + opt + ": " + with_nullable(val, to_ts(val, indent + "    ", depth + 1));
      if (const Json* def = get(val, "default"))
        out += ", // " + default_comment(val, *def) + "\n";
      else
        out += ",\n";
    }
  }
  out += indent + "}";
  return out;
}

std::string scalar_name(const std::string& t) { return t == "integer" ? "number" : t; }

std::string to_ts(const Json& schema, const std::string& indent, int depth) {
  if (!schema.is_object() || depth > kMaxDepth) return "any";
  if (const Json* one_of = get(schema, "oneOf"); one_of && one_of->is_array())
    return one_of_variants(*one_of, indent, depth + 1);
  const Json* type = get(schema, "type");
  if (type && type->is_array()) {
    std::string out;
    for (const Json& t : *type) {
      if (!t.is_string()) continue;
      if (!out.empty()) out += " | ";
      out += scalar_name(t.get<std::string>());
    }
    if (!out.empty()) return out;
  }
  if (!type || !type->is_string()) return "any";
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "object") return object_type(schema, indent, depth + 1);
  if (t == "string") {
    if (const Json* e = get(schema, "enum"); e && e->is_array()) {
      std::string out;
      for (const Json& v : *e) {
        if (!v.is_string()) continue;
        if (!out.empty()) out += " | ";
        out += "\"" + v.get<std::string>() + "\"";
      }
      if (!out.empty()) return out;
    }
    return "string";
  }
  if (t == "number" || t == "integer") return "number";
  if (t == "boolean") return "boolean";
  if (t == "array") {
    if (const Json* items = get(schema, "items")) return to_ts(*items, indent, depth + 1) + "[]";
    return "Array<any>";
  }
  return "any";
}

}  // namespace

std::string json_schema_to_typescript(const nlohmann::ordered_json& schema, const std::string& indent) {
  return to_ts(schema, indent, 0);
}

}  // namespace gptoss::harmony
