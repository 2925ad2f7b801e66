// The AMX MXFP4 pass (backend/cpu/mxfp4_amx.h) against double-precision dot products of the scalar
// dequantization. Skipped, with a message, on CPUs without AMX.
#include <cmath>

#include "backend/cpu/isa.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/mxfp4_amx.h"
#include "backend/cpu/mxfp4_avx512.h"
#include "backend/kernel_tester.h"

namespace gptoss::cpu {
namespace {
using namespace testing;

#define SKIP_WITHOUT_AMX() \
  if (!isa_supported(Isa::amx)) GTEST_SKIP() << "this CPU has no usable AMX-BF16; the f32 MoE kernels are tested elsewhere"

struct Case {
  int64_t nb = 90;
  int T = 4;
  int64_t r0 = 0;  // rows r0 .. r0+31 of r0 + 32 + 5
  int scale_lo = 0x70, scale_hi = 0x88;
  float x_scale = 1.0f;
  uint32_t seed = 1;
};

// Runs mxfp4_rows for one case against sum_c w[r][c] * x[t][c] in double.
void check(const Case& k) {
  SCOPED_TRACE("nb=" + std::to_string(k.nb) + " T=" + std::to_string(k.T) + " r0=" + std::to_string(k.r0) +
               " scales " + std::to_string(k.scale_lo) + ".." + std::to_string(k.scale_hi));
  Rng rng(k.seed);
  const int64_t cols = k.nb * 32, pc = avx512::padded_cols(cols), rows = k.r0 + amx::kMxfp4Rows + 5;
  const auto blocks = rng.bytes(rows * k.nb * 16);
  const auto scales = rng.bytes(rows * k.nb, k.scale_lo, k.scale_hi);
  auto x = rng.f32(k.T * cols);
  for (float& v : x) v *= k.x_scale;
  std::vector<float> xq(size_t(k.T * pc));
  avx512::permute_rows(x.data(), k.T, cols, cols, xq.data());
  std::vector<const float*> xr(static_cast<size_t>(k.T));
  for (int t = 0; t < k.T; ++t) xr[size_t(t)] = xq.data() + t * pc;
  std::vector<uint16_t> xp(size_t(amx::mxfp4_packed_size(k.T, pc)));
  amx::mxfp4_pack(xr.data(), k.T, pc, xp.data());
  Output tiles(amx::kMxfp4Rows * amx::kMaxPassTokens);
  ASSERT_TRUE(amx::mxfp4_rows(blocks.data(), scales.data(), k.nb, k.r0, xp.data(), k.T, tiles.data()));
  std::vector<float> w(static_cast<size_t>(rows * cols));
  mxfp4_dequantize_ref(blocks.data(), scales.data(), rows, cols, w.data());
  Output got(amx::kMxfp4Rows * k.T), ref(amx::kMxfp4Rows * k.T);
  for (int64_t i = 0; i < amx::kMxfp4Rows; ++i)
    for (int t = 0; t < k.T; ++t) {
      got.data()[i * k.T + t] = tiles[i * amx::kMaxPassTokens + t];
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += double(w[size_t((k.r0 + i) * cols + c)]) * x[size_t(t * cols + c)];
      ref.data()[i * k.T + t] = float(s);
    }
  expect_close(got, ref, 1e-6, "amx::mxfp4_rows");
}

TEST(Mxfp4Amx, RowsMatchScalarForEveryTokenCountAndGroupTail) {
  SKIP_WITHOUT_AMX();
  // Block counts around the 4-block group (a partial last group is loaded masked) and the real 2880 width;
  // every token count of a pass, so every B-tile layout and width.
  for (int64_t nb : {1, 2, 3, 4, 5, 7, 90})
    for (int T = 1; T <= amx::kMaxPassTokens; ++T)
      check({.nb = nb, .T = T, .r0 = nb % 3 * 7, .seed = uint32_t(100 * nb + T)});
}

TEST(Mxfp4Amx, ExtremeScalesStayExact) {
  SKIP_WITHOUT_AMX();
  // The smallest and largest block scales the pass takes, 2^-63 and 2^63 (the activations scaled down with
  // the large one so the sums stay moderate), and both mixed.
  check({.T = 5, .scale_lo = 64, .scale_hi = 64, .seed = 7});
  check({.T = 5, .scale_lo = 190, .scale_hi = 190, .x_scale = 0x1p-60f, .seed = 8});
  check({.T = 3, .scale_lo = 64, .scale_hi = 190, .x_scale = 0x1p-30f, .seed = 9});
}

TEST(Mxfp4Amx, ScalesOutsideTheTilesRangeAreDeclined) {
  SKIP_WITHOUT_AMX();
  // Block scales below 2^-63 (e8m0 0, the subnormal 2^-127, 1 and 63), above 2^63 (191, 254) and NaN
  // (255): the pass declines the rows and leaves out untouched, for the f32 kernels to take them.
  const int64_t nb = 6, pc = avx512::padded_cols(nb * 32);
  Rng rng(3);
  const auto blocks = rng.bytes(amx::kMxfp4Rows * nb * 16);
  const auto x = rng.f32(pc);
  const float* xr[1] = {x.data()};
  std::vector<uint16_t> xp(size_t(amx::mxfp4_packed_size(1, pc)));
  amx::mxfp4_pack(xr, 1, pc, xp.data());
  for (int bad : {0, 1, 63, 191, 254, 255}) {
    auto scales = rng.bytes(amx::kMxfp4Rows * nb, 0x70, 0x88);
    scales[size_t(17 * nb + 5)] = uint8_t(bad);  // one block of row 17
    Output out(amx::kMxfp4Rows * amx::kMaxPassTokens);
    EXPECT_FALSE(amx::mxfp4_rows(blocks.data(), scales.data(), nb, 0, xp.data(), 1, out.data())) << "scale " << bad;
    for (int64_t i = 0; i < out.size(); ++i) ASSERT_TRUE(std::isnan(out[i])) << "scale " << bad << ": out written";
  }
}

}  // namespace
}  // namespace gptoss::cpu
