// File: small_batch_solver.h
//
// An exact branch and bound for small batches of the nominal batch ILP (lagrangian_solver.h states
// it; no budgeted-uncertainty term). It exists for latency: on a batch of a few queries the
// Lagrangian solver's bound is often more than the requested relative gap above the optimum (0.5%
// of a small objective is less than one query's step between two models), and CBC is slow to
// close it; this search closes it in a fraction of CBC's time (bench/README.md, "Solver
// benchmark").
//
// Search: depth first over the queries, group by group (GroupIdenticalQueries, so that the queries
// of a group take models in non-decreasing rank: each distinct split of a group is visited once),
// each query's models tried in decreasing reduced value (value - lambda * cost - mu_j at the
// root's prices). A node is pruned when the remaining budget cannot pay the cheapest completion,
// a remaining query has no model with a free slot, or its bound is within `relative_gap` of the
// incumbent,  bound - incumbent <= relative_gap * |bound|,  or at most `known_value`. The bound is
// the smaller of two Lagrangian bounds of the remaining subproblem, each valid for any prices >= 0
// (weak duality):
//     lambda * budget_left + sum_j mu_j * slots_left_j
//       + sum_{remaining i} max_{j allowed, slots_left_j > 0} (value_ij - lambda * cost_ij - mu_j)
// at the root's (lambda, mu), which equal the LP bound at the root, and at (0, 0).
//
// Result: when the search finishes, every pruned bound is at most the reported upper_bound, so the
// returned assignment is within relative_gap of the optimum (the optimum itself at relative_gap
// 0). When it stops early (max_nodes or the deadline), the best assignment found is returned with
// finished = false and no bound of its own.
//
// Cost: O(G * M) per node for G groups and M models; nodes are at most max_nodes, and the clock is
// read every 256 nodes.
//
// Thread-safety: a pure function.

#ifndef ROUTER_CORE_SOLVE_SMALL_BATCH_SOLVER_H_
#define ROUTER_CORE_SOLVE_SMALL_BATCH_SOLVER_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/time/time.h"
#include "router_core/clock.h"
#include "router_core/solve/instance.h"

namespace router::core {

struct SmallBatchOptions {
  // Nodes are pruned within this relative gap of the incumbent; >= 0.
  double relative_gap = 0.0;
  // A value the caller can already reach some other way: nodes whose bound is at most this are
  // pruned too, since nothing below them would be used (small_batch_gamma.h searches each theta
  // only for what beats its robust incumbent). The upper bound stays proven; the returned
  // assignment is within relative_gap of the optimum only if the optimum is above this.
  double known_value = -std::numeric_limits<double>::infinity();
  // The search gives up after this many nodes (see Cost).
  int64_t max_nodes = 20000;
  // ... or at this time of `clock` (not owned; must outlive the call).
  absl::Time deadline = absl::InfiniteFuture();
  const Clock* clock = &Clock::Real();
};

// A feasible assignment that serves every query, and the prices of a Lagrangian bound (the fast
// solver's), where the search starts.
struct SmallBatchStart {
  std::vector<int> model_of_query;
  double budget_price = 0.0;       // lambda >= 0
  // mu_j >= 0 per model (used on slot-limited models only); empty = all 0.
  std::vector<double> slot_price;
};

struct SmallBatchResult {
  std::vector<int> model_of_query;  // the start's assignment unless a better one was found
  double objective = 0.0;           // AssignmentValue of model_of_query
  // True when the search ran to completion: upper_bound is then a proven bound on the optimum.
  bool finished = false;
  double upper_bound = 0.0;
  int64_t nodes = 0;
};

// `instance` must have every query servable and `start` must be feasible (CheckFeasible).
SmallBatchResult SolveSmallBatch(const Instance& instance, const SmallBatchStart& start,
                                 const SmallBatchOptions& options = {});

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_SMALL_BATCH_SOLVER_H_
