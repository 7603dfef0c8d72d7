// File: robust_gamma.h
//
// Fast solver for the budgeted-uncertainty (Bertsimas-Sim) robust batch ILP: at most `gamma` queries
// sit at their lower bound at once, so the robust value of an assignment x is
//     R(x) = sum_i value_i(x) - (sum of the gamma largest deviations d_i(x) = value - lower),
// the fractional part of gamma weighing the next deviation. Dualizing the inner minimum gives
//     max_x R(x) = max_{theta >= 0} [ -gamma*theta + max_x sum_i (value_ix - (d_ix - theta)^+) ],
// so each theta is a nominal batch problem with values value - (d - theta)^+ (lagrangian_solver.h).
//
// Certified bound: for theta in [t0, t1], value - (d - theta)^+ <= value - (d - t1)^+, so
//     max over [t0, t1]  <=  UB_nominal(t1) - gamma * t0,
// and theta beyond max d never helps. A grid over [0, max d] (9 points), refined by bisecting the
// interval with the largest bound until the bound is within the requested gap of the best robust
// value or `max_evaluations` nominal solves are spent, gives a proven upper bound on the robust
// optimum. The primal is the best R(x) among the nominal solutions found.
//
// Cost: at most max_evaluations fast nominal solves.
//
// Stopping: once `deadline` has passed, the search ends after the current nominal solve (itself
// cut short) with the best assignment found and the bound of the thetas evaluated (theta = max d,
// evaluated first, bounds the robust optimum by itself).
//
// Thread-safety: a pure function.

#ifndef ROUTER_CORE_SOLVE_ROBUST_GAMMA_H_
#define ROUTER_CORE_SOLVE_ROBUST_GAMMA_H_

#include <vector>

#include "router_core/solve/deadline.h"

#include "router_core/solve/instance.h"

namespace router::core {

struct GammaResult {
  std::vector<int> model_of_query;
  double objective = 0.0;    // robust value R(model_of_query)
  double upper_bound = 0.0;  // proven bound on the robust optimum
  double theta = 0.0;        // the theta whose nominal solution won
  int evaluations = 0;
};

inline constexpr int kDefaultGammaEvaluations = 40;

// Same contract as SolveLagrangian: `feasible_start` feasible and serving every query.
GammaResult SolveGammaRobust(const Instance& instance, double gamma,
                             const std::vector<int>& feasible_start, double relative_gap,
                             int max_evaluations = kDefaultGammaEvaluations, const Deadline& deadline = Deadline());

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_ROBUST_GAMMA_H_
