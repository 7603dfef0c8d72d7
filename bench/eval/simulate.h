// File: simulate.h
//
// Replays held-out predictions (estimator_eval.h's HeldOutPredictions) through router_core's
// SolveBatch, batch by batch, exactly as the service would route them, and scores the result
// against the observed outcomes: accuracy, realized cost, and the predicted spend of every batch
// (the figure a per-batch cap applies to).
//
//   Prompts. Only the usable ones: every model labelled and, when the predictions carry realized
//   costs, every realized cost known (the rule of EvaluateRouting).
//   Batches. Consecutive chunks of `batch_size` prompts in the chosen order; the last one may be
//   shorter (its budget scales with its size).
//     kRandom       a seeded shuffle.
//     kAdversarial  the expensive, hard prompts first, so they arrive together (BRIEF section 4):
//                   descending (1 - mean_j quality_ij) * mean_j cost_ij, ties by index.
//   Budgets. Per prompt in USD; a batch of n prompts gets n times it. The reference scale is the
//   best single model's mean *predicted* cost (what an operator can set a cap from), while the
//   reported cost fraction is realized cost over the best model's mean *realized* cost.
//
// Lambda tuning of the per-query router (the peer's and the paper's baseline): per-query routing
// without a budget, argmax_j quality_ij - lambda * cost_ij, has a predicted spend that never
// increases with lambda, so a bisection on log(lambda) finds
//   TuneLambdaToSpend   the smallest lambda whose total predicted spend is <= a target (the
//                       matched-spend arm: never more money than the batch arm);
//   TuneLambdaUnderCap  the smallest lambda for which no batch's predicted spend exceeds its cap
//                       (tuned in hindsight on the very batches it is scored on: a best case for
//                       the per-query router).
//
// Inline replay: RunInline feeds the same batches, prompt by prompt in batch order, to a
// real InlineRouter (serving/inline_router.h), one decision per arrival with no batch wait:
//   Windows. A count window of the batch size, so each window is exactly one batch and gets the
//   batch's cap (budget_per_prompt x its size); before a shorter last batch the router's options
//   are changed so that its window has that batch's size. The replay checks that the router's
//   windows coincide with the batches (FAILED_PRECONDITION otherwise).
//   Ledger. A fresh router and ledger per call, without spend pacing; models unlimited unless the
//   run gives slots. Every assignment of a window is completed (at its predicted cost) when the
//   window has been decided, so the next window starts with every slot free, as every batch of
//   RunPolicy does; spend is unaffected (no pacing).
//   Scoring. As RunPolicy, from the predictions and outcomes of the chosen models: a query the
//   router refused (RESOURCE_EXHAUSTED) is unserved; per-window predicted spend and size fill
//   batch_spend / batch_size, so BatchesOverCap applies unchanged; solve_ms is the window's summed
//   decision time. The wall time of each Route call (steady clock, in process) is returned too: a
//   measurement, noisy on a shared machine.
//
// Thread-safety: pure functions; each call owns its solver state (and, for RunInline, its router,
// ledger and clock).
//
// Errors: INVALID_ARGUMENT for bad options or arguments (naming them); FAILED_PRECONDITION when no
// prompt is usable, when costs are missing where a figure needs them, or when even the cheapest
// per-query choice breaks a cap; SolveBatch's errors unchanged. RunInline: InlineRouter::Create's
// and Ledger::Create's errors, and a decision's error other than RESOURCE_EXHAUSTED, unchanged.

#ifndef BENCH_EVAL_SIMULATE_H_
#define BENCH_EVAL_SIMULATE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router_core/clock.h"
#include "router_core/estimate/estimator_eval.h"
#include "router_core/solve/problem.h"
#include "router_core/solve/solve_options.h"
#include "router_core/serving/inline_router.h"

namespace router::core::eval {

// The clock of a replay's solves: it does not move, so no solve is cut short by its deadline. A
// replay judges decisions, not the machine's load at the time: on the real clock a busy machine
// would stop the fast solver early, and the figures would change from run to run. (CBC, when it
// runs, still stops on its own wall-clock limit.) Solve times are measured on the wall clock.
class ReplayClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::UnixEpoch(); }
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition,
                         absl::Time) const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    mu.Await(condition);
    return true;
  }
};

struct SimOptions {
  // How every batch is solved: routerd's defaults (solve_options.h), so that what the harness
  // measures is what the service runs.
  SolveOptions solve;
};
absl::Status ValidateSimOptions(const SimOptions& options);

enum class Ordering { kRandom, kAdversarial };
const char* OrderingName(Ordering ordering);

using Batches = std::vector<std::vector<int64_t>>;  // prompt rows of `HeldOutPredictions`

// Row `row` of `p` as a batch query (id = the row number): its predictions for every model.
Query PredictionQuery(const HeldOutPredictions& p, int64_t row);

// INVALID_ARGUMENT unless batch_size >= 1; FAILED_PRECONDITION when no prompt is usable.
absl::StatusOr<Batches> MakeBatches(const HeldOutPredictions& p, Ordering ordering, int batch_size,
                                    uint64_t seed);

// The best single model on the usable prompts (most accurate; ties: lower index).
struct Reference {
  int model = 0;
  double accuracy = 0.0;
  double realized_cost = 0.0;   // mean per prompt, USD; NaN without realized costs
  double predicted_cost = 0.0;  // mean per prompt, USD
};
absl::StatusOr<Reference> BestSingleModel(const HeldOutPredictions& p);

struct PolicyRun {
  PolicyKind policy = PolicyKind::kBatch;
  PolicyParams params;
  // Per-prompt budget in USD; nullopt = no budget row.
  std::optional<double> budget_per_prompt;
  // Concurrency slots of every batch per model (experiments 5 and 6: self-hosted instances x slots
  // per instance); nullopt entries are unlimited (API models). Empty = every model unlimited.
  std::vector<std::optional<int64_t>> slots;
};

struct RunResult {
  int64_t prompts = 0;
  int64_t unserved = 0;             // counted as wrong answers at no cost
  double accuracy = 0.0;            // mean observed `correct` of the chosen models
  double realized_cost = 0.0;       // mean per prompt, USD (NaN without realized costs)
  double predicted_cost = 0.0;      // mean per prompt, USD
  std::vector<double> batch_spend;  // predicted spend per batch, USD
  std::vector<int> batch_size;
  std::vector<double> solve_ms;  // per batch
  // Batches in which some model took more queries than its slots (re-counted from the solution,
  // independently of the solver, so the capacity experiments can show it is 0).
  int batches_over_slots = 0;
};

absl::StatusOr<RunResult> RunPolicy(const HeldOutPredictions& p, const Batches& batches,
                                    const PolicyRun& run, const SimOptions& options);

// Batches whose predicted spend exceeds cap_per_prompt x size by more than a relative 1e-9.
int BatchesOverCap(const RunResult& result, double cap_per_prompt);

struct InlineRun {
  // Per-prompt cap in USD (a window of n arrivals may spend n times it); nullopt = no cap.
  std::optional<double> budget_per_prompt;
  // As PolicyRun::slots: per model, nullopt = unlimited; empty = every model unlimited.
  std::vector<std::optional<int64_t>> slots;
  // Forecast and slot-price settings; the window fields are set by the replay (count
  // windows of the batch size, no time limit).
  InlineOptions options;
};

struct InlineReplay {
  RunResult result;
  std::vector<double> decision_us;  // wall time of each Route call, microseconds, arrival order
  int64_t guarded = 0;              // decisions in which the guard replaced the priced choice
};

absl::StatusOr<InlineReplay> RunInline(const HeldOutPredictions& p, const Batches& batches,
                                       const InlineRun& run);

struct LambdaTuning {
  double lambda = 0.0;
  double total_spend = 0.0;  // predicted, USD, at `lambda`
};
absl::StatusOr<LambdaTuning> TuneLambdaToSpend(const HeldOutPredictions& p, const Batches& batches,
                                               double target_total_spend,
                                               const SimOptions& options);
absl::StatusOr<LambdaTuning> TuneLambdaUnderCap(const HeldOutPredictions& p, const Batches& batches,
                                                double cap_per_prompt, const SimOptions& options);

}  // namespace router::core::eval

#endif  // BENCH_EVAL_SIMULATE_H_
