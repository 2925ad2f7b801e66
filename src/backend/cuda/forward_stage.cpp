#include "backend/cuda/forward_stage.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "backend/cuda/cuda_check.h"

namespace gptoss::cuda {
namespace {

// Table entries sequence s reads: every logical block up to its last position.
int64_t table_len(const AttnSeqDesc& s, int block_size) {
  return s.n_tokens ? (s.start_pos + s.n_tokens - 1) / block_size + 1 : 0;
}

}  // namespace

ForwardStage::~ForwardStage() {
  if (dev_) cudaFree(dev_);
}

int ForwardStage::table_cap(const ForwardMeta& meta, int group) {
  int64_t len = 0;
  for (int i = 0; i < meta.n_seqs[group]; ++i) len = std::max(len, table_len(meta.seqs[group][i], meta.block_size));
  return int(std::bit_ceil(uint64_t(std::max<int64_t>(len, 4))));
}

size_t ForwardStage::place(size_t bytes) {
  const size_t off = (used_ + 255) & ~size_t(255);
  used_ = off + bytes;
  return off;
}

bool ForwardStage::upload(const ForwardMeta& meta, const int table_cap[2], cudaStream_t s) {
  const int64_t n = meta.n_tokens;
  // Lay out the pieces (offsets only), then fill the host copy.
  used_ = 0;
  tokens_off_ = place(size_t(n) * 4);
  positions_off_ = place(size_t(n) * 4);
  rows_off_ = place(size_t(meta.n_logit_rows) * 4);
  size_t seqs_off[2], token_seq_off[2], tables_off[2];
  for (int g = 0; g < 2; ++g) {
    seqs_off[g] = place(size_t(meta.n_seqs[g]) * sizeof(DevAttnSeq));
    token_seq_off[g] = place(size_t(meta.n_seqs[g] ? n : 0) * 4);
    tables_off[g] = place(size_t(meta.n_seqs[g]) * size_t(table_cap[g]) * 4);
  }
  bool grew = false;
  if (used_ > cap_) {
    if (dev_) {
      GPTOSS_CUDA_CHECK(cudaStreamSynchronize(s));
      GPTOSS_CUDA_CHECK(cudaFree(dev_));
      dev_ = nullptr;
    }
    cap_ = std::max<size_t>(used_ * 2, 1 << 16);
    GPTOSS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dev_), cap_));
    grew = true;
  }
  if (host_.size() < used_) host_.resize(cap_);

  std::memcpy(host_at<int32_t>(tokens_off_), meta.tokens, size_t(n) * 4);
  std::memcpy(host_at<int32_t>(positions_off_), meta.positions, size_t(n) * 4);
  std::memcpy(host_at<int32_t>(rows_off_), meta.logit_rows, size_t(meta.n_logit_rows) * 4);
  for (int g = 0; g < 2; ++g) {
    Seqs& out = groups_[g];
    out = Seqs{dev_at<DevAttnSeq>(seqs_off[g]), dev_at<int32_t>(token_seq_off[g])};
    if (!meta.n_seqs[g]) continue;
    auto* dseqs = host_at<DevAttnSeq>(seqs_off[g]);
    auto* token_seq = host_at<int32_t>(token_seq_off[g]);
    std::fill(token_seq, token_seq + n, -1);
    for (int i = 0; i < meta.n_seqs[g]; ++i) {
      const AttnSeqDesc& sq = meta.seqs[g][i];
      const int64_t len = table_len(sq, meta.block_size);
      GPTOSS_CHECK(len <= table_cap[g], "forward stage: sequence {} needs {} table entries, room for {}", i, len,
                   table_cap[g]);
      GPTOSS_CHECK(sq.token_offset >= 0 && sq.token_offset + sq.n_tokens <= n,
                   "forward stage: sequence {} covers tokens [{}, {}) of {}", i, sq.token_offset,
                   sq.token_offset + sq.n_tokens, n);
      const size_t table = tables_off[g] + size_t(i) * size_t(table_cap[g]) * 4;
      std::memcpy(host_at<int32_t>(table), sq.block_table, size_t(len) * 4);
      dseqs[i] = {sq.token_offset, sq.n_tokens, sq.start_pos, dev_at<int32_t>(table)};
      std::fill(token_seq + sq.token_offset, token_seq + sq.token_offset + sq.n_tokens, i);
    }
    GPTOSS_CHECK(std::find(token_seq, token_seq + n, -1) == token_seq + n,
                 "forward stage: the sequences of layer group {} do not cover all {} tokens", g, n);
  }
  GPTOSS_CUDA_CHECK(cudaMemcpyAsync(dev_, host_.data(), used_, cudaMemcpyHostToDevice, s));
  meta_ = meta;
  active_ = true;
  return grew;
}

const int32_t* ForwardStage::tokens(const int32_t* host, int64_t n) const {
  return active_ && host == meta_.tokens && n == meta_.n_tokens ? dev_at<int32_t>(tokens_off_) : nullptr;
}

const int32_t* ForwardStage::positions(const int32_t* host, int64_t n) const {
  return active_ && host == meta_.positions && n == meta_.n_tokens ? dev_at<int32_t>(positions_off_) : nullptr;
}

const int32_t* ForwardStage::logit_rows(const int32_t* host, int64_t n) const {
  return active_ && host == meta_.logit_rows && n == meta_.n_logit_rows ? dev_at<int32_t>(rows_off_) : nullptr;
}

const ForwardStage::Seqs* ForwardStage::seqs(const AttnSeqDesc* host, int n_seqs) const {
  if (!active_) return nullptr;
  for (int g = 0; g < 2; ++g)
    if (meta_.n_seqs[g] && host == meta_.seqs[g] && n_seqs == meta_.n_seqs[g]) return &groups_[g];
  return nullptr;
}

}  // namespace gptoss::cuda
