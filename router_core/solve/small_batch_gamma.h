// File: small_batch_gamma.h
//
// An exact search for small batches of the budgeted-uncertainty (Bertsimas-Sim) robust batch ILP
// (robust_gamma.h states it). Like small_batch_solver.h for the nominal problem, it exists for
// latency: on a batch of a few queries the fast solver's theta grid often certifies less than the
// requested gap, and CBC then runs to its time limit on some batches. Figures in bench/README.md,
// "Solver benchmark".
//
// Bertsimas and Sim (2003) show that the robust optimum is
//     max over theta in {0} u {d_ij}  of  -gamma * theta + N(theta),
// where d_ij = value_ij - lower_ij ranges over the allowed cells and N(theta) is the nominal
// optimum with values value_ij - (d_ij - theta)^+: for a fixed assignment the robust value is a
// concave piecewise-linear function of theta with its breakpoints at that assignment's
// deviations. So each candidate theta is one nominal problem. Each gets a bound without solving
// (every query at its best allowed shifted value: budget and slots ignored). The theta with the
// largest bound gets the fast solver, whose prices then bound every other theta without a solve
// (LagrangianBound, lagrangian_solver.h: valid for any prices, weak duality). The thetas whose
// bound still beats the incumbent by more than the gap, best bound first, get the fast solver (a
// tighter bound, prices and an assignment); then those still open get the small-batch search
// (small_batch_solver.h), told to prune everything that cannot beat the robust incumbent at that
// theta (known_value = incumbent + gamma * theta + the gap's allowance). Each assignment found is
// scored by its robust value (RobustObjective), so the incumbent only improves.
//
// Result: the upper bound is the largest over all candidate thetas of (the best proven bound on
// N(theta)) - gamma * theta, always valid. When every open theta was searched to the end
// (finished), the bound is within relative_gap of the returned robust value. When max_nodes or
// the deadline stop it first, finished is false and the bound stays valid but looser.
//
// Cost: O(T * Q * M) for the T <= Q * M + 1 candidate thetas' two bounds (Q queries, M models),
// plus one fast solve per theta left open and one search of at most the remaining max_nodes for
// those the fast solver does not close; the nodes of all searches together are at most max_nodes.
//
// Thread-safety: a pure function.

#ifndef ROUTER_CORE_SOLVE_SMALL_BATCH_GAMMA_H_
#define ROUTER_CORE_SOLVE_SMALL_BATCH_GAMMA_H_

#include <cstdint>
#include <vector>

#include "router_core/solve/instance.h"
#include "router_core/solve/small_batch_solver.h"

namespace router::core {

struct SmallBatchGammaResult {
  std::vector<int> model_of_query;  // the start's assignment unless a better one was found
  double objective = 0.0;           // RobustObjective of model_of_query
  // True when every candidate theta was closed: upper_bound is then within relative_gap.
  bool finished = false;
  double upper_bound = 0.0;  // a proven bound on the robust optimum in every case
  int64_t nodes = 0;
};

// `instance` must have every query servable and `start` must be feasible (CheckFeasible); gamma
// >= 0. options.known_value is ignored (set per theta).
SmallBatchGammaResult SolveSmallBatchGamma(const Instance& instance, double gamma,
                                           const std::vector<int>& start,
                                           const SmallBatchOptions& options = {});

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_SMALL_BATCH_GAMMA_H_
