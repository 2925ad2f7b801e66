// Central finite differences for the gradient tests, in double.
#pragma once

#include <cstddef>
#include <vector>

namespace gptoss::train::testing {

// d loss / d v[i] by a central difference of step h: v[i] is moved to v[i] + h and v[i] - h in place
// (loss() reads v) and put back.
template <class F>
double central_difference(std::vector<double>& v, size_t i, double h, F&& loss) {
  const double v0 = v[i];
  v[i] = v0 + h;
  const double lp = loss();
  v[i] = v0 - h;
  const double lm = loss();
  v[i] = v0;
  return (lp - lm) / (2 * h);
}

// central_difference for every element of v.
template <class F>
std::vector<double> central_gradient(std::vector<double>& v, double h, F&& loss) {
  std::vector<double> grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) grad[i] = central_difference(v, i, h, loss);
  return grad;
}

}  // namespace gptoss::train::testing
