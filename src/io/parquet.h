// Apache Parquet reader: rows as JSON objects (what `gptoss train` needs from Hugging Face hub datasets).
//
// Supported: physical types BOOLEAN, INT32, INT64, INT96, FLOAT, DOUBLE, BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY;
// encodings PLAIN, PLAIN_DICTIONARY/RLE_DICTIONARY, RLE (levels, booleans), BIT_PACKED (levels),
// DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY, BYTE_STREAM_SPLIT; codecs UNCOMPRESSED,
// SNAPPY, GZIP, ZSTD; data pages v1 and v2; any nesting of optional/required/repeated groups.
// Not supported (InputError naming it): other codecs (LZ4, LZ4_RAW, BROTLI, LZO), other encodings,
// encrypted files, column data in other files.
//
// Values in the rows:
//   BOOLEAN -> bool; INT32/INT64 -> integer (unsigned when annotated UINT_*/INTEGER(unsigned));
//   FLOAT/DOUBLE -> number; BYTE_ARRAY/FIXED_LEN_BYTE_ARRAY -> string of the raw bytes (annotated or not;
//   bytes that are not UTF-8 stay as they are: dump such rows with an error handler such as
//   json::error_handler_t::replace);
//   DECIMAL (any physical type) -> string in decimal notation ("-12.34"), exact;
//   INT96 (legacy timestamps) -> integer nanoseconds since 1970-01-01 UTC;
//   a missing optional value or group -> null; LIST (3-level and legacy 2-level) and other repeated
//   fields -> arrays (an empty list is [], a null list null); groups -> objects;
//   MAP -> an object when the key is a string (BYTE_ARRAY/FIXED_LEN_BYTE_ARRAY) and no key is null, else
//   an array of {"key": .., "value": ..}.
//
// Every problem with the file throws gptoss::InputError naming the file and, where it applies, the row
// group, the column path (e.g. messages.list.element.role), the page and what was expected. Untrusted
// input never crashes the reader: offsets, sizes, counts, levels and dictionary ids are all checked, and
// allocations follow the bytes actually decoded, not sizes a header claims.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gptoss::io {

// A Parquet file, memory-mapped; the footer is parsed and validated on open.
class ParquetReader {
 public:
  explicit ParquetReader(const std::string& path);  // InputError naming the file on any problem
  ~ParquetReader();
  ParquetReader(ParquetReader&&) noexcept;
  ParquetReader& operator=(ParquetReader&&) noexcept;
  ParquetReader(const ParquetReader&) = delete;
  ParquetReader& operator=(const ParquetReader&) = delete;

  int64_t num_rows() const;
  int num_row_groups() const;
  std::vector<std::string> fields() const;  // top-level field names, schema order

  // The rows of row group `index` (0-based) as JSON objects {field: value} holding only the named
  // top-level fields (empty: all), in schema order. A name not in the schema is an InputError naming the
  // file, the field and the fields that exist.
  std::vector<nlohmann::ordered_json> read_row_group(int index, const std::vector<std::string>& fields = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Every row of a file (row group after row group).
std::vector<nlohmann::ordered_json> read_parquet_rows(const std::string& path,
                                                      const std::vector<std::string>& fields = {});

}  // namespace gptoss::io
