// File: learning.h
//
// Learning from outcomes in replay (router_eval's experiment 7): a stream of prompts decided batch
// by batch through the service's batch engine (serving/batch_engine.h's RouteBatch, with a
// LocalLedger: a per-batch budget cap and per-model slots, exactly as routerd decides a batch),
// with or without the outcome learner (learn/outcome_learner.h) in the loop, under bandit
// feedback: after a batch is decided, only the chosen model's outcome of each query is revealed
// (recorded in the learner against the prior the estimator predicted for that query), and the next
// batch's predictions are adjusted by what was learned so far.
//
//   Stream. MakeStream: the usable prompts in seeded shuffles, one epoch after another, cut at the
//   requested length (longer than one test part, so prompts recur; the learner keeps per
//   (model, cluster) aggregates, never a prompt's own outcome).
//   Truth. An outcome is the stream's truth table for (prompt, model): `truth_before` until
//   position `switch_at`, `truth_after` from there on (Degrade builds a drifted table).
//   Predictions. `before` until switch_at, `after` (when set: an oracle refitted on the new truth)
//   from there on; each query's cluster from `clusters`.
//   Cold-start models. An arm's `cold_models` are models the estimator knows nothing about: with
//   the learner they are MarkColdStart'ed and their prediction columns carry the query's baseline
//   (OutcomeLearner::ColdStartBaseline; their costs are known, as a new model's price is); without
//   it (a static arm) they are left out of every query's allowed models.
//   Limits. After each batch the replay re-counts, independently of the engine, the batch's
//   predicted spend against its cap and each model's queries against its slots, and fails
//   (INTERNAL) on any excess: the assertion that exploration and learning never break a limit.
//   Every assignment of a batch is completed before the next batch, so each batch starts with all
//   slots free. A query refused for want of budget or slots (RESOURCE_EXHAUSTED) is unserved and
//   scores 0.
//
// Thread-safety: pure functions; each replay owns its ledger, learner and generator.
//
// Errors: INVALID_ARGUMENT for inconsistent sizes or options (naming them); INTERNAL when a batch
// breaks its cap or slots; RouteBatch's per-query errors other than RESOURCE_EXHAUSTED, and the
// learner's and ledger's errors, unchanged.

#ifndef BENCH_EVAL_LEARNING_H_
#define BENCH_EVAL_LEARNING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "router_core/estimate/estimator_eval.h"
#include "router_core/learn/outcome_learner.h"
#include "router_core/solve/solve_options.h"

namespace router::core::eval {

struct StreamSetup {
  std::vector<int64_t> stream;  // prompt rows of the predictions, in arrival order
  std::vector<int> clusters;    // per prompt row: the estimator's cluster (the learner's cell)
  // Outcomes per (row, model), row-major like HeldOutPredictions::correct, in [0, 1].
  const std::vector<double>* truth_before = nullptr;
  const std::vector<double>* truth_after = nullptr;  // nullptr = truth_before throughout
  int64_t switch_at = 0;  // first stream position of truth_after and of StreamArm::after
  int batch_size = 100;
  double cap_per_prompt = 0.0;                // USD of predicted cost; a batch of n gets n x it
  std::vector<std::optional<int64_t>> slots;  // per model; nullopt = unlimited; empty = all
  SolveOptions solve;
};

struct StreamArm {
  const HeldOutPredictions* before = nullptr;
  const HeldOutPredictions* after = nullptr;  // nullptr = `before` throughout
  std::optional<OutcomeLearnerOptions> learner;  // nullopt = a static router
  std::vector<int> cold_models;                  // see the file comment
  uint64_t seed = 0;                             // the exploration's generator
};

struct StreamRun {
  std::vector<int> chosen;         // per stream position: model index, -1 = unserved
  std::vector<double> score;       // per stream position: the outcome (0 when unserved)
  std::vector<uint8_t> explored;   // per stream position: 1 = Thompson-sampled
  double predicted_spend = 0.0;    // USD, whole stream
  double realized_spend = 0.0;     // USD, whole stream (NaN without realized costs)
  int64_t batches = 0;
  int64_t budget_binding = 0;      // batches whose solve reported the budget binding
  int64_t slots_binding = 0;       // batches with some model's slots binding
  std::vector<OutcomeCell> cells;  // the learner's cells at the end (empty for a static arm)
  int64_t dropped_outcomes = 0;
};

absl::StatusOr<StreamRun> ReplayStream(const StreamSetup& setup, const StreamArm& arm);

// `length` rows: seeded shuffles of `rows`, one after another. INVALID_ARGUMENT for empty rows.
absl::StatusOr<std::vector<int64_t>> MakeStream(const std::vector<int64_t>& rows, int64_t length,
                                                uint64_t seed);

// `truth` (n x m) with model `model`'s outcomes of the rows marked in `rows` (n flags) turned
// from correct (> 0) to 0 with probability `flip`, one seeded draw per row.
std::vector<double> Degrade(const std::vector<double>& truth, size_t m, int model,
                            const std::vector<uint8_t>& rows, double flip, uint64_t seed);

// Mean score over stream positions [from, to) (clamped to the run).
double MeanScore(const StreamRun& run, int64_t from, int64_t to);

}  // namespace router::core::eval

#endif  // BENCH_EVAL_LEARNING_H_
