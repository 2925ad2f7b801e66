#include <gtest/gtest.h>

#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/mmap_file.h"
#include "core/thread_pool.h"
#include "test_util.h"

namespace gptoss {
namespace {

TEST(Dtype, Bf16RoundTripsAndRoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1e4f, 1e4f);
  for (int i = 0; i < 10000; ++i) {
    float x = d(rng);
    float y = bf16_to_f32(f32_to_bf16(x));
    EXPECT_LE(std::fabs(x - y), std::fabs(x) * (1.0f / 256)) << x;
  }
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

// Every f16 bit pattern against the CPU's own conversion (F16C, part of the x86-64-v3 baseline).
TEST(Dtype, F16ToF32MatchesTheHardwareForEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = _cvtsh_ss(uint16_t(h)), got = f16_to_f32(uint16_t(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      uint32_t a, b;
      std::memcpy(&a, &want, 4);
      std::memcpy(&b, &got, 4);
      ASSERT_EQ(a, b) << "f16 bits " << h;
    }
  }
}

TEST(Dtype, Fp4CodesAndE8m0) {
  EXPECT_EQ(fp4_to_f32(0x7), 6.0f);
  EXPECT_EQ(fp4_to_f32(0xf), -6.0f);
  EXPECT_EQ(fp4_to_f32(0x1), 0.5f);
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(130), 8.0f);
  EXPECT_EQ(e8m0_to_f32(0), std::ldexp(1.0f, -127));
  EXPECT_TRUE(std::isnan(e8m0_to_f32(255)));
}

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 2, 3, 7, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (int rep = 0; rep < 20; ++rep)
      pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
      });
    for (auto& h : hits) ASSERT_EQ(h.load(), 20);
  }
}

// The global pool's size is fixed once it runs: asking for the same count (or 0) is fine, another count
// is an error that names both. (That set_global_threads sizes the pool before its first use is checked by
// tests/model/cli_test.sh: bench --threads 1 reports one thread.)
TEST(ThreadPool, GlobalThreadCountIsFixedOnceRunning) {
  const int n = ThreadPool::global().size();
  EXPECT_NO_THROW(ThreadPool::set_global_threads(n));
  EXPECT_NO_THROW(ThreadPool::set_global_threads(0));
  const std::string e = input_error_of([&] { ThreadPool::set_global_threads(n + 1); });
  EXPECT_NE(e.find(std::to_string(n + 1) + " CPU threads asked for"), std::string::npos) << e;
  EXPECT_NE(e.find("already runs " + std::to_string(n)), std::string::npos) << e;
  EXPECT_EQ(ThreadPool::global().size(), n);
}

// advise_pages rounds the range to pages: inward for advice that drops contents (MADV_DONTNEED zeroes a
// private anonymous page), outward otherwise. Three pages, the range from 100 bytes into the first to 100
// bytes into the third: inward drops only the middle page, outward all three.
TEST(AdvisePages, RoundsInwardOrOutward) {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  for (bool whole : {true, false}) {
    void* m = ::mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    auto* b = static_cast<unsigned char*>(m);
    std::memset(b, 0xab, 3 * page);
    advise_pages(b + 100, 2 * page, MADV_DONTNEED, whole);
    for (size_t pg = 0; pg < 3; ++pg) {
      const bool dropped = whole ? pg == 1 : true;
      EXPECT_EQ(b[pg * page + page / 2], dropped ? 0 : 0xab) << "page " << pg << " whole_pages_only " << whole;
    }
    ::munmap(m, 3 * page);
  }
}

// HugeBuffer: 2 MiB-aligned, zeroed, writable over its whole size; a move leaves the source empty and the
// memory with the target; the mapping goes when the last owner does (checked through /proc/self/maps).
TEST(HugeBuffer, AlignedZeroedAndMovable) {
  const size_t huge = size_t(2) << 20, bytes = 3 * huge + 12345;
  auto mapped = [](const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);) {
      uintptr_t lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) return true;
    }
    return false;
  };
  HugeBuffer b(bytes, "a test");
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(b.size(), bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % huge, 0u);
  auto* c = static_cast<unsigned char*>(b.data());
  EXPECT_EQ(c[0], 0);
  EXPECT_EQ(c[bytes - 1], 0);
  std::memset(c, 0x5a, bytes);
  HugeBuffer moved = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(b.size(), 0u);
  ASSERT_EQ(moved.data(), c);
  EXPECT_EQ(c[bytes - 1], 0x5a);
  EXPECT_TRUE(mapped(c));
  moved = HugeBuffer();
  EXPECT_FALSE(mapped(c));
  EXPECT_EQ(HugeBuffer(0, "nothing").data(), nullptr);
}

TEST(AtomicFile, CommitRenamesAndAbortLeavesNothing) {
  auto dir = std::filesystem::temp_directory_path() / ("gptoss_core_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "out.bin").string();
  {
    AtomicFile f(path);
    f.write("partial");
    EXPECT_FALSE(std::filesystem::exists(path));
  }  // destroyed without commit
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 0);
  write_file_atomic(path, "hello");
  EXPECT_EQ(read_file(path), "hello");
  MappedFile m(path);
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), 5), "hello");
  EXPECT_THROW(MappedFile((dir / "missing").string()), InputError);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gptoss
