// CPU kernel benchmark: measures the machine's DRAM read bandwidth and FMA peak (probes), then the
// decode-style (n = 1) bandwidth and prefill-style (n = 512) GFLOP/s of the big kernels at gpt-oss-20b
// shapes. Usage: kernels_bench [--reps N] [--skip-lm-head]. Best of N repetitions is reported, because
// the machine is shared. --cpu-clock times with process CPU time / threads instead of wall time. It also
// times one thread's MXFP4 pass over a row (the decode's few-token tile: AVX2 and, where the CPU has it,
// AVX-512) at 1, 2 and 3 tokens, from L2 and streamed from DRAM, in ns per block (32 weights) and pass.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/isa.h"
#include "backend/cpu/kernels_simd.h"
#include "backend/cpu/mxfp4_amx.h"
#include "backend/cpu/mxfp4_avx512.h"
#include "backend/cpu/probes.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

using namespace gptoss;
using namespace gptoss::cpu;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// The machine is shared, so two clocks: wall time (best of reps) and process CPU time divided by the
// thread count (best of reps), which is what the run would take on an otherwise idle machine as long
// as the pool's threads are busy (their short spin-waits count as busy). Returns the smaller, and
// prints which one it was in the last column.
bool g_cpu_clock = false;
double best_of(int reps, const std::function<void()>& fn) {
  double best_wall = 1e30, best_cpu = 1e30;
  const int threads = ThreadPool::global().size();
  for (int i = 0; i < reps; ++i) {
    double t0 = now(), c0 = cpu_now();
    fn();
    best_wall = std::min(best_wall, now() - t0);
    best_cpu = std::min(best_cpu, (cpu_now() - c0) / threads);
  }
  return g_cpu_clock ? best_cpu : best_wall;
}

template <typename T>
std::vector<T> random_vec(size_t n, uint32_t seed) {
  std::vector<T> v(n);
  std::mt19937 g(seed);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) v[i] = float(int(g() % 2001) - 1000) * 1e-3f;
    else if constexpr (std::is_same_v<T, uint16_t>) v[i] = f32_to_bf16(float(int(g() % 2001) - 1000) * 1e-3f);
    else v[i] = T(g());
  }
  return v;
}

// Streaming read of a buffer much larger than L3, split over the pool's threads.
double bandwidth_probe(int reps) {
  const size_t bytes = size_t(1) << 30;
  const size_t n = bytes / sizeof(float);
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  ThreadPool::global().parallel_for(int64_t(n), [&](int64_t b, int64_t e, int) { simd::probe_fill(p, b, e); });
  std::vector<float> sink(64);
  double t = best_of(reps, [&] {
    ThreadPool::global().parallel_for(int64_t(n / 64), [&](int64_t b, int64_t e, int th) {
      sink[size_t(th)] = simd::stream_sum(p, b * 64, e * 64);
    });
  });
  std::free(p);
  return double(bytes) / t / 1e9;
}

// Independent FMA chains on every thread, in the widest vectors the kernels use (backend/cpu/probes.h).
double fma_probe(int reps) {
  const int64_t iters = 20'000'000;
  std::vector<float> sink(64);
  const int threads = ThreadPool::global().size();
  double t = best_of(reps, [&] {
    ThreadPool::global().parallel_for(threads, [&](int64_t, int64_t, int th) {
      sink[size_t(th)] = fma_chains(iters, float(th) * 1e-3f);
    });
  });
  return double(threads) * double(iters) * fma_chain_step_flops() / t / 1e9;
}

// One thread's passes of a few-token MXFP4 kernel over `rows` rows of gate_up blocks, `laps` times: ns per
// block and pass, median of `rounds` rounds, the order of T = 1, 2, 3 rotated between rounds (a fixed order
// biased an earlier A/B on the shared dev VM). pass(T, rows) runs one pass of T tokens over the rows.
void mxfp4_pass_rounds(const char* name, int64_t nb, int64_t all_rows, int rounds,
                       const std::function<void(int, int64_t)>& pass, std::array<int, 3> tokens = {1, 2, 3}) {
  for (const bool l2 : {true, false}) {
    const int64_t rows = l2 ? 128 : all_rows, laps = l2 ? 200 : 1;  // 128 rows of 2880: 196 KB
    std::vector<double> ns[3];
    for (int round = 0; round < rounds; ++round)
      for (int j = 0; j < 3; ++j) {
        const int t = (j + round) % 3;
        const double t0 = now();
        for (int64_t lap = 0; lap < laps; ++lap) pass(tokens[size_t(t)], rows);
        ns[t].push_back((now() - t0) * 1e9 / double(rows * laps * nb));
      }
    for (auto& v : ns) std::sort(v.begin(), v.end());
    std::printf("| MXFP4 %s pass over a row, one thread, %s | %.2f / %.2f / %.2f ns a block at %d / %d / %d tokens |\n",
                name, l2 ? "from L2" : "streamed from DRAM", ns[0][ns[0].size() / 2], ns[1][ns[1].size() / 2],
                ns[2][ns[2].size() / 2], tokens[0], tokens[1], tokens[2]);
    std::fflush(stdout);
  }
}

// The AVX2 tile (simd::dot_tile<1, T>) and, where the CPU has AVX-512, its kernel (avx512::mxfp4_dot_rows,
// activations in group order).
void mxfp4_pass_bench(const uint8_t* blocks, const uint8_t* scales, int64_t nb, int64_t all_rows, int rounds) {
  const simd::Mxfp4Decoder dec{blocks, scales, nb};
  auto x = random_vec<float>(size_t(3 * nb * 32), 15);
  const float* xp[3] = {x.data(), x.data() + nb * 32, x.data() + 2 * nb * 32};
  std::vector<float> out(size_t(all_rows * 3));
  mxfp4_pass_rounds("AVX2", nb, all_rows, rounds, [&](int T, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      if (T == 1) simd::dot_tile<1, 1>(dec, r, xp, nb, out.data() + r);
      if (T == 2) simd::dot_tile<1, 2>(dec, r, xp, nb, out.data() + 2 * r);
      if (T == 3) simd::dot_tile<1, 3>(dec, r, xp, nb, out.data() + 3 * r);
    }
  });
  if (cpu_isa() < Isa::avx512) return;
  const int64_t cols = nb * 32, ldq = avx512::padded_cols(cols);
  std::vector<float> xq_buf;  // 64-byte aligned, as the MoE's: lines split by loads cost ~40 % here
  float* xq = simd::scratch(xq_buf, size_t(3 * ldq));
  avx512::permute_rows(x.data(), 3, cols, cols, xq);
  const float* xr[3] = {xq, xq + ldq, xq + 2 * ldq};
  mxfp4_pass_rounds("AVX-512", nb, all_rows, rounds, [&](int T, int64_t rows) {
    for (int64_t r = 0; r < rows; r += 8)
      avx512::mxfp4_dot_rows(blocks, scales, nb, r, std::min<int64_t>(8, rows - r), all_rows, xr, T,
                             out.data() + r * T);
  });
  if (cpu_isa() < Isa::amx) return;
  // The AMX pass (mxfp4_amx.h) at 2, 4 and 32 tokens (the terms as columns of one tile, the widest such tile,
  // two blocks of 16 tokens with a tile a term), the tokens packed once; ns per block and pass.
  std::vector<float> x32_buf;
  float* x32 = simd::scratch(x32_buf, size_t(amx::kMaxPassTokens * ldq));
  for (int t = 0; t < amx::kMaxPassTokens; ++t) std::copy_n(xq + (t % 3) * ldq, ldq, x32 + t * ldq);
  const float* xr32[amx::kMaxPassTokens];
  for (int t = 0; t < amx::kMaxPassTokens; ++t) xr32[t] = x32 + t * ldq;
  const std::array<int, 3> amx_tokens = {2, 4, amx::kMaxPassTokens};
  std::vector<uint16_t> packed[3];
  for (int i = 0; i < 3; ++i) {
    packed[i].resize(size_t(amx::mxfp4_packed_size(amx_tokens[size_t(i)], ldq)));
    amx::mxfp4_pack(xr32, amx_tokens[size_t(i)], ldq, packed[i].data());
  }
  std::vector<float> tiles(size_t(amx::kMxfp4Rows * amx::kMaxPassTokens));
  mxfp4_pass_rounds("AMX", nb, all_rows, rounds, [&](int T, int64_t rows) {
    const uint16_t* p = packed[T == amx_tokens[0] ? 0 : T == amx_tokens[1] ? 1 : 2].data();
    for (int64_t r = 0; r + amx::kMxfp4Rows <= rows; r += amx::kMxfp4Rows)
      amx::mxfp4_rows(blocks, scales, nb, r, p, T, tiles.data());
  }, amx_tokens);
}

struct MoeWeights {
  int64_t hidden = 2880, inter = 2880;
  int experts = 32;
  std::vector<uint8_t> gu_blocks, gu_scales, d_blocks, d_scales;
  std::vector<uint16_t> gu_bias, d_bias;
  MoeWeights() {
    gu_blocks = random_vec<uint8_t>(size_t(experts * 2 * inter * hidden / 2), 1);
    d_blocks = random_vec<uint8_t>(size_t(experts * hidden * inter / 2), 2);
    gu_scales.assign(size_t(experts * 2 * inter * hidden / 32), 0x7a);
    d_scales.assign(size_t(experts * hidden * inter / 32), 0x7a);
    gu_bias = random_vec<uint16_t>(size_t(experts * 2 * inter), 3);
    d_bias = random_vec<uint16_t>(size_t(experts * hidden), 4);
  }
  Mxfp4Experts gate_up() const {
    return {gu_blocks.data(), gu_scales.data(), gu_bias.data(), 2 * inter, hidden, experts};
  }
  Mxfp4Experts down() const { return {d_blocks.data(), d_scales.data(), d_bias.data(), hidden, inter, experts}; }
  // Bytes of one expert (blocks + scales + biases).
  double expert_bytes() const {
    const double params = double(2 * inter * hidden + hidden * inter);
    return params * (0.5 + 1.0 / 32) + double(2 * inter + hidden) * 2;
  }
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  bool lm_head = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (a == "--skip-lm-head") lm_head = false;
    if (a == "--cpu-clock") g_cpu_clock = true;
  }
  const int threads = ThreadPool::global().size();
  std::printf("threads: %d, best of %d, clock: %s\n\n| measurement | value |\n|---|---|\n", threads, reps,
              g_cpu_clock ? "process CPU time / threads" : "wall");
  const double bw = bandwidth_probe(reps);
  std::printf("| DRAM read bandwidth (probe, 1 GiB stream) | %.2f GB/s |\n", bw);
  const double peak = fma_probe(reps);
  std::printf("| FMA peak (probe, f32) | %.1f GFLOP/s |\n", peak);
  std::fflush(stdout);

  // Decode: lm_head 2880 -> 201088, n = 1.
  if (lm_head) {
    const int64_t in = 2880, out = 201088;
    auto w = random_vec<uint16_t>(size_t(in * out), 5);
    auto x = random_vec<float>(size_t(in), 6);
    std::vector<float> y(static_cast<size_t>(out));
    const double t = best_of(reps, [&] { bf16w_matmul(x.data(), 1, in, w.data(), nullptr, y.data(), out); });
    const double gbs = double(in * out * 2) / t / 1e9;
    std::printf("| bf16w_matmul 2880->201088 n=1 (lm_head) | %.1f ms, %.2f GB/s = %.0f%% of probe |\n", t * 1e3, gbs,
                100 * gbs / bw);
    std::fflush(stdout);
  }

  // Decode batches: lm_head 2880 -> 201088 at n = 4 and 16 (FMA-bound from a few tokens on).
  if (lm_head) {
    const int64_t in = 2880, out = 201088;
    auto w = random_vec<uint16_t>(size_t(in * out), 5);
    for (int64_t n : {4, 16}) {
      auto x = random_vec<float>(size_t(in * n), 6);
      std::vector<float> y(size_t(out * n));
      const double t = best_of(reps, [&] { bf16w_matmul(x.data(), n, in, w.data(), nullptr, y.data(), out); });
      const double gf = 2.0 * double(in * out * n) / t / 1e9;
      std::printf("| bf16w_matmul 2880->201088 n=%d (lm_head, batch %d) | %.1f ms, %.1f GFLOP/s = %.0f%% of FMA "
                  "peak |\n",
                  int(n), int(n), t * 1e3, gf, 100 * gf / peak);
      std::fflush(stdout);
    }
  }

  // bf16 prefill-style: qkv 2880 -> 5120, n = 512.
  {
    const int64_t in = 2880, out = 5120, n = 512;
    auto w = random_vec<uint16_t>(size_t(in * out), 7);
    auto b = random_vec<uint16_t>(size_t(out), 8);
    auto x = random_vec<float>(size_t(in * n), 9);
    std::vector<float> y(size_t(out * n));
    const double t = best_of(reps, [&] { bf16w_matmul(x.data(), n, in, w.data(), b.data(), y.data(), out); });
    const double gf = 2.0 * double(in * out * n) / t / 1e9;
    std::printf("| bf16w_matmul 2880->5120 n=512 | %.1f ms, %.1f GFLOP/s = %.0f%% of FMA peak |\n", t * 1e3, gf,
                100 * gf / peak);
    std::fflush(stdout);
  }

  MoeWeights mw;
  const auto gu = mw.gate_up(), down = mw.down();
  mxfp4_pass_bench(mw.gu_blocks.data(), mw.gu_scales.data(), mw.hidden / 32, 2 * mw.inter * mw.experts, reps);
  // MoE decode: n = 1, top-4, a different expert set each call (no L3 reuse).
  {
    const int64_t hidden = mw.hidden;
    auto x = random_vec<float>(size_t(hidden), 10);
    std::vector<float> y(static_cast<size_t>(hidden));
    int call = 0;
    const float wts[4] = {0.4f, 0.3f, 0.2f, 0.1f};
    const double t = best_of(reps * 4, [&] {
      int32_t idx[4];
      for (int j = 0; j < 4; ++j) idx[j] = (call * 4 + j) % mw.experts;
      ++call;
      f32_mxfp4w_moe(x.data(), 1, hidden, idx, wts, 4, gu, down, 7.0f, y.data());
    });
    const double gbs = 4 * mw.expert_bytes() / t / 1e9;
    std::printf("| f32_mxfp4w_moe n=1 top-4 (2880/2880, 32 experts) | %.2f ms, %.2f GB/s = %.0f%% of probe |\n",
                t * 1e3, gbs, 100 * gbs / bw);
    std::fflush(stdout);
  }
  // MoE decode batches: n = 16 (~28 of 32 experts, ~2 tokens each) and 64 (~8 each), top-4 random
  // routing, new each call.
  for (const int64_t n : {16, 64}) {
    const int64_t hidden = mw.hidden;
    auto x = random_vec<float>(size_t(hidden * n), 13);
    std::vector<float> y(size_t(hidden * n));
    std::vector<float> wts(size_t(n * 4), 0.25f);
    std::mt19937 g(14);
    std::vector<std::vector<int32_t>> routings(8, std::vector<int32_t>(size_t(n * 4)));
    for (auto& idx : routings)
      for (int64_t t = 0; t < n; ++t) {
        std::vector<int> perm(size_t(mw.experts));
        for (int e = 0; e < mw.experts; ++e) perm[size_t(e)] = e;
        std::shuffle(perm.begin(), perm.end(), g);
        for (int j = 0; j < 4; ++j) idx[size_t(t * 4 + j)] = perm[size_t(j)];
      }
    size_t call = 0;
    const double t = best_of(reps * 2, [&] {
      const auto& idx = routings[call++ % routings.size()];
      f32_mxfp4w_moe(x.data(), n, hidden, idx.data(), wts.data(), 4, gu, down, 7.0f, y.data());
    });
    const double gf = 2.0 * double(n) * 4 * double(3 * mw.inter * hidden) / t / 1e9;
    std::printf("| f32_mxfp4w_moe n=%ld top-4 (decode batch) | %.2f ms, %.1f GFLOP/s = %.0f%% of FMA peak |\n",
                long(n), t * 1e3, gf, 100 * gf / peak);
    std::fflush(stdout);
  }
  // MoE prefill: n = 512, top-4 random routing.
  {
    const int64_t hidden = mw.hidden, n = 512;
    auto x = random_vec<float>(size_t(hidden * n), 11);
    std::vector<float> y(size_t(hidden * n));
    std::vector<int32_t> idx(size_t(n * 4));
    std::vector<float> wts(size_t(n * 4), 0.25f);
    std::mt19937 g(12);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int> perm(size_t(mw.experts));
      for (int e = 0; e < mw.experts; ++e) perm[size_t(e)] = e;
      std::shuffle(perm.begin(), perm.end(), g);
      for (int j = 0; j < 4; ++j) idx[size_t(t * 4 + j)] = perm[size_t(j)];
    }
    const double t = best_of(std::max(1, reps / 2), [&] {
      f32_mxfp4w_moe(x.data(), n, hidden, idx.data(), wts.data(), 4, gu, down, 7.0f, y.data());
    });
    const double flops = 2.0 * double(n) * 4 * double(3 * mw.inter * hidden);
    const double gf = flops / t / 1e9;
    std::printf("| f32_mxfp4w_moe n=512 top-4 | %.1f ms, %.1f GFLOP/s = %.0f%% of FMA peak |\n", t * 1e3, gf,
                100 * gf / peak);
    std::fflush(stdout);
  }
  // Attention decode: one token over 4096 keys (full layer), 64 q heads / 8 kv heads.
  {
    const int heads = 64, kvh = 8, d = 64, bs = 16, ctx = 4096;
    const int blocks = ctx / bs;
    std::vector<float> pool(size_t(blocks) * 2 * bs * kvh * d, 0.01f);
    PagedKv kv{pool.data(), bs, 1, kvh, d};
    std::vector<int32_t> table(static_cast<size_t>(blocks));
    for (int b = 0; b < blocks; ++b) table[size_t(b)] = (b * 37) % blocks;
    auto q = random_vec<float>(size_t(heads * d), 13);
    auto sinks = random_vec<float>(size_t(heads), 14);
    std::vector<float> o(size_t(heads * d));
    AttnSeq s{0, 1, ctx - 1, table.data()};
    const double t = best_of(reps, [&] {
      attention_sinks_paged(q.data(), 1, heads, kv, 0, &s, 1, sinks.data(), 0, 0.125f, o.data());
    });
    const double gbs = double(ctx) * 2 * kvh * d * 4 / t / 1e9;
    std::printf("| attention_sinks_paged decode, 4096 keys | %.3f ms, %.2f GB/s of KV |\n", t * 1e3, gbs);
  }
  return 0;
}
