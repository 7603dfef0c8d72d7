// File: solve_batch.h
//
// The one entry point that answers a batch: validates the problem, admits the queries that can be
// served (admission.h), runs the requested policy, and returns an assignment that is feasible by
// construction and re-checked (CheckFeasible) before it leaves.
//
// Exact policies (batch, batch_robust, batch_gamma) are orchestrated under the batch's time limit:
//   1. the structure-aware fast solver (lagrangian_solver.h; robust_gamma.h for batch_gamma) always
//      runs to completion and yields a feasible assignment with a proven upper bound;
//   2. on a batch of at most `small_batch_max_queries` queries whose gap exceeds `relative_gap`,
//      the small-batch branch and bound (small_batch_solver.h; for batch_gamma, that search per
//      candidate theta, small_batch_gamma.h) starts from that assignment (and its prices),
//      within small_batch_max_nodes (small_batch_gamma_max_nodes) and the time limit;
//   3. if the gap still exceeds `relative_gap` and at least `min_cbc_time` of the time limit
//      remains, CBC (cbc_solver.h) starts from the best assignment so far and is stopped by the
//      remaining wall time;
//   4. the best assignment is returned with the tightest of the bounds.
// So the answer time is at most  t_fast + max(0, time_limit - t_fast)  plus CBC's stopping latency,
// and the gap is always reported. Heuristic policies (per_query, threshold, ndch, ndch_p) return
// status HEURISTIC without a bound.
//
// When no assignment serves every query (the budget cannot pay the cheapest completion, or slots
// run out), the unserved queries and their reasons are listed in the Solution (see admission.h for
// the rule); the batch is never silently over budget or over a slot limit.
//
// Thread-safety: SolveBatch may be called concurrently from several threads; each call owns its
// solver state (CBC models included).
//
// Errors: INVALID_ARGUMENT from ValidateBatchProblem (names the field); INTERNAL if an answer fails
// its feasibility check (a bug; never returned as an answer).

#ifndef ROUTER_CORE_SOLVE_SOLVE_BATCH_H_
#define ROUTER_CORE_SOLVE_SOLVE_BATCH_H_

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router_core/clock.h"
#include "router_core/solve/problem.h"
#include "router_core/solve/solution.h"

namespace router::core {

struct BatchRouterOptions {
  // CBC is skipped when less than this remains of the time limit after the fast solver.
  absl::Duration min_cbc_time = absl::Milliseconds(2);
  // Run CBC at all (benchmarks turn it off to measure the fast path alone).
  bool use_cbc = true;
  // Batches of up to this many served queries go through the small-batch search before CBC
  // (0 = never). On 4-24 queries and 11 models its p99 is 0.05-0.39 ms where CBC's was 2.6-23 ms
  // (bench/README.md, "Solver benchmark"). In solver_bench the fast solver's gap was never above
  // 0.5% at 100 queries and more, so 32 covers the sizes that need it; small_batch_max_nodes bounds
  // the search at about 1.5 ms (29-72 ns per node).
  int small_batch_max_queries = 32;
  int64_t small_batch_max_nodes = 20000;
  // The same bound for batch_gamma's search (small_batch_gamma.h), over all its candidate thetas
  // together, and larger: CBC on the robust model did not close what the search left
  // (solver_bench's BM_SmallBatchGamma, 11 models: at 20,000 nodes some instances of 13-32
  // queries ran to the 20 ms limit and ended 1.0-2.9% from their bound; at 200,000 every instance
  // of 4-32 queries finished within 0.5%, the largest in 61,749 nodes and 3.7 ms).
  int64_t small_batch_gamma_max_nodes = 200000;
  // Reads the time for the deadline and solve_time. Not owned; must outlive the call. CBC's own
  // stopping rule reads the wall clock regardless.
  const Clock* clock = &Clock::Real();
};

absl::StatusOr<Solution> SolveBatch(const BatchProblem& problem,
                                    const BatchRouterOptions& options = {});

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_SOLVE_BATCH_H_
