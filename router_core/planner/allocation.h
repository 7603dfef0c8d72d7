// File: allocation.h
//
// Non-optimized instance allocations (the baselines a capacity plan is compared against) and the
// one evaluation every allocation goes through, so that comparisons are fair: each sampled batch is
// routed by SolveBatch (solve_batch.h, policy `batch`), exactly as the service would route it with
// those instances, and the predicted quality of the answers is summed.
//
// Both baselines are water-filling on GPU shares. Start from the lower bounds lo_j
// (ComputeInstanceBounds), then repeatedly give one more instance to the eligible model (self-hosted,
// below hi_j, fitting in the GPUs left) with the smallest
//     g_j * (I_j + 1) / w_j
// (ties to the lower index) until no instance fits. So model j ends up with about a w_j / sum w share
// of G, and leftover GPUs go to models that can still use them:
//   * uniform:      w_j = 1 (equal GPU shares);
//   * proportional: w_j = mean predicted quality of j over every sampled query (models with w_j = 0
//                   get only their lower bound).
//
// Thread-safety: pure functions; EvaluateAllocation runs CBC (one model per solve, see
// cbc_solver.h), so concurrent calls are safe.
//
// Errors: INVALID_ARGUMENT when the problem fails ValidatePlanProblem or its lower bounds need more
// GPUs than the budget (CheckMinimumsFit); EvaluateAllocation also when `instances` has the wrong
// length or breaks the budget or the bounds.

#ifndef ROUTER_CORE_PLANNER_ALLOCATION_H_
#define ROUTER_CORE_PLANNER_ALLOCATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router_core/planner/plan_problem.h"

namespace router::core {

// OK when sum_j g_j lo_j <= G, else INVALID_ARGUMENT naming the models whose minimums (or pins)
// do not fit, e.g. `models[1] (big): min_instances 2 x 8 GPUs = 16 GPUs exceed gpu_budget 8`.
// Assumes ValidatePlanProblem passed.
absl::Status CheckMinimumsFit(const PlanProblem& problem);

absl::StatusOr<std::vector<int64_t>> UniformAllocation(const PlanProblem& problem);
absl::StatusOr<std::vector<int64_t>> ProportionalAllocation(const PlanProblem& problem);

// The water-filling above with explicit weights (one per model, >= 0; API entries ignored).
// Assumes ValidatePlanProblem and CheckMinimumsFit passed.
std::vector<int64_t> ShareAllocation(const PlanProblem& problem, const std::vector<double>& weight);

struct EvaluationOptions {
  // How each batch's SolveBatch call solves: the service's defaults (solve_options.h).
  SolveOptions solve;
};

struct AllocationEvaluation {
  // Sum over batches of the predicted quality of the served queries.
  double objective = 0.0;
  int64_t num_queries = 0;
  // Queries SolveBatch left unserved (no slot, or the cost cap cannot pay for them); they add 0.
  int64_t unserved = 0;
  // Summed predicted cost of the answers, USD.
  double total_cost = 0.0;
  // objective / num_queries.
  double mean_quality = 0.0;
};

absl::StatusOr<AllocationEvaluation> EvaluateAllocation(const PlanProblem& problem,
                                                        const std::vector<int64_t>& instances,
                                                        const EvaluationOptions& options = {});

}  // namespace router::core

#endif  // ROUTER_CORE_PLANNER_ALLOCATION_H_
