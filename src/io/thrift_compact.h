// Reader for Apache Thrift's compact protocol (the encoding of Parquet's footer and page headers).
//
// Wire format (thrift's doc/specs/thrift-compact-protocol.md):
//   integers    i16/i32/i64 are zigzag ULEB128 varints; a byte (i8) is one raw byte
//   double      8 bytes little-endian
//   binary      ULEB128 length, then the bytes
//   field       header byte: high nibble = id delta from the previous field (1..15), low nibble = type;
//               delta 0 means a zigzag i16 field id follows; booleans carry their value in the type
//               (1 true, 2 false); byte 0 ends the struct
//   list/set    header byte: high nibble = size (15: a ULEB128 size follows), low nibble = element type
//   map         ULEB128 size, then (if size > 0) one byte key type << 4 | value type
//
// Contract: every read is bounds-checked against the buffer; sizes are checked against the bytes that
// remain (each element takes at least one byte), so a lying size never allocates; nesting is limited to
// kMaxDepth. Every problem throws InputError "thrift: <what> at byte <offset>"; callers prefix the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gptoss::io::thrift {

enum class Type : uint8_t {
  kStop = 0,
  kTrue = 1,  // boolean field whose value is true (field headers only)
  kFalse = 2,
  kByte = 3,
  kI16 = 4,
  kI32 = 5,
  kI64 = 6,
  kDouble = 7,
  kBinary = 8,
  kList = 9,
  kSet = 10,
  kMap = 11,
  kStruct = 12,
};

class CompactReader {
 public:
  static constexpr int kMaxDepth = 64;

  CompactReader(const uint8_t* data, size_t size) : begin_(data), p_(data), end_(data + size) {}

  struct Field {
    int16_t id = 0;
    Type type = Type::kStop;
  };
  struct ListHeader {
    Type elem = Type::kStop;
    uint32_t size = 0;
  };

  // Structs: begin_struct(), then next_field() until it returns false (the stop byte), then end_struct().
  // The value of each field must be read (or skipped with skip(f.type)) before the next next_field().
  void begin_struct();
  bool next_field(Field& f);
  void end_struct();

  // Field values. read_bool(f) takes the field (a bool's value is in its header); read_bool_element()
  // reads a bool inside a list (one byte: 1 true, 0 or 2 false).
  bool read_bool(const Field& f);
  bool read_bool_element();
  int8_t read_byte();
  int16_t read_i16();
  int32_t read_i32();
  int64_t read_i64();
  double read_double();
  std::string_view read_binary();  // points into the buffer
  ListHeader read_list_header();   // lists and sets
  void skip(Type t);               // any value, recursively (depth-limited)

  // Plain ULEB128 (up to 64 bits) and its zigzag form; public for the Parquet encodings that use them.
  uint64_t read_uleb128();
  int64_t read_zigzag() {
    uint64_t u = read_uleb128();
    return int64_t(u >> 1) ^ -int64_t(u & 1);
  }

  size_t position() const { return size_t(p_ - begin_); }
  size_t remaining() const { return size_t(end_ - p_); }

 private:
  [[noreturn]] void fail(std::string_view what) const;
  uint8_t next_byte();
  Type to_type(uint8_t nibble) const;

  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  int depth_ = 0;
  int16_t last_id_[kMaxDepth + 1] = {};
};

}  // namespace gptoss::io::thrift
