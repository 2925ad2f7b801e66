#include "io/parquet.h"

#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/mmap_file.h"
#include "io/parquet_column.h"
#include "io/parquet_meta.h"
#include "io/parquet_schema.h"

namespace gptoss::io {

using json = nlohmann::ordered_json;
using namespace parquet;

namespace {

// Record assembly, one column at a time: each entry (repetition level r, definition level d) walks the
// leaf's path from the row object down, creating what is missing. A node with repetition level j picks
// array element pos[j]: the last one when j < r, the next one when j == r, the first of a new array when
// j > r. The walk stops at the first node that d says is absent (null, or an empty array for a repeated
// node). Later columns of the same field walk the same containers, so their levels must agree with the
// earlier columns' (checked: a disagreement is a corrupt file).
class Assembler {
 public:
  Assembler(const Schema& s, const Leaf& leaf, ColumnData& col) : s_(s), leaf_(leaf), col_(col) {}

  void run(std::vector<json>& rows, bool create_rows, int64_t num_rows) {
    std::vector<int64_t> pos(size_t(leaf_.max_rep) + 1, -1);
    int64_t row = -1;
    size_t next_value = 0;
    for (size_t i = 0; i < col_.entries; ++i) {
      const int r = leaf_.max_rep ? col_.rep[i] : 0;
      const int d = leaf_.max_def ? col_.def[i] : 0;
      if (r == 0) {
        ++row;
        if (size_t(row) == rows.size()) {
          if (!create_rows) fail_input("the column has more rows than the row group's earlier columns ({})", rows.size());
          rows.emplace_back(json::object());
        }
      } else if (row < 0) {
        fail_input("the first entry has repetition level {}; a column chunk must start a row (level 0)", r);
      }
      json* cur = &rows[size_t(row)];
      bool fresh = false;
      for (int id : leaf_.nodes) {
        const SchemaNode& n = s_.nodes[size_t(id)];
        if (n.member) {
          if (!cur->is_object()) disagree(row, n);
          auto it = cur->find(n.key);
          fresh = it == cur->end();
          cur = fresh ? &(*cur)[n.key] : &it.value();
        }
        if (n.repetition == kRepeated) {
          if (fresh) *cur = json::array();
          else if (!cur->is_array()) disagree(row, n);
          if (d < n.def_level) break;  // an empty array
          const int j = n.rep_level;
          const int64_t idx = j < r ? pos[size_t(j)] : j == r ? ++pos[size_t(j)] : (pos[size_t(j)] = 0);
          if (idx < 0 || size_t(idx) > cur->size()) disagree(row, n);
          fresh = size_t(idx) == cur->size();
          if (fresh) cur->push_back(nullptr);
          cur = &(*cur)[size_t(idx)];
        } else if (n.repetition == kOptional && d < n.def_level) {
          if (!fresh && !cur->is_null()) disagree(row, n);
          *cur = nullptr;
          break;
        }
        if (n.content == SchemaNode::kObject) {
          if (fresh) *cur = json::object();
          else if (!cur->is_object()) disagree(row, n);
        } else if (n.content == SchemaNode::kValue) {
          if (!fresh) disagree(row, n);
          if (next_value >= col_.values.size()) fail_input("row {}: more present entries than values", row);
          *cur = std::move(col_.values[next_value++]);
        }
      }
    }
    if (row + 1 != num_rows)
      fail_input("the column holds {} rows; the row group declares {}", row + 1, num_rows);
  }

 private:
  [[noreturn]] void disagree(int64_t row, const SchemaNode& n) const {
    fail_input("row {}: the levels at '{}' disagree with the data already assembled from other columns of the "
               "same field (corrupt levels)", row, n.name);
  }

  const Schema& s_;
  const Leaf& leaf_;
  ColumnData& col_;
};

// MAP groups with string keys: the assembled array of {"key", "value"} becomes an object.
void finalize(const Schema& s, int id, json& v);

void finalize_content(const Schema& s, int id, json& v) {
  const SchemaNode& n = s.nodes[size_t(id)];
  if (v.is_null()) return;
  if (n.content == SchemaNode::kObject && v.is_object()) {
    for (int c : n.children) {
      auto it = v.find(s.nodes[size_t(c)].key);
      if (it != v.end()) finalize(s, c, it.value());
    }
  } else if (n.content == SchemaNode::kTransparent) {
    finalize(s, n.children[0], v);
  }
  if (!n.map_string_keys || !v.is_array()) return;
  for (const json& e : v) {
    auto k = e.find("key");
    if (k == e.end() || !k->is_string()) return;  // a null key: keep the array form
  }
  json obj = json::object();
  for (json& e : v) {
    auto val = e.find("value");
    obj[e["key"].get<std::string>()] = val != e.end() ? std::move(val.value()) : json(nullptr);
  }
  v = std::move(obj);
}

void finalize(const Schema& s, int id, json& v) {
  const SchemaNode& n = s.nodes[size_t(id)];
  if (!n.has_string_key_map) return;
  if (n.repetition != kRepeated) return finalize_content(s, id, v);
  if (v.is_array())
    for (json& e : v) finalize_content(s, id, e);
}

}  // namespace

struct ParquetReader::Impl {
  std::string path;
  MappedFile map;
  FileMetaData meta;
  Schema schema;
  uint64_t footer_begin = 0;

  void validate_row_groups() const;
};

void ParquetReader::Impl::validate_row_groups() const {
  if (meta.num_rows < 0) fail_input("{}: the footer declares {} rows", path, meta.num_rows);
  int64_t total = 0;
  for (size_t g = 0; g < meta.row_groups.size(); ++g) {
    const RowGroup& rg = meta.row_groups[g];
    if (rg.num_rows < 0 || __builtin_add_overflow(total, rg.num_rows, &total))
      fail_input("{}: row group {} declares {} rows", path, g, rg.num_rows);
    if (rg.columns.size() != schema.leaves.size())
      fail_input("{}: row group {} has {} column chunks; the schema has {} columns", path, g, rg.columns.size(),
                 schema.leaves.size());
    for (size_t c = 0; c < rg.columns.size(); ++c) {
      const Leaf& leaf = schema.leaves[c];
      const ColumnChunk& cc = rg.columns[c];
      const ColumnMetaData& md = cc.meta_data;
      const std::string where = fmt::format("{}: row group {}, column {}", path, g, leaf.dotted);
      if (cc.file_path) fail_input("{}: data stored in another file ('{}') is not supported", where, *cc.file_path);
      if (cc.encrypted) fail_input("{}: the column is encrypted; encrypted files are not supported", where);
      if (!cc.has_meta_data) fail_input("{}: the column chunk lacks its meta_data", where);
      if (md.path_in_schema != leaf.path)
        fail_input("{}: the chunk's path_in_schema is '{}'; expected '{}' (chunks in schema order)", where,
                   fmt::join(md.path_in_schema, "."), leaf.dotted);
      if (md.type != leaf.type)
        fail_input("{}: the chunk's type is {}; the schema says {}", where, type_name(md.type), type_name(leaf.type));
      if (leaf.max_rep == 0 && md.num_values != rg.num_rows)
        fail_input("{}: the chunk declares {} values for {} rows; expected one per row", where, md.num_values, rg.num_rows);
      if (leaf.max_rep > 0 && md.num_values < rg.num_rows)
        fail_input("{}: the chunk declares {} values for {} rows; expected at least one per row", where, md.num_values,
                   rg.num_rows);
      const ChunkRange r = chunk_range(md);
      if (md.total_compressed_size < 0 || r.begin < 4 || r.begin > footer_begin || r.size > footer_begin - r.begin)
        fail_input("{}: pages at byte {} ({} bytes) lie outside the data region [4, {}) of the file: corrupt offsets "
                   "or a truncated file", where, int64_t(r.begin), md.total_compressed_size, footer_begin);
      if (md.num_values > 0 && (uint64_t(md.data_page_offset) < r.begin || uint64_t(md.data_page_offset) >= r.begin + r.size))
        fail_input("{}: data_page_offset {} lies outside the chunk's pages [{}, {}): corrupt offsets", where,
                   md.data_page_offset, r.begin, r.begin + r.size);
    }
  }
  if (total != meta.num_rows)
    fail_input("{}: the footer declares {} rows but its row groups hold {}", path, meta.num_rows, total);
}

ParquetReader::ParquetReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.map = MappedFile(path);
  const uint8_t* base = m.map.data();
  const size_t size = m.map.size();
  if (size < 12)
    fail_input("{}: file is {} bytes; a Parquet file holds at least 12 (\"PAR1\", footer, footer length, \"PAR1\"): "
               "truncated or not Parquet", path, size);
  if (std::memcmp(base, "PAR1", 4) != 0)
    fail_input("{}: does not start with the Parquet magic \"PAR1\"; not a Parquet file", path);
  if (std::memcmp(base + size - 4, "PARE", 4) == 0)
    fail_input("{}: encrypted Parquet file (magic \"PARE\"); encrypted files are not supported", path);
  if (std::memcmp(base + size - 4, "PAR1", 4) != 0)
    fail_input("{}: does not end with the Parquet magic \"PAR1\"; truncated or not a Parquet file", path);
  uint32_t footer_len;
  std::memcpy(&footer_len, base + size - 8, 4);
  if (footer_len > size - 12)
    fail_input("{}: footer length {} does not fit the {}-byte file (at most {}): truncated or corrupt", path,
               footer_len, size, size - 12);
  m.footer_begin = size - 8 - footer_len;
  try {
    m.meta = parse_file_metadata(base + m.footer_begin, footer_len);
  } catch (const InputError& e) {
    fail_input("{}: footer metadata: {}", path, e.what());
  }
  if (m.meta.encrypted) fail_input("{}: encrypted Parquet file; encrypted files are not supported", path);
  try {
    m.schema = build_schema(m.meta.schema);
  } catch (const InputError& e) {
    fail_input("{}: {}", path, e.what());
  }
  m.validate_row_groups();
}

ParquetReader::~ParquetReader() = default;
ParquetReader::ParquetReader(ParquetReader&&) noexcept = default;
ParquetReader& ParquetReader::operator=(ParquetReader&&) noexcept = default;

int64_t ParquetReader::num_rows() const { return impl_->meta.num_rows; }

int ParquetReader::num_row_groups() const { return int(impl_->meta.row_groups.size()); }

std::vector<std::string> ParquetReader::fields() const {
  std::vector<std::string> out;
  for (int f : impl_->schema.fields) out.push_back(impl_->schema.nodes[size_t(f)].name);
  return out;
}

std::vector<json> ParquetReader::read_row_group(int index, const std::vector<std::string>& names) const {
  const Impl& m = *impl_;
  if (index < 0 || index >= num_row_groups())
    fail_input("{}: row group {} does not exist; the file has {} row groups", m.path, index, num_row_groups());
  const std::vector<std::string> all = fields();
  std::vector<bool> selected(all.size(), names.empty());
  for (const std::string& name : names) {
    bool found = false;
    for (size_t f = 0; f < all.size(); ++f)
      if (all[f] == name) selected[f] = found = true;
    if (!found) fail_input("{}: no field '{}'; the file's fields are {}", m.path, name, fmt::join(all, ", "));
  }
  const RowGroup& rg = m.meta.row_groups[size_t(index)];
  std::vector<json> rows;
  bool first = true;
  for (size_t c = 0; c < m.schema.leaves.size(); ++c) {
    const Leaf& leaf = m.schema.leaves[c];
    if (!selected[size_t(leaf.field)]) continue;
    try {
      ColumnData col = read_column_chunk(m.map.data(), rg.columns[c].meta_data, leaf);
      Assembler(m.schema, leaf, col).run(rows, first, rg.num_rows);
    } catch (const InputError& e) {
      fail_input("{}: row group {}, column {}: {}", m.path, index, leaf.dotted, e.what());
    }
    first = false;
  }
  for (size_t f = 0; f < all.size(); ++f) {
    const int id = m.schema.fields[f];
    if (!selected[f] || !m.schema.nodes[size_t(id)].has_string_key_map) continue;
    const std::string& key = m.schema.nodes[size_t(id)].key;
    for (json& row : rows) finalize(m.schema, id, row[key]);
  }
  return rows;
}

std::vector<json> read_parquet_rows(const std::string& path, const std::vector<std::string>& fields) {
  ParquetReader reader(path);
  std::vector<json> rows;
  for (int g = 0; g < reader.num_row_groups(); ++g) {
    std::vector<json> part = reader.read_row_group(g, fields);
    rows.insert(rows.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return rows;
}

}  // namespace gptoss::io
