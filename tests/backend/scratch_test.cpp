// The kernels' per-thread scratch buffers (simd::scratch): 64-byte aligned whatever the element type and
// after every growth. Vector loads of activations that straddle two cache lines halved the MXFP4 decode
// speed while weights streamed from DRAM, so the alignment is part of the contract.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backend/cpu/kernels_simd.h"

namespace gptoss::cpu {
namespace {

template <typename T>
bool aligned64(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % 64 == 0;
}

TEST(Scratch, IsCacheLineAlignedAndLargeEnoughAfterEveryGrowth) {
  std::vector<float> f;
  std::vector<const float*> ptrs;
  std::vector<uint8_t> bytes;
  for (size_t n : {size_t(1), size_t(3), size_t(17), size_t(1000), size_t(4099), size_t(1) << 20}) {
    float* a = simd::scratch(f, n);
    EXPECT_TRUE(aligned64(a)) << n;
    EXPECT_LE(size_t(a - f.data()) + n, f.size()) << n;
    a[n - 1] = 1.0f;  // the whole requested range is usable
    const float** p = simd::scratch(ptrs, n);
    EXPECT_TRUE(aligned64(p)) << n;
    EXPECT_LE(size_t(p - ptrs.data()) + n, ptrs.size()) << n;
    uint8_t* b = simd::scratch(bytes, n);
    EXPECT_TRUE(aligned64(b)) << n;
    EXPECT_LE(size_t(b - bytes.data()) + n, bytes.size()) << n;
  }
}

}  // namespace
}  // namespace gptoss::cpu
