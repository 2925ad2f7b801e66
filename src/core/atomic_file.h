// Writing files so that nothing half-written is ever left under the final name: write to
// "<path>.tmp.<pid>", fsync, then rename over <path>. The temporary is removed on failure.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace gptoss {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws InputError if the temporary cannot be created
  ~AtomicFile();                          // not committed: removes the temporary
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();  // flush, fsync, rename
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
};

// Whole-file helpers.
void write_file_atomic(const std::string& path, std::string_view contents);
std::string read_file(const std::string& path);  // throws InputError naming the path

}  // namespace gptoss
