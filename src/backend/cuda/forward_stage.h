// The metadata of one model forward (Backend::run_forward) in device memory: uploaded with one copy per
// forward, and found again by the ops, which receive the forward's host arrays (tokens, positions,
// sequence descriptors, logit rows) and look up their device copies here.
//
// Layout: tokens, positions, logit rows, then per layer group the sequence descriptors, the sequence
// of every token and the block tables, each table padded to `table_cap` entries. Every piece starts
// at a 256-byte boundary. For a fixed shape (tokens, rows, sequences and table_cap per group) the
// device addresses are the same in every forward, which is what lets a CUDA graph recorded in one
// forward read the next forward's metadata.
#pragma once

#include <cstdint>
#include <vector>

#include <cuda_runtime.h>

#include "backend/backend.h"
#include "backend/cuda/kernels.cuh"

namespace gptoss::cuda {

class ForwardStage {
 public:
  // Device pointers of one layer group's sequences.
  struct Seqs {
    const DevAttnSeq* seqs = nullptr;
    const int32_t* token_seq = nullptr;  // [n_tokens]: index of the token's sequence
  };

  ForwardStage() = default;
  ForwardStage(const ForwardStage&) = delete;
  ForwardStage& operator=(const ForwardStage&) = delete;
  ~ForwardStage();

  // Entries a group's table needs for its longest sequence, rounded up to a power of two (at least 4),
  // so that a decode batch keeps its layout for many steps.
  static int table_cap(const ForwardMeta& meta, int group);

  // Copies meta into device memory on stream s (table_cap[g] entries a table). Returns true when the
  // device region had to grow, which moves every address a recorded graph may hold.
  bool upload(const ForwardMeta& meta, const int table_cap[2], cudaStream_t s);
  // Ends the forward: lookups answer null until the next upload.
  void clear() { active_ = false; }

  // Device copies of this forward's host arrays, or null when `host` is not one of them.
  const int32_t* tokens(const int32_t* host, int64_t n) const;
  const int32_t* positions(const int32_t* host, int64_t n) const;
  const int32_t* logit_rows(const int32_t* host, int64_t n) const;
  const Seqs* seqs(const AttnSeqDesc* host, int n_seqs) const;
  int64_t n_tokens() const { return meta_.n_tokens; }

 private:
  size_t place(size_t bytes);  // offset of a new 256-byte-aligned piece of `bytes`
  template <class T>
  T* host_at(size_t off) { return reinterpret_cast<T*>(host_.data() + off); }
  template <class T>
  const T* dev_at(size_t off) const { return reinterpret_cast<const T*>(dev_ + off); }

  bool active_ = false;
  ForwardMeta meta_;
  std::vector<char> host_;
  char* dev_ = nullptr;
  size_t cap_ = 0, used_ = 0;
  size_t tokens_off_ = 0, positions_off_ = 0, rows_off_ = 0;
  Seqs groups_[2];
};

}  // namespace gptoss::cuda
