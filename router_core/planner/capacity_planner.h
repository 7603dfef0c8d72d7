// File: capacity_planner.h
//
// The capacity planner: chooses the integer instances I_j of every self-hosted model and the
// assignment of every sampled batch that maximize the plan objective of plan_problem.h under the GPU
// budget, the operator bounds and pins, and every batch's slot and cost limits.
//
// Method (all under PlanProblem::time_limit, wall clock):
//   1. LP relaxation of the joint model (Clp). Its certified dual bound (see below) is the global
//      upper bound U_LP; its fractional instances seed the search. An infeasible LP proves that no
//      plan exists.
//   2. Local search over instance vectors. Each vector I is evaluated by routing every sampled batch
//      with the fast solver (admission.h + lagrangian_solver.h) under slots l_j I_j; vectors that
//      leave queries unserved rank below every vector that serves all (fewer unserved first, then
//      higher objective). Starts: the LP solution rounded down, the uniform and the proportional
//      allocations (allocation.h); moves: one more instance of a model k, freeing GPUs if needed by
//      removing instances of one other model j, then filling the freed GPUs with more of k. Best
//      improvement, until no move improves, time runs out or max_evaluations vectors were tried.
//   3. Exact branch and cut (CBC, one CbcModel per call) on the joint model, started from the local
//      search's plan, with the time that remains: when the model has at most max_exact_columns
//      assignment columns and at least min_exact_time remains.
// The answer is the better plan, with upper_bound = max(objective, min(U_LP, CBC's bound)), status
// OPTIMAL when (upper_bound - objective) / |upper_bound| <= relative_gap and FEASIBLE otherwise.
//
// Certified LP bound: for any row prices y (y_r >= 0 on <= rows, free on = rows),
//     U(y) = sum_r y_r rhs_r + sum_c max(lb_c * d_c, ub_c * d_c),   d_c = obj_c - sum_r A_rc y_r,
// bounds every plan (weak duality). It is evaluated from the data at Clp's duals, so the bound holds
// whatever Clp's tolerances; without an LP solution the planner falls back to
// sum_b sum_i max_j quality_bij over the models a query may use.
//
// Guarantees of every returned plan (re-checked before it leaves; INTERNAL if broken):
//     sum_j g_j I_j <= G,   lo_j <= I_j <= hi_j (ComputeInstanceBounds),
//     every batch b: every query served by an allowed, usable model,
//                    #{i in b : x_i = j} <= l_j I_j,   sum cost <= avg_cost_cap |b| (+kBudgetTolerance),
//     objective = sum of the predicted quality of the assignments (recomputed from the data),
//     objective <= optimum <= upper_bound.
//
// Thread-safety: Plan() is const and may be called concurrently; each call owns its Clp and CBC
// models (created and destroyed on the calling thread, no CBC-internal threads). It blocks for up to
// about time_limit; CBC cannot be interrupted inside its root LP and cut pass, which on large
// models may overshoot the limit (max_exact_columns bounds that).
//
// Errors (Plan):
//   INVALID_ARGUMENT  the problem fails ValidatePlanProblem (names the field), or is infeasible:
//                     minimums and pins need more GPUs than G (CheckMinimumsFit, names the models);
//                     a batch cannot be served even with every model at hi_j (names the batch and
//                     query); or the LP relaxation or CBC proves that no plan exists.
//   DEADLINE_EXCEEDED no plan serving every sampled query was found within the time limit (none is
//                     proven impossible either).
//   INTERNAL          a plan failed its final check (a bug; never returned as an answer), or CBC
//                     ended in a state it should not reach.

#ifndef ROUTER_CORE_PLANNER_CAPACITY_PLANNER_H_
#define ROUTER_CORE_PLANNER_CAPACITY_PLANNER_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router_core/planner/plan_problem.h"
#include "router_core/solve/solution.h"

namespace router::core {

struct PlannerOptions {
  // Run CBC on the joint model after the local search (step 3). Turning it off leaves the local
  // search with the LP bound, for histories too large for branch and cut.
  bool use_exact = true;
  // Step 3 is skipped when the joint model has more assignment columns (sum over batches of the
  // allowed, usable query-model pairs) than this: CBC's root pass cannot be stopped, and at this
  // size it already takes seconds on one core. > 0.
  int64_t max_exact_columns = 200000;
  // Step 3 is skipped when less than this remains of the time limit. >= 0.
  absl::Duration min_exact_time = absl::Milliseconds(10);
  // Local search stops after evaluating this many distinct instance vectors (each is one fast solve
  // per sampled batch). > 0.
  int64_t max_evaluations = 20000;
};

struct CapacityPlan {
  // Per model (PlanProblem::models order): I_j; 0 for API models.
  std::vector<int64_t> instances;
  int64_t gpus_used = 0;
  // Per sampled batch, per query: the model index serving it.
  std::vector<std::vector<int>> model_of_query;
  // Sum of the predicted quality of model_of_query.
  double objective = 0.0;
  // Proven upper bound on the objective of every plan (>= objective).
  double upper_bound = std::numeric_limits<double>::infinity();
  // kOptimal or kFeasible (never kHeuristic).
  SolveStatus status = SolveStatus::kFeasible;
  // "local_search" or "cbc": which step produced the plan.
  std::string method;
  // The LP relaxation's certified bound (step 1); +infinity if the LP was not solved.
  double lp_bound = std::numeric_limits<double>::infinity();
  // Distinct instance vectors the local search evaluated.
  int64_t evaluations = 0;
  // CBC branch-and-bound nodes (0 when CBC did not run).
  int64_t nodes = 0;
  absl::Duration solve_time;
};

class CapacityPlanner {
 public:
  // INVALID_ARGUMENT naming the option when one is out of range.
  static absl::StatusOr<CapacityPlanner> Create(const PlannerOptions& options = {});

  // See the file comment for the method, the guarantees and the errors.
  absl::StatusOr<CapacityPlan> Plan(const PlanProblem& problem) const;

  const PlannerOptions& options() const { return options_; }

 private:
  explicit CapacityPlanner(const PlannerOptions& options) : options_(options) {}

  PlannerOptions options_;
};

}  // namespace router::core

#endif  // ROUTER_CORE_PLANNER_CAPACITY_PLANNER_H_
