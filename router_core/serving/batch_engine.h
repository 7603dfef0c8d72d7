// File: batch_engine.h
//
// Decides one batch of the service: reads the pending queries (already predicted on arrival) in
// pool order into the dense instance the solver takes (pool_view.h), holds in the ledger what the
// batch may use (ledger.h: hold, decide, commit), solves it (SolveInstance, solve_batch.h) by the
// policy's time limit or the batch's earliest caller deadline, whichever comes first, commits the
// assignments against the hold, and returns one outcome per query.
//
// The hold asks for what the batch could use at most: per self-hosted model, the queries that
// allow it (and at most its deployed slots); in spend, min(avg_cost_cap_usd x batch size, the sum
// of each query's dearest allowed cost). The batch's slots are what the hold granted, and its
// budget the cap, or less when the paced allowance granted less. So every committed batch respects
// its cap and the free slots (the solver guarantees it; the ledger re-checks it), and decisions
// made meanwhile (inline ones, other batches) cannot take what the batch is deciding with.
//
// With a ledger that knows a recent snapshot (Ledger::RecentSnapshot: a shared ledger, whose every
// call is a round trip), the batch is first decided on it, granted as a hold would grant it, and
// committed without a hold, which re-checks it atomically: one round trip instead of two. The
// decision is then as if the batch had closed when the snapshot was read (what completed or
// refilled since is left to the next batch), except that no query is refused on it: when it would
// leave a query unserved while the ledger limited the batch, or the commit no longer fits, the
// batch holds and is decided again within what is left of its time limit (LedgerPath says which
// way each batch went). Either way nothing is committed that does not fit what is free at the
// commit.
//
// Per-query outcomes: OK with a model; INVALID_ARGUMENT when the query's allowed list names a model
// outside the pool or leaves it none; RESOURCE_EXHAUSTED when the batch's budget or free slots
// could not serve it (admission.h's rule; the message says which); UNAVAILABLE (retryable) for
// every query of a batch when the ledger cannot be reached, or refuses the commit (the batch
// outlived its hold and its assignment no longer fits, or the pool changed meanwhile).
//
// Thread-safety: RouteBatch is a function of its arguments; the ledger is thread-safe, and
// concurrent batches each decide within their own holds.
//
// Cost: O(N x M) to read the batch and to answer it, plus the solve; figures in bench/README.md,
// "Batch decision cost".

#ifndef ROUTER_CORE_SERVING_BATCH_ENGINE_H_
#define ROUTER_CORE_SERVING_BATCH_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router_core/clock.h"
#include "router_core/serving/ledger.h"
#include "router_core/serving/pool_view.h"
#include "router_core/solve/problem.h"
#include "router_core/solve/solution.h"
#include "router_core/solve/solve_options.h"

namespace router::core {

struct BatchPolicy {
  PolicyKind policy = PolicyKind::kBatch;
  PolicyParams params;
  // Per-batch cap = avg_cost_cap_usd x batch size. nullopt = no per-batch cap.
  std::optional<double> avg_cost_cap_usd;
  // Time limit, gap and search budgets of each batch's solve; the solve's deadline is the earlier
  // of solve.deadline and the batch's earliest member deadline.
  SolveOptions solve;
  // Fallback models listed per answer (allowed models by predicted quality, best first).
  int max_fallbacks = 2;
};

struct QueryOutcome {
  absl::Status status;  // OK, or why the query got no model
  std::string model;
  double quality = 0.0;
  double quality_lower = 0.0;
  double cost_usd = 0.0;
  std::string assignment_id;
  // How long the assignment holds its slot without a Complete (the ledger's at the commit).
  absl::Duration lease_timeout;
  std::vector<std::string> fallbacks;
  // What an outcome of this assignment is learned against (PendingQuery): the chosen model's
  // quality before learning adjusted it, the query's cluster, and whether its predictions were a
  // posterior sample.
  double prior_quality = 0.0;
  int cluster = 0;
  bool explored = false;
};

// How a batch read what it may use: kHold, on a hold (two ledger calls: hold, commit); kRecent, on
// the ledger's recent snapshot, committed without a hold (one call); kRecentThenHold, on the
// snapshot first, which would have refused a query or no longer fitted at the commit, then on a
// hold (three calls at most).
enum class LedgerPath { kHold, kRecent, kRecentThenHold };
// "hold", "recent", "recent_then_hold".
const char* LedgerPathName(LedgerPath path);

struct BatchOutcome {
  std::string batch_id;
  absl::Time started;  // when the batch closed and its decision began
  int64_t size = 0;
  PolicyKind policy = PolicyKind::kBatch;
  SolveStatus status = SolveStatus::kHeuristic;
  double relative_gap = 0.0;  // 0 for heuristics
  std::string method;
  absl::Duration solve_time;
  double budget_usd = -1.0;  // the batch budget; < 0 = unlimited
  double total_cost_usd = 0.0;
  std::vector<std::string> binding_constraints;  // "budget", "slots:<model>"
  LedgerPath ledger_path = LedgerPath::kHold;
  std::vector<QueryOutcome> queries;             // aligned with the input
};

BatchOutcome RouteBatch(absl::Span<const PendingQuery> queries,
                        absl::Span<const DeployedModel> pool, const BatchPolicy& policy,
                        Ledger& ledger, const Clock& clock, std::string batch_id);

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_BATCH_ENGINE_H_
