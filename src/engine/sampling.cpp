#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace gptoss {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool needs_processing(const SamplingParams& p) {
  return !p.logit_bias.empty() || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f ||
         p.repetition_penalty != 1.0f;
}

// logits after logit_bias and penalties (a copy only when something changes them).
std::span<const float> processed_logits(std::span<const float> logits, const SamplingParams& p,
                                        const PenaltyState& st, std::vector<float>& buf) {
  if (!needs_processing(p)) return logits;
  buf.assign(logits.begin(), logits.end());
  const int v = int(buf.size());
  for (const auto& [tok, bias] : p.logit_bias)
    if (tok >= 0 && tok < v) buf[tok] += bias;
  if (p.repetition_penalty != 1.0f) {
    const float r = p.repetition_penalty;
    auto apply = [&](int t) {
      if (t < 0 || t >= v) return;
      buf[t] = buf[t] > 0 ? buf[t] / r : buf[t] * r;
    };
    for (const auto& [t, _] : st.prompt_tokens) apply(t);
    for (const auto& [t, _] : st.output_counts)
      if (!st.prompt_tokens.count(t)) apply(t);
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    for (const auto& [t, n] : st.output_counts) {
      if (t < 0 || t >= v || n <= 0) continue;
      buf[t] -= p.frequency_penalty * float(n) + p.presence_penalty;
    }
  }
  return buf;
}

int argmax(std::span<const float> x) {
  int best = 0;
  for (int i = 1; i < int(x.size()); ++i)
    if (x[i] > x[best]) best = i;  // strict: lowest id wins ties
  return best;
}

struct Candidate {
  int token;
  double weight;  // unnormalised probability
};

// Candidates after temperature, min_p, top_k and top_p, in draw order (probability desc, then id).
std::vector<Candidate> candidates(std::span<const float> l, const SamplingParams& p) {
  const int v = int(l.size());
  const double inv_t = 1.0 / double(p.temperature);
  double mx = -std::numeric_limits<double>::infinity();
  for (float x : l) mx = std::max(mx, double(x));
  GPTOSS_CHECK(std::isfinite(mx), "logits have no finite maximum");
  // min_p: keep tokens whose probability is at least min_p times the largest one.
  const double min_w = p.min_p > 0 ? double(p.min_p) : 0.0;
  std::vector<Candidate> c;
  c.reserve(p.top_k > 0 ? size_t(std::min(v, p.top_k * 4)) : size_t(v));
  for (int i = 0; i < v; ++i) {
    double w = std::exp((double(l[i]) - mx) * inv_t);
    if (w > 0 && w >= min_w) c.push_back({i, w});
  }
  auto before = [](const Candidate& a, const Candidate& b) {
    return a.weight != b.weight ? a.weight > b.weight : a.token < b.token;
  };
  if (p.top_k > 0 && p.top_k < int(c.size())) {
    std::nth_element(c.begin(), c.begin() + p.top_k, c.end(), before);
    c.resize(p.top_k);
  }
  std::sort(c.begin(), c.end(), before);
  if (p.top_p < 1.0f) {
    double total = 0;
    for (const auto& x : c) total += x.weight;
    const double target = double(p.top_p) * total;
    double acc = 0;
    size_t keep = 0;
    while (keep < c.size()) {
      acc += c[keep++].weight;
      if (acc >= target) break;
    }
    c.resize(std::max<size_t>(keep, 1));
  }
  return c;
}

void fill_logprobs(std::span<const float> raw, const SamplingParams& p, SampleResult& r) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float x : raw) mx = std::max(mx, double(x));
  double s = 0;
  for (float x : raw) s += std::exp(double(x) - mx);
  const double lse = mx + std::log(s);
  r.logprob = float(double(raw[r.token]) - lse);
  if (p.top_logprobs > 0) {
    const int n = std::min<int>(p.top_logprobs, int(raw.size()));
    std::vector<int> idx(raw.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                      [&](int a, int b) { return raw[a] != raw[b] ? raw[a] > raw[b] : a < b; });
    r.top_logprobs.clear();
    for (int i = 0; i < n; ++i) r.top_logprobs.push_back({idx[i], float(double(raw[idx[i]]) - lse)});
  }
}

}  // namespace

void validate_sampling_params(const SamplingParams& p, int vocab_size) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature))
    fail_input("sampling: temperature is {}; expected >= 0 (0 = greedy)", p.temperature);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail_input("sampling: top_p is {}; expected (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail_input("sampling: min_p is {}; expected [0, 1]", p.min_p);
  if (p.top_k < -1) fail_input("sampling: top_k is {}; expected -1 or 0 (off) or a positive count", p.top_k);
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f))
    fail_input("sampling: frequency_penalty is {}; expected [-2, 2]", p.frequency_penalty);
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f))
    fail_input("sampling: presence_penalty is {}; expected [-2, 2]", p.presence_penalty);
  if (!(p.repetition_penalty > 0.0f) || !std::isfinite(p.repetition_penalty))
    fail_input("sampling: repetition_penalty is {}; expected > 0 (1 = off)", p.repetition_penalty);
  if (p.max_new_tokens < -1 || p.max_new_tokens == 0)
    fail_input("sampling: max_new_tokens is {}; expected a positive count, or -1 for up to max_model_len",
               p.max_new_tokens);
  if (p.top_logprobs < 0 || p.top_logprobs > 20)
    fail_input("sampling: top_logprobs is {}; expected 0..20", p.top_logprobs);
  for (const auto& [tok, bias] : p.logit_bias) {
    if (tok < 0 || tok >= vocab_size)
      fail_input("sampling: logit_bias token {} is outside the vocabulary; expected 0..{}", tok, vocab_size - 1);
    if (!std::isfinite(bias) || bias < -100.0f || bias > 100.0f)
      fail_input("sampling: logit_bias for token {} is {}; expected [-100, 100]", tok, bias);
  }
  for (const auto& s : p.stop)
    if (s.empty()) fail_input("sampling: a stop string is empty; expected non-empty strings");
}

void PenaltyState::init(std::span<const int32_t> prompt, const SamplingParams& p) {
  output_counts.clear();
  prompt_tokens.clear();
  if (p.repetition_penalty != 1.0f)
    for (int32_t t : prompt) prompt_tokens.emplace(t, 1);
}

double counter_uniform(uint64_t seed, uint64_t index) {
  uint64_t x = splitmix64(splitmix64(seed) ^ splitmix64(index ^ 0xd1b54a32d192ed03ull));
  return double(x >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

SampleResult sample_token(std::span<const float> logits, const SamplingParams& p, const PenaltyState& st,
                          uint64_t seed, uint64_t index) {
  std::vector<float> buf;
  std::span<const float> l = processed_logits(logits, p, st, buf);
  SampleResult r;
  if (p.temperature == 0.0f) {
    r.token = argmax(l);
  } else {
    std::vector<Candidate> c = candidates(l, p);
    double total = 0;
    for (const auto& x : c) total += x.weight;
    double u = counter_uniform(seed, index) * total;
    r.token = c.back().token;
    for (const auto& x : c) {
      if (u < x.weight) {
        r.token = x.token;
        break;
      }
      u -= x.weight;
    }
  }
  if (p.logprobs || p.top_logprobs > 0) fill_logprobs(logits, p, r);
  return r;
}

std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingParams& p,
                                          const PenaltyState& st) {
  std::vector<float> buf;
  std::span<const float> l = processed_logits(logits, p, st, buf);
  std::vector<double> probs(l.size(), 0.0);
  if (p.temperature == 0.0f) {
    probs[argmax(l)] = 1.0;
    return probs;
  }
  std::vector<Candidate> c = candidates(l, p);
  double total = 0;
  for (const auto& x : c) total += x.weight;
  for (const auto& x : c) probs[x.token] = x.weight / total;
  return probs;
}

}  // namespace gptoss
