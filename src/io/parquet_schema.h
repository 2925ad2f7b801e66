// The Parquet schema as a tree, with what record assembly needs: definition/repetition levels per node
// and how each node appears in the JSON rows (LogicalTypes.md's LIST and MAP rules, including the
// backward-compatibility rules for 2-level lists).
//
// JSON shape of a node:
//   a primitive                       its value (null when an optional one is missing)
//   a group                           an object of its children
//   a LIST group                      an array; 3-level (`repeated group list { element }`): the elements are
//                                     `element`'s values; 2-level (the repeated child is the element: a
//                                     primitive, a group of several fields, or a one-field group named
//                                     "array" or "<list>_tuple"): the elements are the repeated child's values
//   a MAP group                       an array of {"key": .., "value": ..} (turned into an object when the
//                                     keys are strings; see parquet.h)
//   any other repeated node           an array of the node's values
#pragma once

#include <string>
#include <vector>

#include "io/parquet_meta.h"

namespace gptoss::io::parquet {

struct SchemaNode {
  enum Content { kValue, kObject, kTransparent };  // kTransparent: the node's value is its only child's
  std::string name;
  int repetition = kRequired;
  int def_level = 0;  // definition level at which this node is present
  int rep_level = 0;  // repetition levels of this node and its ancestors
  int parent = -1;
  std::vector<int> children;
  bool member = true;  // placed as key `key` of the parent's object; else it is the parent's value itself
  std::string key;
  Content content = kObject;
  bool is_map = false;             // a MAP group (array of entries, see above)
  bool map_string_keys = false;    // ... whose key is a string-like primitive
  bool has_string_key_map = false;  // this node or a descendant is a map with string keys
  int leaf = -1;                    // index into Schema::leaves
};

// How a primitive column's values become JSON.
struct Leaf {
  int node = -1;
  int field = -1;  // the top-level field it belongs to (index into Schema::fields)
  std::vector<int> nodes;                // top-level field .. leaf
  std::vector<std::string> path;         // names, for path_in_schema
  std::string dotted;                    // "messages.list.element.role"
  int type = kByteArray;
  int type_length = 0;
  int max_def = 0, max_rep = 0;
  bool is_unsigned = false;
  bool is_decimal = false;
  int scale = 0;
};

struct Schema {
  std::vector<SchemaNode> nodes;  // nodes[0] is the root
  std::vector<int> fields;        // the root's children
  std::vector<Leaf> leaves;       // schema (column chunk) order
};

// Builds and validates the tree (throws InputError "schema: ..." without the file name).
Schema build_schema(const std::vector<SchemaElement>& elements);

}  // namespace gptoss::io::parquet
