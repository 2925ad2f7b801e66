// Parquet metadata: the parts of FileMetaData and PageHeader (parquet-format's parquet.thrift) that a
// reader needs, decoded from the thrift compact protocol. Fields this reader does not use (statistics,
// indexes, bloom filters, encryption details, ...) are skipped generically, as thrift readers do.
//
// Contract: parse_file_metadata / parse_page_header throw InputError "<what>: <problem>" (no file name;
// the caller adds it) when the bytes are malformed or a required field is missing. Enum values are kept
// as ints: unknown values are reported by the code that needs them, so a file using a new encoding in a
// column nobody reads still opens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gptoss::io::parquet {

// Enums of parquet.thrift (values as written in files).
enum PhysicalType { kBoolean = 0, kInt32 = 1, kInt64 = 2, kInt96 = 3, kFloat = 4, kDouble = 5, kByteArray = 6,
                    kFixedLenByteArray = 7 };
enum Repetition { kRequired = 0, kOptional = 1, kRepeated = 2 };
enum ConvertedType { kConvertedMap = 1, kConvertedMapKeyValue = 2, kConvertedList = 3, kConvertedDecimal = 5,
                     kConvertedUint8 = 11, kConvertedUint16 = 12, kConvertedUint32 = 13, kConvertedUint64 = 14 };
enum Encoding { kPlain = 0, kPlainDictionary = 2, kRle = 3, kBitPacked = 4, kDeltaBinaryPacked = 5,
                kDeltaLengthByteArray = 6, kDeltaByteArray = 7, kRleDictionary = 8, kByteStreamSplit = 9 };
enum Codec { kUncompressed = 0, kSnappy = 1, kGzip = 2, kLzo = 3, kBrotli = 4, kLz4 = 5, kZstd = 6, kLz4Raw = 7 };
enum PageType { kDataPage = 0, kIndexPage = 1, kDictionaryPage = 2, kDataPageV2 = 3 };

// Names for messages ("RLE_DICTIONARY"; "encoding 42" for values this reader does not know).
std::string type_name(int t);
std::string encoding_name(int e);
std::string codec_name(int c);
std::string page_type_name(int t);

// The logical type union, reduced to what changes how values are shown.
struct LogicalType {
  enum Kind { kNone, kString, kMap, kList, kEnum, kDecimal, kInteger, kJson, kOther };
  Kind kind = kNone;
  int32_t scale = 0, precision = 0;  // kDecimal
  int bit_width = 0;                 // kInteger
  bool is_signed = true;             // kInteger
};

struct SchemaElement {
  std::optional<int32_t> type;  // set on leaves only
  int32_t type_length = 0;
  std::optional<int32_t> repetition;  // absent on the root
  std::string name;
  std::optional<int32_t> num_children;  // set on groups only
  std::optional<int32_t> converted_type;
  int32_t scale = 0, precision = 0;
  LogicalType logical;
};

struct ColumnMetaData {
  int32_t type = -1;
  std::vector<std::string> path_in_schema;
  int32_t codec = 0;
  int64_t num_values = 0;
  int64_t total_compressed_size = 0;
  int64_t data_page_offset = 0;
  std::optional<int64_t> dictionary_page_offset;
};

struct ColumnChunk {
  std::optional<std::string> file_path;  // data in another file (unsupported)
  bool has_meta_data = false;
  bool encrypted = false;  // crypto_metadata or encrypted_column_metadata present
  ColumnMetaData meta_data;
};

struct RowGroup {
  std::vector<ColumnChunk> columns;
  int64_t num_rows = 0;
};

struct FileMetaData {
  int32_t version = 0;
  std::vector<SchemaElement> schema;  // depth-first, the root first
  int64_t num_rows = 0;
  std::vector<RowGroup> row_groups;
  std::string created_by;
  bool encrypted = false;  // encryption_algorithm present (plaintext-footer encryption)
};

struct DataPageHeader {
  int32_t num_values = 0;
  int32_t encoding = 0;
  int32_t definition_level_encoding = kRle;
  int32_t repetition_level_encoding = kRle;
};

struct DataPageHeaderV2 {
  int32_t num_values = 0;
  int32_t num_nulls = 0;
  int32_t num_rows = 0;
  int32_t encoding = 0;
  int32_t definition_levels_byte_length = 0;
  int32_t repetition_levels_byte_length = 0;
  bool is_compressed = true;
};

struct DictionaryPageHeader {
  int32_t num_values = 0;
  int32_t encoding = kPlain;
};

struct PageHeader {
  int32_t type = -1;
  int32_t uncompressed_page_size = 0;
  int32_t compressed_page_size = 0;
  std::optional<DataPageHeader> data_page;
  std::optional<DataPageHeaderV2> data_page_v2;
  std::optional<DictionaryPageHeader> dictionary_page;
};

// The footer's thrift bytes.
FileMetaData parse_file_metadata(const uint8_t* data, size_t size);
// A page header at the start of [data, data + size); *header_size gets its length in bytes.
PageHeader parse_page_header(const uint8_t* data, size_t size, size_t* header_size);

}  // namespace gptoss::io::parquet
