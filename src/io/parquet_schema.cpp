#include "io/parquet_schema.h"

#include "core/error.h"

namespace gptoss::io::parquet {

namespace {

// Deeper nesting than this is no real dataset; the bound keeps levels within a byte and recursion short.
constexpr int kMaxDepth = 64;

bool is_list(const SchemaElement& e) {
  return e.converted_type == kConvertedList || e.logical.kind == LogicalType::kList;
}
bool is_map(const SchemaElement& e) {
  return e.converted_type == kConvertedMap || e.converted_type == kConvertedMapKeyValue ||
         e.logical.kind == LogicalType::kMap;
}

class Builder {
 public:
  explicit Builder(const std::vector<SchemaElement>& elements) : el_(elements) {}

  Schema build() {
    if (el_.empty()) fail_input("schema: the element list is empty; expected a root group");
    add(-1, 0);
    if (next_ != el_.size())
      fail_input("schema: {} elements follow the root's last child; the children counts are inconsistent",
                 el_.size() - next_);
    s_.fields = s_.nodes[0].children;
    fixed_.assign(s_.nodes.size(), false);
    for (int f : s_.fields) shape(f);
    for (size_t i = 0; i < s_.nodes.size(); ++i)
      if (s_.nodes[i].leaf >= 0) add_leaf(int(i));
    return std::move(s_);
  }

 private:
  int add(int parent, int depth) {
    const size_t index = next_++;
    const SchemaElement& e = el_[index];
    if (depth > kMaxDepth) fail_input("schema: '{}' is nested deeper than {} levels", e.name, kMaxDepth);
    const int id = int(s_.nodes.size());
    s_.nodes.emplace_back();
    {
      SchemaNode& n = s_.nodes[id];
      n.name = e.name;
      n.key = e.name;
      n.parent = parent;
      if (parent >= 0) {
        const int rep = e.repetition.value_or(kRequired);
        if (rep < kRequired || rep > kRepeated)
          fail_input("schema: field '{}' has repetition type {}; expected REQUIRED, OPTIONAL or REPEATED", e.name, rep);
        const SchemaNode& p = s_.nodes[parent];
        n.repetition = rep;
        n.def_level = p.def_level + (rep != kRequired);
        n.rep_level = p.rep_level + (rep == kRepeated);
      }
    }
    const bool group = parent < 0 || e.num_children.value_or(0) > 0 || !e.type.has_value();
    if (!group) {
      if (*e.type < kBoolean || *e.type > kFixedLenByteArray)
        fail_input("schema: column '{}' has {}; expected a Parquet physical type", e.name, type_name(*e.type));
      if (*e.type == kFixedLenByteArray && e.type_length <= 0)
        fail_input("schema: column '{}' is FIXED_LEN_BYTE_ARRAY of length {}; expected a positive length", e.name,
                   e.type_length);
      s_.nodes[id].content = SchemaNode::kValue;
      s_.nodes[id].leaf = 0;  // numbered in add_leaf
      elements_.push_back(index);
      return id;
    }
    elements_.push_back(index);
    const int count = e.num_children.value_or(0);
    if (count <= 0 && parent < 0) fail_input("schema: the root has no columns");
    if (count <= 0) fail_input("schema: group '{}' has no children", e.name);
    for (int i = 0; i < count; ++i) {
      if (next_ >= el_.size())
        fail_input("schema: group '{}' declares {} children but the element list ends after {}", e.name, count, i);
      int c = add(id, depth + 1);
      s_.nodes[id].children.push_back(c);
    }
    return id;
  }

  const SchemaElement& element(int id) const { return el_[elements_[id]]; }

  // Decides how node `id` and, for LIST and MAP groups, its repeated child appear in JSON.
  void shape(int id) {
    SchemaNode& n = s_.nodes[id];
    const SchemaElement& e = element(id);
    if (n.leaf < 0 && !fixed_[id]) {
      n.content = SchemaNode::kObject;
      const int r = n.children.size() == 1 ? n.children[0] : -1;
      const bool repeated_child = r >= 0 && s_.nodes[r].repetition == kRepeated;
      if (is_list(e) && repeated_child) {
        SchemaNode& rn = s_.nodes[r];
        n.content = SchemaNode::kTransparent;
        rn.member = false;
        fixed_[r] = true;
        if (rn.leaf >= 0) {
          rn.content = SchemaNode::kValue;  // 2-level list of primitives
        } else if (rn.children.size() > 1 || rn.name == "array" || rn.name == n.name + "_tuple") {
          rn.content = SchemaNode::kObject;  // 2-level list whose repeated group is the element
        } else {
          rn.content = SchemaNode::kTransparent;  // 3-level: the element is the repeated group's child
          s_.nodes[rn.children[0]].member = false;
        }
      } else if (is_map(e) && repeated_child && s_.nodes[r].leaf < 0 && s_.nodes[r].children.size() <= 2) {
        SchemaNode& rn = s_.nodes[r];
        n.content = SchemaNode::kTransparent;
        n.is_map = true;
        rn.member = false;
        rn.content = SchemaNode::kObject;
        fixed_[r] = true;
        s_.nodes[rn.children[0]].key = "key";
        if (rn.children.size() == 2) s_.nodes[rn.children[1]].key = "value";
        const SchemaNode& k = s_.nodes[rn.children[0]];
        const SchemaElement& ke = element(rn.children[0]);
        n.map_string_keys = k.leaf >= 0 && (*ke.type == kByteArray || *ke.type == kFixedLenByteArray) &&
                            ke.converted_type != kConvertedDecimal && ke.logical.kind != LogicalType::kDecimal;
      }
    }
    for (int c : s_.nodes[id].children) shape(c);
    SchemaNode& m = s_.nodes[id];
    m.has_string_key_map = m.map_string_keys;
    for (int c : m.children) m.has_string_key_map |= s_.nodes[c].has_string_key_map;
  }

  void add_leaf(int id) {
    const SchemaElement& e = element(id);
    Leaf l;
    l.node = id;
    for (int p = id; p > 0; p = s_.nodes[p].parent) l.nodes.insert(l.nodes.begin(), p);
    for (int p : l.nodes) {
      l.path.push_back(s_.nodes[p].name);
      l.dotted += (l.dotted.empty() ? "" : ".") + s_.nodes[p].name;
    }
    for (size_t f = 0; f < s_.fields.size(); ++f)
      if (s_.fields[f] == l.nodes.front()) l.field = int(f);
    l.type = *e.type;
    l.type_length = e.type_length;
    l.max_def = s_.nodes[id].def_level;
    l.max_rep = s_.nodes[id].rep_level;
    const int ct = e.converted_type.value_or(-1);
    l.is_unsigned = (ct >= kConvertedUint8 && ct <= kConvertedUint64) ||
                    (e.logical.kind == LogicalType::kInteger && !e.logical.is_signed);
    const bool decimal_type = l.type == kInt32 || l.type == kInt64 || l.type == kByteArray || l.type == kFixedLenByteArray;
    l.is_decimal = decimal_type && (ct == kConvertedDecimal || e.logical.kind == LogicalType::kDecimal);
    if (l.is_decimal) {
      l.scale = e.logical.kind == LogicalType::kDecimal ? e.logical.scale : e.scale;
      if (l.scale < 0 || l.scale > 100)
        fail_input("schema: DECIMAL column '{}' has scale {}; expected 0..100", l.dotted, l.scale);
    }
    s_.nodes[id].leaf = int(s_.leaves.size());
    s_.leaves.push_back(std::move(l));
  }

  const std::vector<SchemaElement>& el_;
  Schema s_;
  size_t next_ = 0;
  std::vector<size_t> elements_;  // node id -> element index
  std::vector<bool> fixed_;       // content decided by the parent (the repeated child of a LIST or MAP)
};

}  // namespace

Schema build_schema(const std::vector<SchemaElement>& elements) { return Builder(elements).build(); }

}  // namespace gptoss::io::parquet
