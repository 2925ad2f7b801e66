#include "core/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace gptoss {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_input("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail_input("{}: cannot stat: {}", path, std::strerror(e));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail_input("{}: cannot mmap {} bytes: {}", path, size_, std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
    // A hint: where the file system caches files in large folios (ext4 and xfs on Linux 6.x), pages read
    // through a MADV_HUGEPAGE mapping come in 2 MiB folios mapped by one PMD each, so streaming the weights
    // costs a TLB miss per 2 MiB rather than per 4 KiB. Failure only costs speed.
    (void)::madvise(p, size_, MADV_HUGEPAGE);
  }
  ::close(fd);
}

namespace {
constexpr size_t kHugePage = size_t(2) << 20;
size_t huge_round(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
}  // namespace

HugeBuffer::HugeBuffer(size_t bytes, const char* what) {
  if (bytes == 0) return;
  // Map 2 MiB more than needed, then unmap the unaligned head and the tail beyond the aligned range.
  const size_t span = huge_round(bytes), map_bytes = span + kHugePage;
  void* p = ::mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("out of memory: cannot map {} bytes for {}: {}", bytes, what, std::strerror(errno));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), start = (lo + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
  if (start > lo) ::munmap(p, start - lo);
  if (lo + map_bytes > start + span) ::munmap(reinterpret_cast<void*>(start + span), lo + map_bytes - start - span);
  data_ = reinterpret_cast<void*>(start);
  size_ = bytes;
  (void)::madvise(data_, span, MADV_HUGEPAGE);  // a hint; failure only costs speed
}

HugeBuffer::~HugeBuffer() {
  if (data_) ::munmap(data_, huge_round(size_));
}

HugeBuffer::HugeBuffer(HugeBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, huge_round(size_));
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void advise_pages(const void* p, size_t n, int advice, bool whole_pages_only) {
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  const uintptr_t b = whole_pages_only ? (lo + page - 1) & ~(page - 1) : lo & ~(page - 1);
  const uintptr_t e = whole_pages_only ? hi & ~(page - 1) : hi;
  if (e > b) (void)::madvise(reinterpret_cast<void*>(b), e - b, advice);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

}  // namespace gptoss
