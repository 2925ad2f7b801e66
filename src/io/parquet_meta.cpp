#include "io/parquet_meta.h"

#include <fmt/format.h>

#include "core/error.h"
#include "io/thrift_compact.h"

namespace gptoss::io::parquet {

using thrift::CompactReader;
using Field = CompactReader::Field;
using TType = thrift::Type;

namespace {

std::string enum_name(int v, std::initializer_list<const char*> names, const char* what) {
  if (v >= 0 && size_t(v) < names.size()) return names.begin()[v];
  return fmt::format("{} {}", what, v);
}

// Reads the fields of one struct: on_field(f) returns false for fields it does not read, which are
// skipped. `required` lists the field ids that must be present; `what` names the struct in messages.
template <class F>
void read_struct(CompactReader& r, const char* what, std::initializer_list<int> required, F&& on_field) {
  uint64_t seen = 0;
  r.begin_struct();
  Field f;
  while (r.next_field(f)) {
    if (f.id > 0 && f.id < 64) seen |= uint64_t(1) << f.id;
    if (!on_field(f)) r.skip(f.type);
  }
  r.end_struct();
  for (int id : required)
    if (!(seen & (uint64_t(1) << id))) fail_input("{} lacks its required field {}", what, id);
}

void expect(const Field& f, TType t, const char* what) {
  bool ok = f.type == t || (t == TType::kTrue && f.type == TType::kFalse) ||
            (t == TType::kList && f.type == TType::kSet);
  if (!ok) fail_input("{} (field {}) has thrift type {}; expected {}", what, f.id, int(f.type), int(t));
}

int32_t i32_field(CompactReader& r, const Field& f, const char* what) {
  expect(f, TType::kI32, what);
  return r.read_i32();
}
int64_t i64_field(CompactReader& r, const Field& f, const char* what) {
  expect(f, TType::kI64, what);
  return r.read_i64();
}
std::string string_field(CompactReader& r, const Field& f, const char* what) {
  expect(f, TType::kBinary, what);
  return std::string(r.read_binary());
}

// Reads a list of structs, calling read_one for each element.
template <class F>
void struct_list(CompactReader& r, const Field& f, const char* what, F&& read_one) {
  expect(f, TType::kList, what);
  CompactReader::ListHeader h = r.read_list_header();
  if (h.size && h.elem != TType::kStruct) fail_input("{} is a list of thrift type {}; expected structs", what, int(h.elem));
  for (uint32_t i = 0; i < h.size; ++i) read_one();
}

LogicalType read_logical_type(CompactReader& r) {
  LogicalType lt;
  read_struct(r, "LogicalType", {}, [&](const Field& f) {
    switch (f.id) {
      case 1: lt.kind = LogicalType::kString; break;
      case 2: lt.kind = LogicalType::kMap; break;
      case 3: lt.kind = LogicalType::kList; break;
      case 4: lt.kind = LogicalType::kEnum; break;
      case 5:
        lt.kind = LogicalType::kDecimal;
        expect(f, TType::kStruct, "LogicalType.DECIMAL");
        read_struct(r, "DecimalType", {1, 2}, [&](const Field& g) {
          if (g.id == 1) lt.scale = i32_field(r, g, "DecimalType.scale");
          else if (g.id == 2) lt.precision = i32_field(r, g, "DecimalType.precision");
          else return false;
          return true;
        });
        return true;
      case 10:
        lt.kind = LogicalType::kInteger;
        expect(f, TType::kStruct, "LogicalType.INTEGER");
        read_struct(r, "IntType", {1, 2}, [&](const Field& g) {
          if (g.id == 1) {
            expect(g, TType::kByte, "IntType.bitWidth");
            lt.bit_width = r.read_byte();
          } else if (g.id == 2) {
            expect(g, TType::kTrue, "IntType.isSigned");
            lt.is_signed = r.read_bool(g);
          } else {
            return false;
          }
          return true;
        });
        return true;
      case 12: lt.kind = LogicalType::kJson; break;
      default: lt.kind = LogicalType::kOther; break;
    }
    return false;  // the member struct itself is skipped
  });
  return lt;
}

SchemaElement read_schema_element(CompactReader& r) {
  SchemaElement e;
  read_struct(r, "SchemaElement", {4}, [&](const Field& f) {
    switch (f.id) {
      case 1: e.type = i32_field(r, f, "SchemaElement.type"); return true;
      case 2: e.type_length = i32_field(r, f, "SchemaElement.type_length"); return true;
      case 3: e.repetition = i32_field(r, f, "SchemaElement.repetition_type"); return true;
      case 4: e.name = string_field(r, f, "SchemaElement.name"); return true;
      case 5: e.num_children = i32_field(r, f, "SchemaElement.num_children"); return true;
      case 6: e.converted_type = i32_field(r, f, "SchemaElement.converted_type"); return true;
      case 7: e.scale = i32_field(r, f, "SchemaElement.scale"); return true;
      case 8: e.precision = i32_field(r, f, "SchemaElement.precision"); return true;
      case 10:
        expect(f, TType::kStruct, "SchemaElement.logicalType");
        e.logical = read_logical_type(r);
        return true;
      default: return false;
    }
  });
  return e;
}

ColumnMetaData read_column_meta(CompactReader& r) {
  ColumnMetaData m;
  read_struct(r, "ColumnMetaData", {1, 3, 4, 5, 7, 9}, [&](const Field& f) {
    switch (f.id) {
      case 1: m.type = i32_field(r, f, "ColumnMetaData.type"); return true;
      case 3: {
        expect(f, TType::kList, "ColumnMetaData.path_in_schema");
        CompactReader::ListHeader h = r.read_list_header();
        if (h.size && h.elem != TType::kBinary) fail_input("ColumnMetaData.path_in_schema is not a list of strings");
        for (uint32_t i = 0; i < h.size; ++i) m.path_in_schema.emplace_back(r.read_binary());
        return true;
      }
      case 4: m.codec = i32_field(r, f, "ColumnMetaData.codec"); return true;
      case 5: m.num_values = i64_field(r, f, "ColumnMetaData.num_values"); return true;
      case 7: m.total_compressed_size = i64_field(r, f, "ColumnMetaData.total_compressed_size"); return true;
      case 9: m.data_page_offset = i64_field(r, f, "ColumnMetaData.data_page_offset"); return true;
      case 11: m.dictionary_page_offset = i64_field(r, f, "ColumnMetaData.dictionary_page_offset"); return true;
      default: return false;
    }
  });
  return m;
}

ColumnChunk read_column_chunk(CompactReader& r) {
  ColumnChunk c;
  read_struct(r, "ColumnChunk", {}, [&](const Field& f) {
    switch (f.id) {
      case 1: c.file_path = string_field(r, f, "ColumnChunk.file_path"); return true;
      case 3:
        expect(f, TType::kStruct, "ColumnChunk.meta_data");
        c.meta_data = read_column_meta(r);
        c.has_meta_data = true;
        return true;
      case 8:
      case 9: c.encrypted = true; return false;
      default: return false;
    }
  });
  return c;
}

RowGroup read_row_group(CompactReader& r) {
  RowGroup g;
  read_struct(r, "RowGroup", {1, 3}, [&](const Field& f) {
    switch (f.id) {
      case 1: struct_list(r, f, "RowGroup.columns", [&] { g.columns.push_back(read_column_chunk(r)); }); return true;
      case 3: g.num_rows = i64_field(r, f, "RowGroup.num_rows"); return true;
      default: return false;
    }
  });
  return g;
}

}  // namespace

std::string type_name(int t) {
  return enum_name(t, {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"},
                   "physical type");
}

std::string encoding_name(int e) {
  return enum_name(e,
                   {"PLAIN", "GROUP_VAR_INT", "PLAIN_DICTIONARY", "RLE", "BIT_PACKED", "DELTA_BINARY_PACKED",
                    "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY", "RLE_DICTIONARY", "BYTE_STREAM_SPLIT", "ALP"},
                   "encoding");
}

std::string codec_name(int c) {
  return enum_name(c, {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"}, "codec");
}

std::string page_type_name(int t) {
  return enum_name(t, {"DATA_PAGE", "INDEX_PAGE", "DICTIONARY_PAGE", "DATA_PAGE_V2"}, "page type");
}

FileMetaData parse_file_metadata(const uint8_t* data, size_t size) {
  CompactReader r(data, size);
  FileMetaData m;
  read_struct(r, "FileMetaData", {1, 2, 3, 4}, [&](const Field& f) {
    switch (f.id) {
      case 1: m.version = i32_field(r, f, "FileMetaData.version"); return true;
      case 2: struct_list(r, f, "FileMetaData.schema", [&] { m.schema.push_back(read_schema_element(r)); }); return true;
      case 3: m.num_rows = i64_field(r, f, "FileMetaData.num_rows"); return true;
      case 4:
        struct_list(r, f, "FileMetaData.row_groups", [&] { m.row_groups.push_back(read_row_group(r)); });
        return true;
      case 6: m.created_by = string_field(r, f, "FileMetaData.created_by"); return true;
      case 8: m.encrypted = true; return false;
      default: return false;
    }
  });
  return m;
}

PageHeader parse_page_header(const uint8_t* data, size_t size, size_t* header_size) {
  CompactReader r(data, size);
  PageHeader h;
  read_struct(r, "PageHeader", {1, 2, 3}, [&](const Field& f) {
    switch (f.id) {
      case 1: h.type = i32_field(r, f, "PageHeader.type"); return true;
      case 2: h.uncompressed_page_size = i32_field(r, f, "PageHeader.uncompressed_page_size"); return true;
      case 3: h.compressed_page_size = i32_field(r, f, "PageHeader.compressed_page_size"); return true;
      case 5: {
        expect(f, TType::kStruct, "PageHeader.data_page_header");
        DataPageHeader d;
        read_struct(r, "DataPageHeader", {1, 2, 3, 4}, [&](const Field& g) {
          switch (g.id) {
            case 1: d.num_values = i32_field(r, g, "DataPageHeader.num_values"); return true;
            case 2: d.encoding = i32_field(r, g, "DataPageHeader.encoding"); return true;
            case 3: d.definition_level_encoding = i32_field(r, g, "DataPageHeader.definition_level_encoding"); return true;
            case 4: d.repetition_level_encoding = i32_field(r, g, "DataPageHeader.repetition_level_encoding"); return true;
            default: return false;
          }
        });
        h.data_page = d;
        return true;
      }
      case 7: {
        expect(f, TType::kStruct, "PageHeader.dictionary_page_header");
        DictionaryPageHeader d;
        read_struct(r, "DictionaryPageHeader", {1, 2}, [&](const Field& g) {
          switch (g.id) {
            case 1: d.num_values = i32_field(r, g, "DictionaryPageHeader.num_values"); return true;
            case 2: d.encoding = i32_field(r, g, "DictionaryPageHeader.encoding"); return true;
            default: return false;
          }
        });
        h.dictionary_page = d;
        return true;
      }
      case 8: {
        expect(f, TType::kStruct, "PageHeader.data_page_header_v2");
        DataPageHeaderV2 d;
        read_struct(r, "DataPageHeaderV2", {1, 2, 3, 4, 5, 6}, [&](const Field& g) {
          switch (g.id) {
            case 1: d.num_values = i32_field(r, g, "DataPageHeaderV2.num_values"); return true;
            case 2: d.num_nulls = i32_field(r, g, "DataPageHeaderV2.num_nulls"); return true;
            case 3: d.num_rows = i32_field(r, g, "DataPageHeaderV2.num_rows"); return true;
            case 4: d.encoding = i32_field(r, g, "DataPageHeaderV2.encoding"); return true;
            case 5: d.definition_levels_byte_length = i32_field(r, g, "DataPageHeaderV2.definition_levels_byte_length"); return true;
            case 6: d.repetition_levels_byte_length = i32_field(r, g, "DataPageHeaderV2.repetition_levels_byte_length"); return true;
            case 7:
              expect(g, TType::kTrue, "DataPageHeaderV2.is_compressed");
              d.is_compressed = r.read_bool(g);
              return true;
            default: return false;
          }
        });
        h.data_page_v2 = d;
        return true;
      }
      default: return false;
    }
  });
  *header_size = r.position();
  return h;
}

}  // namespace gptoss::io::parquet
