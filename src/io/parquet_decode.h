// Parquet value and level encodings (parquet-format's Encodings.md) and page decompression.
//
// Contract for every function here: input is untrusted. Reads never leave [data, data + size); counts
// come from the caller (already checked against the page header) and are cross-checked against what
// the bytes hold, so a lying stream throws instead of allocating. Problems throw InputError with a
// message saying what was expected but no file name: the column reader prefixes file, row group,
// column and page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gptoss::io::parquet {

// Bits needed for values 0..max_value (0 for max_value 0): the width of level streams.
int bit_width(uint32_t max_value);

// RLE/bit-packed hybrid runs without a length prefix: decodes exactly `count` values of `width` bits
// (0..32) and appends them to `out`. Returns the bytes consumed. A bit-packed run may end short of its
// last group of 8 if the bytes for the values actually needed are there.
size_t decode_rle_hybrid(const uint8_t* data, size_t size, int width, size_t count, std::vector<uint32_t>& out);
// The same into bytes (levels, booleans): every value must fit 8 bits.
size_t decode_rle_hybrid(const uint8_t* data, size_t size, int width, size_t count, std::vector<uint8_t>& out);

// The deprecated BIT_PACKED level encoding: `count` values of `width` bits packed from the most
// significant bit of each byte. Returns the bytes consumed, ceil(count * width / 8).
size_t decode_bit_packed_msb(const uint8_t* data, size_t size, int width, size_t count, std::vector<uint8_t>& out);

// DELTA_BINARY_PACKED holding exactly `count` values (its header's total must say so), appended to
// `out` with two's-complement wrap-around as the spec requires. Returns the bytes consumed.
size_t decode_delta_binary_packed(const uint8_t* data, size_t size, size_t count, std::vector<int64_t>& out);

// Decoded values of one page or dictionary, in their physical representation.
struct Values {
  std::vector<uint8_t> bools;      // BOOLEAN (0/1)
  std::vector<int64_t> ints;       // INT32 (sign-extended), INT64, INT96 (nanoseconds since the Unix epoch)
  std::vector<double> reals;       // FLOAT, DOUBLE
  std::vector<std::string> bytes;  // BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY
};

// Decodes `count` values of physical type `type` (type_length bytes each for FIXED_LEN_BYTE_ARRAY)
// stored with a non-dictionary `encoding` (PLAIN, RLE for booleans, DELTA_BINARY_PACKED,
// DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY, BYTE_STREAM_SPLIT) into `out` (appending).
void decode_values(int type, int type_length, int encoding, const uint8_t* data, size_t size, size_t count,
                   Values& out);

// Decompresses `size` bytes with `codec` (UNCOMPRESSED, SNAPPY, GZIP, ZSTD) into exactly `expected`
// bytes, the size the page header declares; output grows with what the stream really produces, so a
// wrong declared size costs no large allocation.
std::vector<uint8_t> decompress(int codec, const uint8_t* data, size_t size, size_t expected);

}  // namespace gptoss::io::parquet
