#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "core/hash.h"

namespace gptoss {
namespace {

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

// Largest finite value; 8 independent lanes so the loop vectorises without reassociation.
float max_value(std::span<const float> x) {
  constexpr int kLanes = 8;
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, -std::numeric_limits<float>::infinity());
  const size_t n = x.size(), body = n - n % kLanes;
  for (size_t i = 0; i < body; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] = std::max(lanes[j], x[i + j]);
  float m = *std::max_element(lanes, lanes + kLanes);
  for (size_t i = body; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

int argmax(std::span<const float> x) {
  const float m = max_value(x);
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i] == m) return int(i);  // first = lowest id on ties
  return 0;                          // all NaN
}

// Token ids of the n largest values (value desc, then id), n small (top-k, top logprobs): one pass
// keeping a sorted list of the best n; most values fail the first comparison.
std::vector<int> top_n(std::span<const float> x, int n) {
  n = std::min<int>(n, int(x.size()));
  std::vector<int> best;
  best.reserve(size_t(n) + 1);
  auto before = [&](int a, int b) { return x[a] != x[b] ? x[a] > x[b] : a < b; };
  for (int i = 0; i < int(x.size()); ++i) {
    if (int(best.size()) == n && !(x[i] > x[best.back()])) continue;  // ties keep the lower id
    best.insert(std::upper_bound(best.begin(), best.end(), i, before), i);
    if (int(best.size()) > n) best.pop_back();
  }
  return best;
}

// Nucleus membership without sorting the vocabulary: weights are bucketed by their float bits (order
// preserving for positive floats), buckets are summed from the top until top_p of the mass is
// reached, and only the boundary bucket is sorted. Returns the kept ids in probability order.
std::vector<int> nucleus(const std::vector<float>& w, double total, float top_p) {
  constexpr int kShift = 16;  // 65536 buckets over the positive floats
  std::vector<double> mass(size_t(1) << kShift, 0.0);
  auto bucket = [&](float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return u >> kShift;
  };
  for (float v : w)
    if (v > 0) mass[bucket(v)] += v;
  const double target = double(top_p) * total;
  double acc = 0;
  uint32_t edge = 0;
  for (int64_t b = int64_t(mass.size()) - 1; b >= 0; --b) {
    if (mass[size_t(b)] == 0) continue;
    if (acc + mass[size_t(b)] >= target) {
      edge = uint32_t(b);
      break;
    }
    acc += mass[size_t(b)];
  }
  std::vector<int> above, boundary;
  for (int i = 0; i < int(w.size()); ++i) {
    if (!(w[i] > 0)) continue;
    uint32_t b = bucket(w[i]);
    if (b > edge) above.push_back(i);
    else if (b == edge) boundary.push_back(i);
  }
  auto before = [&](int a, int b) { return w[a] != w[b] ? w[a] > w[b] : a < b; };
  std::sort(above.begin(), above.end(), before);
  std::sort(boundary.begin(), boundary.end(), before);
  for (int id : boundary) {
    above.push_back(id);
    acc += w[id];
    if (acc >= target) break;
  }
  if (above.empty() && !boundary.empty()) above.push_back(boundary.front());
  return above;
}

// The distribution the sampler draws from: token ids in draw order and their unnormalised weights.
struct Candidates {
  std::vector<int> ids;      // empty with all_ids: every token, in id order
  std::vector<float> w;      // weight per entry of ids, or per token id when all_ids
  bool all_ids = false;
  double total = 0;
};

// Temperature, min_p, top_k and top_p. Weights are exp((l - max) / T) in float (1 for the most
// likely token). Order: id order when no filter needs ranking, else probability desc, then id.
Candidates candidates(std::span<const float> l, const SamplingParams& p) {
  const int v = int(l.size());
  const float mx = max_value(l);
  GPTOSS_CHECK(std::isfinite(mx), "logits have no finite maximum");
  const float inv_t = 1.0f / p.temperature;
  const float min_w = p.min_p > 0 ? p.min_p : 0.0f;
  auto weight = [&](int i) {
    float w = std::exp((l[i] - mx) * inv_t);
    return w >= min_w ? w : 0.0f;
  };
  Candidates c;
  if (p.top_k > 0 && p.top_k < v) {
    c.ids = top_n(l, p.top_k);  // temperature is monotonic: top-k by logit
    for (int id : c.ids) c.w.push_back(weight(id));
  } else if (p.top_p < 1.0f) {
    std::vector<float> all(static_cast<size_t>(v));
    double total = 0;
    for (int i = 0; i < v; ++i) total += all[i] = weight(i);
    c.ids = nucleus(all, total, p.top_p);
    for (int id : c.ids) c.w.push_back(all[id]);
  } else {
    c.all_ids = true;
    c.w.resize(size_t(v));
    for (int i = 0; i < v; ++i) c.w[i] = weight(i);
  }
  // top_p over what is left (after top_k, as vLLM): the smallest head whose mass reaches top_p.
  if (p.top_k > 0 && p.top_k < v && p.top_p < 1.0f) {
    double total = 0;
    for (float w : c.w) total += w;
    const double target = double(p.top_p) * total;
    double acc = 0;
    size_t keep = 0;
    while (keep < c.w.size()) {
      acc += c.w[keep++];
      if (acc >= target) break;
    }
    keep = std::max<size_t>(keep, 1);
    c.ids.resize(keep);
    c.w.resize(keep);
  }
  for (float w : c.w) c.total += w;
  return c;
}

int draw(const Candidates& c, double u01) {
  double u = u01 * c.total;
  const size_t n = c.w.size();
  size_t last = 0;
  for (size_t k = 0; k < n; ++k) {
    if (c.w[k] <= 0) continue;
    last = k;
    if (u < c.w[k]) break;
    u -= c.w[k];
  }
  return c.all_ids ? int(last) : c.ids[last];
}

void fill_logprobs(std::span<const float> raw, const SamplingParams& p, SampleResult& r) {
  const float mx = max_value(raw);
  double s = 0;
  for (float x : raw) s += std::exp(x - mx);
  const double lse = double(mx) + std::log(s);
  r.logprob = float(double(raw[r.token]) - lse);
  if (p.top_logprobs > 0) {
    r.top_logprobs.clear();
    for (int id : top_n(raw, p.top_logprobs)) r.top_logprobs.push_back({id, float(double(raw[id]) - lse)});
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
  if (p.temperature == 0.0f)
    r.token = argmax(l);
  else
    r.token = draw(candidates(l, p), counter_uniform(seed, index));
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
  Candidates c = candidates(l, p);
  for (size_t k = 0; k < c.w.size(); ++k) probs[c.all_ids ? k : size_t(c.ids[k])] = c.w[k] / c.total;
  return probs;
}

}  // namespace gptoss
