// Every CUDA op against the CPU backend on fresh random inputs at real gpt-oss shapes, with outputs
// poisoned (NaN) before each run. Skips when this build or machine has no GPU (CI), runs on the device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "backend/backend.h"
#include "backend_cuda/cuda_ops_fixture.h"
#include "core/dtype.h"
#include "core/error.h"

namespace gptoss {
namespace {

using testing::CudaOps;

TEST_F(CudaOps, RmsNormAndAddAndEmbed) {
  const int64_t n = 5, d = 2880, vocab = 1000;
  auto x = rand_f32(size_t(n * d)), y = rand_f32(size_t(n * d));
  auto w = rand_bf16(size_t(d)), table = rand_bf16(size_t(vocab * d));
  std::vector<int32_t> toks = {3, 999, 0, 17, 3};
  std::vector<std::vector<float>> res;
  for (Backend* b : {cpu_.get(), gpu_.get()}) {
    float* o = out(*b, size_t(n * d));
    b->rms_norm(put(*b, x), put(*b, w), o, n, d, 1e-5f);
    float* xx = put(*b, x);
    b->add(xx, put(*b, y), n * d);
    float* e = out(*b, size_t(n * d));
    b->embed(toks.data(), n, put(*b, table), d, e);
    auto r = get(*b, o, size_t(n * d));
    auto a = get(*b, xx, size_t(n * d));
    auto em = get(*b, e, size_t(n * d));
    r.insert(r.end(), a.begin(), a.end());
    r.insert(r.end(), em.begin(), em.end());
    res.push_back(r);
  }
  EXPECT_LT(rel_err(res[1], res[0]), 1e-5);
}

// The embedding table where Weights puts it (prepare_gather_table: pinned host memory read over the
// bus): the same rows as from a table in device memory and as the CPU's, in one launch and in several.
TEST_F(CudaOps, EmbedFromGatherTable) {
  const int64_t d = 2880, vocab = 4000;
  const auto table = rand_bf16(size_t(vocab * d));
  std::vector<int32_t> toks = {3, 3999, 0, 17, 3, 2048, 1};
  const int64_t n = int64_t(toks.size());
  std::vector<std::vector<float>> res;
  for (Backend* b : {cpu_.get(), gpu_.get()}) {
    const auto* t = static_cast<const uint16_t*>(b->prepare_gather_table(table.data(), table.size() * 2));
    float* e = out(*b, size_t(n * d));
    b->embed(toks.data(), n, t, d, e);
    float* e1 = out(*b, size_t(d));
    b->embed(toks.data() + 1, 1, t, d, e1);  // a decode step's one token
    auto r = get(*b, e, size_t(n * d));
    auto r1 = get(*b, e1, size_t(d));
    EXPECT_TRUE(std::equal(r1.begin(), r1.end(), r.begin() + d)) << b->name();
    res.push_back(r);
  }
  EXPECT_EQ(res[1], res[0]);
}

TEST_F(CudaOps, MatmulBf16DecodeAndPrefillShapes) {
  // Widths: the real ones (2880 in, 4096 in for o_proj), a short row (72) and one that is not a multiple
  // of 8 (100: the scalar path). From 64 tokens (and in % 32 == 0) the tensor-core kernel runs: token counts
  // that are and are not multiples of its 64-token tiles; the 4103 rows end inside a 64-row tile.
  struct Shape {
    int64_t n, in;
  };
  // From 2 to 64 tokens with in % 64 == 0 the skinny tensor-core kernel runs (8, 16, 32 or 64 tokens a
  // block: full and partial token tiles); 17 x 100 stays on the CUDA cores, 70+ tokens take the tiles.
  for (auto [n, in] : {Shape{1, 2880}, Shape{1, 4096}, Shape{1, 8200}, Shape{1, 72}, Shape{1, 100}, Shape{2, 2880}, Shape{3, 2880},
                       Shape{8, 64}, Shape{9, 4096}, Shape{16, 2880}, Shape{17, 2880}, Shape{32, 128}, Shape{33, 2880},
                       Shape{63, 4096}, Shape{40, 2880}, Shape{17, 100}, Shape{64, 2880}, Shape{130, 4096}, Shape{200, 96},
                       Shape{70, 100}}) {
    const int64_t outd = 4096 + 7;
    auto x = rand_f32(size_t(n * in)), w = std::vector<float>();
    auto wb = rand_bf16(size_t(outd * in), 0.02f), bias = rand_bf16(size_t(outd));
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      float* o = out(*b, size_t(n * outd));
      b->matmul_bf16(put(*b, x), n, in, static_cast<const uint16_t*>(b->prepare_weight(wb.data(), wb.size() * 2)),
                     put(*b, bias), o, outd);
      res.push_back(get(*b, o, size_t(n * outd)));
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << "n=" << n << " in=" << in;
  }
}

TEST_F(CudaOps, MatmulBf16ManyTokensShortInputs) {
  // Prefill-sized inputs whose width the prefill kernel does not take (a LoRA term's rank, odd widths),
  // without bias: the tensor-core GEMM of the trainer.
  for (int64_t n : {65, 300})
    for (int64_t in : {8, 100, 1}) {
      const int64_t outd = 4096 + 3;
      auto x = rand_f32(size_t(n * in));
      auto wb = rand_bf16(size_t(outd * in), 0.02f);
      std::vector<std::vector<float>> res;
      for (Backend* b : {cpu_.get(), gpu_.get()}) {
        float* o = out(*b, size_t(n * outd));
        b->matmul_bf16(put(*b, x), n, in, static_cast<const uint16_t*>(b->prepare_weight(wb.data(), wb.size() * 2)),
                       nullptr, o, outd);
        res.push_back(get(*b, o, size_t(n * outd)));
      }
      EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << "n=" << n << " in=" << in;
    }
}

TEST_F(CudaOps, FusedAddRmsNormAndMultiMatmul) {
  // add_rms_norm: the CUDA kernel against the CPU backend (add, then rms_norm); x is updated in place.
  for (int64_t n : {1, 5}) {
    const int64_t d = 2880;
    auto x = rand_f32(size_t(n * d)), y = rand_f32(size_t(n * d));
    auto w = rand_bf16(size_t(d), 1.0f);
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      float* xd = put(*b, x);
      float* o = out(*b, size_t(n * d));
      b->add_rms_norm(xd, put(*b, y), static_cast<const uint16_t*>(b->prepare_weight(w.data(), w.size() * 2)), o, n,
                      d, 1e-5f);
      auto r = get(*b, o, size_t(n * d));
      auto xr = get(*b, xd, size_t(n * d));
      r.insert(r.end(), xr.begin(), xr.end());
      res.push_back(r);
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-6) << "n=" << n;
  }
  // matmul_bf16_multi: q/k/v-like segments of different heights (one not a multiple of the 4-row
  // blocks), with and without bias, more than one launch's worth of segments.
  for (int64_t n : {1, 3, 9, 70}) {
    const int64_t in = 2880;
    const int64_t outs[5] = {4096, 512, 517, 64, 8};
    auto x = rand_f32(size_t(n * in));
    std::vector<std::vector<uint16_t>> ws, bs;
    for (int64_t o : outs) {
      ws.push_back(rand_bf16(size_t(o * in), 0.02f));
      bs.push_back(rand_bf16(size_t(o)));
    }
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      auto prep = [&](const std::vector<uint16_t>& v) {
        return static_cast<const uint16_t*>(b->prepare_weight(v.data(), v.size() * 2));
      };
      std::vector<Backend::Linear> lin;
      for (size_t i = 0; i < 5; ++i)
        lin.push_back({prep(ws[i]), i == 1 ? nullptr : prep(bs[i]), out(*b, size_t(n * outs[i])), outs[i]});
      b->matmul_bf16_multi(put(*b, x), n, in, lin.data(), 5);
      std::vector<float> all;
      for (size_t i = 0; i < 5; ++i) {
        auto r = get(*b, lin[i].y, size_t(n * outs[i]));
        all.insert(all.end(), r.begin(), r.end());
      }
      res.push_back(all);
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << "n=" << n;
  }
}

TEST_F(CudaOps, RopeKvStoreAttentionWithSinksAndWindow) {
  const int heads = 64, kvh = 8, hd = 64, bs = 16, lg = 2, nblocks = 12;
  // Two sequences: a prefill chunk of 20 at position 5 and a decode token at position 70.
  std::vector<int32_t> tab0 = {4, 1, 7}, tab1 = {0, 2, 3, 5, 6};
  const int64_t n = 21;
  std::vector<int32_t> pos(n);
  for (int i = 0; i < 20; ++i) pos[size_t(i)] = 5 + i;
  pos[20] = 70;
  auto q = rand_f32(size_t(n * heads * hd)), k = rand_f32(size_t(n * kvh * hd)), v = rand_f32(size_t(n * kvh * hd));
  auto pool_init = rand_f32(size_t(nblocks) * lg * 2 * bs * kvh * hd);
  auto sinks = rand_f32(size_t(heads));
  std::vector<float> inv(hd / 2);
  for (int i = 0; i < hd / 2; ++i) inv[size_t(i)] = std::pow(150000.f, -2.f * i / hd);
  // The pool as bf16 bits, two to a float (the upload helpers move floats).
  std::vector<float> pool_init_bf16(pool_init.size() / 2);
  for (size_t i = 0; i < pool_init.size(); ++i) {
    const uint16_t h = f32_to_bf16(pool_init[i]);
    std::memcpy(reinterpret_cast<char*>(pool_init_bf16.data()) + 2 * i, &h, 2);
  }
  // mode 0: one op at a time, a 8-key window; 1: rope_qk + kv_store_seqs; 2: rope_qk_kv_store, a 8-key window;
  // each over an f32 and a bf16 pool.
  for (int mode : {0, 1, 2})
  for (KvDtype dtype : {KvDtype::f32, KvDtype::bf16}) {
    const int window = mode == 1 ? 0 : 8;
    const bool bf16 = dtype == KvDtype::bf16;
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      float* dq = put(*b, q);
      float* dk = put(*b, k);
      float* dv = put(*b, v);
      KvView kv{put(*b, bf16 ? pool_init_bf16 : pool_init), bs, lg, kvh, hd, dtype};
      AttnSeqDesc seqs[2] = {{0, 20, 5, tab0.data()}, {20, 1, 70, tab1.data()}};
      if (mode == 0) {
        b->rope(dq, n, heads, hd, pos.data(), put(*b, inv), 1.3465736f);
        b->rope(dk, n, kvh, hd, pos.data(), put(*b, inv), 1.3465736f);
        b->kv_store(kv, 1, dk, dv, 20, pos.data(), tab0.data());
        b->kv_store(kv, 1, dk + 20 * kvh * hd, dv + 20 * kvh * hd, 1, pos.data() + 20, tab1.data());
      } else if (mode == 1) {  // the fused q + k launch, one launch for both sequences' K/V
        b->rope_qk(dq, heads, dk, kvh, n, hd, pos.data(), put(*b, inv), 1.3465736f);
        b->kv_store_seqs(kv, 1, dk, dv, seqs, 2, pos.data());
      } else {
        b->rope_qk_kv_store(dq, heads, dk, dv, kvh, n, hd, pos.data(), put(*b, inv), 1.3465736f, kv, 1, seqs, 2);
      }
      float* o = out(*b, size_t(n * heads * hd));
      b->attention(dq, n, heads, kv, 1, seqs, 2, put(*b, sinks), window, 0.125f, o);
      auto r = get(*b, o, size_t(n * heads * hd));
      for (auto [p, count] : {std::pair{dq, n * heads * hd}, std::pair{dk, n * kvh * hd}}) {  // rotated q and k
        auto rot = get(*b, p, size_t(count));
        r.insert(r.end(), rot.begin(), rot.end());
      }
      // The stored K/V rows too (a bf16 pool widened to f32).
      auto pool = get(*b, static_cast<float*>(kv.pool), bf16 ? pool_init_bf16.size() : pool_init.size());
      if (bf16) {
        std::vector<float> wide(pool_init.size());
        for (size_t i = 0; i < wide.size(); ++i) {
          uint16_t h;
          std::memcpy(&h, reinterpret_cast<const char*>(pool.data()) + 2 * i, 2);
          wide[i] = bf16_to_f32(h);
        }
        pool = wide;
      }
      r.insert(r.end(), pool.begin(), pool.end());
      res.push_back(r);
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << "mode=" << mode << " " << kv_dtype_name(dtype);
  }
}

TEST_F(CudaOps, AttentionLongContextDecode) {
  // Three decode tokens of different sequences over a cache filled at random: 1051 keys (many groups of
  // 32, a last partial one), 1 key, 40 keys; full attention and a 128-key window; shuffled block tables.
  const int heads = 64, kvh = 8, hd = 64, bs = 16, lg = 1, nblocks = 72;
  std::mt19937 rng(5);
  std::vector<int32_t> perm(nblocks);
  for (int i = 0; i < nblocks; ++i) perm[size_t(i)] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> tab0(perm.begin(), perm.begin() + 66), tab1 = {perm[66]}, tab2 = {perm[67], perm[68], perm[69]};
  const int64_t n = 3;
  auto q = rand_f32(size_t(n * heads * hd));
  auto pool_init = rand_f32(size_t(nblocks) * lg * 2 * bs * kvh * hd);
  auto sinks = rand_f32(size_t(heads));
  for (int window : {0, 128}) {
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      KvView kv{put(*b, pool_init), bs, lg, kvh, hd};
      AttnSeqDesc seqs[3] = {{0, 1, 1050, tab0.data()}, {1, 1, 0, tab1.data()}, {2, 1, 39, tab2.data()}};
      float* o = out(*b, size_t(n * heads * hd));
      b->attention(put(*b, q), n, heads, kv, 0, seqs, 3, put(*b, sinks), window, 0.125f, o);
      res.push_back(get(*b, o, size_t(n * heads * hd)));
    }
    EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << "window=" << window;
  }
}

// The split attention over other head layouts: query heads per KV head 8 (gpt-oss), 3, 12 (two blocks of
// heads a token) and 1; head_dim 64, 128, 32, 256. A batch of a 40-token prefill chunk and two decode
// tokens (enough blocks for one part a token on the 8-KV-head shape, several parts on the others), then
// the two decode tokens alone (many parts, most of them empty for the 1-key context).
TEST_F(CudaOps, AttentionHeadLayoutsAndSplits) {
  struct Layout {
    int heads, kvh, hd;
  };
  const int bs = 16, lg = 1, nblocks = 72;
  std::mt19937 rng(9);
  std::vector<int32_t> perm(nblocks);
  for (int i = 0; i < nblocks; ++i) perm[size_t(i)] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> tab0(perm.begin(), perm.begin() + 5), tab1(perm.begin() + 5, perm.begin() + 71),
      tab2 = {perm[71]};
  for (Layout lay : {Layout{64, 8, 64}, Layout{6, 2, 128}, Layout{12, 1, 32}, Layout{8, 8, 256}}) {
    auto pool_init = rand_f32(size_t(nblocks) * lg * 2 * bs * lay.kvh * lay.hd);
    auto sinks = rand_f32(size_t(lay.heads));
    for (bool with_prefill : {true, false}) {
      std::vector<AttnSeqDesc> seqs;
      if (with_prefill) seqs.push_back({0, 40, 30, tab0.data()});
      const int64_t off = with_prefill ? 40 : 0;
      seqs.push_back({off, 1, 1050, tab1.data()});
      seqs.push_back({off + 1, 1, 0, tab2.data()});
      const int64_t n = off + 2;
      auto q = rand_f32(size_t(n * lay.heads * lay.hd));
      for (int window : {0, 128}) {
        std::vector<std::vector<float>> res;
        for (Backend* b : {cpu_.get(), gpu_.get()}) {
          KvView kv{put(*b, pool_init), bs, lg, lay.kvh, lay.hd};
          float* o = out(*b, size_t(n * lay.heads * lay.hd));
          b->attention(put(*b, q), n, lay.heads, kv, 0, seqs.data(), int(seqs.size()), put(*b, sinks), window,
                       0.125f, o);
          res.push_back(get(*b, o, size_t(n * lay.heads * lay.hd)));
        }
        EXPECT_LT(rel_err(res[1], res[0]), 1e-5)
            << lay.heads << "/" << lay.kvh << " heads, head_dim " << lay.hd << (with_prefill ? ", prefill" : "")
            << ", window " << window;
      }
    }
  }
}

// The real widths (90 blocks a row), and rows longer than one pass of the wide kernels (100 and 128
// blocks) with intermediate sizes that do not fill whole thread blocks of pairs / rows. The shapes with
// n * k >= experts token-slots take the tensor-core kernels (use_tensor_cores), grouped by expert: up to 415
// slots in chunks of 8 through the streaming kernel (300 slots over 4 experts: 10 chunks an expert, the
// last partial; 90 and 3 blocks a row: whole and partial steps of 4 blocks), from 416 in chunks of 32
// (110 x 4 over 32 experts, partial chunks; 500 x 2 over 8 experts of 3 and 2 blocks a row).
struct MoeShape {
  int64_t n, hidden, inter;
  int experts, k;
};

void PrintTo(const MoeShape& m, std::ostream* os) {
  *os << "{n:" << m.n << ",hidden:" << m.hidden << ",inter:" << m.inter << ",experts:" << m.experts << ",k:" << m.k
      << "}";
}

class CudaMoe : public CudaOps, public ::testing::WithParamInterface<MoeShape> {
 protected:
  // Relative error of the GPU's router + MXFP4 MoE against the CPU's, x drawn in [-x_scale, x_scale]
  // (every outlier_every-th value 1000 times larger), biases in [-bias_scale, bias_scale].
  double moe_rel_err(const MoeShape& shape, float x_scale, float bias_scale = 0.5f, float limit = 7.0f,
                     int outlier_every = 0) {
    const auto [n, hidden, inter, experts, k] = shape;
    auto x = rand_f32(size_t(n * hidden));
    for (size_t i = 0; i < x.size(); ++i) x[i] *= x_scale * (outlier_every && i % size_t(outlier_every) == 5 ? 1000 : 1);
    auto logits = rand_f32(size_t(n * experts));
    const Mxfp4Experts ex = rand_mxfp4_experts(hidden, inter, experts, bias_scale);
    std::vector<std::vector<float>> res;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      int32_t* idx = static_cast<int32_t*>(b->alloc(size_t(n * k) * 4));
      float* w = out(*b, size_t(n * k));
      b->router_topk(put(*b, logits), n, experts, k, idx, w);
      const auto [gu, dn] = ex.on(*b);
      float* o = out(*b, size_t(n * hidden));
      b->moe(put(*b, x), n, hidden, idx, w, k, gu, dn, limit, o);
      auto r = get(*b, o, size_t(n * hidden));
      auto ww = get(*b, w, size_t(n * k));
      r.insert(r.end(), ww.begin(), ww.end());
      res.push_back(r);
      b->free(idx);
    }
    return rel_err(res[1], res[0]);
  }
};

TEST_P(CudaMoe, RouterAndMoeMxfp4MatchCpu) { EXPECT_LT(moe_rel_err(GetParam(), 1.0f), 1e-5); }

// The tensor-core kernels scale each row of x (and of h) by a power of two before splitting it into f16
// limbs: tiny and large activations must keep f32 precision (an unscaled split loses the low limbs of tiny
// values in f16 subnormals and overflows f16 above 65504). No biases and no SwiGLU clamp here, so the
// outputs follow x all the way (a bias or the clamp would hide the error).
TEST_F(CudaMoe, TensorCoreMoeKeepsPrecisionForTinyAndLargeActivations) {
  for (int64_t n : {16, 120})  // 64 and 480 token-slots: chunks of 8 and of 32 slots
    for (float scale : {1e-7f, 3e4f})
      EXPECT_LT(moe_rel_err(MoeShape{n, 256, 128, 8, 4}, scale, 0.0f, 1e30f), 1e-5) << n << " tokens, x * " << scale;
}

// Below two token-slots an expert the CUDA-core kernels split each block of 32 values of x (and of h) into
// three int8 limbs scaled to the block's largest value (2^-20 of it): tiny and large activations, and
// blocks with an outlier 1000 times the rest, must stay well inside 1e-5 (no biases, no clamp, as above).
TEST_F(CudaMoe, SmallBatchMoeKeepsPrecisionForTinyLargeAndOutlierActivations) {
  for (float scale : {1e-7f, 1.0f, 3e4f})
    for (int outliers : {0, 37})
      EXPECT_LT(moe_rel_err(MoeShape{1, 256, 128, 8, 4}, scale, 0.0f, 1e30f, outliers), 1e-5)
          << "x * " << scale << ", outliers every " << outliers;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaMoe,
                         ::testing::Values(MoeShape{6, 2880, 2880, 32, 4}, MoeShape{9, 2880, 2880, 32, 4},
                                           MoeShape{110, 2880, 2880, 32, 4}, MoeShape{500, 96, 64, 8, 2},
                                           MoeShape{3, 3200, 96, 8, 2},
                                           MoeShape{5, 96, 4096, 4, 2}, MoeShape{1, 64, 32, 4, 1},
                                           MoeShape{20, 2880, 2880, 32, 4}, MoeShape{40, 3200, 96, 8, 2},
                                           MoeShape{33, 96, 4096, 4, 2}, MoeShape{64, 64, 32, 4, 1},
                                           MoeShape{80, 2880, 2880, 32, 4}, MoeShape{100, 96, 64, 8, 2},
                                           MoeShape{300, 64, 32, 4, 1}, MoeShape{2, 96, 4096, 8, 2},
                                           MoeShape{20, 64, 32, 64, 4}),  // 80 slots: one thread block a slot
                         [](const ::testing::TestParamInfo<MoeShape>& i) {
                           return "n" + std::to_string(i.param.n) + "_h" + std::to_string(i.param.hidden) + "_i" +
                                  std::to_string(i.param.inter) + "_e" + std::to_string(i.param.experts);
                         });

TEST_F(CudaOps, RouterTopkMatchesCpuWithTiesUpTo128Experts) {
  // 32 experts (20b) and 128 (120b); logits rounded to 1/4 so many tie: ties go to the lower index.
  for (int experts : {32, 128}) {
    const int64_t n = 37;
    const int k = 4;
    auto logits = rand_f32(size_t(n * experts));
    for (auto& v : logits) v = std::round(v * 4.0f) / 4.0f;
    std::vector<std::vector<int32_t>> ids;
    std::vector<std::vector<float>> ws;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      int32_t* idx = static_cast<int32_t*>(b->alloc(size_t(n * k) * 4));
      float* w = out(*b, size_t(n * k));
      b->router_topk(put(*b, logits), n, experts, k, idx, w);
      std::vector<int32_t> hi(size_t(n * k));
      b->to_host(hi.data(), idx, hi.size() * 4);
      ids.push_back(hi);
      ws.push_back(get(*b, w, size_t(n * k)));
      b->free(idx);
    }
    EXPECT_EQ(ids[1], ids[0]) << experts << " experts";
    EXPECT_LT(rel_err(ws[1], ws[0]), 1e-6) << experts << " experts";
  }
}

// add_rms_norm_router: the CUDA backend's one launch (17 to 64 tokens, d % 8 == 0; one thread block a
// token for 32 experts, four for 128, rows wider than the part loaded before grid_wait) against the CPU's
// plain ops, and its fallbacks (1 and 65 tokens, d % 8 != 0): x, h, the logits, the experts and their
// weights. An expert pick may differ only where the CPU's k-th and next logits nearly tie.
TEST_F(CudaOps, AddRmsNormRouterMatchesCpu) {
  struct Shape {
    int64_t n, d;
    int experts, k;
  };
  for (const Shape& c : {Shape{17, 2880, 32, 4}, Shape{40, 2880, 128, 4}, Shape{64, 2880, 32, 4},
                         Shape{20, 96, 8, 2}, Shape{18, 3200, 32, 4}, Shape{1, 2880, 32, 4}, Shape{65, 2880, 32, 4},
                         Shape{30, 60, 4, 2}}) {
    const auto [n, d, experts, k] = c;
    auto x = rand_f32(size_t(n * d)), y = rand_f32(size_t(n * d));
    auto norm = rand_bf16(size_t(d)), rw = rand_bf16(size_t(experts) * d, 0.05f), rb = rand_bf16(size_t(experts));
    std::vector<std::vector<float>> res, logits, weights;
    std::vector<std::vector<int32_t>> ids;
    for (Backend* b : {cpu_.get(), gpu_.get()}) {
      auto prep = [&](const auto& v) { return static_cast<const uint16_t*>(b->prepare_weight(v.data(), v.size() * 2)); };
      float* xd = put(*b, x);
      float* h = out(*b, size_t(n * d));
      float* l = out(*b, size_t(n * experts));
      float* w = out(*b, size_t(n * k));
      int32_t* idx = put(*b, std::vector<int32_t>(size_t(n * k), -1));
      b->add_rms_norm_router(xd, put(*b, y), prep(norm), h, n, d, 1e-5f, prep(rw), prep(rb), l, experts, k, idx, w);
      auto r = get(*b, h, size_t(n * d));
      auto xr = get(*b, xd, size_t(n * d));
      r.insert(r.end(), xr.begin(), xr.end());
      res.push_back(r);
      logits.push_back(get(*b, l, size_t(n * experts)));
      std::vector<int32_t> hi(size_t(n * k));
      b->to_host(hi.data(), idx, hi.size() * 4);
      ids.push_back(hi);
      weights.push_back(get(*b, w, size_t(n * k)));
    }
    const std::string shape = fmt::format("n={} d={} experts={}", n, d, experts);
    EXPECT_LT(rel_err(res[1], res[0]), 1e-6) << shape;
    EXPECT_LT(rel_err(logits[1], logits[0]), 1e-5) << shape;
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> row(logits[0].begin() + t * experts, logits[0].begin() + (t + 1) * experts);
      std::sort(row.begin(), row.end(), std::greater<>());
      const bool tie = k < experts && row[size_t(k) - 1] - row[size_t(k)] < 1e-4f;
      for (int j = 0; j < k && !tie; ++j) {
        EXPECT_EQ(ids[1][size_t(t * k + j)], ids[0][size_t(t * k + j)]) << shape << " token " << t;
        // the logits differ at f32 rounding (summed in another order): so do the softmax weights
        EXPECT_NEAR(weights[1][size_t(t * k + j)], weights[0][size_t(t * k + j)], 1e-5) << shape << " token " << t;
      }
    }
  }
}

// moe_add_rms_norm: the MoE's sum straight into x (and the next norm into h, which is also the MoE's
// input) against the CPU's moe + add_rms_norm / add, on the small-batch and the tensor-core paths.
TEST_F(CudaOps, MoeAddRmsNormMatchesCpu) {
  for (int64_t n : {1, 20})  // 4 and 80 token-slots of 32 experts
    for (bool with_norm : {true, false}) {
      const int64_t hidden = 2880, inter = 2880;
      const int experts = 32, k = 4;
      auto x = rand_f32(size_t(n * hidden)), h = rand_f32(size_t(n * hidden)), logits = rand_f32(size_t(n * experts));
      auto norm = rand_bf16(size_t(hidden));
      const Mxfp4Experts ex = rand_mxfp4_experts(hidden, inter, experts, 0.5f);
      std::vector<std::vector<float>> res;
      for (Backend* b : {cpu_.get(), gpu_.get()}) {
        int32_t* idx = put(*b, std::vector<int32_t>(size_t(n * k), -1));
        float* w = out(*b, size_t(n * k));
        b->router_topk(put(*b, logits), n, experts, k, idx, w);
        const auto [gu, dn] = ex.on(*b);
        const void* nw = with_norm ? b->prepare_weight(norm.data(), norm.size() * 2) : nullptr;
        float* xd = put(*b, x);
        float* hd = put(*b, h);
        b->moe_add_rms_norm(hd, n, hidden, idx, w, k, gu, dn, 7.0f, out(*b, size_t(n * hidden)), xd,
                            static_cast<const uint16_t*>(nw), hd, 1e-5f);
        auto r = get(*b, xd, size_t(n * hidden));
        auto hr = get(*b, hd, size_t(n * hidden));
        r.insert(r.end(), hr.begin(), hr.end());  // without a norm h stays the MoE's input
        res.push_back(r);
      }
      EXPECT_LT(rel_err(res[1], res[0]), 1e-5) << n << " tokens, norm " << with_norm;
    }
}

TEST_F(CudaOps, MoeBf16ExpertsSmall) {
  const int64_t n = 3, hidden = 256, inter = 192;
  const int experts = 8, k = 2;
  auto x = rand_f32(size_t(n * hidden));
  auto logits = rand_f32(size_t(n * experts));
  auto gu_w = rand_bf16(size_t(experts) * hidden * 2 * inter, 0.05f), gu_b = rand_bf16(size_t(experts) * 2 * inter);
  auto dn_w = rand_bf16(size_t(experts) * inter * hidden, 0.05f), dn_b = rand_bf16(size_t(experts) * hidden);
  std::vector<std::vector<float>> res;
  for (Backend* b : {cpu_.get(), gpu_.get()}) {
    int32_t* idx = static_cast<int32_t*>(b->alloc(size_t(n * k) * 4));
    float* w = out(*b, size_t(n * k));
    b->router_topk(put(*b, logits), n, experts, k, idx, w);
    auto prep = [&](const auto& v) { return static_cast<const uint16_t*>(b->prepare_weight(v.data(), v.size() * 2)); };
    ExpertWeights gu{false, nullptr, nullptr, prep(gu_w), prep(gu_b), 2 * inter, hidden, experts};
    ExpertWeights dn{false, nullptr, nullptr, prep(dn_w), prep(dn_b), hidden, inter, experts};
    float* o = out(*b, size_t(n * hidden));
    b->moe(put(*b, x), n, hidden, idx, w, k, gu, dn, 7.0f, o);
    res.push_back(get(*b, o, size_t(n * hidden)));
    b->free(idx);
  }
  EXPECT_LT(rel_err(res[1], res[0]), 1e-5);
}

}  // namespace
}  // namespace gptoss

namespace gptoss {
namespace {

// Without a usable GPU (CI, CPU boxes), asking for CUDA is a clear input error, not a CUDA trace.
TEST(CudaBackendWithoutGpu, IsAClearInputError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  try {
    make_cuda_backend();
    FAIL() << "make_cuda_backend() succeeded without a GPU";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--device cpu"), std::string::npos) << e.what();
  }
  EXPECT_EQ(make_backend("auto")->name(), "cpu");
}

}  // namespace
}  // namespace gptoss
