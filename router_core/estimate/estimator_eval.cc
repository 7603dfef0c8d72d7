#include "router_core/estimate/estimator_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/estimate/calibration_metrics.h"
#include "router_core/estimate/deferral_curve.h"

namespace router::core {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kBins = 10;
constexpr int kMinCoverageBin = 10;

absl::Status Check(const HeldOutPredictions& p) {
  const size_t size = static_cast<size_t>(p.num_prompts) * p.models.size();
  if (p.num_prompts < 1 || p.models.empty()) {
    return absl::InvalidArgumentError("held-out predictions: no prompts or no models");
  }
  for (auto [values, name] :
       {std::pair{&p.quality, "quality"}, std::pair{&p.quality_lower, "quality_lower"},
        std::pair{&p.predicted_cost, "predicted_cost"}, std::pair{&p.correct, "correct"},
        std::pair{&p.realized_cost, "realized_cost"}}) {
    if (values->size() != size) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": expected ", size, " values, got ", values->size()));
    }
  }
  for (size_t k = 0; k < size; ++k) {
    if (!(p.quality[k] >= 0 && p.quality[k] <= 1) ||
        !(p.quality_lower[k] >= 0 && p.quality_lower[k] <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat("quality[", k, "]: outside [0, 1]"));
    }
  }
  return absl::OkStatus();
}

// Mann-Whitney ROC AUC with ties counted 1/2.
double RocAuc(std::vector<std::pair<double, bool>> scored) {
  std::sort(scored.begin(), scored.end());
  double positives = 0, negatives = 0, rank_sum = 0;
  size_t k = 0;
  while (k < scored.size()) {
    size_t end = k;
    while (end < scored.size() && scored[end].first == scored[k].first) ++end;
    const double mid_rank = (static_cast<double>(k + 1) + static_cast<double>(end)) / 2.0;
    for (size_t i = k; i < end; ++i) {
      if (scored[i].second) {
        positives += 1;
        rank_sum += mid_rank;
      } else {
        negatives += 1;
      }
    }
    k = end;
  }
  if (positives == 0 || negatives == 0) return kNaN;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

nlohmann::json Number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nullptr; }

}  // namespace

absl::StatusOr<std::vector<ModelCalibration>> CalibrationMetrics(const HeldOutPredictions& p) {
  if (absl::Status s = Check(p); !s.ok()) return s;
  const size_t m = p.models.size();
  std::vector<ModelCalibration> out;
  for (size_t j = 0; j < m; ++j) {
    ModelCalibration c;
    c.model = p.models[j];
    std::vector<double> q, y;
    std::vector<std::pair<double, bool>> scored;
    double bin_lower[kBins] = {}, bin_label[kBins] = {};
    int bin_count[kBins] = {};
    for (int64_t i = 0; i < p.num_prompts; ++i) {
      const size_t at = static_cast<size_t>(i) * m + j;
      if (std::isnan(p.correct[at])) continue;
      q.push_back(p.quality[at]);
      y.push_back(p.correct[at]);
      scored.emplace_back(p.quality[at], p.correct[at] >= 0.5);
      c.brier += (p.quality[at] - p.correct[at]) * (p.quality[at] - p.correct[at]);
      const int bin = std::min(kBins - 1, static_cast<int>(p.quality[at] * kBins));
      bin_lower[bin] += p.quality_lower[at];
      bin_label[bin] += p.correct[at];
      ++bin_count[bin];
    }
    c.labelled = static_cast<int64_t>(q.size());
    if (q.empty()) {
      c.brier = c.ece = c.auc = c.coverage = kNaN;
      out.push_back(std::move(c));
      continue;
    }
    c.brier /= static_cast<double>(q.size());
    absl::StatusOr<double> ece = ExpectedCalibrationError(q, y, kBins);
    c.ece = ece.ok() ? *ece : kNaN;
    c.auc = RocAuc(std::move(scored));
    int groups = 0, covered = 0;
    for (int b = 0; b < kBins; ++b) {
      if (bin_count[b] < kMinCoverageBin) continue;
      ++groups;
      if (bin_label[b] >= bin_lower[b]) ++covered;  // rate >= mean bound, both scaled by count
    }
    c.coverage = groups == 0 ? kNaN : static_cast<double>(covered) / groups;
    out.push_back(std::move(c));
  }
  return out;
}

bool HasRealizedCost(const HeldOutPredictions& p) {
  return std::any_of(p.realized_cost.begin(), p.realized_cost.end(),
                     [](double c) { return !std::isnan(c); });
}

std::vector<int64_t> UsablePrompts(const HeldOutPredictions& p) {
  const size_t m = p.models.size();
  const bool has_cost = HasRealizedCost(p);
  std::vector<int64_t> usable;
  for (int64_t i = 0; i < p.num_prompts; ++i) {
    bool ok = true;
    for (size_t j = 0; j < m; ++j) {
      const size_t at = static_cast<size_t>(i) * m + j;
      ok = ok && !std::isnan(p.correct[at]) && (!has_cost || !std::isnan(p.realized_cost[at]));
    }
    if (ok) usable.push_back(i);
  }
  return usable;
}

absl::StatusOr<RoutingEvaluation> EvaluateRouting(const HeldOutPredictions& p) {
  if (absl::Status s = Check(p); !s.ok()) return s;
  const size_t m = p.models.size();
  const bool has_cost = HasRealizedCost(p);
  const std::vector<int64_t> usable = UsablePrompts(p);
  if (usable.empty()) return absl::InvalidArgumentError("no prompt has every model's label");
  RoutingEvaluation r;
  r.prompts = static_cast<int64_t>(usable.size());
  const double n = static_cast<double>(usable.size());

  std::vector<double> accuracy(m, 0.0), cost(m, 0.0);
  for (const int64_t i : usable) {
    bool any = false;
    for (size_t j = 0; j < m; ++j) {
      const size_t at = static_cast<size_t>(i) * m + j;
      accuracy[j] += p.correct[at] / n;
      if (has_cost) cost[j] += p.realized_cost[at] / n;
      any = any || p.correct[at] >= 0.5;
    }
    r.oracle_accuracy += any ? 1.0 / n : 0.0;
  }
  const size_t best =
      static_cast<size_t>(std::max_element(accuracy.begin(), accuracy.end()) - accuracy.begin());
  r.best_model = p.models[best];
  r.best_accuracy = accuracy[best];
  r.best_cost = has_cost ? cost[best] : kNaN;

  // Routes every usable prompt at price mu (infinite: cheapest predicted cost, then quality).
  auto route = [&](double mu, bool cheapest) {
    double acc = 0.0, spent = 0.0;
    for (const int64_t i : usable) {
      const size_t row = static_cast<size_t>(i) * m;
      size_t pick = 0;
      double best_value = -std::numeric_limits<double>::infinity();
      for (size_t j = 0; j < m; ++j) {
        const double value = cheapest ? -p.predicted_cost[row + j] * 1e6 + p.quality[row + j] * 1e-6
                                      : p.quality[row + j] - mu * p.predicted_cost[row + j];
        if (value > best_value) {
          best_value = value;
          pick = j;
        }
      }
      acc += p.correct[row + pick] / n;
      if (has_cost) spent += p.realized_cost[row + pick] / n;
    }
    return std::pair{spent, acc};
  };
  r.argmax_accuracy = route(0.0, false).second;
  if (!has_cost || !(r.best_cost > 0)) {
    r.relative_accuracy_at_20 = r.relative_accuracy_at_50 = r.relative_accuracy_at_100 = kNaN;
    r.qnc = r.deferral_auc = kNaN;
    return r;
  }
  std::vector<std::pair<double, double>> points;
  points.push_back(route(0.0, false));
  for (int k = 0; k <= 400; ++k) {
    const double mu = std::pow(10.0, -3.0 + 6.0 * k / 400.0) / r.best_cost;
    points.push_back(route(mu, false));
  }
  points.push_back(route(0.0, true));
  for (auto& [x, y] : points) x /= r.best_cost;
  const CurveMetrics curve = ComputeCurveMetrics(std::move(points), r.best_accuracy);
  r.envelope = curve.envelope;
  r.relative_accuracy_at_20 = EnvelopeAt(r.envelope, 0.2) / r.best_accuracy;
  r.relative_accuracy_at_50 = curve.acc_rel_at_50;
  r.relative_accuracy_at_100 = curve.acc_rel_at_100;
  r.qnc = curve.qnc;
  r.deferral_auc = curve.auc;
  return r;
}

nlohmann::json CalibrationToJson(const std::vector<ModelCalibration>& metrics) {
  nlohmann::json out = nlohmann::json::object();
  for (const ModelCalibration& c : metrics) {
    out[c.model] = {{"labelled", c.labelled},
                    {"brier", Number(c.brier)},
                    {"ece", Number(c.ece)},
                    {"auc", Number(c.auc)},
                    {"coverage", Number(c.coverage)}};
  }
  return out;
}

nlohmann::json RoutingToJson(const RoutingEvaluation& r) {
  return {{"prompts", r.prompts},
          {"best_model", r.best_model},
          {"best_accuracy", Number(r.best_accuracy)},
          {"best_cost_usd", Number(r.best_cost)},
          {"argmax_accuracy", Number(r.argmax_accuracy)},
          {"oracle_accuracy", Number(r.oracle_accuracy)},
          {"relative_accuracy_at_20pct_cost", Number(r.relative_accuracy_at_20)},
          {"relative_accuracy_at_50pct_cost", Number(r.relative_accuracy_at_50)},
          {"relative_accuracy_at_100pct_cost", Number(r.relative_accuracy_at_100)},
          {"qnc", Number(r.qnc)},
          {"deferral_auc", Number(r.deferral_auc)}};
}

}  // namespace router::core
