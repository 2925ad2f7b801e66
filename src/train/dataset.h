// Training examples for `gptoss train`: chat conversations from JSONL or Parquet files (local, or a hub
// dataset), rendered in harmony and labelled for completion-only SFT, as Oumi's
// "text_completions_only_with_padding" collator (TRL's DataCollatorForCompletionOnlyLM) labels them.
//
// Input (Oumi's text_sft / TRL's conversational format): one JSON object per line (or per Parquet row),
//   {"messages": [{"role": "system"|"developer"|"user"|"assistant"|"tool", "content": ...}, ...]}
// (data.train.target_col names another key than "messages"). An assistant message's "thinking" (also
// "reasoning_content" / "reasoning") is its chain of thought, the analysis channel; "tool_calls" and tool
// results as in OpenAI's chat format; optional per-line "tools" and "reasoning_effort" as in a chat request.
// The mapping to harmony is api/chat_mapping.h chat_to_harmony's (the server's), so training and serving
// see one format: a default system message (reasoning effort, no date line), the system/developer texts as
// the developer message's "# Instructions".
// Chain of thought is kept where gpt-oss's chat template keeps it in training: on the last message when it
// is an assistant message, and on tool-calling assistant messages after the last final answer; earlier
// turns' thinking is dropped (the model never sees old chain of thought at inference either). The
// conversation is rendered by harmony render_for_training_tokens (the last final answer ends in <|return|>).
//
// Labels ("completion only"): labels[i] is the token to predict at position i, tokens[i + 1], or -100 where
// that token is not trained; the last position is always -100. Trained tokens are the assistant's: from
// after a response template (default "<|start|>assistant") that opens an assistant turn, up to the next
// instruction template (default "<|start|>user") or the next <|start|> that does not open an assistant
// message (a tool result, which the environment writes, not the model). The header that opens a turn
// (<|start|>assistant) is the prompt's, not trained; the headers between the assistant's own messages
// within a turn (after its analysis, before its final answer or tool call) are trained, since the model
// writes them at inference (TRL labels them the same way). Everything before the first assistant header
// is ignored. data.train.collator_kwargs may set response_template / instruction_template (harmony text,
// special tokens written out).
//
// Errors are InputErrors: a bad line names the file, the line number and what is wrong; a config
// problem names the key (data.train.collator_name, data.train.datasets[i].dataset_path, ...).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "harmony/harmony.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::train {

inline constexpr int32_t kIgnoreLabel = -100;  // torch's CrossEntropyLoss ignore_index, as TRL uses it

struct TrainExample {
  std::vector<int32_t> tokens;
  std::vector<int32_t> labels;  // same length; labels[i] = tokens[i + 1] or kIgnoreLabel
};

struct DatasetStats {
  int64_t conversations = 0;      // lines read (after sample_count)
  int64_t truncated = 0;          // examples cut to max_len
  int64_t dropped_untrained = 0;  // examples left with no trained token (after truncation): not returned
  int64_t trained_tokens = 0;     // labels != kIgnoreLabel over the returned examples
};

// Every example of data.train, dataset after dataset in the config's order. Per dataset: the rows of
// dataset_path (a JSONL, JSON or Parquet file, or a folder whose files for `split` are chosen as the datasets
// library chooses them), else of dataset_name, a Hugging Face hub dataset (ORG/NAME) from the cache or
// downloaded (hub/dataset_files.h: README configs / `subset`, `split`); `split` may slice as the library's
// does (train[:100], train[10%:20%]); then shuffle (with the dataset's seed; deterministic, not HF
// datasets' order) then sample_count (the first n). A Parquet file's rows are its columns as JSON (the
// messages column a list of structs), so the hub's conversational datasets (e.g. the recipe's
// HuggingFaceH4/Multilingual-Thinking, whose messages carry `thinking`) read like the JSONL form.
// collator_name text_completions_only_with_padding labels the assistant's tokens (below);
// text_with_padding, or none, labels every token (TRL's default for conversations). Rejected: other
// collator names, pack: true, mixture_proportion. Each example is cut to max_len tokens (max_len >= 2);
// examples with no trained token left are dropped (counted in stats).
std::vector<TrainExample> load_train_examples(const DataParams& data, const Tokenizer& tok, int64_t max_len,
                                              DatasetStats* stats = nullptr);
// The same for any split (data.validation for the evaluation loss); `where` names it in messages.
std::vector<TrainExample> load_examples(const DatasetSplitParams& split, const std::string& where,
                                        const Tokenizer& tok, int64_t max_len, DatasetStats* stats = nullptr);

// --- the pieces, for tests and tools ---------------------------------------------------------------

// One JSONL row -> the harmony conversation trained on (chain of thought pruned as above). `messages_key`
// is the row's key holding the messages. InputError naming the field (e.g. "messages[2].role is ...").
harmony::Conversation training_conversation(const nlohmann::ordered_json& row,
                                            const std::string& messages_key = "messages");

// The labels of `tokens` for completion-only training with these templates (token ids), as described above.
std::vector<int32_t> completion_only_labels(std::span<const int32_t> tokens, std::span<const int32_t> response_ids,
                                            std::span<const int32_t> instruction_ids);

// One epoch's example order: a seeded permutation of (seed, epoch), the same on every run and machine
// (not torch's RandomSampler order), or with shuffle false 0, 1, 2, ...
std::vector<size_t> epoch_order(size_t num_examples, uint64_t seed, int64_t epoch, bool shuffle = true);

}  // namespace gptoss::train
