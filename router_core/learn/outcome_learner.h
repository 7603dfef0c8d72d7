// File: outcome_learner.h
//
// Learning from outcomes: what the trained estimator predicts for each model (the prior) is
// corrected, per (model, cluster) cell, by the outcomes the gateway reports for the queries that
// model served, so the router notices when a model gets worse (or better) than the artifact says,
// and a model without validation results earns traffic from a stated prior.
//
// The statistics. A cell keeps three decayed sums over the outcomes recorded in it: the weight W
// (one per outcome), the observed scores S and the prior's predictions P for those same queries
// (what the estimator predicted at decision time). Each new outcome first multiplies the cell's
// sums by d = 2^(-1 / half_life_outcomes), so the evidence of an outcome halves after that many
// newer outcomes in the cell (the cell forgets at its own traffic's pace; a cell nobody uses keeps
// its evidence). For a query whose prior predicts p for the model, the learned quality is
//     q = clamp(p + (S - P) / (m + W), 0, 1),     m = prior_strength,
// the posterior mean of a model whose success rate on this query is p plus a per-cell shift, with
// the prior worth m pseudo-outcomes at shift 0: with no evidence q = p, with much evidence the
// shift is the cell's mean residual (S - P) / W. The residual form keeps what the estimator knows
// about each query (its p varies within a cluster) and learns only the cell's systematic error,
// which is what a provider change or a re-quantization moves. Its uncertainty is a Beta with
// n = m + W pseudo-outcomes, Beta(q n, (1 - q) n): quality_lower is its lower_quantile (an O(1)
// table, beta_lower_table.h) and an explored query's quality a sample of it (Thompson sampling).
// So the robust policies see the bound tighten as outcomes accumulate, and loosen again (n
// shrinks back toward m + the decayed W) when a cell's traffic moves away and then back.
//   Cells with no outcome leave the estimator's own quality and quality_lower untouched (its
// posterior is the prior), except on an explored query, where quality is drawn from
// Beta(p m, (1 - p) m).
//   Cold start: a model marked MarkColdStart(model, true) has no prediction from the estimator.
// Its column then carries the query's baseline b instead: how hard the query is for the pool,
// ColdStartBaseline (the mean of the other models' predictions; a constant is allowed), and
// Record's prior_quality for it must be that same b. The model is learned as the baseline plus
// its own offset: each outcome counts as score + (b_now - b_then), so a new model that is only
// tried on the queries the others find hard is not judged by their difficulty (without this, a
// cold model chosen where the incumbents' predictions are lowest would look worse than it is).
// Its cells share a model-level prior: with c = cold_start_quality and m0 = cold_start_strength,
// the model's pooled estimate g = (m0 c + S + W b - P) / (m0 + W) summed over all its cells,
// then per cell q = (m0 g + S + W b - P) / (m0 + W) with the cell's sums, n = m0 + W. With no
// outcome q = c; a model that does well in the clusters where it was tried is tried in the others
// (as UniRoute's estimator shrinks a sparse cluster toward the model's global rate). Its lower
// bound is low and its Thompson samples wide until its own outcomes arrive; exploration (and a
// cold_start_quality the pool finds worth a try) is how it gets its first traffic. Changing a
// model's mark removes its cells (their residuals were measured against the other prior).
//   Clusters: what Predictions::cluster says (estimate/predictor.h): UniRoute's nearest centroid;
// 0 for the kNN and the classifier, which have no clusters, so there a model has one cell and the
// learner corrects its quality uniformly over all queries.
//
// Exploration. With probability `exploration` per query (one draw from the caller's generator),
// Adjust replaces every model's quality by a posterior sample and lowers quality_lower to at most
// that sample. The decision then runs unchanged on those numbers, under the same budget cap and
// slot limits as any other query (the learner never touches costs or limits).
//
// Memory: at most max_cells cells (about 100 bytes each plus the model name once per model). An
// outcome that would create a cell beyond it is counted (dropped_outcomes) and dropped, and no
// other: Record never refuses an outcome for an unknown model or cluster.
//
// Snapshot: Snapshot() is a JSON object {format: "router.outcome_learner", version: 2, options,
// cold_start_models, dropped_outcomes, cells: [{model, cluster, weight, score_sum, prior_sum,
// outcomes}], models: [{model, weight_total, score_total, prior_total}]}, enough for Restore to
// rebuild the same state to the last bit (the options are recorded for the reader; Restore keeps
// the learner's own). `models` carries the running totals over each model's cells that Record
// keeps up one outcome at a time (a cold-start model's pooled record), which summed afresh would
// differ in the last bits. Restore also reads version 1 (no `models`: the totals summed afresh).
// Restore replaces the whole state or, on any error, changes nothing.
//
// Thread-safety: every method may be called from any thread. Record, Reset, MarkColdStart and
// Restore take the lock exclusively; Adjust, Cells, Snapshot and dropped_outcomes share it.
//
// Cost: Record is O(1) (a hash look-up of the model and of the cluster, and three multiply-adds);
// Adjust O(M) for M models (two look-ups and one table interpolation per model; an explored query
// adds M Beta samples); Cells, Snapshot, Restore and Reset O(cells).
// Figures: bench/README.md, "Learning from outcomes".
//
// Errors: Create and ValidateOutcomeLearnerOptions return INVALID_ARGUMENT naming the option;
// Record INVALID_ARGUMENT naming `score`, `prior_quality` or `cluster` (outside [0, 1], not finite,
// negative) or `model` (empty); Restore INVALID_ARGUMENT naming the field (`cells[3].weight: ...`).

#ifndef ROUTER_CORE_LEARN_OUTCOME_LEARNER_H_
#define ROUTER_CORE_LEARN_OUTCOME_LEARNER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "router_core/learn/beta_lower_table.h"

namespace router::core {

class JsonReader;  // router_core/json/json_reader.h

struct OutcomeLearnerOptions {
  // Evidence of a (model, cluster) cell halves after this many newer outcomes in that cell, > 0
  // (finite). A cell's weight W then saturates at about 1.44 x this, so it also caps how sure the
  // learner gets, and how long evidence from before a change holds the cell back. Default 100.
  // (The defaults were chosen on router_eval's experiment 7 with tuning seeds 101-110, apart from
  // the reported ones: bench/README.md, "Learning from outcomes".)
  double half_life_outcomes = 100.0;
  // Weight of the trained estimator's prediction, in pseudo-outcomes, > 0 (finite). With m = 10,
  // ten outcomes in a cell move its shift halfway to their mean residual. Default 10.
  double prior_strength = 10.0;
  // Prior mean of a model with no validation results (MarkColdStart), in [0, 1]. Default 0.7:
  // optimistic on purpose (above most models' accuracy on our datasets), so that a new model is
  // tried in a cluster until its own outcomes there say otherwise.
  double cold_start_quality = 0.7;
  // Its weight in pseudo-outcomes, > 0 (finite). Default 5: a few unlucky first outcomes do not
  // bury a new model, and some twenty of its own outcomes dominate.
  double cold_start_strength = 5.0;
  // Level of quality_lower, in (0, 0.5]: 0.1 = the posterior's 10th percentile, as the UniRoute
  // estimator's own bound (uniroute_estimator.h).
  double lower_quantile = 0.1;
  // Share of queries whose qualities are posterior samples (Thompson), in [0, 1]. Default 0.05.
  double exploration = 0.05;
  // Memory bound on (model, cluster) cells, >= 1. Default 100,000 (about 10 MB): far above a
  // pool of 50 models x 1,000 clusters.
  int64_t max_cells = 100000;
};

// OK or INVALID_ARGUMENT naming the first out-of-range option ("half_life_outcomes: must be ...").
absl::Status ValidateOutcomeLearnerOptions(const OutcomeLearnerOptions& options);

// One cell as RouterAdmin shows it.
struct OutcomeCell {
  std::string model;
  int cluster = 0;
  double weight = 0.0;         // decayed outcome count W
  double observed_mean = 0.0;  // S / W: decayed mean observed score
  double prior_mean = 0.0;     // P / W: decayed mean of the prior's predictions for those queries
  // (S - P) / (m + W): what Adjust adds to the prior's prediction; for a cold-start model, what
  // it adds to a baseline equal to prior_mean.
  double learned_shift = 0.0;
  int64_t outcomes = 0;        // outcomes recorded in the cell since it was created (not decayed)
};

class OutcomeLearner {
 public:
  static absl::StatusOr<std::unique_ptr<OutcomeLearner>> Create(OutcomeLearnerOptions options);

  const OutcomeLearnerOptions& options() const { return options_; }

  // A model the estimator cannot predict for (no validation results): its prior is the cold-start
  // one. Changing the mark removes the model's cells.
  void MarkColdStart(absl::string_view model, bool cold);
  bool IsColdStart(absl::string_view model) const;
  // The baseline to put in a cold-start model's column of a query (and to record with its
  // outcome): the mean of the other models' qualities, as the estimator predicted them (before
  // Adjust); cold_start_quality when every model is cold. O(M).
  double ColdStartBaseline(absl::Span<const std::string> models,
                           absl::Span<const double> quality) const;

  // One outcome: `score` in [0, 1] (success = 1 / 0, or the gateway's score), `prior_quality` what
  // the prior predicted for this query and model at decision time (for a cold-start model, the
  // baseline its column carried), `cluster` >= 0 the query's cluster. Unknown models and clusters are fine (cells are
  // created); beyond max_cells the outcome is counted in dropped_outcomes() and dropped (OK).
  absl::Status Record(absl::string_view model, int cluster, double prior_quality, double score);

  // Adjusts one query's predictions in place: quality[j] and quality_lower[j] for models[j] become
  // the posterior's mean and lower quantile (untouched for a model without outcomes in `cluster`
  // that is not cold-start; a cold-start model's quality[j] is read as the query's baseline); with probability `exploration` (one draw from `rng`, none when the
  // option is 0) every quality is a posterior sample instead. Returns true when this query was
  // explored. The three spans must have the same size (else nothing is adjusted and false is
  // returned). O(M).
  bool Adjust(absl::Span<const std::string> models, int cluster, absl::Span<double> quality,
              absl::Span<double> quality_lower, absl::BitGenRef rng) const;

  // Every cell, by model name then cluster.
  std::vector<OutcomeCell> Cells() const;
  // Removes the cells of `model` (every model when nullopt) in `cluster` (every cluster when
  // nullopt); returns how many were removed. Cold-start marks and dropped_outcomes stay.
  int64_t Reset(std::optional<std::string> model, std::optional<int> cluster);

  nlohmann::json Snapshot() const;
  absl::Status Restore(const nlohmann::json& snapshot);

  // Outcomes dropped because max_cells was reached (since creation, or as restored).
  int64_t dropped_outcomes() const;
  // Cells held now.
  int64_t num_cells() const;

  static constexpr absl::string_view kSnapshotFormat = "router.outcome_learner";
  static constexpr int kSnapshotVersion = 2;

 private:
  struct Cell {
    double weight = 0.0;
    double score_sum = 0.0;
    double prior_sum = 0.0;
    int64_t outcomes = 0;
  };
  struct ModelCells {
    absl::flat_hash_map<int, Cell> cells;
    // Sums of the cells' sums (a cold-start model's pooled record).
    double weight_total = 0.0;
    double score_total = 0.0;
    double prior_total = 0.0;
    // Recomputes the sums from the cells.
    void Resum();
  };
  using CellMap = absl::flat_hash_map<std::string, ModelCells>;

  OutcomeLearner(OutcomeLearnerOptions options, const BetaLowerTable* table);

  // Sets the running totals of `models` (restored cells) from a snapshot's "models", which must
  // name every one of them once, each total within rounding of its cells' sum.
  static absl::Status ReadModelTotals(const JsonReader& root, CellMap& models);

  // The posterior of one (model, cluster) for a query whose prior predicts `prior` (the baseline
  // when cold): quality q and pseudo-count n; false when there is nothing to adjust (no cell, not
  // cold). `model` and `cell` may be null (none yet).
  bool Posterior(const ModelCells* model, const Cell* cell, bool cold, double prior, double* q,
                 double* n) const;

  const OutcomeLearnerOptions options_;
  const double decay_;  // 2^(-1 / half_life_outcomes)
  const BetaLowerTable* const table_;

  mutable absl::Mutex mu_;
  CellMap models_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> cold_ ABSL_GUARDED_BY(mu_);
  int64_t num_cells_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace router::core

#endif  // ROUTER_CORE_LEARN_OUTCOME_LEARNER_H_
