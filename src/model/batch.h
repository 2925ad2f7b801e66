// The contract between the engine (scheduler, paged KV cache) and the model forward pass.
//
// One forward call processes a ragged batch: several sequences, each contributing a chunk of
// consecutive tokens at its own position (a prefill chunk, or one token when decoding).
//
// KV storage is paged. The model owns a pool of `num_blocks` physical blocks (KvPool); each block
// holds `block_size` token positions of K and V for every layer of ONE layer group. There are two
// groups: full-attention layers and sliding-window layers ("sliding_attention" in layer_types).
// A sequence has one block table per group, mapping logical block b (positions
// [b*block_size, (b+1)*block_size)) to a physical block id. Sliding-window tables may hold -1 for
// logical blocks that lie entirely before the window of every token in the chunk (the engine frees
// them). Before calling forward, the engine must have mapped every logical block that the chunk's
// positions [start_pos, start_pos + tokens.size()) fall in.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace gptoss {

struct SeqChunk {
  std::span<const int32_t> tokens;        // tokens to run this step
  int32_t start_pos = 0;                  // absolute position of tokens[0]
  std::span<const int32_t> blocks_full;   // block table of the full-attention group
  std::span<const int32_t> blocks_swa;    // block table of the sliding-window group
  bool all_logits = false;                // logits for every token (scoring) or only the last
  int adapter = 0;                        // LoRA adapter: 0 the model's default (or none), k >= 1 the k-th named one
};

struct ForwardBatch {
  std::vector<SeqChunk> seqs;
  // Number of logit rows the forward writes: sum over seqs of (all_logits ? tokens : 1).
  int64_t logit_rows() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += s.all_logits ? int64_t(s.tokens.size()) : 1;
    return n;
  }
  int64_t total_tokens() const {
    int64_t n = 0;
    for (const auto& s : seqs) n += int64_t(s.tokens.size());
    return n;
  }
};

}  // namespace gptoss
