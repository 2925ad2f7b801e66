// The AVX-512 MXFP4 few-token kernel (backend/cpu/mxfp4_avx512.h) against plain scalar code, and the
// run-time choice of instruction set. Skipped, with a message, on CPUs without AVX-512.
#include <cmath>
#include <numeric>
#include <set>

#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/gemm_avx512.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/mxfp4_avx512.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

#define SKIP_WITHOUT_AVX512() \
  if (!isa_supported(Isa::avx512)) GTEST_SKIP() << "this CPU has no AVX-512 (F/BW/VL); the AVX2 kernels are tested elsewhere"

// `rows` MXFP4 rows of nb blocks as f32, by the scalar reference (exact).
std::vector<float> dequantized(const std::vector<uint8_t>& blocks, const std::vector<uint8_t>& scales, int64_t rows,
                               int64_t nb) {
  std::vector<float> w(static_cast<size_t>(rows * nb * 32));
  mxfp4_dequantize_ref(blocks.data(), scales.data(), rows, nb * 32, w.data());
  return w;
}

TEST(Mxfp4Avx512, GroupOrderIsAPermutationOfThePaddedRow) {
  for (int64_t cols : {32, 96, 128, 160, 2880}) {
    const int64_t pc = avx512::padded_cols(cols);
    EXPECT_EQ(pc % avx512::kGroup, 0);
    EXPECT_GE(pc, cols);
    std::set<int64_t> seen;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t p = avx512::group_pos(c);
      EXPECT_TRUE(p >= 0 && p < pc) << c;
      seen.insert(p);
    }
    EXPECT_EQ(int64_t(seen.size()), cols) << "cols " << cols;
  }
}

TEST(Mxfp4Avx512, PermuteRowsPlacesEveryElementAndZeroesThePadding) {
  const int64_t n = 3, cols = 160, ld = 170, pc = avx512::padded_cols(cols);
  Rng rng(5);
  auto x = rng.f32(n * ld);
  Output xq(n * pc);  // NaN-poisoned: every element must be written
  avx512::permute_rows(x.data(), n, ld, cols, xq.data());
  xq.expect_written_and_guarded("permute_rows");
  double padding = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(xq[t * pc + avx512::group_pos(c)], x[size_t(t * ld + c)]);
    for (int64_t i = 0; i < pc; ++i) padding += std::fabs(xq[t * pc + i]);
    for (int64_t c = 0; c < cols; ++c) padding -= std::fabs(x[size_t(t * ld + c)]);
  }
  EXPECT_NEAR(padding, 0.0, 1e-3);  // what is left besides the elements is zeros
}

// Random rows of nb blocks times T random activation rows, against a double-precision dot product.
void check_dots(int64_t nb, int T, int64_t r0, int64_t rows, uint32_t seed) {
  SCOPED_TRACE("nb=" + std::to_string(nb) + " T=" + std::to_string(T) + " rows " + std::to_string(r0) + "+" +
               std::to_string(rows));
  Rng rng(seed);
  const int64_t cols = nb * 32, pc = avx512::padded_cols(cols), all_rows = r0 + rows;
  auto blocks = rng.bytes(all_rows * nb * 16);
  auto scales = rng.bytes(all_rows * nb, 0x70, 0x88);
  auto x = rng.f32(T * cols);
  std::vector<float> xq(size_t(T * pc), NAN);
  avx512::permute_rows(x.data(), T, cols, cols, xq.data());
  std::vector<const float*> xr(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) xr[size_t(t)] = xq.data() + t * pc;
  const auto w = dequantized(blocks, scales, all_rows, nb);
  Output got(rows * T), ref(rows * T);
  avx512::mxfp4_dot_rows(blocks.data(), scales.data(), nb, r0, rows, all_rows, xr.data(), T, got.data());
  for (int64_t i = 0; i < rows; ++i)
    for (int t = 0; t < T; ++t) {
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += double(w[size_t((r0 + i) * cols + c)]) * x[size_t(t * cols + c)];
      ref.data()[i * T + t] = float(s);
    }
  expect_close(got, ref, 1e-6, "avx512::mxfp4_dot_rows");
}

TEST(Mxfp4Avx512, DotRowsMatchScalarForEveryTokenCountAndTail) {
  SKIP_WITHOUT_AVX512();
  // Block counts around the 4-block group and the 16-block scale vector, and the real 2880 width.
  for (int64_t nb : {1, 2, 3, 4, 5, 15, 16, 17, 21, 90})
    for (int T = 1; T <= 8; ++T) check_dots(nb, T, nb % 3, 5, uint32_t(100 * nb + T));
}

// The kernel reads ahead of the row it decodes (the next page, for its TLB); an expert that ends where the
// mapping ends, before an inaccessible page, must still be read only inside its rows.
TEST(Mxfp4Avx512, ReadsNothingPastTheExpertsLastRow) {
  SKIP_WITHOUT_AVX512();
  const int64_t nb = 90, rows = 24, bytes = rows * nb * 16;  // 34560 bytes: several pages of read-ahead
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t span = (size_t(bytes) + page - 1) / page * page;
  void* m = ::mmap(nullptr, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(::mprotect(static_cast<char*>(m) + span, page, PROT_NONE), 0);  // the guard
  uint8_t* blocks = static_cast<uint8_t*>(m) + (span - size_t(bytes));     // ends at the guard
  Rng rng(7);
  const auto src = rng.bytes(bytes);
  std::copy(src.begin(), src.end(), blocks);
  const auto scales = rng.bytes(rows * nb, 0x70, 0x88);
  const int64_t pc = avx512::padded_cols(nb * 32);
  const auto xs = rng.f32(4 * pc);
  const float* xr[4] = {xs.data(), xs.data() + pc, xs.data() + 2 * pc, xs.data() + 3 * pc};
  std::vector<float> out(size_t(rows * 4), NAN);
  for (int T = 1; T <= 4; ++T) avx512::mxfp4_dot_rows(blocks, scales.data(), nb, 0, rows, rows, xr, T, out.data());
  for (float v : out) EXPECT_FALSE(std::isnan(v));
  ::munmap(m, span + page);
}

TEST(Mxfp4Avx512, EveryCodeAndScaleDecodesExactly) {
  SKIP_WITHOUT_AVX512();
  // Row 0: block b has scale byte sv[b]; byte j holds code j (element 2j) and 15-j (element 2j+1).
  // One-hot activations read back single weights, which must equal the reference's exactly (-0 as 0).
  std::vector<int> sv;
  for (int s = 0x70; s <= 0x8f; ++s) sv.push_back(s);
  for (int s : {0, 1, 2, 126, 127, 128, 253, 254}) sv.push_back(s);
  const int64_t nb = int64_t(sv.size()), cols = nb * 32, pc = avx512::padded_cols(cols);
  std::vector<uint8_t> blocks(static_cast<size_t>(nb * 16)), scales(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    scales[size_t(b)] = uint8_t(sv[size_t(b)]);
    for (int j = 0; j < 16; ++j) blocks[size_t(b * 16 + j)] = uint8_t(j | ((15 - j) << 4));
  }
  const auto w = dequantized(blocks, scales, 1, nb);  // exact: checked by hand in Mxfp4.AllCodes...
  std::vector<float> onehot(static_cast<size_t>(cols)), xq(static_cast<size_t>(pc));
  const float* xr[1] = {xq.data()};
  for (int64_t c = 0; c < cols; ++c) {
    std::fill(onehot.begin(), onehot.end(), 0.0f);
    onehot[size_t(c)] = 1.0f;
    avx512::permute_rows(onehot.data(), 1, cols, cols, xq.data());
    float got = NAN;
    avx512::mxfp4_dot_rows(blocks.data(), scales.data(), nb, 0, 1, 1, xr, 1, &got);
    ASSERT_EQ(got, w[size_t(c)]) << "element " << c;
  }
}

TEST(Mxfp4Avx512, NanScaleGivesNan) {
  SKIP_WITHOUT_AVX512();
  const int64_t nb = 3, pc = avx512::padded_cols(nb * 32);
  std::vector<uint8_t> blocks(size_t(nb * 16), 0x22), scales = {127, 255, 127};
  std::vector<float> xq(size_t(pc), 1.0f);
  const float* xr[1] = {xq.data()};
  float got = 0;
  avx512::mxfp4_dot_rows(blocks.data(), scales.data(), nb, 0, 1, 1, xr, 1, &got);
  EXPECT_TRUE(std::isnan(got));
}

TEST(Mxfp4Avx512, PackPanelPlacesEveryScaledWeightInGroupOrder) {
  SKIP_WITHOUT_AVX512();
  // Block counts around the 4-block group (the last group partial), full and partial panels, a row offset.
  for (int64_t nb : {1, 3, 4, 5, 90})
    for (int rows : {16, 5}) {
      SCOPED_TRACE("nb=" + std::to_string(nb) + " rows=" + std::to_string(rows));
      Rng rng(uint32_t(nb * 31 + rows));
      const int64_t r0 = 3, all_rows = r0 + rows, cols = nb * 32, groups = (nb + 3) / 4;
      auto blocks = rng.bytes(all_rows * nb * 16);
      auto scales = rng.bytes(all_rows * nb, 0x70, 0x88);
      const auto w = dequantized(blocks, scales, all_rows, nb);
      for (int64_t g0 = 0; g0 < groups; g0 += 2) {
        const int64_t g1 = std::min(groups, g0 + 2);
        // 64-byte aligned and NaN-poisoned: every element must be written.
        std::vector<float> buf(size_t((g1 - g0) * avx512::kGroup * 16 + 16), NAN);
        float* panel = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
        avx512::mxfp4_pack_panel(blocks.data(), scales.data(), nb, r0, rows, g0, g1, panel);
        for (int64_t k = 0; k < (g1 - g0) * avx512::kGroup; ++k)
          for (int i = 0; i < 16; ++i) {
            const float got = panel[k * 16 + i];
            // The element at group position k: c with group_pos(c) == g0 * 128 + k.
            const int64_t kk = g0 * avx512::kGroup + k, p = kk % avx512::kGroup / 16, d = kk % 16;
            const int64_t c = kk / avx512::kGroup * avx512::kGroup + 8 * d + p;
            ASSERT_EQ(avx512::group_pos(c), kk);
            const float want = (i < rows && c < cols) ? w[size_t((r0 + i) * cols + c)] : 0.0f;
            ASSERT_EQ(got, want) << "k " << k << " row " << i << " element " << c;
          }
      }
    }
}

TEST(GemmAvx512, TileMatchesScalarForEveryTokenCount) {
  SKIP_WITHOUT_AVX512();
  const int64_t K = 256, k0 = 32, lda = K + k0 + 8;
  for (int M = 1; M <= avx512::kGemmTileTokens; ++M)
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE("M=" + std::to_string(M) + (accumulate ? " accumulate" : ""));
      Rng rng(uint32_t(M * 2 + accumulate));
      auto a = rng.f32(M * lda);
      auto pbuf = rng.f32(K * 16 + 16);
      const float* panel =
          reinterpret_cast<const float*>((reinterpret_cast<uintptr_t>(pbuf.data()) + 63) & ~uintptr_t(63));
      auto c0 = rng.f32(M * 16);
      std::vector<const float*> rows(static_cast<size_t>(M));
      for (int m = 0; m < M; ++m) rows[size_t(m)] = a.data() + m * lda;
      Output got(M * 16), ref(M * 16);
      for (int64_t i = 0; i < M * 16; ++i) got.data()[i] = c0[size_t(i)];
      avx512::gemm_tile(M, accumulate, panel, rows.data(), k0, K, got.data());
      for (int m = 0; m < M; ++m)
        for (int i = 0; i < 16; ++i) {
          double s = accumulate ? c0[size_t(m * 16 + i)] : 0.0;
          for (int64_t k = 0; k < K; ++k) s += double(a[size_t(m * lda + k0 + k)]) * panel[k * 16 + i];
          ref.data()[m * 16 + i] = float(s);
        }
      expect_close(got, ref, 1e-6, "avx512::gemm_tile");
    }
}

TEST(CpuIsa, SwitchesBetweenSupportedSets) {
  const Isa before = cpu_isa();
  EXPECT_TRUE(isa_supported(Isa::avx2));
  set_cpu_isa(Isa::avx2);
  EXPECT_EQ(cpu_isa(), Isa::avx2);
  for (Isa isa : {Isa::avx512, Isa::vnni, Isa::amx}) {
    SCOPED_TRACE(isa_name(isa));
    if (isa_supported(isa)) {
      EXPECT_TRUE(isa_supported(Isa(int(isa) - 1)));  // each set is used on top of the one before it
      set_cpu_isa(isa);
      EXPECT_EQ(cpu_isa(), isa);
    } else {
      EXPECT_THROW(set_cpu_isa(isa), std::exception);
    }
  }
  set_cpu_isa(before);
  EXPECT_STREQ(isa_name(Isa::avx512), "AVX-512");
  EXPECT_STREQ(isa_name(Isa::vnni), "AVX-512 + VNNI");
  EXPECT_STREQ(isa_name(Isa::amx), "AVX-512 + AMX");
}

}  // namespace
}  // namespace gptoss::cpu
