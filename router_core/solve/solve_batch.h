// File: solve_batch.h
//
// The one entry point that answers a batch. SolveInstance is the decision path: it takes the dense
// form of a batch (instance.h) that the service builds from its pending queries, admits the
// queries that can be served (admission.h), runs the policy, and returns an assignment that is
// feasible by construction and re-checked (CheckFeasible) before it leaves. SolveBatch is the same
// for a batch described by names and ids (problem.h: router_solve's JSON, the planner): it
// validates the description, builds its instance, and calls SolveInstance.
//
// Exact policies (batch, batch_robust, batch_gamma) are orchestrated until the solve's end,
//     end = min(start + options.time_limit, options.deadline),
// where start is the call (SolveBatch's checking and building of the instance count):
//   0. the admission (admission.h) finds the cheapest feasible assignment, whatever the time: it
//      is the answer every later stage improves on;
//   1. the structure-aware fast solver (lagrangian_solver.h; robust_gamma.h for batch_gamma)
//      yields a feasible assignment with a proven upper bound; it checks `end` inside its
//      transportation solves and hands back what it has once `end` has passed;
//   2. on a batch of at most `small_batch_max_queries` served queries whose gap exceeds
//      `relative_gap`, the small-batch branch and bound (small_batch_solver.h; for batch_gamma,
//      that search per candidate theta, small_batch_gamma.h) starts from that assignment (and its
//      prices), within its node budget and `end`;
//   3. if the gap still exceeds `relative_gap` and at least `min_cbc_time` remains before `end`,
//      CBC (cbc_solver.h) starts from the best assignment so far, on a thread of its own with its
//      own copy of the served queries, at a lower priority than the caller (SCHED_BATCH, 10 nice
//      levels down, so the caller gets a core back at `end`); the caller waits for it on `clock`
//      until `end` only, then goes on without it and tells it to stop (CBC ends at its next
//      event). CBC does not start while an abandoned run is still ending anywhere in the process;
//   4. the best assignment is returned with the tightest of the bounds.
// So an exact decision leaves by `end` plus at most 16 units of a transportation solve or 256
// search nodes, one greedy pass (O(N*M log(N*M))), the bound and the final feasibility check
// (O(N*M)), and the time its thread takes to get a core back (figures in bench/README.md,
// "Deadlines"); the gap is always reported. When no time is left at the
// start (`end` <= start), every policy answers at once with the admission's cheapest feasible
// assignment (method "admission"; for exact policies with the trivial bound, every query at its
// best value). Heuristic policies (per_query, threshold, ndch, ndch_p) return status HEURISTIC
// without a bound.
//
// When no assignment serves every query (the budget cannot pay the cheapest completion, or slots
// run out), the unserved queries and their reasons are listed in the Solution (see admission.h for
// the rule); the batch is never silently over budget or over a slot limit.
//
// Thread-safety: both functions may be called concurrently from several threads; each call owns
// its solver state; a CBC run owns its thread, its copy of the served queries and its model. The
// clock is not owned and is read only by the calling thread.
//
// Errors: SolveBatch: INVALID_ARGUMENT from ValidateBatchProblem (names the field). Both: INTERNAL
// if an answer fails its feasibility check (a bug; never returned as an answer);
// RESOURCE_EXHAUSTED if CBC's thread cannot be started.
//
// Cost: the fast solver's (lagrangian_solver.h), at most until `end`; figures in bench/README.md,
// "Solver benchmark" and "Deadlines".

#ifndef ROUTER_CORE_SOLVE_SOLVE_BATCH_H_
#define ROUTER_CORE_SOLVE_SOLVE_BATCH_H_

#include "absl/status/statusor.h"
#include "router_core/clock.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/problem.h"
#include "router_core/solve/solution.h"
#include "router_core/solve/solve_options.h"

namespace router::core {

// `instance` must be built with ValueSourceFor(policy) from predictions that satisfy
// ValidateBatchProblem's rules on numbers (quality and lower bound in [0, 1], lower <= quality,
// cost >= 0, all finite), `params` and `options` must be in range, and gamma at most the number
// of queries. The solution's vectors are indexed like the instance's queries.
absl::StatusOr<Solution> SolveInstance(const Instance& instance, PolicyKind policy,
                                       const PolicyParams& params, const SolveOptions& options,
                                       const Clock& clock = Clock::Real());

// Validates `problem`, then SolveInstance on its instance with problem.solve, the time limit
// counted from this call.
absl::StatusOr<Solution> SolveBatch(const BatchProblem& problem,
                                    const Clock& clock = Clock::Real());

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_SOLVE_BATCH_H_
