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

HugeBuffer::HugeBuffer(size_t bytes, const char* what) : size_(bytes) {
  if (bytes == 0) return;
  constexpr size_t kHuge = size_t(2) << 20;
  map_bytes_ = (bytes + kHuge - 1) / kHuge * kHuge + kHuge;  // room to align the start
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    fail("out of memory: cannot map {} bytes for {}: {}", bytes, what, std::strerror(errno));
  }
  data_ = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(map_) + kHuge - 1) & ~uintptr_t(kHuge - 1));
  (void)::madvise(data_, map_bytes_ - kHuge, MADV_HUGEPAGE);  // a hint; failure only costs speed
}

HugeBuffer::~HugeBuffer() {
  if (map_) ::munmap(map_, map_bytes_);
}

HugeBuffer::HugeBuffer(HugeBuffer&& o) noexcept
    : map_(std::exchange(o.map_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(map_, map_bytes_);
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
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
