// Internal to the MoE kernels: routing of (token, slot) assignments grouped by expert, and the
// split of per-expert work over threads by estimated cost.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace gptoss::cpu::moe {

// Assignments a = t*k + j sorted by expert (stable: token order within an expert).
struct Routing {
  std::vector<int32_t> start;   // [E + 1]: expert e owns sorted[start[e] .. start[e+1])
  std::vector<int32_t> sorted;  // [n*k] assignment ids
  std::vector<int32_t> tokens;  // [n*k] token of sorted[i]
  std::vector<int32_t> active;  // experts with at least one token

  void build(const int32_t* idx, int64_t n, int k, int experts) {
    start.assign(size_t(experts) + 1, 0);
    for (int64_t a = 0; a < n * k; ++a) {
      const int32_t e = idx[a];
      GPTOSS_CHECK(e >= 0 && e < experts, "expert index {} (token {}) out of range 0..{}", e, a / k, experts - 1);
      ++start[size_t(e) + 1];
    }
    for (int e = 0; e < experts; ++e) start[size_t(e) + 1] += start[size_t(e)];
    sorted.resize(size_t(n * k));
    tokens.resize(size_t(n * k));
    std::vector<int32_t>& fill = scratch_fill;
    fill.assign(start.begin(), start.end() - 1);
    for (int64_t a = 0; a < n * k; ++a) {
      const int32_t p = fill[size_t(idx[a])]++;
      sorted[size_t(p)] = int32_t(a);
      tokens[size_t(p)] = int32_t(a / k);
    }
    active.clear();
    for (int e = 0; e < experts; ++e)
      if (start[size_t(e) + 1] > start[size_t(e)]) active.push_back(e);
  }
  int32_t count(int e) const { return start[size_t(e) + 1] - start[size_t(e)]; }

 private:
  std::vector<int32_t> scratch_fill;
};

// Work units (expert, row unit) for `units_per_expert` row units per active expert, the cost of a unit of
// an expert with T tokens unit_cost(T) (by default T + 2: proportional to the tokens plus a constant for
// streaming its weights). Thread `th` of `threads` gets the units whose cumulative cost falls in its
// share; fn(e, unit_begin, unit_end) is called per expert segment.
inline double tokens_plus_two(int32_t tokens) { return double(tokens) + 2.0; }

template <typename Fn, typename Cost = double (*)(int32_t)>
void split_expert_units(const Routing& rt, int64_t units_per_expert, int th, int threads, Fn&& fn,
                        Cost&& unit_cost = tokens_plus_two) {
  auto cost = [&](int e) { return double(unit_cost(rt.count(e))); };
  double total = 0;
  for (int e : rt.active) total += cost(e) * double(units_per_expert);
  const double lo = total * th / threads, hi = total * (th + 1) / threads;
  double acc = 0;
  for (int e : rt.active) {
    const double c = cost(e);
    const double seg_end = acc + c * double(units_per_expert);
    if (seg_end > lo && acc < hi) {
      // Unit u of this expert covers [acc + u*c, acc + (u+1)*c); it belongs to the thread whose share
      // contains the unit's midpoint.
      auto first_unit = [&](double bound) {
        double u = std::ceil((bound - acc) / c - 0.5);
        return std::clamp<int64_t>(int64_t(u), 0, units_per_expert);
      };
      const int64_t u0 = th == 0 ? 0 : first_unit(lo);
      const int64_t u1 = th == threads - 1 ? units_per_expert : first_unit(hi);
      if (u0 < u1) fn(e, u0, u1);
    }
    acc = seg_end;
  }
}

}  // namespace gptoss::cpu::moe
