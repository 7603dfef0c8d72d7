// File: lagrangian_solver.h
//
// The structure-aware fast solver for the batch ILP
//
//     maximize    sum_ij value_ij x_ij
//     subject to  sum_j x_ij = 1                 every query i (allowed models only)
//                 sum_ij cost_ij x_ij <= B        budget row
//                 sum_i x_ij <= slots_j           every limited model j
//
// It prices the budget row with a multiplier lambda >= 0. For fixed lambda the rest is a
// transportation problem (transport.h), solved exactly, so
//     h(lambda) = lambda * B + max { sum (value - lambda * cost) x : assignment + slot rows }
// is a convex, piecewise-linear upper bound whose minimum equals the LP relaxation. lambda is found
// by a one-dimensional cutting-plane search (intersection of the two supporting lines, bisection as
// a safeguard), which ends when the bound and the lines' minimum agree to `bound_tolerance`
// (relative). Each halving of the tolerance costs about one transportation solve, so callers pass
// a small fraction of the gap they need rather than a fixed tiny number.
//
// Primal: the transportation optimum at the smallest lambda found whose assignment fits the budget
// is feasible; the LP optimum mixes it with the one just below (at most #limited + 1 queries are
// fractional in a vertex), so a greedy pass then spends the leftover budget on the best
// value-per-cost upgrades that fit the free slots.
//
// Certified bound: upper_bound = lambda*B + sum_j mu_j*slots_j + sum_i max_j (value_ij - lambda*cost_ij
// - mu_j), evaluated from the data at the best (lambda, mu) found; it is a valid bound for any
// lambda, mu >= 0 (weak duality), so the reported gap is proven whatever the rounding.
//
// Cost: O(I * T) with I <= 60 search steps (typically 10-20) and T the transportation cost
// (transport.h), plus O(N*M log(N*M)) for the greedy pass.
//
// Stopping: once `deadline` has passed, the transportation solve in progress is dropped (it checks
// the deadline between units of excess), and the search returns what it has after one greedy pass:
// still feasible, with the bound of the prices found (lambda = 0, mu = 0 if not even the first
// solve finished). What follows the deadline is that pass, O(N*M log(N*M)), and the bound, O(N*M).
//
// Thread-safety: a pure function.

#ifndef ROUTER_CORE_SOLVE_LAGRANGIAN_SOLVER_H_
#define ROUTER_CORE_SOLVE_LAGRANGIAN_SOLVER_H_

#include <vector>

#include "router_core/solve/deadline.h"

#include "router_core/solve/instance.h"

namespace router::core {

struct LagrangianResult {
  std::vector<int> model_of_query;
  double objective = 0.0;    // sum of values of model_of_query
  double upper_bound = 0.0;  // proven bound on the ILP (and LP) optimum
  double budget_price = 0.0;             // lambda at the bound
  std::vector<double> slot_price;        // mu at the bound
  int iterations = 0;                    // transportation solves
};

// The default tolerance: far below any gap an operator asks for.
inline constexpr double kDefaultBoundTolerance = 1e-6;

// `feasible_start` must be a feasible assignment serving every query of `instance` (the admission
// fallback); it is returned if nothing better is found. Every query of `instance` must be servable.
// `bound_tolerance` > 0.
LagrangianResult SolveLagrangian(const Instance& instance, const std::vector<int>& feasible_start,
                                 double bound_tolerance = kDefaultBoundTolerance,
                                 const Deadline& deadline = Deadline());

// The tolerance for a caller who needs a relative gap of `relative_gap`: a fiftieth of it (the rest
// of the gap is left to the rounding of the primal), clamped to [1e-9, 1e-4].
double BoundToleranceFor(double relative_gap);

// lambda*B + sum_j mu_j*slots_j + sum_i max_j (value_ij - lambda*cost_ij - mu_j): the Lagrangian
// dual bound at (lambda, mu); lambda is ignored without a budget.
double LagrangianBound(const Instance& instance, double budget_price,
                       const std::vector<double>& slot_price);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_LAGRANGIAN_SOLVER_H_
