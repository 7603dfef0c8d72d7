#include "router_core/solve/robust_gamma.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "router_core/solve/lagrangian_solver.h"
#include "router_core/solve/solution.h"

namespace router::core {

GammaResult SolveGammaRobust(const Instance& instance, double gamma,
                             const std::vector<int>& feasible_start, double relative_gap,
                             int max_evaluations, const Deadline& deadline) {
  GammaResult result;
  result.model_of_query = feasible_start;
  result.objective = RobustObjective(instance, feasible_start, gamma);
  double max_dev = 0.0;
  for (size_t k = 0; k < instance.deviation.size(); ++k) {
    if (instance.allowed[k]) max_dev = std::max(max_dev, instance.deviation[k]);
  }
  Instance shifted = instance;
  // Nominal upper bound at each evaluated theta (minus nothing: the -gamma*theta0 term is applied
  // per interval).
  std::map<double, double> nominal_bound;
  auto evaluate = [&](double theta) {
    for (size_t k = 0; k < shifted.value.size(); ++k) {
      shifted.value[k] = instance.value[k] - std::max(0.0, instance.deviation[k] - theta);
    }
    const LagrangianResult r =
        SolveLagrangian(shifted, result.model_of_query, BoundToleranceFor(relative_gap), deadline);
    ++result.evaluations;
    nominal_bound[theta] = r.upper_bound;
    const double robust = RobustObjective(instance, r.model_of_query, gamma);
    if (robust > result.objective) {
      result.objective = robust;
      result.model_of_query = r.model_of_query;
      result.theta = theta;
    }
  };
  if (gamma <= 0 || max_dev <= 0) {
    evaluate(max_dev);
    result.upper_bound = nominal_bound.begin()->second;
    return result;
  }
  // theta = max_dev first: its nominal bound (values unshifted) bounds the robust optimum by
  // itself, so a search cut short by the deadline still has a finite bound. Then 0, which with
  // max_dev makes the intervals below cover [0, max_dev], then the grid in between.
  constexpr int kGrid = 8;
  evaluate(max_dev);
  for (int g = 0; g < kGrid; ++g) {
    if (deadline.Passed()) break;
    evaluate(max_dev * g / kGrid);
  }
  if (nominal_bound.begin()->first > 0.0) {
    result.upper_bound = std::max(nominal_bound.rbegin()->second, result.objective);
    return result;
  }
  // Bound of each interval (t0, t1]: UB(t1) - gamma*t0; the point theta = 0: UB(0).
  auto worst_interval = [&](double* bound) {
    *bound = nominal_bound.begin()->second;
    double left = -1.0;
    for (auto it = std::next(nominal_bound.begin()); it != nominal_bound.end(); ++it) {
      const double b = it->second - gamma * std::prev(it)->first;
      if (b > *bound) {
        *bound = b;
        left = std::prev(it)->first;
      }
    }
    return left;
  };
  double bound = 0.0;
  double left = worst_interval(&bound);
  while (result.evaluations < max_evaluations && left >= 0 && !deadline.Passed() &&
         bound - result.objective > relative_gap * std::max(1e-12, std::abs(bound))) {
    const double right = nominal_bound.upper_bound(left)->first;
    evaluate(0.5 * (left + right));
    left = worst_interval(&bound);
  }
  result.upper_bound = std::max(bound, result.objective);
  return result;
}

}  // namespace router::core
