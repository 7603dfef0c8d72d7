#include "router_core/solve/small_batch_gamma.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "router_core/solve/lagrangian_solver.h"
#include "router_core/solve/solution.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Candidate {
  double theta = 0.0;
  // Best proven bound on N(theta), the nominal optimum at theta.
  double nominal_bound = kInf;
  // The fast solver's prices at theta, where the search starts (once the fast solver ran).
  bool fast_solved = false;
  double budget_price = 0.0;
  std::vector<double> slot_price;
  double robust_bound(double gamma) const { return nominal_bound - gamma * theta; }
};

// {0} and every positive deviation of an allowed cell, each once, ascending.
std::vector<double> CandidateThetas(const Instance& instance) {
  std::vector<double> thetas = {0.0};
  for (size_t k = 0; k < instance.deviation.size(); ++k) {
    if (instance.allowed[k] && instance.deviation[k] > 0.0) thetas.push_back(instance.deviation[k]);
  }
  std::sort(thetas.begin(), thetas.end());
  thetas.erase(std::unique(thetas.begin(), thetas.end()), thetas.end());
  return thetas;
}

// values[k] = value - (deviation - theta)^+: the nominal problem whose optimum is N(theta).
void ShiftValues(const Instance& instance, double theta, std::vector<double>& values) {
  for (size_t k = 0; k < values.size(); ++k) {
    values[k] = instance.value[k] - std::max(0.0, instance.deviation[k] - theta);
  }
}

}  // namespace

SmallBatchGammaResult SolveSmallBatchGamma(const Instance& instance, double gamma,
                                           const std::vector<int>& start,
                                           const SmallBatchOptions& options) {
  SmallBatchGammaResult result;
  result.model_of_query = start;
  result.objective = RobustObjective(instance, start, gamma);
  auto consider = [&](const std::vector<int>& assignment) {
    const double robust = RobustObjective(instance, assignment, gamma);
    if (robust > result.objective) {
      result.objective = robust;
      result.model_of_query = assignment;
    }
  };
  // Bounds on the robust optimum within this of the incumbent need no more work.
  auto allowance = [&] { return options.relative_gap * std::abs(result.objective); };

  // Each theta's first bound is the Lagrangian one at zero prices: every query at its best allowed
  // shifted value, budget and slots dropped.
  Instance shifted = instance;
  const std::vector<double> no_prices(static_cast<size_t>(instance.num_models), 0.0);
  std::vector<Candidate> candidates;
  for (const double theta : CandidateThetas(instance)) {
    ShiftValues(instance, theta, shifted.value);
    Candidate& c = candidates.emplace_back();
    c.theta = theta;
    c.nominal_bound = LagrangianBound(shifted, 0.0, no_prices);
  }

  auto open = [&](const Candidate& c) {
    return c.robust_bound(gamma) - result.objective > allowance();
  };
  auto by_bound = [gamma](const Candidate& a, const Candidate& b) {
    return a.robust_bound(gamma) > b.robust_bound(gamma);
  };
  std::stable_sort(candidates.begin(), candidates.end(), by_bound);
  // The fast solver at one theta: a tighter bound, prices for its search, and maybe a better
  // incumbent.
  const auto solve_fast = [&](Candidate& c) {
    ShiftValues(instance, c.theta, shifted.value);
    LagrangianResult fast =
        SolveLagrangian(shifted, result.model_of_query, BoundToleranceFor(options.relative_gap));
    consider(fast.model_of_query);
    c.nominal_bound = std::min(c.nominal_bound, fast.upper_bound);
    c.budget_price = fast.budget_price;
    c.slot_price = std::move(fast.slot_price);
    c.fast_solved = true;
  };
  // Its prices at the most promising theta bound every other theta without a solve (weak duality),
  // which spares most thetas a fast solve of their own.
  if (!candidates.empty() && open(candidates.front())) {
    const Candidate& first = candidates.front();
    solve_fast(candidates.front());
    for (size_t k = 1; k < candidates.size(); ++k) {
      Candidate& c = candidates[k];
      if (!open(c)) continue;
      ShiftValues(instance, c.theta, shifted.value);
      c.nominal_bound =
          std::min(c.nominal_bound, LagrangianBound(shifted, first.budget_price, first.slot_price));
    }
    std::stable_sort(candidates.begin() + 1, candidates.end(), by_bound);
  }
  bool stopped = false;
  // Then the fast solver at every theta still open: the assignments it finds raise the
  // incumbent, which closes more thetas before any search.
  for (Candidate& c : candidates) {
    if (!open(c) || c.fast_solved) continue;
    if (options.clock->Now() >= options.deadline) {
      stopped = true;
      break;
    }
    solve_fast(c);
  }
  // Then the search at the thetas still open, the largest bound first.
  std::stable_sort(candidates.begin(), candidates.end(), by_bound);
  for (Candidate& c : candidates) {
    if (stopped) break;
    if (!open(c)) continue;
    ShiftValues(instance, c.theta, shifted.value);
    SmallBatchOptions search = options;
    search.relative_gap = 0.0;
    // Only an assignment whose value at this theta exceeds this can beat the incumbent here.
    search.known_value = result.objective + gamma * c.theta + allowance();
    search.max_nodes = options.max_nodes - result.nodes;
    const SmallBatchResult r =
        SolveSmallBatch(shifted, {result.model_of_query, c.budget_price, c.slot_price}, search);
    result.nodes += r.nodes;
    consider(r.model_of_query);
    if (!r.finished) {
      stopped = true;
      break;
    }
    c.nominal_bound = std::min(c.nominal_bound, r.upper_bound);
  }

  double bound = result.objective;
  for (const Candidate& c : candidates) bound = std::max(bound, c.robust_bound(gamma));
  result.upper_bound = bound;
  result.finished = !stopped;
  return result;
}

}  // namespace router::core
