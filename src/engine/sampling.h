// Sampling parameters and the sampler: one logits row in, one token (+ logprobs) out.
//
// Order of operations (as vLLM): logit_bias, then penalties (repetition on prompt + output tokens,
// frequency and presence on output tokens), then greedy (temperature == 0: argmax, lowest id on
// ties) or temperature, min_p, top_k, top_p and a draw from the renormalised distribution.
//
// Randomness is counter-based: the uniform number for the i-th generated token of a request is a
// pure function of (seed, i), so a seeded request produces the same tokens whatever else shares its
// batch and however often it was preempted. Candidates are ordered deterministically (probability
// descending, then id), so the draw does not depend on the order of anything else either.
//
// Logprobs are those of the model's raw distribution (log_softmax of the logits before bias,
// penalties and temperature), as vLLM reports by default.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace gptoss {

// Harmony stop tokens of o200k_harmony (<|return|>, <|call|>); see tokenizer/tokenizer.h.
inline constexpr int kHarmonyReturnToken = 200002;
inline constexpr int kHarmonyCallToken = 200012;

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  int top_k = 0;                    // <= 0: off
  float top_p = 1.0f;               // (0, 1]; 1: off
  float min_p = 0.0f;               // [0, 1]; 0: off
  float frequency_penalty = 0.0f;   // [-2, 2]
  float presence_penalty = 0.0f;    // [-2, 2]
  float repetition_penalty = 1.0f;  // > 0; 1: off
  std::map<int, float> logit_bias;  // token id -> added to its logit
  std::optional<uint64_t> seed;     // unset: the engine draws a random one per request
  int max_new_tokens = -1;          // -1: until max_model_len
  std::vector<int> stop_token_ids;  // finish (reason stop) when one is sampled
  std::vector<std::string> stop;    // stop strings, matched on detokenized text (needs a tokenizer)
  bool ignore_eos = false;          // don't stop at the model's eos_token_id
  bool harmony_stops = true;        // <|return|> and <|call|> stop generation
  bool logprobs = false;            // report the sampled token's logprob
  int top_logprobs = 0;             // and this many most likely alternatives (0..20)
};

// Throws InputError naming the field, its value and the valid range.
void validate_sampling_params(const SamplingParams& p, int vocab_size);

struct TokenLogprob {
  int token = -1;
  float logprob = 0.0f;
};

struct SampleResult {
  int token = -1;
  float logprob = 0.0f;                    // filled when params.logprobs
  std::vector<TokenLogprob> top_logprobs;  // params.top_logprobs entries, most likely first
};

// Per-request history the penalties need. Update with add_output() after each sampled token.
struct PenaltyState {
  std::unordered_map<int, int> output_counts;  // token -> times generated
  std::unordered_map<int, char> prompt_tokens;  // set of prompt tokens (repetition penalty)
  void init(std::span<const int32_t> prompt, const SamplingParams& p);
  void add_output(int token) { ++output_counts[token]; }
};

// Uniform double in [0, 1) for draw `index` of the stream `seed` (splitmix64-based counter RNG).
double counter_uniform(uint64_t seed, uint64_t index);

// Samples one token from `logits` (vocab entries). `index` = number of tokens generated so far.
SampleResult sample_token(std::span<const float> logits, const SamplingParams& p, const PenaltyState& penalties,
                          uint64_t seed, uint64_t index);

// Probabilities the sampler draws from (after every filter), for tests: vocab entries summing to 1.
std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingParams& p,
                                          const PenaltyState& penalties);

}  // namespace gptoss
