// File: experiments.h
//
// The experiments of router_eval on one dataset, run with router_core's own estimators
// and SolveBatch, each over several split seeds:
//   1 budget sweep      every policy x estimator (kNN, UniRoute, calibrated classifier): accuracy
//                       vs realized cost as a fraction of the best single model; QNC, AUC,
//                       accuracy at 50% cost (curve.h)
//   2 batching regimes  batch sizes 100 / 256, random and adversarial order, a hard per-batch cap:
//                       batch ILP vs per-query routing tuned to the same total spend, tuned to
//                       never break the cap, and per-query with the feasibility guard; and the
//                       inline router (simulate.h's RunInline: one decision per
//                       arrival, windows = the batches). Summary, per estimator and cap at N=100
//                       adversarial: inline_minus_batch_pts (also _random), inline_decision_us_p99
//                       (per-seed p99 of each Route call's wall time); inline_cap_violations =
//                       inline windows over their cap, summed over seeds and every adversarial
//                       configuration
//   3 robustness        batch vs batch_robust vs batch_gamma with estimators fitted on 10%, 30%
//                       and 100% of the train part
//   4 unseen models     UniRoute protocol: fit on 2/3 of the models, add the rest from validation
//                       results; deferral AUC and QNC (estimator_eval.h) vs kNN and vs refitting
//   5 capacity          the 4 models most accurate on train self-hosted at zero per-query cost with
//                       the paper's shapes (8/4/2/1 GPUs, 2/4/8/16 slots per instance), the rest
//                       priced; slots binding (one instance each) and not: batch ILP vs guarded
//                       per-query (spend-matched lambda) and guarded threshold routing, for
//                       each estimator
//   6 allocation        the capacity planner on predicted quality of calibration-part batches vs
//                       uniform and proportional plans at equal GPU budget (16, 32), each scored by
//                       routing the test part with its slots, for each estimator
//   7 learning          learning from outcomes (learning.h): a stream of 4,000 test prompts
//                       (the test part in seeded shuffles, one after another) decided in batches
//                       of 100 by the batch engine with a cap (0.5 x the best model's predicted
//                       cost per query) and 40 slots per model per batch, under bandit feedback,
//                       with the UniRoute estimator and the outcome learner (EvalConfig::learner)
//                       against the static router. No drift: the whole stream
//                       (online_minus_static_pts_nodrift). Drift: from query 2,000 the model most
//                       accurate on the train part loses 40% of its correct answers on the tasks
//                       covering half its static traffic before; static vs online vs an oracle
//                       refitted on the drifted calibration part, accuracy over the 2,000 queries
//                       after and over the last 500 of them (drift_gap_closed_fraction: that
//                       window's (online - static) / (oracle - static), means over seeds). New
//                       model: a model truly best on a task (and given most of that task by the
//                       full-knowledge router) joins cold; the first window of 200 queries in
//                       which it serves most of the task (new_model_queries_to_majority).
//                       --quick: 400 queries, switch at 200.
// Per seed: SplitDataset(seed) (0.6 / 0.2 / 0.2), the featurizer's IDF fitted on the train part,
// kNN fitted on the train part, UniRoute's clusters on the train part and its model statistics on
// the calibration part, the classifier trained on the train part and calibrated on the calibration
// part; everything is scored on the test part. Experiment 4 leaves the classifier out: its pool is
// fixed at training time (AddModel is UNIMPLEMENTED).
//
// Output: one Table per CSV, a JSON summary with the headline numbers (mean, sd, min, max over
// seeds; verdicts of paired differences) and a Markdown report of the dataset.
//
// Thread-safety: RunEvaluation is a pure function of its arguments apart from calling `progress`.
//
// Errors: INVALID_ARGUMENT for a bad config (naming the field); the estimators' and SolveBatch's
// errors unchanged. A dataset without costs (routerdc_7model) skips experiments 1-3, 5 and 6 and
// says so in the summary and the report.

#ifndef BENCH_EVAL_EXPERIMENTS_H_
#define BENCH_EVAL_EXPERIMENTS_H_

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/calibrated_classifier.h"
#include "router_core/estimate/dataset.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/knn_estimator.h"
#include "router_core/estimate/uniroute_estimator.h"
#include "router_core/learn/outcome_learner.h"
#include "bench/eval/simulate.h"

namespace router::core::eval {

struct EvalConfig {
  // Split seeds, at least one, distinct. Every reported figure is summarized over them.
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5};
  // Experiment numbers to run, each in [1, 7].
  std::set<int> experiments = {1, 2, 3, 4};
  // Fewer grid points, batch size 100 only, one cap, for tests and smoke runs.
  bool quick = false;
  SimOptions sim;
  FeaturizerOptions featurizer;
  KnnOptions knn;
  UniRouteOptions uniroute;
  ClassifierOptions classifier;
  // Experiment 7's outcome learner (its defaults unless router_eval's --learner says otherwise).
  OutcomeLearnerOptions learner;
};
absl::Status ValidateEvalConfig(const EvalConfig& config);

struct Table {
  std::string name;  // file stem, e.g. "exp1_budget_sweep"
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

struct EvalOutput {
  std::vector<Table> tables;
  nlohmann::json summary;
  std::string report_markdown;
};

using ProgressFn = std::function<void(absl::string_view)>;

absl::StatusOr<EvalOutput> RunEvaluation(const Dataset& data, const EvalConfig& config,
                                         const ProgressFn& progress);

// Comma-separated, header first; cells are written as given (the harness never puts commas or
// quotes in them).
std::string TableToCsv(const Table& table);

}  // namespace router::core::eval

#endif  // BENCH_EVAL_EXPERIMENTS_H_
