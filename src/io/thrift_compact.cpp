#include "io/thrift_compact.h"

#include <cstring>

#include "core/error.h"

namespace gptoss::io::thrift {

void CompactReader::fail(std::string_view what) const {
  fail_input("thrift: {} at byte {}", what, position());
}

uint8_t CompactReader::next_byte() {
  if (p_ >= end_) fail("data ends inside a value (truncated)");
  return *p_++;
}

uint64_t CompactReader::read_uleb128() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b = next_byte();
    if (shift == 63 && (b & 0x7e)) fail("varint overflows 64 bits");
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail("varint longer than 10 bytes");
}

Type CompactReader::to_type(uint8_t nibble) const {
  if (nibble > uint8_t(Type::kStruct)) fail(fmt::format("unknown compact type {}", nibble));
  return Type(nibble);
}

void CompactReader::begin_struct() {
  if (depth_ >= kMaxDepth) fail(fmt::format("structs nested deeper than {}", kMaxDepth));
  last_id_[++depth_] = 0;
}

void CompactReader::end_struct() {
  if (depth_ > 0) --depth_;
}

bool CompactReader::next_field(Field& f) {
  uint8_t b = next_byte();
  if (b == 0) return false;
  f.type = to_type(b & 0x0f);
  if (f.type == Type::kStop) fail("field of type stop with a non-zero id delta");
  int delta = b >> 4;
  f.id = delta ? int16_t(last_id_[depth_] + delta) : read_i16();
  last_id_[depth_] = f.id;
  return true;
}

bool CompactReader::read_bool(const Field& f) {
  if (f.type != Type::kTrue && f.type != Type::kFalse) fail("expected a bool field");
  return f.type == Type::kTrue;
}

bool CompactReader::read_bool_element() {
  uint8_t b = next_byte();
  if (b > 2) fail(fmt::format("bool list element is {}; expected 0, 1 or 2", b));
  return b == 1;
}

int8_t CompactReader::read_byte() { return int8_t(next_byte()); }

int16_t CompactReader::read_i16() {
  int64_t v = read_zigzag();
  if (v < INT16_MIN || v > INT16_MAX) fail(fmt::format("i16 value {} out of range", v));
  return int16_t(v);
}

int32_t CompactReader::read_i32() {
  int64_t v = read_zigzag();
  if (v < INT32_MIN || v > INT32_MAX) fail(fmt::format("i32 value {} out of range", v));
  return int32_t(v);
}

int64_t CompactReader::read_i64() { return read_zigzag(); }

double CompactReader::read_double() {
  if (remaining() < 8) fail("data ends inside a double (truncated)");
  uint64_t bits = 0;
  for (int i = 0; i < 8; ++i) bits |= uint64_t(p_[i]) << (8 * i);
  p_ += 8;
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

std::string_view CompactReader::read_binary() {
  uint64_t n = read_uleb128();
  if (n > remaining()) fail(fmt::format("binary of {} bytes but only {} remain", n, remaining()));
  std::string_view s(reinterpret_cast<const char*>(p_), size_t(n));
  p_ += n;
  return s;
}

CompactReader::ListHeader CompactReader::read_list_header() {
  uint8_t b = next_byte();
  ListHeader h;
  h.elem = to_type(b & 0x0f);
  uint64_t n = b >> 4;
  if (n == 15) n = read_uleb128();
  // Every element takes at least one byte, so a size beyond the remaining bytes is a lie.
  if (n > remaining()) fail(fmt::format("list of {} elements but only {} bytes remain", n, remaining()));
  h.size = uint32_t(n);
  return h;
}

void CompactReader::skip(Type t) {
  switch (t) {
    case Type::kTrue:
    case Type::kFalse:
      return;  // field bools carry their value in the header
    case Type::kByte:
      next_byte();
      return;
    case Type::kI16:
    case Type::kI32:
    case Type::kI64:
      read_uleb128();
      return;
    case Type::kDouble:
      read_double();
      return;
    case Type::kBinary:
      read_binary();
      return;
    case Type::kList:
    case Type::kSet: {
      ListHeader h = read_list_header();
      if (depth_ >= kMaxDepth) fail(fmt::format("values nested deeper than {}", kMaxDepth));
      ++depth_;
      for (uint32_t i = 0; i < h.size; ++i) {
        if (h.elem == Type::kTrue || h.elem == Type::kFalse) read_bool_element();
        else skip(h.elem);
      }
      --depth_;
      return;
    }
    case Type::kMap: {
      uint64_t n = read_uleb128();
      if (n == 0) return;
      if (n > remaining() / 2) fail(fmt::format("map of {} entries but only {} bytes remain", n, remaining()));
      uint8_t kv = next_byte();
      Type k = to_type(kv >> 4), v = to_type(kv & 0x0f);
      if (depth_ >= kMaxDepth) fail(fmt::format("values nested deeper than {}", kMaxDepth));
      ++depth_;
      for (uint64_t i = 0; i < n; ++i) {
        if (k == Type::kTrue || k == Type::kFalse) read_bool_element();
        else skip(k);
        if (v == Type::kTrue || v == Type::kFalse) read_bool_element();
        else skip(v);
      }
      --depth_;
      return;
    }
    case Type::kStruct: {
      begin_struct();
      Field f;
      while (next_field(f)) skip(f.type);
      end_struct();
      return;
    }
    case Type::kStop:
      break;
  }
  fail("cannot skip a value of type stop");
}

}  // namespace gptoss::io::thrift
