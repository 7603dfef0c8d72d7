#include "tests/router_core/testing/brute_force.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "router_core/solve/solution.h"

namespace router::core::testing {

double GammaObjective(const Instance& instance, const std::vector<int>& model_of_query,
                      double gamma) {
  double value = 0.0;
  std::vector<double> deviations;
  for (int i = 0; i < instance.num_queries; ++i) {
    const int j = model_of_query[i];
    if (j == kUnserved) continue;
    value += instance.value[instance.index(i, j)];
    deviations.push_back(instance.deviation[instance.index(i, j)]);
  }
  std::sort(deviations.rbegin(), deviations.rend());
  double remaining = gamma;
  for (double d : deviations) {
    if (remaining <= 0) break;
    value -= d * std::min(1.0, remaining);
    remaining -= 1.0;
  }
  return value;
}

std::optional<BruteForceResult> BruteForce(const Instance& instance, double gamma) {
  std::optional<BruteForceResult> best;
  std::vector<int> x(instance.num_queries, 0);
  std::function<void(int)> recurse = [&](int i) {
    if (i == instance.num_queries) {
      if (!CheckFeasible(instance, x).ok()) return;
      const double obj = GammaObjective(instance, x, gamma);
      if (!best.has_value() || obj > best->objective) best = BruteForceResult{x, obj};
      return;
    }
    for (int j = 0; j < instance.num_models; ++j) {
      if (!instance.is_allowed(i, j)) continue;
      x[i] = j;
      recurse(i + 1);
    }
  };
  recurse(0);
  return best;
}

}  // namespace router::core::testing
