// File: solve_options.h
//
// How long, and how closely, one batch is solved: the one set of solver settings that routerd's
// config (`policy` section), router_solve's JSON, the evaluation harness and the planner all use,
// with the defaults below. SolveBatch (solve_batch.h) documents what each stage does with them.
//
// Thread-safety: plain values.
//
// Errors: ValidateSolveOptions returns INVALID_ARGUMENT naming the field (`relative_gap: must be
// in [0, 1)`); callers that nest the options under a section prefix the field themselves.

#ifndef ROUTER_CORE_SOLVE_SOLVE_OPTIONS_H_
#define ROUTER_CORE_SOLVE_SOLVE_OPTIONS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace router::core {

struct SolveOptions {
  // Wall-clock allowance for the whole decision of one batch, from the start of the call. > 0.
  absl::Duration time_limit = absl::Milliseconds(20);
  // The time by which the decision must be made whatever the time limit: the earliest deadline
  // of the callers in the batch. The solve works until min(start + time_limit, deadline).
  // InfiniteFuture = no caller deadline.
  absl::Time deadline = absl::InfiniteFuture();
  // Exact policies stop improving once (upper_bound - objective) / |upper_bound| <= relative_gap.
  // In [0, 1). 0.5%: the fast solver's certified gap is typically 0.1-0.5%, and on a cluster
  // estimator's predictions (many queries with equal quality) CBC rarely closes it further, so a
  // tighter target spends the whole time limit on most batches (bench/README.md, "Load
  // benchmark").
  double relative_gap = 5e-3;
  // Batches of at most this many served queries whose fast-solver gap is above relative_gap go
  // through the exact small-batch search before CBC (small_batch_solver.h); 0 = never. In
  // [0, 64]. Figures in bench/README.md, "Solver benchmark".
  int small_batch_max_queries = 32;
  // Node budgets of the small-batch search: the nominal search, and batch_gamma's search over all
  // its candidate thetas together (small_batch_gamma.h). >= 1. Sized in bench/README.md,
  // "Solver benchmark".
  int64_t small_batch_max_nodes = 20000;
  int64_t small_batch_gamma_max_nodes = 200000;
  // CBC is skipped when less than this remains before the solve must end. >= 0.
  absl::Duration min_cbc_time = absl::Milliseconds(2);
  // Run CBC at all (benchmarks turn it off to measure the fast path alone).
  bool use_cbc = true;
};

// OK, or INVALID_ARGUMENT naming the first field out of its range (see the comments above).
absl::Status ValidateSolveOptions(const SolveOptions& options);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_SOLVE_OPTIONS_H_
