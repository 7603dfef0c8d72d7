// File: estimator_eval.h
//
// Held-out evaluation of a quality + cost estimator (BRIEF section 4), shared by router_train's
// provenance metrics and its --evaluate quality table.
//
// Input: for n held-out prompts and m models (row-major n x m) the predicted quality, its lower
// bound and the predicted cost, and the observed outcome (`correct`, NaN = no label) and the
// realized cost (NaN = unknown).
//
// Per model (CalibrationMetrics), over its labelled prompts:
//   brier     mean (quality - correct)^2
//   ece       expected calibration error, 10 equal-width bins (calibration_metrics.h)
//   auc       ROC AUC of quality for correct >= 0.5 (ties count 1/2); NaN if one class is absent
//   coverage  over the 10 equal-width bins of predicted quality holding >= 10 prompts: the
//             fraction whose observed success rate is >= their mean lower bound (nominally about
//             1 - lower_quantile)
//
// Routing (EvaluateRouting), over the prompts where every model has a label and a realized cost:
// per query, route to argmax_j quality_ij - mu * predicted_cost_ij / C, with C the best single
// model's mean realized cost and mu swept over 0 and 400 geometric steps in [1e-3, 1e3], plus the
// cheapest model per query (mu = infinity). Each mu gives a point (realized mean cost / C, realized
// accuracy). Since a router can mix two operating points at random, the achievable curve is the
// upper concave envelope of the points, made non-decreasing. From it:
//   relative_accuracy_at[f]  envelope(f) / best single model accuracy, for f = 0.2, 0.5, 1.0
//                            (NaN below the cheapest point)
//   qnc                      smallest cost fraction where the envelope reaches the best single
//                            model's accuracy (quality-neutral cost); NaN if it never does
//   deferral_auc             mean envelope accuracy over cost fractions [x0, 1], x0 = the
//                            cheapest point (area under the deferral curve, normalized by width)
// The best single model is the most accurate one on these prompts. Without realized costs (no
// model has any), only the accuracy figures are filled and the cost figures are NaN.
//
// Thread-safety: pure functions.
//
// Errors: INVALID_ARGUMENT when the arrays do not have n x m entries, a quality or lower bound is
// outside [0, 1], or no prompt is usable.

#ifndef ROUTER_CORE_ESTIMATE_ESTIMATOR_EVAL_H_
#define ROUTER_CORE_ESTIMATE_ESTIMATOR_EVAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace router::core {

struct HeldOutPredictions {
  int64_t num_prompts = 0;
  std::vector<std::string> models;
  std::vector<double> quality;         // n x m
  std::vector<double> quality_lower;   // n x m
  std::vector<double> predicted_cost;  // n x m
  std::vector<double> correct;         // n x m, NaN = no label
  std::vector<double> realized_cost;   // n x m, NaN = unknown
};

struct ModelCalibration {
  std::string model;
  int64_t labelled = 0;
  double brier = 0.0;
  double ece = 0.0;
  double auc = 0.0;
  double coverage = 0.0;
};

struct RoutingEvaluation {
  int64_t prompts = 0;  // usable prompts
  std::string best_model;
  double best_accuracy = 0.0;
  double best_cost = 0.0;        // USD per query; NaN without costs
  double argmax_accuracy = 0.0;  // mu = 0: argmax quality
  double oracle_accuracy = 0.0;  // some model is correct
  double relative_accuracy_at_20 = 0.0;
  double relative_accuracy_at_50 = 0.0;
  double relative_accuracy_at_100 = 0.0;
  double qnc = 0.0;
  double deferral_auc = 0.0;
  std::vector<std::pair<double, double>> envelope;  // (cost fraction, accuracy) vertices
};

// True when some (prompt, model) of `p` has a realized cost.
bool HasRealizedCost(const HeldOutPredictions& p);
// The prompts routing is scored on: every model labelled and, when `p` has realized costs, every
// realized cost known. Ascending.
std::vector<int64_t> UsablePrompts(const HeldOutPredictions& p);

absl::StatusOr<std::vector<ModelCalibration>> CalibrationMetrics(const HeldOutPredictions& p);
absl::StatusOr<RoutingEvaluation> EvaluateRouting(const HeldOutPredictions& p);

// {"<model>": {"brier", "ece", "auc", "coverage", "labelled"}, ...} and the routing figures as
// {"prompts", "best_model", ..., "qnc"} (NaN written as null).
nlohmann::json CalibrationToJson(const std::vector<ModelCalibration>& metrics);
nlohmann::json RoutingToJson(const RoutingEvaluation& routing);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_ESTIMATOR_EVAL_H_
