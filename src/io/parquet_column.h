// Reading one column chunk: its pages (an optional dictionary page first, then data pages v1 or v2, any
// mix of encodings, e.g. a dictionary that falls back to PLAIN mid-chunk), decompressed and decoded into
// repetition/definition levels and JSON values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/parquet_meta.h"
#include "io/parquet_schema.h"

namespace gptoss::io::parquet {

struct ColumnData {
  std::vector<uint8_t> rep, def;               // one per entry; empty when the column's maximum is 0
  std::vector<nlohmann::ordered_json> values;  // one per entry whose definition level is the maximum
  size_t entries = 0;
};

// Where the chunk's pages start (the dictionary page when there is one) and how many bytes they span.
struct ChunkRange {
  uint64_t begin = 0, size = 0;
};
ChunkRange chunk_range(const ColumnMetaData& meta);

// Reads every page of the chunk. `file` is the whole file; the caller has checked that chunk_range(meta)
// lies inside it. Throws InputError "page N (DATA_PAGE at byte B): ..." without the file name.
ColumnData read_column_chunk(const uint8_t* file, const ColumnMetaData& meta, const Leaf& leaf);

// A DECIMAL's unscaled big-endian two's-complement bytes as text: {0x04, 0xD2} with scale 2 -> "12.34".
std::string decimal_to_string(const uint8_t* big_endian, size_t n, int scale);

}  // namespace gptoss::io::parquet
