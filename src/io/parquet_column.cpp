#include "io/parquet_column.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/error.h"
#include "io/parquet_decode.h"

namespace gptoss::io::parquet {

using json = nlohmann::ordered_json;

namespace {

// Levels of a data page v1: RLE with a 4-byte length prefix, or the deprecated BIT_PACKED. Returns the
// bytes consumed.
size_t read_levels_v1(int encoding, const uint8_t* data, size_t size, int max_level, size_t count,
                      std::vector<uint8_t>& out, const char* what) {
  const int width = bit_width(uint32_t(max_level));
  if (encoding == kRle) {
    if (size < 4) fail_input("{} levels lack their 4-byte length", what);
    uint32_t n;
    std::memcpy(&n, data, 4);
    if (n > size - 4) fail_input("{} levels claim {} bytes; only {} follow", what, n, size - 4);
    decode_rle_hybrid(data + 4, n, width, count, out);
    return 4 + size_t(n);
  }
  if (encoding == kBitPacked) return decode_bit_packed_msb(data, size, width, count, out);
  fail_input("{} levels use encoding {}; expected RLE or BIT_PACKED", what, encoding_name(encoding));
}

void check_levels(const std::vector<uint8_t>& levels, size_t first, int max_level, const char* what) {
  for (size_t i = first; i < levels.size(); ++i)
    if (levels[i] > max_level)
      fail_input("{} level {} (entry {}) exceeds the column's maximum {}", what, levels[i], i - first, max_level);
}

std::string int_decimal(int64_t v, int scale) {
  uint8_t be[8];
  for (int i = 0; i < 8; ++i) be[i] = uint8_t(uint64_t(v) >> (56 - 8 * i));
  return decimal_to_string(be, 8, scale);
}

void append_json(Values& v, const Leaf& leaf, std::vector<json>& out) {
  switch (leaf.type) {
    case kBoolean:
      for (uint8_t b : v.bools) out.emplace_back(b != 0);
      return;
    case kInt32:
    case kInt64:
    case kInt96:
      for (int64_t x : v.ints) {
        if (leaf.is_decimal) out.emplace_back(int_decimal(x, leaf.scale));
        else if (leaf.is_unsigned && leaf.type == kInt32) out.emplace_back(uint64_t(uint32_t(x)));
        else if (leaf.is_unsigned) out.emplace_back(uint64_t(x));
        else out.emplace_back(x);
      }
      return;
    case kFloat:
    case kDouble:
      for (double x : v.reals) out.emplace_back(x);
      return;
    default:
      for (std::string& s : v.bytes) {
        if (leaf.is_decimal) out.emplace_back(decimal_to_string(reinterpret_cast<const uint8_t*>(s.data()), s.size(), leaf.scale));
        else out.emplace_back(std::move(s));
      }
      return;
  }
}

class ChunkReader {
 public:
  ChunkReader(const ColumnMetaData& meta, const Leaf& leaf) : meta_(meta), leaf_(leaf) {}

  void page(const PageHeader& h, const uint8_t* body, size_t size) {
    if (h.uncompressed_page_size < 0 || h.compressed_page_size < 0)
      fail_input("page sizes {} (uncompressed) and {} (compressed) must not be negative", h.uncompressed_page_size,
                 h.compressed_page_size);
    switch (h.type) {
      case kDictionaryPage: return dictionary_page(h, body, size);
      case kDataPage: return data_page_v1(h, body, size);
      case kDataPageV2: return data_page_v2(h, body, size);
      case kIndexPage: return;
      default: fail_input("unknown page type {}; expected DATA_PAGE, DATA_PAGE_V2 or DICTIONARY_PAGE", h.type);
    }
  }

  int64_t values_seen() const { return seen_; }
  ColumnData take() { return std::move(out_); }

 private:
  void dictionary_page(const PageHeader& h, const uint8_t* body, size_t size) {
    if (!h.dictionary_page) fail_input("page lacks its dictionary_page_header");
    if (dict_) fail_input("second dictionary page; a column chunk has at most one");
    if (data_pages_ > 0) fail_input("dictionary page after {} data pages; it must come first", data_pages_);
    const DictionaryPageHeader& d = *h.dictionary_page;
    if (d.encoding != kPlain && d.encoding != kPlainDictionary)
      fail_input("dictionary page uses encoding {}; expected PLAIN", encoding_name(d.encoding));
    if (d.num_values < 0) fail_input("dictionary page declares {} values", d.num_values);
    std::vector<uint8_t> bytes = decompress(meta_.codec, body, size, size_t(h.uncompressed_page_size));
    Values v;
    decode_values(leaf_.type, leaf_.type_length, kPlain, bytes.data(), bytes.size(), size_t(d.num_values), v);
    dict_.emplace();
    append_json(v, leaf_, *dict_);
  }

  void check_count(int32_t n) {
    if (n < 0 || n > meta_.num_values - seen_)
      fail_input("page holds {} values but only {} of the {} the column chunk declares are left", n,
                 meta_.num_values - seen_, meta_.num_values);
  }

  void data_page_v1(const PageHeader& h, const uint8_t* body, size_t size) {
    if (!h.data_page) fail_input("page lacks its data_page_header");
    const DataPageHeader& d = *h.data_page;
    check_count(d.num_values);
    std::vector<uint8_t> bytes = decompress(meta_.codec, body, size, size_t(h.uncompressed_page_size));
    const size_t n = size_t(d.num_values);
    size_t q = 0;
    const size_t rep0 = out_.rep.size(), def0 = out_.def.size();
    if (leaf_.max_rep > 0) {
      q += read_levels_v1(d.repetition_level_encoding, bytes.data(), bytes.size(), leaf_.max_rep, n, out_.rep, "repetition");
      check_levels(out_.rep, rep0, leaf_.max_rep, "repetition");
    }
    if (leaf_.max_def > 0) {
      q += read_levels_v1(d.definition_level_encoding, bytes.data() + q, bytes.size() - q, leaf_.max_def, n, out_.def,
                          "definition");
      check_levels(out_.def, def0, leaf_.max_def, "definition");
    }
    values(d.encoding, bytes.data() + q, bytes.size() - q, n, def0);
  }

  void data_page_v2(const PageHeader& h, const uint8_t* body, size_t size) {
    if (!h.data_page_v2) fail_input("page lacks its data_page_header_v2");
    const DataPageHeaderV2& d = *h.data_page_v2;
    check_count(d.num_values);
    const int64_t rep_len = d.repetition_levels_byte_length, def_len = d.definition_levels_byte_length;
    if (rep_len < 0 || def_len < 0 || rep_len + def_len > int64_t(size))
      fail_input("level sections of {} and {} bytes do not fit the {}-byte page", rep_len, def_len, size);
    const int64_t values_size = int64_t(h.uncompressed_page_size) - rep_len - def_len;
    if (values_size < 0)
      fail_input("uncompressed page size {} is smaller than its level sections ({} bytes)", h.uncompressed_page_size,
                 rep_len + def_len);
    const size_t n = size_t(d.num_values);
    const size_t rep0 = out_.rep.size(), def0 = out_.def.size();
    if (leaf_.max_rep > 0) {
      decode_rle_hybrid(body, size_t(rep_len), bit_width(uint32_t(leaf_.max_rep)), n, out_.rep);
      check_levels(out_.rep, rep0, leaf_.max_rep, "repetition");
    }
    if (leaf_.max_def > 0) {
      decode_rle_hybrid(body + rep_len, size_t(def_len), bit_width(uint32_t(leaf_.max_def)), n, out_.def);
      check_levels(out_.def, def0, leaf_.max_def, "definition");
    }
    const uint8_t* data = body + rep_len + def_len;
    const size_t data_size = size - size_t(rep_len + def_len);
    if (d.is_compressed && meta_.codec != kUncompressed) {
      std::vector<uint8_t> bytes = decompress(meta_.codec, data, data_size, size_t(values_size));
      values(d.encoding, bytes.data(), bytes.size(), n, def0);
    } else {
      if (int64_t(data_size) != values_size)
        fail_input("uncompressed values section is {} bytes but the page header declares {}", data_size, values_size);
      values(d.encoding, data, data_size, n, def0);
    }
  }

  // The values of a page whose n levels start at out_.def[def0].
  void values(int encoding, const uint8_t* data, size_t size, size_t n, size_t def0) {
    ++data_pages_;
    seen_ += int64_t(n);
    out_.entries += n;
    size_t present = n;
    if (leaf_.max_def > 0)
      present = size_t(std::count(out_.def.begin() + def0, out_.def.end(), uint8_t(leaf_.max_def)));
    if (present == 0) return;
    if (encoding == kPlainDictionary || encoding == kRleDictionary) {
      if (!dict_) fail_input("values are {}-encoded but the column chunk has no dictionary page", encoding_name(encoding));
      if (size < 1) fail_input("dictionary-encoded values lack their bit-width byte");
      std::vector<uint32_t> ids;
      decode_rle_hybrid(data + 1, size - 1, data[0], present, ids);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] >= dict_->size())
          fail_input("dictionary id {} (value {}) is out of range; the dictionary has {} values", ids[i], i, dict_->size());
        out_.values.push_back((*dict_)[ids[i]]);
      }
      return;
    }
    Values v;
    decode_values(leaf_.type, leaf_.type_length, encoding, data, size, present, v);
    append_json(v, leaf_, out_.values);
  }

  const ColumnMetaData& meta_;
  const Leaf& leaf_;
  ColumnData out_;
  std::optional<std::vector<json>> dict_;
  int data_pages_ = 0;
  int64_t seen_ = 0;
};

}  // namespace

std::string decimal_to_string(const uint8_t* be, size_t n, int scale) {
  if (n > 64) fail_input("DECIMAL value of {} bytes is longer than the 64 this reader converts", n);
  std::vector<uint8_t> mag(be, be + n);
  const bool negative = n > 0 && (be[0] & 0x80);
  if (negative) {  // two's complement: invert and add one
    for (uint8_t& b : mag) b = uint8_t(~b);
    for (size_t i = n; i-- > 0;)
      if (++mag[i] != 0) break;
  }
  std::string digits;  // least significant first
  for (;;) {
    bool zero = true;
    unsigned rem = 0;
    for (uint8_t& b : mag) {
      unsigned cur = rem * 256 + b;
      b = uint8_t(cur / 10);
      rem = cur % 10;
      zero &= b == 0;
    }
    digits.push_back(char('0' + rem));
    if (zero) break;
  }
  while (digits.size() <= size_t(scale)) digits.push_back('0');
  std::string s = negative ? "-" : "";
  for (size_t i = digits.size(); i-- > 0;) {
    s.push_back(digits[i]);
    if (i == size_t(scale) && scale > 0) s.push_back('.');
  }
  return s;
}

ChunkRange chunk_range(const ColumnMetaData& m) {
  ChunkRange r;
  r.begin = uint64_t(m.data_page_offset);
  if (m.dictionary_page_offset && *m.dictionary_page_offset > 0 && *m.dictionary_page_offset < m.data_page_offset)
    r.begin = uint64_t(*m.dictionary_page_offset);
  r.size = uint64_t(m.total_compressed_size);
  return r;
}

ColumnData read_column_chunk(const uint8_t* file, const ColumnMetaData& meta, const Leaf& leaf) {
  const ChunkRange range = chunk_range(meta);
  const uint8_t* chunk = file + range.begin;
  ChunkReader reader(meta, leaf);
  size_t pos = 0;
  for (int page = 0; reader.values_seen() < meta.num_values; ++page) {
    const uint64_t at = range.begin + pos;
    if (pos >= range.size)
      fail_input("the column chunk ({} bytes from byte {}) ends after {} of the {} values its metadata declares",
                 range.size, range.begin, reader.values_seen(), meta.num_values);
    size_t header_size = 0;
    PageHeader h;
    try {
      h = parse_page_header(chunk + pos, size_t(range.size - pos), &header_size);
    } catch (const InputError& e) {
      fail_input("page {} at byte {}: bad page header: {}", page, at, e.what());
    }
    try {
      const uint64_t left = range.size - pos - header_size;
      if (h.compressed_page_size > 0 && uint64_t(h.compressed_page_size) > left)
        fail_input("page of {} bytes runs past the end of its column chunk ({} bytes left)", h.compressed_page_size, left);
      reader.page(h, chunk + pos + header_size, size_t(std::max(h.compressed_page_size, 0)));
    } catch (const InputError& e) {
      fail_input("page {} ({} at byte {}): {}", page, page_type_name(h.type), at, e.what());
    }
    pos += header_size + size_t(std::max(h.compressed_page_size, 0));
  }
  return reader.take();
}

}  // namespace gptoss::io::parquet
