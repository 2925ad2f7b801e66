// Safetensors reading (memory-mapped, zero-copy) and streaming writing.
//
// File format: 8-byte little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}
// then the data region; offsets are relative to the start of the data region (byte 8 + N).
//
// Reader contract: Checkpoint::open validates every header completely before anything is returned
// (header length bound, JSON object, known dtype names, non-negative shapes, numel x dtype size ==
// end - begin, ranges inside the data region, no two ranges overlapping) and, for sharded
// checkpoints, that model.safetensors.index.json names existing files and that every tensor it lists
// is in the shard it names. Every error is an InputError naming the file and, where there is one,
// the tensor. TensorView::data points into the mapping: valid while the Checkpoint lives.
//
// Writer contract: SafetensorsWriter takes the complete tensor list first (so the header is known),
// then the bytes of each tensor in declaration order, in pieces of any size. Nothing appears under
// the final name until finish() succeeds (core/atomic_file.h); memory use is the header only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mmap_file.h"

namespace gptoss {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType t);
// The safetensors spelling: "F32", "BF16", "U8", "F8_E4M3", ...
std::string_view dtype_name(DType t);
// Throws InputError "<context>: dtype 'X' is not a safetensors dtype; expected one of ...".
DType parse_dtype(std::string_view name, const std::string& context);

struct TensorView {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the memory-mapped file
  size_t nbytes = 0;
  std::string file;  // the .safetensors file holding it

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Typed pointer to the data. Throws InputError if T's size does not match the dtype (bytes are
  // always allowed) or the data is not aligned for T (a writer that did not pad its header).
  template <class T>
  const T* as() const {
    if (sizeof(T) != 1 && dtype_size(dtype) != sizeof(T))
      fail_input("{}: tensor '{}' is {}; cannot read it as a {}-byte type", file, name, dtype_name(dtype),
                 sizeof(T));
    if (reinterpret_cast<uintptr_t>(data) % alignof(T) != 0)
      fail_input("{}: tensor '{}' data is not {}-byte aligned; rewrite the file with a standard writer",
                 file, name, alignof(T));
    return reinterpret_cast<const T*>(data);
  }
  std::string shape_str() const;  // "[8, 128, 3, 16]"
};

// One parsed safetensors file (used by Checkpoint; public for tests and tools).
struct SafetensorsFile {
  MappedFile map;
  std::vector<TensorView> tensors;                  // in header order (sorted by name)
  std::map<std::string, std::string> metadata;      // __metadata__
  size_t data_offset = 0;                           // 8 + header length
  static SafetensorsFile open(const std::string& path);
};

class Checkpoint {
 public:
  // dir_or_file: a directory holding model.safetensors.index.json (sharded) or model.safetensors, a
  // .safetensors file, or an index .json file.
  static Checkpoint open(const std::string& dir_or_file);

  Checkpoint() = default;
  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;

  const TensorView* find(const std::string& name) const;  // nullptr if absent
  const TensorView& get(const std::string& name) const;   // InputError if absent
  std::vector<std::string> names() const;                 // sorted
  size_t size() const { return tensors_.size(); }
  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> files() const;  // the mapped .safetensors files
  uint64_t total_bytes() const;            // sum of tensor bytes
  bool sharded() const { return sharded_; }

 private:
  std::string path_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorSpec {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

class SafetensorsWriter {
 public:
  // Validates the specs (unique names, non-negative shapes) and writes the header to the temporary.
  SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  // Appends n bytes to the current tensor; a piece may span the end of one tensor and the start of
  // the next. Writing past the last tensor is an error.
  void write_next(const void* data, size_t n);
  // Checks that every tensor got all of its bytes, then fsyncs and renames into place.
  void finish();
  // The tensor whose bytes come next (or nullptr when all are written).
  const TensorSpec* current() const { return cur_ < specs_.size() ? &specs_[cur_] : nullptr; }
  uint64_t file_size() const { return data_offset_ + data_size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<TensorSpec> specs_;
  std::unique_ptr<AtomicFile> file_;
  uint64_t data_offset_ = 0, data_size_ = 0;
  size_t cur_ = 0;
  uint64_t cur_written_ = 0;
};

// Header text (JSON padded with spaces to a multiple of 8 so the data region stays 8-aligned) for a
// list of tensors laid out back to back in the given order.
std::string safetensors_header(const std::vector<TensorSpec>& tensors,
                               const std::map<std::string, std::string>& metadata);

struct TensorData {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // nbytes of TensorSpec{...}.nbytes()
};
void write_safetensors(const std::string& path, const std::vector<TensorData>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace gptoss
