#include "io/parquet_decode.h"

#include <snappy.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "io/parquet_meta.h"

namespace gptoss::io::parquet {

static_assert(std::endian::native == std::endian::little, "PLAIN values are read with memcpy");

namespace {

uint64_t read_uleb(const uint8_t* data, size_t size, size_t& pos, const char* what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= size) fail_input("{} ends inside a varint (truncated)", what);
    uint8_t b = data[pos++];
    if (shift == 63 && (b & 0x7e)) fail_input("{}: varint overflows 64 bits", what);
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail_input("{}: varint longer than 10 bytes", what);
}

uint64_t unzigzag(uint64_t u) { return (u >> 1) ^ (~(u & 1) + 1); }

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// `width` (0..64) bits at bit offset `bit` of data[0, size), least significant bit first. The caller has
// checked that the bits lie inside the buffer.
uint64_t bits_lsb(const uint8_t* data, size_t size, uint64_t bit, int width) {
  uint64_t byte = bit >> 3;
  int shift = int(bit & 7);
  if (width <= 56 && byte + 8 <= size) {
    uint64_t w = load<uint64_t>(data + byte) >> shift;
    return width == 0 ? 0 : w & (~uint64_t(0) >> (64 - width));
  }
  uint64_t v = 0;
  for (int got = 0; got < width;) {
    int take = std::min(8 - shift, width - got);
    v |= uint64_t((data[byte] >> shift) & ((1u << take) - 1)) << got;
    got += take;
    ++byte;
    shift = 0;
  }
  return v;
}

template <class T>
size_t rle_hybrid(const uint8_t* data, size_t size, int width, size_t count, std::vector<T>& out) {
  if (width < 0 || width > 32) fail_input("RLE bit width {} is out of range 0..32", width);
  if (width > int(8 * sizeof(T))) fail_input("RLE bit width {} is too wide here; expected at most {}", width, 8 * sizeof(T));
  const size_t value_bytes = size_t(width + 7) / 8;
  size_t pos = 0, done = 0;  // no reserve(count): a run may only produce what its bytes say
  while (done < count) {
    if (pos >= size) fail_input("RLE data ends after {} of {} values", done, count);
    uint64_t header = read_uleb(data, size, pos, "RLE run header");
    uint64_t run = header >> 1;
    if (run == 0 || run > (uint64_t(1) << 31)) fail_input("RLE run length {} is out of range", run);
    if (header & 1) {  // bit-packed: run groups of 8 values
      size_t n = size_t(std::min<uint64_t>(run * 8, count - done));
      size_t need = (uint64_t(n) * width + 7) / 8;
      if (need > size - pos)
        fail_input("RLE bit-packed run of {} values needs {} bytes; only {} remain", n, need, size - pos);
      for (size_t i = 0; i < n; ++i) out.push_back(T(bits_lsb(data + pos, size - pos, uint64_t(i) * width, width)));
      pos += size_t(std::min<uint64_t>(run * width, size - pos));
      done += n;
    } else {
      if (value_bytes > size - pos) fail_input("RLE run value is truncated");
      uint64_t v = 0;
      for (size_t b = 0; b < value_bytes; ++b) v |= uint64_t(data[pos + b]) << (8 * b);
      pos += value_bytes;
      if (width < 64 && (v >> width) != 0) fail_input("RLE run value {} does not fit {} bits", v, width);
      size_t n = size_t(std::min<uint64_t>(run, count - done));
      out.insert(out.end(), n, T(v));
      done += n;
    }
  }
  return pos;
}

size_t need_bytes(size_t count, size_t each, size_t size, const char* what) {
  if (each != 0 && count > size / each)
    fail_input("{}: {} values of {} bytes need {} bytes; only {} are there", what, count, each,
               uint64_t(count) * each, size);
  return count * each;
}

// count little-endian T values, appended to out.
template <class T, class V>
void plain_fixed(const uint8_t* data, size_t size, size_t count, const char* what, std::vector<V>& out) {
  need_bytes(count, sizeof(T), size, what);
  for (size_t i = 0; i < count; ++i) out.push_back(load<T>(data + sizeof(T) * i));
}

void decode_plain(int type, int type_length, const uint8_t* data, size_t size, size_t count, Values& out) {
  switch (type) {
    case kBoolean: {
      if ((count + 7) / 8 > size)
        fail_input("PLAIN BOOLEAN: {} values need {} bytes; only {} are there", count, (count + 7) / 8, size);
      for (size_t i = 0; i < count; ++i) out.bools.push_back((data[i >> 3] >> (i & 7)) & 1);
      return;
    }
    case kInt32:
      return plain_fixed<int32_t>(data, size, count, "PLAIN INT32", out.ints);
    case kInt64:
      return plain_fixed<int64_t>(data, size, count, "PLAIN INT64", out.ints);
    case kInt96:
      need_bytes(count, 12, size, "PLAIN INT96");
      for (size_t i = 0; i < count; ++i) {
        // Legacy timestamps: nanoseconds within the day, then the Julian day number.
        int64_t nanos = load<int64_t>(data + 12 * i), ns = 0;
        int64_t days = int64_t(load<int32_t>(data + 12 * i + 8)) - 2440588;  // Julian day of 1970-01-01
        if (__builtin_mul_overflow(days, int64_t(86400) * 1000000000, &ns) || __builtin_add_overflow(ns, nanos, &ns))
          fail_input("INT96 timestamp (day {}, {} ns) is outside the int64 nanosecond range", days + 2440588, nanos);
        out.ints.push_back(ns);
      }
      return;
    case kFloat:
      return plain_fixed<float>(data, size, count, "PLAIN FLOAT", out.reals);
    case kDouble:
      return plain_fixed<double>(data, size, count, "PLAIN DOUBLE", out.reals);
    case kByteArray: {
      size_t pos = 0;
      out.bytes.reserve(out.bytes.size() + std::min(count, size / 4));
      for (size_t i = 0; i < count; ++i) {
        if (size - pos < 4) fail_input("PLAIN BYTE_ARRAY: data ends at value {} of {}", i, count);
        uint32_t n = load<uint32_t>(data + pos);
        pos += 4;
        if (n > size - pos) fail_input("PLAIN BYTE_ARRAY: value {} is {} bytes; only {} remain", i, n, size - pos);
        out.bytes.emplace_back(reinterpret_cast<const char*>(data + pos), n);
        pos += n;
      }
      return;
    }
    case kFixedLenByteArray: {
      const size_t k = size_t(type_length);
      need_bytes(count, k, size, "PLAIN FIXED_LEN_BYTE_ARRAY");
      for (size_t i = 0; i < count; ++i) out.bytes.emplace_back(reinterpret_cast<const char*>(data + k * i), k);
      return;
    }
  }
  fail_input("physical type {} is not supported", type_name(type));
}

// DELTA_LENGTH_BYTE_ARRAY: `count` lengths, then the bytes back to back. Returns the bytes consumed.
size_t decode_dlba(const uint8_t* data, size_t size, size_t count, std::vector<std::string_view>& out) {
  std::vector<int64_t> lengths;
  size_t pos = decode_delta_binary_packed(data, size, count, lengths);
  out.reserve(out.size() + count);
  for (size_t i = 0; i < count; ++i) {
    int64_t n = int32_t(uint32_t(lengths[i]));  // lengths are INT32 values
    if (n < 0 || uint64_t(n) > size - pos)
      fail_input("DELTA_LENGTH_BYTE_ARRAY: value {} has length {}; {} bytes remain", i, n, size - pos);
    out.emplace_back(reinterpret_cast<const char*>(data + pos), size_t(n));
    pos += size_t(n);
  }
  return pos;
}

}  // namespace

int bit_width(uint32_t max_value) { return max_value == 0 ? 0 : 32 - std::countl_zero(max_value); }

size_t decode_rle_hybrid(const uint8_t* data, size_t size, int width, size_t count, std::vector<uint32_t>& out) {
  return rle_hybrid(data, size, width, count, out);
}

size_t decode_rle_hybrid(const uint8_t* data, size_t size, int width, size_t count, std::vector<uint8_t>& out) {
  return rle_hybrid(data, size, width, count, out);
}

size_t decode_bit_packed_msb(const uint8_t* data, size_t size, int width, size_t count, std::vector<uint8_t>& out) {
  if (width < 0 || width > 8) fail_input("BIT_PACKED level width {} is out of range 0..8", width);
  size_t need = (uint64_t(count) * width + 7) / 8;
  if (need > size) fail_input("BIT_PACKED levels: {} values of {} bits need {} bytes; only {} are there", count, width, need, size);
  out.reserve(out.size() + count);
  uint64_t bit = 0;
  for (size_t i = 0; i < count; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < width; ++b, ++bit) v = (v << 1) | ((data[bit >> 3] >> (7 - (bit & 7))) & 1);
    out.push_back(uint8_t(v));
  }
  return need;
}

size_t decode_delta_binary_packed(const uint8_t* data, size_t size, size_t count, std::vector<int64_t>& out) {
  size_t pos = 0;
  const char* what = "DELTA_BINARY_PACKED header";
  uint64_t block = read_uleb(data, size, pos, what);
  uint64_t miniblocks = read_uleb(data, size, pos, what);
  uint64_t total = read_uleb(data, size, pos, what);
  uint64_t value = unzigzag(read_uleb(data, size, pos, what));
  if (block == 0 || block % 128 != 0 || block > (uint64_t(1) << 20))
    fail_input("DELTA_BINARY_PACKED block size {} is invalid; expected a positive multiple of 128", block);
  if (miniblocks == 0 || block % miniblocks != 0 || (block / miniblocks) % 32 != 0)
    fail_input("DELTA_BINARY_PACKED: {} miniblocks per block of {} is invalid; expected miniblocks of a multiple "
               "of 32 values", miniblocks, block);
  if (total != count) fail_input("DELTA_BINARY_PACKED holds {} values; expected {}", total, count);
  if (total == 0) return pos;
  const uint64_t per_miniblock = block / miniblocks;
  out.reserve(out.size() + count);
  out.push_back(int64_t(value));
  size_t done = 1;
  while (done < count) {
    uint64_t min_delta = unzigzag(read_uleb(data, size, pos, "DELTA_BINARY_PACKED block"));
    if (miniblocks > size - pos) fail_input("DELTA_BINARY_PACKED: miniblock bit widths are truncated");
    const uint8_t* widths = data + pos;
    pos += size_t(miniblocks);
    for (uint64_t m = 0; m < miniblocks && done < count; ++m) {
      int w = widths[m];
      if (w > 64) fail_input("DELTA_BINARY_PACKED miniblock bit width {} exceeds 64", w);
      size_t n = size_t(std::min<uint64_t>(per_miniblock, count - done));
      size_t need = (uint64_t(n) * w + 7) / 8;
      if (need > size - pos)
        fail_input("DELTA_BINARY_PACKED miniblock of {} values needs {} bytes; only {} remain", n, need, size - pos);
      for (size_t i = 0; i < n; ++i) {
        value += min_delta + bits_lsb(data + pos, size - pos, uint64_t(i) * w, w);  // wraps, as specified
        out.push_back(int64_t(value));
      }
      pos += size_t(std::min<uint64_t>(per_miniblock * w / 8, size - pos));
      done += n;
    }
  }
  return pos;
}

void decode_values(int type, int type_length, int encoding, const uint8_t* data, size_t size, size_t count,
                   Values& out) {
  auto not_for = [&]() {
    fail_input("encoding {} does not apply to {} values", encoding_name(encoding), type_name(type));
  };
  switch (encoding) {
    case kPlain:
      return decode_plain(type, type_length, data, size, count, out);
    case kRle: {  // booleans only, with a 4-byte length prefix (in v1 and v2 pages alike)
      if (type != kBoolean) not_for();
      if (size < 4) fail_input("RLE BOOLEAN values lack their 4-byte length");
      uint32_t n = load<uint32_t>(data);
      if (n > size - 4) fail_input("RLE BOOLEAN length {} exceeds the {} bytes that follow it", n, size - 4);
      decode_rle_hybrid(data + 4, n, 1, count, out.bools);
      return;
    }
    case kDeltaBinaryPacked: {
      if (type != kInt32 && type != kInt64) not_for();
      size_t first = out.ints.size();
      decode_delta_binary_packed(data, size, count, out.ints);
      if (type == kInt32)
        for (size_t i = first; i < out.ints.size(); ++i) out.ints[i] = int32_t(uint32_t(out.ints[i]));
      return;
    }
    case kDeltaLengthByteArray: {
      if (type != kByteArray) not_for();
      std::vector<std::string_view> views;
      decode_dlba(data, size, count, views);
      for (std::string_view v : views) out.bytes.emplace_back(v);
      return;
    }
    case kDeltaByteArray: {
      if (type != kByteArray && type != kFixedLenByteArray) not_for();
      std::vector<int64_t> prefixes;
      size_t pos = decode_delta_binary_packed(data, size, count, prefixes);
      std::vector<std::string_view> suffixes;
      decode_dlba(data + pos, size - pos, count, suffixes);
      std::string prev;
      for (size_t i = 0; i < count; ++i) {
        int64_t p = int32_t(uint32_t(prefixes[i]));
        if (p < 0 || uint64_t(p) > prev.size())
          fail_input("DELTA_BYTE_ARRAY: value {} reuses {} bytes of a {}-byte predecessor", i, p, prev.size());
        prev.resize(size_t(p));
        prev.append(suffixes[i]);
        if (type == kFixedLenByteArray && prev.size() != size_t(type_length))
          fail_input("DELTA_BYTE_ARRAY: value {} is {} bytes; the column's fixed length is {}", i, prev.size(), type_length);
        out.bytes.push_back(prev);
      }
      return;
    }
    case kByteStreamSplit: {
      size_t k = type == kFloat || type == kInt32 ? 4 : type == kDouble || type == kInt64 ? 8
                 : type == kFixedLenByteArray ? size_t(type_length) : 0;
      if (k == 0) not_for();
      if (count > size / k || count * k != size)
        fail_input("BYTE_STREAM_SPLIT data is {} bytes; {} values of {} bytes need exactly {}", size, count, k,
                   uint64_t(count) * k);
      std::vector<uint8_t> joined(size);
      for (size_t b = 0; b < k; ++b)
        for (size_t i = 0; i < count; ++i) joined[i * k + b] = data[b * count + i];
      return decode_plain(type, type_length, joined.data(), joined.size(), count, out);
    }
    default:
      break;
  }
  fail_input("encoding {} is not supported (supported: PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY, RLE, "
             "DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY, BYTE_STREAM_SPLIT)",
             encoding_name(encoding));
}

// ---------------------------------------------------------------------------------------------
// Decompression. The output buffer starts small and doubles up to the declared size plus one byte, so
// producing that extra byte proves the page holds more than declared.

namespace {

constexpr size_t initial_capacity(size_t compressed, size_t limit) {
  return std::min(limit, std::max<size_t>(compressed * 4, 4096));
}

void grow(std::vector<uint8_t>& out, size_t limit, size_t expected, const char* codec) {
  if (out.size() == limit) fail_input("{} data holds more than the {} bytes the page header declares", codec, expected);
  out.resize(std::min(limit, out.size() * 2));
}

std::vector<uint8_t> inflate_gzip(const uint8_t* data, size_t size, size_t expected) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) fail("zlib: cannot initialise a decompressor");  // 15+32: gzip or zlib
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  const size_t limit = expected + 1;
  std::vector<uint8_t> out(initial_capacity(size, limit));
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = uInt(size);
  size_t produced = 0;
  for (;;) {
    if (produced == out.size()) grow(out, limit, expected, "GZIP");
    zs.next_out = out.data() + produced;
    zs.avail_out = uInt(out.size() - produced);
    int rc = inflate(&zs, Z_NO_FLUSH);
    produced = out.size() - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      if (inflateReset(&zs) != Z_OK) fail_input("GZIP data is corrupt after its first member");
      continue;  // another gzip member follows
    }
    if (rc == Z_OK || (rc == Z_BUF_ERROR && zs.avail_out == 0)) continue;
    if (rc == Z_BUF_ERROR) fail_input("GZIP data is truncated");
    fail_input("GZIP data is corrupt ({})", zs.msg ? zs.msg : "zlib error");
  }
  if (produced == limit) fail_input("GZIP data holds more than the {} bytes the page header declares", expected);
  if (produced != expected) fail_input("GZIP data holds {} bytes but the page header declares {}", produced, expected);
  out.resize(produced);
  return out;
}

std::vector<uint8_t> unzstd(const uint8_t* data, size_t size, size_t expected) {
  ZSTD_DStream* ds = ZSTD_createDStream();
  if (!ds) fail("zstd: cannot create a decompressor");
  struct Free {
    ZSTD_DStream* d;
    ~Free() { ZSTD_freeDStream(d); }
  } free_ds{ds};
  ZSTD_initDStream(ds);
  const size_t limit = expected + 1;
  std::vector<uint8_t> out(initial_capacity(size, limit));
  ZSTD_inBuffer in{data, size, 0};
  size_t produced = 0;
  for (;;) {
    if (produced == out.size()) grow(out, limit, expected, "ZSTD");
    ZSTD_outBuffer ob{out.data(), out.size(), produced};
    size_t rc = ZSTD_decompressStream(ds, &ob, &in);
    produced = ob.pos;
    if (ZSTD_isError(rc)) fail_input("ZSTD data is corrupt ({})", ZSTD_getErrorName(rc));
    if (rc == 0 && in.pos == in.size) break;  // the last frame is complete
    if (in.pos == in.size && ob.pos < ob.size) fail_input("ZSTD data is truncated");
  }
  if (produced == limit) fail_input("ZSTD data holds more than the {} bytes the page header declares", expected);
  if (produced != expected) fail_input("ZSTD data holds {} bytes but the page header declares {}", produced, expected);
  out.resize(produced);
  return out;
}

}  // namespace

std::vector<uint8_t> decompress(int codec, const uint8_t* data, size_t size, size_t expected) {
  switch (codec) {
    case kUncompressed:
      if (size != expected) fail_input("uncompressed page is {} bytes but its header declares {}", size, expected);
      return std::vector<uint8_t>(data, data + size);
    case kSnappy: {
      const char* src = reinterpret_cast<const char*>(data);
      size_t n = 0;
      if (!snappy::GetUncompressedLength(src, size, &n)) fail_input("SNAPPY data is corrupt (bad length preamble)");
      if (n != expected) fail_input("SNAPPY data holds {} bytes but the page header declares {}", n, expected);
      // Validation walks the stream without writing, so a corrupt one costs no allocation.
      if (!snappy::IsValidCompressedBuffer(src, size)) fail_input("SNAPPY data is corrupt");
      std::vector<uint8_t> out(n);
      if (!snappy::RawUncompress(src, size, reinterpret_cast<char*>(out.data()))) fail_input("SNAPPY data is corrupt");
      return out;
    }
    case kGzip:
      return inflate_gzip(data, size, expected);
    case kZstd:
      return unzstd(data, size, expected);
    default:
      break;
  }
  fail_input("compression codec {} is not supported (supported: UNCOMPRESSED, SNAPPY, GZIP, ZSTD)", codec_name(codec));
}

}  // namespace gptoss::io::parquet
