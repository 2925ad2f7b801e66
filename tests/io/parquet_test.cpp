// Parquet reader: fixtures from four independent writers (tests/io/data/make_parquet_fixtures.mjs:
// parquet-wasm/arrow-rs, hyparquet-writer, parquetjs; tests/io/data/pyarrow: pyarrow) compared row for row with their expected JSON; the
// pieces (thrift compact protocol, RLE/bit-packed hybrid, DELTA_BINARY_PACKED, ...) on hand-made bytes;
// corruptions of a hand-built file; a robustness loop of byte flips and truncations.
#include "io/parquet.h"

#include <snappy.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <typeinfo>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/mmap_file.h"
#include "io/parquet_column.h"
#include "io/parquet_decode.h"
#include "io/parquet_meta.h"
#include "io/thrift_compact.h"
#include "test_util.h"

namespace gptoss::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using thrift::CompactReader;

std::string data_dir() { return std::string(GPTOSS_SOURCE_DIR) + "/tests/io/data/"; }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void spill(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::vector<json> expected_rows(const std::string& name) {
  json j = json::parse(slurp(data_dir() + name + ".expected.json"));
  return std::vector<json>(j.begin(), j.end());
}

std::string show(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void expect_same_rows(const std::vector<json>& got, const std::vector<json>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int shown = 0;
  for (size_t i = 0; i < got.size() && shown < 3; ++i)
    if (got[i] != want[i]) {
      ADD_FAILURE() << what << " row " << i << "\n  read:     " << show(got[i]) << "\n  expected: " << show(want[i]);
      ++shown;
    }
}

// Expects an InputError naming the file and containing every part.
template <class F>
void expect_input_error(F&& f, const std::string& file, std::initializer_list<std::string> parts) {
  std::string msg = input_error_of(f);
  ASSERT_FALSE(msg.empty()) << "expected an InputError";
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixture {
  const char* file;      // tests/io/data/<file>.parquet
  const char* expected;  // tests/io/data/<expected>.expected.json
  int row_groups;
};

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.file; }

class Fixtures : public ::testing::TestWithParam<Fixture> {};

TEST_P(Fixtures, RowsMatchExpected) {
  const Fixture& f = GetParam();
  const std::string path = data_dir() + f.file + ".parquet";
  const std::vector<json> want = expected_rows(f.expected);
  ParquetReader r(path);
  EXPECT_EQ(r.num_rows(), int64_t(want.size()));
  EXPECT_EQ(r.num_row_groups(), f.row_groups);
  std::vector<std::string> keys;
  for (auto it = want.at(0).begin(); it != want.at(0).end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(r.fields(), keys);
  expect_same_rows(read_parquet_rows(path), want, f.file);
  // Row group by row group gives the same rows.
  std::vector<json> joined;
  for (int g = 0; g < r.num_row_groups(); ++g) {
    std::vector<json> part = r.read_row_group(g);
    joined.insert(joined.end(), part.begin(), part.end());
  }
  expect_same_rows(joined, want, std::string(f.file) + " by row group");
}

INSTANTIATE_TEST_SUITE_P(
    Parquet, Fixtures,
    ::testing::Values(Fixture{"mt_snappy_dict_v1", "mt", 3}, Fixture{"mt_snappy_plain_v2", "mt", 3},
                      Fixture{"mt_gzip_dict_v2", "mt", 3}, Fixture{"mt_gzip_plain_v1", "mt", 3},
                      Fixture{"mt_zstd_dict_v1", "mt", 3}, Fixture{"mt_zstd_plain_v2", "mt", 3},
                      Fixture{"mt_uncompressed_dict_v2", "mt", 3}, Fixture{"mt_uncompressed_plain_v1", "mt", 3},
                      Fixture{"mt_hyparquet", "mt", 3}, Fixture{"types_dict_v1_snappy", "types", 3},
                      Fixture{"types_plain_v2_zstd", "types", 3}, Fixture{"types_encodings_v1_gzip", "types", 2},
                      Fixture{"nested_dict_v1_snappy", "nested", 3}, Fixture{"nested_plain_v2_gzip", "nested", 3},
                      Fixture{"encodings_hyparquet", "encodings_hyparquet", 2},
                      Fixture{"legacy_parquetjs_v1", "legacy_parquetjs", 3},
                      Fixture{"legacy_parquetjs_v2", "legacy_parquetjs", 3}),
    [](const ::testing::TestParamInfo<Fixture>& i) { return std::string(i.param.file); });

// Files pyarrow wrote (tests/io/data/pyarrow/make_pyarrow_fixtures.py, run on the GPU box: the writer
// behind the hub's Parquet conversions), each against the rows pyarrow read back.
TEST(ParquetReader, PyarrowFilesMatchTheirExpectedRows) {
  int files = 0;
  for (const auto& entry : fs::directory_iterator(data_dir() + "pyarrow")) {
    if (entry.path().extension() != ".parquet") continue;
    const std::string stem = entry.path().stem().string();
    SCOPED_TRACE(stem);
    expect_same_rows(read_parquet_rows(entry.path().string()), expected_rows("pyarrow/" + stem), stem);
    ++files;
  }
  EXPECT_EQ(files, 6);
}

TEST(ParquetReader, MultilingualThinkingShapes) {
  // The cases train reads: null thinking, empty and null message lists, a null message, non-ASCII text.
  std::vector<json> rows = read_parquet_rows(data_dir() + "mt_snappy_dict_v1.parquet");
  ASSERT_EQ(rows.size(), 16u);
  const json& m = rows[0]["messages"];
  ASSERT_TRUE(m.is_array());
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_TRUE(m[0]["thinking"].is_null());
  EXPECT_EQ(m[2]["role"], "assistant");
  EXPECT_EQ(m[2]["thinking"], rows[0]["analysis"]);
  EXPECT_EQ(rows[3]["messages"], json::array());
  EXPECT_TRUE(rows[4]["messages"].is_null());
  EXPECT_TRUE(rows[5]["messages"][1].is_null());
  EXPECT_TRUE(rows[6]["messages"][0]["content"].is_null());
  EXPECT_EQ(rows[9]["user"], "你好，世界！数学问题。 (question 9)");
  EXPECT_EQ(rows[9]["messages"].size(), 5u);
}

TEST(ParquetReader, ValuesOfEachType) {
  std::vector<json> rows = read_parquet_rows(data_dir() + "types_plain_v2_zstd.parquet");
  ASSERT_EQ(rows.size(), 50u);
  EXPECT_EQ(rows[4]["i64"].get<int64_t>(), INT64_MIN);
  EXPECT_EQ(rows[5]["i64"].get<int64_t>(), INT64_MAX);
  EXPECT_EQ(rows[1]["u64"].get<uint64_t>(), UINT64_MAX);
  EXPECT_TRUE(rows[1]["u64"].is_number_unsigned());
  EXPECT_EQ(rows[4]["u32"].get<uint64_t>(), 4294967295u);
  EXPECT_EQ(rows[20]["f64"].get<double>(), 5e-324);
  EXPECT_TRUE(rows[0]["b"].is_boolean());
  EXPECT_EQ(rows[1]["fsb"], "k001");
  EXPECT_TRUE(rows[0]["u32"].is_null());
}

TEST(ParquetReader, ColumnSelection) {
  const std::string path = data_dir() + "mt_zstd_dict_v1.parquet";
  ParquetReader r(path);
  // Asked in another order: returned in schema order, nothing else.
  std::vector<json> rows = r.read_row_group(1, {"messages", "user"});
  std::vector<json> all = expected_rows("mt");
  ASSERT_EQ(rows.size(), 6u);
  for (size_t i = 0; i < rows.size(); ++i) {
    json want = json::object();
    want["user"] = all[6 + i]["user"];
    want["messages"] = all[6 + i]["messages"];
    EXPECT_EQ(rows[i], want) << i;
    EXPECT_EQ(rows[i].begin().key(), "user");
  }
  EXPECT_EQ(read_parquet_rows(path, {"final"}).size(), 16u);
  expect_input_error([&] { r.read_row_group(0, {"user", "nope"}); }, path,
                     {"'nope'", "reasoning_language, developer, user, analysis, final, messages"});
  expect_input_error([&] { r.read_row_group(3); }, path, {"row group 3", "3 row groups"});
  expect_input_error([&] { read_parquet_rows(path, {"Messages"}); }, path, {"'Messages'"});
}

TEST(ParquetReader, Movable) {
  ParquetReader a(data_dir() + "nested_dict_v1_snappy.parquet");
  ParquetReader b(std::move(a));
  ParquetReader c(data_dir() + "types_dict_v1_snappy.parquet");
  c = std::move(b);
  EXPECT_EQ(c.num_rows(), 30);
  const std::vector<json> want = expected_rows("nested");
  expect_same_rows(c.read_row_group(0), std::vector<json>(want.begin(), want.begin() + 12), "moved reader");
}

TEST(ParquetReader, MissingFile) {
  expect_input_error([] { ParquetReader r("/nonexistent/dir/x.parquet"); }, "/nonexistent/dir/x.parquet", {"cannot open"});
}

// ---------------------------------------------------------------------------------------------
// Thrift compact protocol

TEST(ThriftCompact, VarintsAndZigzag) {
  const uint8_t b[] = {0x96, 0x01, 0x03, 0x04, 0xff, 0xff, 0xff, 0xff, 0x0f};
  CompactReader r(b, sizeof b);
  EXPECT_EQ(r.read_uleb128(), 150u);
  EXPECT_EQ(r.read_zigzag(), -2);
  EXPECT_EQ(r.read_i32(), 2);
  EXPECT_EQ(r.read_i32(), INT32_MIN);  // zigzag 0xffffffff
  EXPECT_EQ(r.remaining(), 0u);
  const uint8_t too_long[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  EXPECT_NE(input_error_of([&] { CompactReader(too_long, sizeof too_long).read_uleb128(); }).find("varint"), std::string::npos);
  const uint8_t big_i32[] = {0x80, 0x80, 0x80, 0x80, 0x20};  // zigzag 2^33 -> 2^32
  EXPECT_NE(input_error_of([&] { CompactReader(big_i32, sizeof big_i32).read_i32(); }).find("out of range"), std::string::npos);
  const uint8_t cut[] = {0x80};
  EXPECT_NE(input_error_of([&] { CompactReader(cut, 1).read_uleb128(); }).find("truncated"), std::string::npos);
}

TEST(ThriftCompact, FieldDeltasLongIdsBoolsAndSkipping) {
  const uint8_t b[] = {
      0x15, 0x03,                    // field 1 (delta 1), i32 -2
      0x28, 0x02, 'a', 'b',          // field 3 (delta 2), binary "ab"
      0x05, 0x28, 0x02,              // field 20 (long form: type i32, zigzag i16 id 20), i32 1
      0x11,                          // field 21 (delta 1), bool true
      0x12,                          // field 22, bool false
      0x1c, 0x16, 0x04, 0x00,        // field 23, struct {field 1: i64 2}: skipped
      0x19, 0x35, 0x02, 0x04, 0x06,  // field 24, list<i32> of 3: skipped
      0x1b, 0x01, 0x88, 0x01, 'k', 0x04, 'v', 'w', 'x', 'y',  // field 25, map<binary, binary> of 1: skipped
      0x19, 0xf5, 0x10,              // field 26, list<i32> of 16 (long form)
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x00};
  CompactReader r(b, sizeof b);
  CompactReader::Field f;
  r.begin_struct();
  ASSERT_TRUE(r.next_field(f));
  EXPECT_EQ(f.id, 1);
  EXPECT_EQ(r.read_i32(), -2);
  ASSERT_TRUE(r.next_field(f));
  EXPECT_EQ(f.id, 3);
  EXPECT_EQ(r.read_binary(), "ab");
  ASSERT_TRUE(r.next_field(f));
  EXPECT_EQ(f.id, 20);
  EXPECT_EQ(r.read_i32(), 1);
  ASSERT_TRUE(r.next_field(f));
  EXPECT_EQ(f.id, 21);
  EXPECT_TRUE(r.read_bool(f));
  ASSERT_TRUE(r.next_field(f));
  EXPECT_EQ(f.id, 22);
  EXPECT_FALSE(r.read_bool(f));
  for (int id : {23, 24, 25}) {
    ASSERT_TRUE(r.next_field(f));
    EXPECT_EQ(f.id, id);
    r.skip(f.type);
  }
  ASSERT_TRUE(r.next_field(f));
  EXPECT_EQ(f.id, 26);
  CompactReader::ListHeader h = r.read_list_header();
  EXPECT_EQ(h.size, 16u);
  EXPECT_EQ(h.elem, thrift::Type::kI32);
  for (int i = 0; i < 16; ++i) r.read_i32();
  EXPECT_FALSE(r.next_field(f));
  r.end_struct();
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ThriftCompact, LyingSizesAndDepth) {
  const uint8_t list[] = {0xf5, 0xff, 0xff, 0xff, 0x0f, 0x00};  // 2^32-1 elements in 1 byte
  EXPECT_NE(input_error_of([&] { CompactReader(list, sizeof list).read_list_header(); }).find("only 1 bytes remain"),
            std::string::npos);
  const uint8_t bin[] = {0x10, 'a'};
  EXPECT_NE(input_error_of([&] { CompactReader(bin, sizeof bin).read_binary(); }).find("binary of 16 bytes"), std::string::npos);
  std::vector<uint8_t> deep(200, 0x1c);  // struct in struct in struct ...
  EXPECT_NE(input_error_of([&] { CompactReader(deep.data(), deep.size()).skip(thrift::Type::kStruct); }).find("deeper than 64"),
            std::string::npos);
  const uint8_t bad_type[] = {0x1d};
  CompactReader r(bad_type, 1);
  CompactReader::Field f;
  r.begin_struct();
  EXPECT_NE(input_error_of([&] { r.next_field(f); }).find("unknown compact type 13"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Encodings

// Values packed LSB first, as the RLE/bit-packed hybrid and DELTA_BINARY_PACKED store them.
std::string pack_lsb(const std::vector<uint64_t>& values, int width) {
  std::string out((values.size() * width + 7) / 8, '\0');
  for (size_t i = 0; i < values.size(); ++i)
    for (int b = 0; b < width; ++b)
      if ((values[i] >> b) & 1) out[(i * width + b) / 8] |= char(1 << ((i * width + b) % 8));
  return out;
}
const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

TEST(ParquetEncoding, RleBitPackedHybridSpecExample) {
  // Encodings.md: 0..7 with bit width 3 bit-packed are the bytes 10001000 11000110 11111010.
  const std::string bytes = std::string("\x03\x88\xc6\xfa", 4) + "\x0a\x02";  // then an RLE run of five 2s
  ASSERT_EQ(pack_lsb({0, 1, 2, 3, 4, 5, 6, 7}, 3), bytes.substr(1, 3));
  std::vector<uint32_t> out;
  EXPECT_EQ(parquet::decode_rle_hybrid(u8(bytes), bytes.size(), 3, 13, out), bytes.size());
  EXPECT_EQ(out, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 2, 2, 2, 2, 2}));
  // Fewer values than the run holds: only those are taken; a run may stop short of its padding.
  std::vector<uint8_t> levels;
  parquet::decode_rle_hybrid(u8(bytes), 3, 3, 5, levels);
  EXPECT_EQ(levels, (std::vector<uint8_t>{0, 1, 2, 3, 4}));
  // Width 0: an RLE run without value bytes.
  const std::string zeros = "\x08";
  levels.clear();
  parquet::decode_rle_hybrid(u8(zeros), 1, 0, 4, levels);
  EXPECT_EQ(levels, (std::vector<uint8_t>{0, 0, 0, 0}));
  // Truncated, too many values asked, a value wider than its width.
  EXPECT_NE(input_error_of([&] { parquet::decode_rle_hybrid(u8(bytes), 2, 3, 8, out); }).find("needs 3 bytes"), std::string::npos);
  EXPECT_NE(input_error_of([&] { parquet::decode_rle_hybrid(u8(bytes), bytes.size(), 3, 14, out); }).find("ends after 13 of 14"),
            std::string::npos);
  const std::string wide = "\x02\x09";
  EXPECT_NE(input_error_of([&] { parquet::decode_rle_hybrid(u8(wide), 2, 3, 1, out); }).find("does not fit 3 bits"),
            std::string::npos);
}

TEST(ParquetEncoding, DeprecatedBitPackedSpecExample) {
  // Encodings.md: 0..7 with width 3, most significant bit first: 00000101 00111001 01110111.
  const std::string bytes = "\x05\x39\x77";
  std::vector<uint8_t> out;
  EXPECT_EQ(parquet::decode_bit_packed_msb(u8(bytes), 3, 3, 8, out), 3u);
  EXPECT_EQ(out, (std::vector<uint8_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_NE(input_error_of([&] { parquet::decode_bit_packed_msb(u8(bytes), 3, 3, 9, out); }).find("need 4 bytes"),
            std::string::npos);
}

std::string uleb(uint64_t v) {
  std::string s;
  do {
    s.push_back(char((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
    v >>= 7;
  } while (v);
  return s;
}
std::string zigzag(int64_t v) { return uleb((uint64_t(v) << 1) ^ uint64_t(v >> 63)); }

TEST(ParquetEncoding, DeltaBinaryPackedNegativeDeltasSeveralMiniblocks) {
  // Block of 128 in 4 miniblocks of 32. 70 values: 100, then 32 deltas of -3, then 32 deltas alternating
  // +1/-3, then 5 deltas of +7. Min delta -3; relative deltas 0 (width 0), 4/0 (width 3), 10 (width 4,
  // padded to 32 values); the 4th miniblock has no body.
  std::vector<uint64_t> mb2, mb3(32, 0);
  for (int i = 0; i < 32; ++i) mb2.push_back(i % 2 == 0 ? 4 : 0);
  for (int i = 0; i < 5; ++i) mb3[i] = 10;
  const std::string bytes = uleb(128) + uleb(4) + uleb(70) + zigzag(100) + zigzag(-3) + std::string("\x00\x03\x04\x00", 4) +
                            pack_lsb(mb2, 3) + pack_lsb(mb3, 4) + "tail";
  std::vector<int64_t> want{100};
  for (int i = 0; i < 32; ++i) want.push_back(want.back() - 3);
  for (int i = 0; i < 32; ++i) want.push_back(want.back() + (i % 2 == 0 ? 1 : -3));
  for (int i = 0; i < 5; ++i) want.push_back(want.back() + 7);
  std::vector<int64_t> out;
  EXPECT_EQ(parquet::decode_delta_binary_packed(u8(bytes), bytes.size(), 70, out), bytes.size() - 4);
  EXPECT_EQ(out, want);
  EXPECT_EQ(out[32], 4);
  EXPECT_EQ(out[64], -28);
  // INT32 wraps: 2147483647 then a delta of +1 is -2147483648.
  const std::string wrap = uleb(128) + uleb(4) + uleb(2) + zigzag(2147483647) + zigzag(1) + std::string(4, '\0');
  parquet::Values v;
  parquet::decode_values(parquet::kInt32, 0, parquet::kDeltaBinaryPacked, u8(wrap), wrap.size(), 2, v);
  EXPECT_EQ(v.ints, (std::vector<int64_t>{2147483647, -2147483648LL}));
  // The header's count must match; miniblock bodies must be there; block sizes must be valid.
  EXPECT_NE(input_error_of([&] { parquet::decode_delta_binary_packed(u8(bytes), bytes.size(), 69, out); }).find("holds 70 values; expected 69"),
            std::string::npos);
  EXPECT_NE(input_error_of([&] { parquet::decode_delta_binary_packed(u8(bytes), bytes.size() - 4 - 16 - 6, 70, out); }).find("miniblock of 32 values needs 12 bytes"),
            std::string::npos);
  const std::string bad = uleb(100) + uleb(4) + uleb(1) + zigzag(0);
  EXPECT_NE(input_error_of([&] { parquet::decode_delta_binary_packed(u8(bad), bad.size(), 1, out); }).find("block size 100"),
            std::string::npos);
}

TEST(ParquetEncoding, DeltaByteArraySpecExample) {
  // Encodings.md: "axis", "axle", "babble", "babyhood": prefixes 0 2 0 3, suffixes "axis" "le" "babble" "yhood".
  auto dbp = [](std::vector<int64_t> v) {  // one miniblock of 32 values: first value, min delta, deltas
    int64_t lo = INT64_MAX;
    for (size_t i = 1; i < v.size(); ++i) lo = std::min(lo, v[i] - v[i - 1]);
    std::vector<uint64_t> rel(32, 0);
    for (size_t i = 1; i < v.size(); ++i) rel[i - 1] = uint64_t(v[i] - v[i - 1] - lo);
    return uleb(128) + uleb(4) + uleb(v.size()) + zigzag(v[0]) + zigzag(lo) + std::string("\x04\x00\x00\x00", 4) +
           pack_lsb(rel, 4);
  };
  const std::string bytes = dbp({0, 2, 0, 3}) + dbp({4, 2, 6, 5}) + "axislebabbleyhood";
  parquet::Values v;
  parquet::decode_values(parquet::kByteArray, 0, parquet::kDeltaByteArray, u8(bytes), bytes.size(), 4, v);
  EXPECT_EQ(v.bytes, (std::vector<std::string>{"axis", "axle", "babble", "babyhood"}));
  // DELTA_LENGTH_BYTE_ARRAY is the second half alone.
  const std::string dlba = dbp({4, 2, 6, 5}) + "axislebabbleyhood";
  parquet::Values w;
  parquet::decode_values(parquet::kByteArray, 0, parquet::kDeltaLengthByteArray, u8(dlba), dlba.size(), 4, w);
  EXPECT_EQ(w.bytes, (std::vector<std::string>{"axis", "le", "babble", "yhood"}));
  // A prefix longer than its predecessor is corrupt.
  const std::string bad = dbp({0, 5, 0, 3}) + dbp({4, 2, 6, 5}) + "axislebabbleyhood";
  EXPECT_NE(input_error_of([&] { parquet::decode_values(parquet::kByteArray, 0, parquet::kDeltaByteArray, u8(bad), bad.size(), 4, v); })
                .find("reuses 5 bytes of a 4-byte predecessor"),
            std::string::npos);
}

TEST(ParquetEncoding, ByteStreamSplitPlainBooleansAndInt96) {
  // Encodings.md: AA BB CC DD, 00 11 22 33, A3 B4 C5 D6 split into AA 00 A3 BB 11 B4 CC 22 C5 DD 33 D6.
  const std::string split("\xaa\x00\xa3\xbb\x11\xb4\xcc\x22\xc5\xdd\x33\xd6", 12);
  parquet::Values v;
  parquet::decode_values(parquet::kInt32, 0, parquet::kByteStreamSplit, u8(split), 12, 3, v);
  EXPECT_EQ(v.ints, (std::vector<int64_t>{int32_t(0xddccbbaa), 0x33221100, int32_t(0xd6c5b4a3)}));
  EXPECT_NE(input_error_of([&] { parquet::decode_values(parquet::kInt32, 0, parquet::kByteStreamSplit, u8(split), 12, 2, v); })
                .find("need exactly 8"),
            std::string::npos);
  const std::string bits = "\x05";  // PLAIN booleans: 1, 0, 1, 0
  parquet::Values b;
  parquet::decode_values(parquet::kBoolean, 0, parquet::kPlain, u8(bits), 1, 4, b);
  EXPECT_EQ(b.bools, (std::vector<uint8_t>{1, 0, 1, 0}));
  // INT96: nanoseconds of the day, then the Julian day (2440589 is 1970-01-02).
  std::string ts(12, '\0');
  const int64_t nanos = 5;
  const int32_t day = 2440589;
  std::memcpy(ts.data(), &nanos, 8);
  std::memcpy(ts.data() + 8, &day, 4);
  parquet::Values t;
  parquet::decode_values(parquet::kInt96, 0, parquet::kPlain, u8(ts), 12, 1, t);
  EXPECT_EQ(t.ints, (std::vector<int64_t>{86400LL * 1000000000LL + 5}));
  // Unsupported encodings and encodings of the wrong type are named.
  EXPECT_NE(input_error_of([&] { parquet::decode_values(parquet::kInt32, 0, 10, u8(split), 12, 3, v); }).find("encoding ALP is not supported"),
            std::string::npos);
  EXPECT_NE(input_error_of([&] { parquet::decode_values(parquet::kDouble, 0, parquet::kDeltaBinaryPacked, u8(split), 12, 1, v); })
                .find("DELTA_BINARY_PACKED does not apply to DOUBLE"),
            std::string::npos);
}

TEST(ParquetEncoding, DecimalText) {
  auto text = [](std::vector<uint8_t> b, int scale) { return parquet::decimal_to_string(b.data(), b.size(), scale); };
  EXPECT_EQ(text({0x04, 0xd2}, 2), "12.34");
  EXPECT_EQ(text({0xfb, 0x2e}, 2), "-12.34");
  EXPECT_EQ(text({0xff, 0xfb}, 3), "-0.005");
  EXPECT_EQ(text({0x00}, 3), "0.000");
  EXPECT_EQ(text({}, 0), "0");
  EXPECT_EQ(text({0x80, 0, 0, 0, 0, 0, 0, 0}, 0), "-9223372036854775808");
  EXPECT_EQ(text({0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 10),
            "17014118346046923173168730371.5884105727");
}

TEST(ParquetEncoding, Decompression) {
  std::string raw(5000, 'x');
  for (size_t i = 0; i < raw.size(); i += 7) raw[i] = char('a' + i % 26);
  std::string packed;
  snappy::Compress(raw.data(), raw.size(), &packed);
  std::vector<uint8_t> out = parquet::decompress(parquet::kSnappy, u8(packed), packed.size(), raw.size());
  EXPECT_EQ(std::string(out.begin(), out.end()), raw);
  EXPECT_NE(input_error_of([&] { parquet::decompress(parquet::kSnappy, u8(packed), packed.size(), raw.size() + 1); })
                .find("holds 5000 bytes but the page header declares 5001"),
            std::string::npos);
  const std::string cut = packed.substr(0, packed.size() / 2);
  EXPECT_NE(input_error_of([&] { parquet::decompress(parquet::kSnappy, u8(cut), cut.size(), raw.size()); }).find("SNAPPY data is corrupt"),
            std::string::npos);
  for (int codec : {parquet::kLzo, parquet::kBrotli, parquet::kLz4, parquet::kLz4Raw})
    EXPECT_NE(input_error_of([&] { parquet::decompress(codec, u8(packed), packed.size(), raw.size()); }).find("is not supported"),
              std::string::npos);
  EXPECT_NE(input_error_of([&] { parquet::decompress(parquet::kUncompressed, u8(raw), raw.size(), raw.size() - 1); })
                .find("declares 4999"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// A hand-built file: one required INT32 column "x" of four rows, a dictionary page {10, 20} and a data
// page of ids {0, 1, 1, 0}, so that each corruption below changes exactly one thing.

class ThriftOut {
 public:
  void field(int id, int type) {
    int d = id - last_.back();
    if (d > 0 && d <= 15) {
      out_.push_back(char(d << 4 | type));
    } else {
      out_.push_back(char(type));
      out_ += zigzag(id);
    }
    last_.back() = id;
  }
  ThriftOut& i32(int id, int64_t v) { field(id, 5); out_ += zigzag(v); return *this; }
  ThriftOut& i64(int id, int64_t v) { field(id, 6); out_ += zigzag(v); return *this; }
  ThriftOut& str(int id, const std::string& s) { field(id, 8); out_ += uleb(s.size()) + s; return *this; }
  ThriftOut& begin(int id) { field(id, 12); last_.push_back(0); return *this; }
  ThriftOut& list(int id, int elem_type, size_t n) {
    field(id, 9);
    out_.push_back(char(n << 4 | elem_type));
    return *this;
  }
  ThriftOut& element() { last_.push_back(0); return *this; }  // a struct inside a list
  ThriftOut& raw(const std::string& s) { out_ += s; return *this; }
  ThriftOut& end() { out_.push_back('\0'); last_.pop_back(); return *this; }
  std::string done() { out_.push_back('\0'); return out_; }

 private:
  std::string out_;
  std::vector<int> last_{0};
};

struct Tiny {
  int codec = parquet::kUncompressed;
  int encoding = parquet::kRleDictionary;
  uint32_t first_id = 0;
  int uncompressed_delta = 0;    // added to the data page's declared uncompressed size
  int64_t data_page_offset = 0;  // 0: where the data page really is
  int64_t dictionary_page_offset = 0;  // 0: where the dictionary page really is
};

std::string tiny_parquet(const Tiny& t) {
  auto compress = [&](const std::string& s) {
    if (t.codec != parquet::kSnappy) return s;
    std::string c;
    snappy::Compress(s.data(), s.size(), &c);
    return c;
  };
  const std::string dict_raw("\x0a\x00\x00\x00\x14\x00\x00\x00", 8);  // PLAIN INT32 10, 20
  const std::string ids = "\x03" + pack_lsb({t.first_id, 1, 1, 0, 0, 0, 0, 0}, 3);  // one bit-packed group
  const std::string data_raw = "\x03" + ids;                                        // bit width 3
  const std::string dict = compress(dict_raw), data = compress(data_raw);
  const std::string dict_header = ThriftOut()
                                      .i32(1, parquet::kDictionaryPage).i32(2, dict_raw.size()).i32(3, dict.size())
                                      .begin(7).i32(1, 2).i32(2, parquet::kPlain).end()
                                      .done();
  const std::string data_header = ThriftOut()
                                      .i32(1, parquet::kDataPage).i32(2, int64_t(data_raw.size()) + t.uncompressed_delta)
                                      .i32(3, data.size())
                                      .begin(5).i32(1, 4).i32(2, t.encoding).i32(3, parquet::kRle).i32(4, parquet::kRle).end()
                                      .done();
  const int64_t dict_offset = 4, data_offset = 4 + int64_t(dict_header.size() + dict.size());
  const int64_t chunk_size = int64_t(dict_header.size() + dict.size() + data_header.size() + data.size());
  ThriftOut footer;
  footer.i32(1, 1).list(2, 12, 2);
  footer.element().str(4, "schema").i32(5, 1).end();
  footer.element().i32(1, parquet::kInt32).i32(3, parquet::kRequired).str(4, "x").end();
  footer.i64(3, 4).list(4, 12, 1).element().list(1, 12, 1).element().i64(2, 0).begin(3);
  footer.i32(1, parquet::kInt32).list(2, 5, 2).raw(std::string("\x00\x10", 2)).list(3, 8, 1).raw("\x01x").i32(4, t.codec).i64(5, 4);
  footer.i64(6, chunk_size).i64(7, chunk_size).i64(9, t.data_page_offset ? t.data_page_offset : data_offset).i64(11, t.dictionary_page_offset ? t.dictionary_page_offset : dict_offset);
  footer.end().end().i64(2, chunk_size).i64(3, 4).end().str(6, "gptoss parquet_test");
  const std::string meta = footer.done();
  std::string file = "PAR1" + dict_header + dict + data_header + data + meta;
  const uint32_t n = uint32_t(meta.size());
  file.append(reinterpret_cast<const char*>(&n), 4);
  return file + "PAR1";
}

TEST(ParquetCorruption, HandBuiltFileReads) {
  TempDir d("parquet");
  for (int codec : {parquet::kUncompressed, parquet::kSnappy}) {
    spill(d / "tiny.parquet", tiny_parquet({.codec = codec}));
    std::vector<json> rows = read_parquet_rows(d / "tiny.parquet");
    EXPECT_EQ(json(rows), json::parse(R"([{"x": 10}, {"x": 20}, {"x": 20}, {"x": 10}])")) << codec;
  }
}

TEST(ParquetCorruption, EachAnInputErrorNamingTheFile) {
  TempDir d("parquet");
  const std::string path = d / "bad.parquet";
  const std::string good = tiny_parquet({});
  const std::string where = "row group 0, column x";
  std::string long_footer = good;
  const uint32_t huge = uint32_t(good.size());
  std::memcpy(long_footer.data() + long_footer.size() - 8, &huge, 4);
  const std::string mt = slurp(data_dir() + "mt_snappy_dict_v1.parquet");
  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> expect;  // besides the file name
  };
  const std::vector<Case> cases = {
      {"truncated", good.substr(0, good.size() / 2), {"does not end with the Parquet magic", "truncated"}},
      {"tiny", good.substr(0, 7), {"file is 7 bytes"}},
      {"bad magic", "PAX1" + good.substr(4), {"does not start with the Parquet magic"}},
      {"footer length past the file", long_footer, {"footer length", "does not fit"}},
      {"empty footer", std::string("PAR1\0\0\0\0PAR1", 12), {"footer metadata"}},
      {"data page offset past the file", tiny_parquet({.data_page_offset = int64_t(good.size()) + 100}),
       {where, "data_page_offset", "lies outside the chunk's pages"}},
      {"dictionary page offset one byte late", tiny_parquet({.dictionary_page_offset = 5}), {where, "outside the data region"}},
      {"dictionary id out of range", tiny_parquet({.first_id = 5}),
       {where, "page 1", "dictionary id 5", "the dictionary has 2 values"}},
      {"declared uncompressed size too large", tiny_parquet({.codec = parquet::kSnappy, .uncompressed_delta = 3}),
       {where, "page 1", "SNAPPY data holds", "declares"}},
      {"declared size of an uncompressed page", tiny_parquet({.uncompressed_delta = -1}), {where, "uncompressed page is"}},
      {"LZ4_RAW", tiny_parquet({.codec = parquet::kLz4Raw}), {where, "codec LZ4_RAW is not supported"}},
      {"BROTLI", tiny_parquet({.codec = parquet::kBrotli}), {where, "codec BROTLI is not supported"}},
      {"unknown encoding", tiny_parquet({.encoding = 10}), {where, "encoding ALP is not supported"}},
      {"offsets shifted by a removed byte", mt.substr(0, 4) + mt.substr(5), {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    spill(path, c.bytes);
    std::string msg = input_error_of([&] { read_parquet_rows(path); });
    ASSERT_FALSE(msg.empty()) << "no InputError";
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& p : c.expect) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
  }
}

// Byte flips and truncations of fixtures: each reads or throws InputError, never anything else.
TEST(ParquetCorruption, RobustToFlipsAndTruncations) {
  TempDir d("parquet");
  const std::string path = d / "flip.parquet";
  std::mt19937 rng(1234);
  int errors = 0, reads = 0;
  auto attempt = [&](const std::string& bytes, const std::string& what) {
    spill(path, bytes);
    try {
      ParquetReader r(path);
      for (int g = 0; g < r.num_row_groups(); ++g) r.read_row_group(g);
      ++reads;
    } catch (const InputError&) {
      ++errors;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": " << typeid(e).name() << ": " << e.what();
    }
  };
  for (const char* name : {"mt_snappy_dict_v1", "nested_plain_v2_gzip", "types_encodings_v1_gzip", "legacy_parquetjs_v1",
                           "encodings_hyparquet"}) {
    const std::string good = slurp(data_dir() + name + ".parquet");
    ASSERT_GT(good.size(), 1000u);
    for (int i = 0; i < 700; ++i) {
      std::string bad = good;
      // Half the flips in the footer and the page headers near it, where the structure is.
      size_t at = i % 2 ? rng() % bad.size() : bad.size() - 1 - rng() % std::min<size_t>(bad.size(), 1500);
      bad[at] = char(bad[at] ^ (1 + rng() % 255));
      attempt(bad, std::string(name) + " byte " + std::to_string(at));
    }
    for (int i = 0; i < 60; ++i) {
      size_t n = rng() % good.size();
      attempt(good.substr(0, n), std::string(name) + " cut at " + std::to_string(n));
    }
  }
  EXPECT_GT(errors, 1000);  // most damage is detected ...
  EXPECT_GT(reads, 100);    // ... and flips inside string values still read
}

}  // namespace
}  // namespace gptoss::io
