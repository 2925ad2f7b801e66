// Scalar reference implementations of the CPU kernels (see kernels.h for the contracts). Plain loops,
// written to be obviously right: sums accumulate in double, every element is decoded on its own.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/dtype.h"
#include "core/error.h"

namespace gptoss::cpu {

void rms_norm_ref(const float* x, const uint16_t* w_bf16, float* y, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    float r = 1.0f / std::sqrt(float(ss / double(d)) + eps);
    float* yr = y + t * d;
    for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * r * bf16_to_f32(w_bf16[i]);
  }
}

void bf16w_matmul_ref(const float* x, int64_t n, int64_t in, const uint16_t* w, const uint16_t* bias, float* y,
                      int64_t out) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      const uint16_t* wr = w + o * in;
      double acc = 0;
      for (int64_t i = 0; i < in; ++i) acc += double(x[t * in + i]) * bf16_to_f32(wr[i]);
      if (bias) acc += bf16_to_f32(bias[o]);
      y[t * out + o] = float(acc);
    }
  }
}

void rope_yarn_ref(float* x, int64_t n, int heads, int head_dim, const int32_t* positions,
                   const float* inv_freq, float attn_factor) {
  GPTOSS_CHECK(head_dim % 2 == 0, "head_dim {} must be even", head_dim);
  const int half = head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      float angle = float(positions[t]) * inv_freq[i];
      float c = float(std::cos(double(angle))) * attn_factor;
      float s = float(std::sin(double(angle))) * attn_factor;
      for (int h = 0; h < heads; ++h) {
        float* xh = x + (t * heads + h) * head_dim;
        float x1 = xh[i], x2 = xh[i + half];
        xh[i] = x1 * c - x2 * s;
        xh[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

namespace {
// Element offset of the K (which = 0) or V (which = 1) row of kv head h at position p.
int64_t kv_row(const PagedKv& kv, int g, const int32_t* table, int64_t p, int which, int h) {
  int64_t block = table[p / kv.block_size];
  GPTOSS_CHECK(block >= 0, "position {} maps to an unassigned KV block", p);
  return kv.offset(block, g, which, p % kv.block_size, h);
}

float kv_get(const PagedKv& kv, int64_t off) {
  return kv.dtype == KvDtype::bf16 ? bf16_to_f32(static_cast<const uint16_t*>(kv.pool)[off])
                                   : static_cast<const float*>(kv.pool)[off];
}

void kv_set(const PagedKv& kv, int64_t off, float x) {
  if (kv.dtype == KvDtype::bf16)
    static_cast<uint16_t*>(kv.pool)[off] = f32_to_bf16(x);
  else
    static_cast<float*>(kv.pool)[off] = x;
}
}  // namespace

void kv_store_ref(const PagedKv& kv, int group_layer, const float* k, const float* v, int64_t n,
                  const int32_t* positions, const int32_t* block_table) {
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < kv.kv_heads; ++h) {
      const int64_t off = (t * kv.kv_heads + h) * kv.head_dim;
      const int64_t kd = kv_row(kv, group_layer, block_table, positions[t], 0, h);
      const int64_t vd = kv_row(kv, group_layer, block_table, positions[t], 1, h);
      for (int i = 0; i < kv.head_dim; ++i) {
        kv_set(kv, kd + i, k[off + i]);
        kv_set(kv, vd + i, v[off + i]);
      }
    }
  }
}

void attention_sinks_paged_ref(const float* q, int64_t n_tokens, int heads, const PagedKv& kv, int group_layer,
                               const AttnSeq* seqs, int n_seqs, const float* sinks, int window, float scale,
                               float* out) {
  const int d = kv.head_dim;
  const int group = heads / kv.kv_heads;
  std::vector<double> scores;
  for (int si = 0; si < n_seqs; ++si) {
    const AttnSeq& sq = seqs[si];
    for (int64_t t = 0; t < sq.n_tokens; ++t) {
      const int64_t row = sq.token_offset + t;
      GPTOSS_CHECK(row < n_tokens, "sequence {} row {} beyond {} tokens", si, row, n_tokens);
      const int64_t p = sq.start_pos + t;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
      for (int h = 0; h < heads; ++h) {
        const float* qh = q + (row * heads + h) * d;
        const int kvh = h / group;
        scores.assign(size_t(p - lo + 1), 0.0);
        double m = sinks[h];
        for (int64_t kp = lo; kp <= p; ++kp) {
          const int64_t kr = kv_row(kv, group_layer, sq.block_table, kp, 0, kvh);
          double dot = 0;
          for (int i = 0; i < d; ++i) dot += double(qh[i]) * kv_get(kv, kr + i);
          scores[size_t(kp - lo)] = dot * scale;
          m = std::max(m, dot * scale);
        }
        double denom = std::exp(double(sinks[h]) - m);
        std::vector<double> acc(size_t(d), 0.0);
        for (int64_t kp = lo; kp <= p; ++kp) {
          double e = std::exp(scores[size_t(kp - lo)] - m);
          denom += e;
          const int64_t vr = kv_row(kv, group_layer, sq.block_table, kp, 1, kvh);
          for (int i = 0; i < d; ++i) acc[size_t(i)] += e * kv_get(kv, vr + i);
        }
        float* o = out + (row * heads + h) * d;
        for (int i = 0; i < d; ++i) o[i] = float(acc[size_t(i)] / denom);
      }
    }
  }
}

void router_topk_softmax_ref(const float* logits, int64_t n, int E, int k, int32_t* idx, float* w) {
  GPTOSS_CHECK(k >= 1 && k <= E, "top-k {} must be in 1..{}", k, E);
  std::vector<char> taken(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * E;
    std::fill(taken.begin(), taken.end(), 0);
    for (int j = 0; j < k; ++j) {
      int best = -1;
      for (int e = 0; e < E; ++e) {
        if (taken[size_t(e)]) continue;
        if (best < 0 || l[e] > l[best]) best = e;  // strict: ties keep the lower index
      }
      taken[size_t(best)] = 1;
      idx[t * k + j] = best;
    }
    double m = l[idx[t * k]];
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += std::exp(double(l[idx[t * k + j]]) - m);
    for (int j = 0; j < k; ++j) w[t * k + j] = float(std::exp(double(l[idx[t * k + j]]) - m) / sum);
  }
}

void mxfp4_dequantize_ref(const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t cols, float* out) {
  GPTOSS_CHECK(cols % kMxfp4BlockSize == 0, "MXFP4 row length {} is not a multiple of 32", cols);
  const int64_t nb = cols / kMxfp4BlockSize;
  for (int64_t b = 0; b < rows * nb; ++b) {
    const float scale = e8m0_to_f32(scales[b]);
    for (int i = 0; i < kMxfp4BlockSize; ++i) {
      const uint8_t byte = blocks[b * 16 + i / 2];
      const uint8_t code = (i % 2 == 0) ? (byte & 0xf) : (byte >> 4);
      out[b * kMxfp4BlockSize + i] = fp4_to_f32(code) * scale;
    }
  }
}

namespace {
constexpr float kSwigluAlpha = 1.702f;

// The clamped SwiGLU of gpt-oss on interleaved gate/up pairs: gu[2i] = gate, gu[2i+1] = up.
void swiglu_ref(const double* gu, int64_t inter, float limit, float* h) {
  for (int64_t i = 0; i < inter; ++i) {
    float gate = std::min(float(gu[2 * i]), limit);
    float up = std::clamp(float(gu[2 * i + 1]), -limit, limit);
    float glu = gate * (1.0f / (1.0f + std::exp(-kSwigluAlpha * gate)));
    h[i] = (up + 1.0f) * glu;
  }
}

// The MoE skeleton shared by both weight formats; row(e, r, dst) writes row r of expert e (its `cols`
// elements, f32) to dst.
template <typename GuRow, typename DownRow>
void moe_ref(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k, int experts,
             int64_t gu_rows, const uint16_t* gu_bias, int64_t down_rows, int64_t down_cols,
             const uint16_t* down_bias, GuRow gu_row, DownRow down_row, float limit, float* out) {
  GPTOSS_CHECK(gu_rows % 2 == 0 && gu_rows / 2 == down_cols && down_rows == hidden,
               "MoE shapes: gate_up rows {} / 2 must equal down cols {}, down rows {} must equal hidden {}",
               gu_rows, down_cols, down_rows, hidden);
  const int64_t inter = gu_rows / 2;
  std::vector<double> gu(static_cast<size_t>(gu_rows));
  std::vector<float> h(static_cast<size_t>(inter));
  std::vector<float> wrow(static_cast<size_t>(std::max(hidden, inter)));
  std::vector<double> acc(static_cast<size_t>(hidden));
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * hidden;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int j = 0; j < k; ++j) {
      const int e = idx[t * k + j];
      GPTOSS_CHECK(e >= 0 && e < experts, "expert index {} out of range 0..{}", e, experts - 1);
      for (int64_t r = 0; r < gu_rows; ++r) {
        gu_row(e, r, wrow.data());
        double a = 0;
        for (int64_t c = 0; c < hidden; ++c) a += double(xt[c]) * wrow[size_t(c)];
        gu[size_t(r)] = a + bf16_to_f32(gu_bias[e * gu_rows + r]);
      }
      swiglu_ref(gu.data(), inter, limit, h.data());
      for (int64_t r = 0; r < down_rows; ++r) {
        down_row(e, r, wrow.data());
        double a = 0;
        for (int64_t c = 0; c < inter; ++c) a += double(h[size_t(c)]) * wrow[size_t(c)];
        a += bf16_to_f32(down_bias[e * down_rows + r]);
        acc[size_t(r)] += double(w[t * k + j]) * float(a);
      }
    }
    for (int64_t r = 0; r < hidden; ++r) out[t * hidden + r] = float(acc[size_t(r)]);
  }
}
}  // namespace

void f32_mxfp4w_moe_ref(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                        const Mxfp4Experts& gate_up, const Mxfp4Experts& down, float swiglu_limit, float* out) {
  GPTOSS_CHECK(gate_up.cols == hidden && gate_up.cols % 32 == 0 && down.cols % 32 == 0,
               "MXFP4 MoE: gate_up cols {} (hidden {}), down cols {} must be multiples of 32", gate_up.cols,
               hidden, down.cols);
  auto at = [](const Mxfp4Experts& m) {
    return [&m](int e, int64_t r, float* dst) {
      const int64_t row = int64_t(e) * m.rows + r;
      mxfp4_dequantize_ref(m.blocks + row * (m.cols / 2), m.scales + row * (m.cols / kMxfp4BlockSize), 1, m.cols,
                           dst);
    };
  };
  moe_ref(x, n, hidden, idx, w, k, gate_up.experts, gate_up.rows, gate_up.bias, down.rows, down.cols, down.bias,
          at(gate_up), at(down), swiglu_limit, out);
}

void f32_bf16w_moe_ref(const float* x, int64_t n, int64_t hidden, const int32_t* idx, const float* w, int k,
                       const Bf16Experts& gate_up, const Bf16Experts& down, float swiglu_limit, float* out) {
  GPTOSS_CHECK(gate_up.cols == hidden, "bf16 MoE: gate_up cols {} must equal hidden {}", gate_up.cols, hidden);
  auto at = [](const Bf16Experts& m) {
    // Input-major: element (r, c) of expert e at w[(e*cols + c)*rows + r].
    return [&m](int e, int64_t r, float* dst) {
      for (int64_t c = 0; c < m.cols; ++c) dst[c] = bf16_to_f32(m.w[(int64_t(e) * m.cols + c) * m.rows + r]);
    };
  };
  moe_ref(x, n, hidden, idx, w, k, gate_up.experts, gate_up.rows, gate_up.bias, down.rows, down.cols, down.bias,
          at(gate_up), at(down), swiglu_limit, out);
}

}  // namespace gptoss::cpu
