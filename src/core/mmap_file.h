// Read-only memory-mapped file. The mapping lives as long as the object; pages are shared with the
// page cache, so a 13 GB checkpoint costs no private memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace gptoss {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws gptoss::InputError naming the path if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// `bytes` of zeroed anonymous memory aligned to 2 MiB and advised MADV_HUGEPAGE (a hint: without
// transparent huge pages it is ordinary memory), for data read at random or streamed: a TLB entry then
// covers 2 MiB, not 4 KiB. Empty when default-constructed or moved from. Throws gptoss::Error naming
// `what` when the memory cannot be mapped.
class HugeBuffer {
 public:
  HugeBuffer() = default;
  HugeBuffer(size_t bytes, const char* what);
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& o) noexcept;
  HugeBuffer& operator=(HugeBuffer&& o) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;  // a mapping of size_ rounded up to 2 MiB, starting here
  size_t size_ = 0;
};

// madvise(advice) over the pages of [p, p + n): with `whole_pages_only` only those lying wholly inside the
// range (for advice that drops contents, so no neighbour's page is touched), otherwise every page the range
// touches. Advisory: errors (an old kernel's unknown advice included) are ignored.
void advise_pages(const void* p, size_t n, int advice, bool whole_pages_only);

}  // namespace gptoss
