// File: cbc_solver.h
//
// The exact batch solver: builds the batch ILP of an Instance and solves it with COIN-OR CBC
// (branch and cut through CbcModel::branchAndBound, never the stand-alone CbcMain driver):
//
//     maximize    sum_ij value_ij x_ij
//     subject to  sum_j x_ij = 1                  for every query i (only allowed cells exist)
//                 sum_ij cost_ij x_ij <= budget    if the instance has a budget
//                 sum_i x_ij <= slots_j            for every slot-limited model j
//                 x_ij in {0, 1}
//
// Queries with the same allowed models, values and costs (bit for bit) are solved as one group:
// one general-integer column per group and model, y_gj in [0, n_g], counts how many of the group's
// n_g queries go to model j, and the group's row is sum_j y_gj = n_g. The optimum is the same (the
// group's queries are interchangeable), but the model has none of the symmetry of N identical
// rows: with UniRoute every query of a cluster gets the same predictions, and on such batches a
// per-query model makes CBC branch among equivalent assignments until its time limit
// (bench/README.md, "Load benchmark"). With gamma > 0 every query is its own group.
//
// With CbcOptions::gamma > 0 the objective is the Bertsimas-Sim robust one: the value of the
// assignment minus its `gamma` largest per-query deviations (Instance::deviation), the fractional
// part of gamma weighing the next one. It is linear after dualizing the inner minimization:
//
//     - gamma * theta - sum_i p_i,    p_i + theta >= sum_j deviation_ij x_ij,    theta, p_i >= 0.
//
// Every query must be served: the caller guarantees that a serving assignment exists (for
// example with the admission step), otherwise the answer is kInfeasible or kNoSolution.
//
// The returned assignment has passed CheckFeasible() (solution.h), and its objective is recomputed
// from the instance data, so CBC's tolerances never leak into what callers see. If CBC's answer
// breaks the budget by more than kBudgetTolerance it is discarded (the given incumbent, if any, is
// returned instead).
//
// Thread-safety: SolveWithCbc() is safe to call concurrently: each call creates, owns and destroys
// its own OsiClpSolverInterface and CbcModel on the calling thread and uses no CBC-internal
// threads (CbcMain and CBC's C API are not re-entrant; cbc_solver_test keeps a regression of
// concurrent solves). The call blocks for up to about CbcOptions::time_limit (wall clock) plus
// model building and the incumbent check.
//
// Cost: branch and cut, exponential in the worst case, so bounded by time_limit; the robust model
// is much harder than the nominal one, so pass the fast solver's answer as the incumbent. Figures
// in bench/README.md, "Solver benchmark".
//
// Errors: INVALID_ARGUMENT for bad options or an infeasible incumbent; INTERNAL if CBC ends in a
// state it should not reach on this model (abandoned, unbounded). Running out of time is not an
// error: it is reported as kFeasible or kNoSolution.

#ifndef ROUTER_CORE_SOLVE_CBC_SOLVER_H_
#define ROUTER_CORE_SOLVE_CBC_SOLVER_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "router_core/solve/instance.h"

namespace router::core {

enum class CbcOutcome {
  kOptimal,     // proven optimal within CbcOptions::relative_gap
  kFeasible,    // a limit was hit, or CBC's answer failed CheckFeasible and the incumbent stands
  kNoSolution,  // no feasible assignment known: a limit was hit first, or CBC's only answer
                // failed CheckFeasible and there was no incumbent
  kInfeasible,  // proven: no assignment serves every query within the budget and slots
};
const char* CbcOutcomeName(CbcOutcome outcome);

struct CbcOptions {
  // Wall-clock limit of branch and bound (CBC's default clock is CPU time summed over threads,
  // which stops early under load; we always use elapsed time). Must be > 0.
  absl::Duration time_limit = absl::Milliseconds(50);
  // Stop once (bound - objective) / |bound| <= relative_gap. In [0, 1).
  double relative_gap = 1e-4;
  // > 0: maximize the budgeted-uncertainty robust objective (see the file comment). >= 0.
  double gamma = 0.0;
  // Optional feasible start, one model index per query (every query served). Not owned; must
  // outlive the call. The answer is never worse than it.
  const std::vector<int>* incumbent = nullptr;
  // When notified, CBC stops at its next event, as on its time limit (not owned; must outlive
  // the call). nullptr: only the time limit stops it.
  const absl::Notification* stop = nullptr;
};

struct CbcResult {
  CbcOutcome outcome = CbcOutcome::kNoSolution;
  // Per query, the model index; empty when there is no solution.
  std::vector<int> model_of_query;
  // Objective of model_of_query (RobustObjective with the options' gamma), recomputed from the
  // instance data.
  double objective = 0.0;
  // CBC's upper bound on the objective of any feasible assignment (getBestPossibleObjValue),
  // in the same sense as `objective` and never below it: the best bound left in the search tree
  // when CBC stopped on the gap or a limit. +infinity when CBC has none, -infinity when
  // infeasible. It is computed within CBC's tolerances (about 1e-7), so it may exceed the exact
  // optimum by that much, never fall short of it by more.
  double best_bound = std::numeric_limits<double>::infinity();
  // Branch-and-bound nodes CBC explored.
  int64_t nodes = 0;
  // Wall time of the whole call, model building included.
  absl::Duration elapsed;
};

// Solves the batch ILP of `instance` (see the file comment). An instance with no queries is
// answered kOptimal with an empty assignment, without calling CBC.
absl::StatusOr<CbcResult> SolveWithCbc(const Instance& instance, const CbcOptions& options);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_CBC_SOLVER_H_
